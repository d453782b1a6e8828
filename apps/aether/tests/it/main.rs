//! Tests of the aether binary: real FUSE mounts (on /dev/fuse) of sessions served by a real
//! afs-server on loopback, exercised with ordinary file-system calls and tools.

mod differential;
mod durability;
mod logging;
mod memory;
mod mount;
mod ops;
mod review;
mod sources;
mod suites;
mod traces;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use aether_http_client::{ClientConfig, HttpClient, TokenSource};
use aether_ports::*;

pub(crate) const TOKEN: &str = "00000000-0000-4000-8000-000000000001:tester";

/// An afs-server running on its own thread and runtime, restartable on the same address.
pub(crate) struct Server {
    rt: tokio::runtime::Runtime,
    running: Option<afs_server::RunningServer>,
    cfg: afs_server::ServerConfig,
    pub(crate) endpoint: String,
    _data: tempfile::TempDir,
}

impl Server {
    pub(crate) fn start() -> Server {
        Server::start_with(|_| {})
    }

    /// A server whose configuration `tune` adjusts first (a small file-size limit, say).
    pub(crate) fn start_with(tune: impl FnOnce(&mut afs_server::ServerConfig)) -> Server {
        let data = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let mut cfg = afs_server::ServerConfig {
            listen: "127.0.0.1:0".into(),
            data_dir: data.path().to_path_buf(),
            ..Default::default()
        };
        tune(&mut cfg);
        let running = rt.block_on(afs_server::start(&cfg)).unwrap();
        cfg.listen = running.addr.to_string();
        Server {
            endpoint: format!("http://{}", running.addr),
            rt,
            running: Some(running),
            cfg,
            _data: data,
        }
    }

    pub(crate) fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            self.rt.block_on(r.stop(Duration::from_secs(5)));
        }
    }

    pub(crate) fn restart(&mut self) {
        self.stop();
        for _ in 0..50 {
            match self.rt.block_on(afs_server::start(&self.cfg)) {
                Ok(r) => {
                    self.running = Some(r);
                    return;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        panic!("the server did not come back on {}", self.cfg.listen);
    }

    pub(crate) fn api(&self) -> (HttpClient, Ctx) {
        api_at(&self.endpoint)
    }

    pub(crate) fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    pub(crate) fn new_session(&self) -> String {
        let (api, ctx) = self.api();
        self.block_on(api.create_session(&ctx, CreateSessionRequest::default()))
            .unwrap()
            .id
    }

    /// The server's copy of one file.
    pub(crate) fn read(&self, session: &str, path: &str) -> Option<Vec<u8>> {
        let (api, ctx) = self.api();
        self.block_on(api.read_file(
            &ctx,
            session,
            ReadFileRequest {
                path: path.into(),
                range: None,
            },
        ))
        .ok()
        .map(|c| c.data.to_vec())
    }

    pub(crate) fn write(&self, session: &str, path: &str, data: &[u8]) {
        let (api, ctx) = self.api();
        self.block_on(api.write_file(
            &ctx,
            session,
            WriteFileRequest {
                path: path.into(),
                data: data.to_vec().into(),
                mode: None,
                parents: true,
                expected_hash: None,
            },
        ))
        .unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One mount of one session through the `aether` binary.
pub(crate) struct Mount {
    pub(crate) session: String,
    pub(crate) dir: PathBuf,
    pub(crate) cache: PathBuf,
    endpoint: String,
    pub(crate) extra: Vec<String>,
    env: Vec<(String, String)>,
    pub(crate) pid: Option<u32>,
    _tmp: tempfile::TempDir,
}

/// A client of any server at `endpoint`, and the test principal's context.
pub(crate) fn api_at(endpoint: &str) -> (HttpClient, Ctx) {
    let client = HttpClient::new(ClientConfig::new(
        endpoint,
        TokenSource::Fixed(TOKEN.into()),
    ))
    .unwrap();
    let ctx = Ctx::new(aether_domain::Principal::full_access(
        aether_domain::TenantId::parse("00000000-0000-4000-8000-000000000001").unwrap(),
        "tester",
    ));
    (client, ctx)
}

pub(crate) fn aether(endpoint: &str, args: &[&str]) -> Output {
    aether_with_env(endpoint, args, &[])
}

/// `aether` with extra environment variables (inherited by a background runtime).
pub(crate) fn aether_with_env(endpoint: &str, args: &[&str], env: &[(String, String)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aether"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("AFS_AETHER_SERVER_ENDPOINT", endpoint)
        .env("AFS_AUTH_TOKEN", TOKEN)
        .env_remove("AFS_AETHER_CONFIG")
        .env("AFS_AETHER_RECONNECT_START_MS", "100")
        .env("AFS_AETHER_RECONNECT_MAX_MS", "1000")
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run aether")
}

impl Mount {
    pub(crate) fn new(server: &Server, session: &str, extra: &[&str]) -> Mount {
        Mount::at(&server.endpoint, session, extra, &[])
    }

    /// A mount of `session` at any endpoint, its runtime started with `env` added.
    pub(crate) fn at(
        endpoint: &str,
        session: &str,
        extra: &[&str],
        env: &[(String, String)],
    ) -> Mount {
        let tmp = tempfile::tempdir().unwrap();
        let mut m = Mount {
            session: session.to_owned(),
            dir: tmp.path().join("mnt"),
            cache: tmp.path().join("cache"),
            endpoint: endpoint.to_owned(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: env.to_vec(),
            pid: None,
            _tmp: tmp,
        };
        let out = m.mount();
        assert!(
            out.status.success(),
            "mount failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        m
    }

    pub(crate) fn args(&self) -> Vec<String> {
        let mut a = vec![
            "mount".to_owned(),
            "--session-id".into(),
            self.session.clone(),
            "--mount-dir".into(),
            self.dir.display().to_string(),
            "--cache-dir".into(),
            self.cache.display().to_string(),
        ];
        a.extend(self.extra.iter().cloned());
        a
    }

    /// Runs `aether mount` (background) and remembers the runtime's pid.
    pub(crate) fn mount(&mut self) -> Output {
        let args = self.args();
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = aether_with_env(&self.endpoint, &refs, &self.env);
        let text = String::from_utf8_lossy(&out.stdout);
        self.pid = text
            .split("runtime pid ")
            .nth(1)
            .and_then(|r| r.split(';').next())
            .and_then(|p| p.trim().parse().ok());
        out
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    pub(crate) fn run(&self, verb: &str, extra: &[&str]) -> Output {
        let mut args = vec![
            verb,
            "--session-id",
            &self.session,
            "--cache-dir",
            self.cache.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        aether(&self.endpoint, &args)
    }

    /// `aether stop`: flush, unmount, end the runtime.
    pub(crate) fn stop(&mut self) {
        let out = self.run("stop", &[]);
        assert!(
            out.status.success(),
            "stop failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.pid = None;
    }

    /// Kills the runtime with SIGKILL, as a crash would, and detaches the dead mount.
    pub(crate) fn kill9(&mut self) {
        let pid = self.pid.take().expect("a running runtime");
        Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap();
        for _ in 0..100 {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.pid.is_some() {
            let _ = self.run("stop", &[]);
        }
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .stderr(std::process::Stdio::null())
            .status();
    }
}

pub(crate) fn sh(dir: &Path, script: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
