//! `aether dev`: the one-command local experience. Starts an embedded `afs-server` on loopback
//! with a data dir, creates a session (filled from `--source-dir` if given), mounts it, prints
//! how to use it, and on Ctrl-C flushes, unmounts and stops the server.

use std::path::Path;
use std::time::Duration;

use aether_ports::*;
use anyhow::{Context, Result, bail};

use crate::cli::DevArgs;
use crate::config::AetherConfig;
use crate::runtime::{self, MountPlan};
use crate::{absolute, session_cmd};

/// The dev server trusts `<tenant>:<principal>` tokens; this is the one `aether dev` uses.
const DEV_TOKEN: &str = "00000000-0000-4000-8000-000000000001:dev";

pub(crate) async fn run(
    args: &DevArgs,
    config: AetherConfig,
    env: &[(String, String)],
) -> Result<()> {
    let data_dir = absolute(&args.data_dir)?;
    let server_cfg = afs_server::ServerConfig {
        listen: args.listen.clone(),
        data_dir: data_dir.clone(),
        auth: "dev".into(),
        ..Default::default()
    };
    server_cfg.validate()?;
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("create the data dir {}", data_dir.display()))?;
    let server = afs_server::start(&server_cfg).await?;
    let endpoint = format!("http://{}", server.addr);
    let (api, ctx) = session_cmd::client(&endpoint, DEV_TOKEN)?;
    let session = api
        .create_session(
            &ctx,
            CreateSessionRequest {
                initial_tags: [("created_by".to_owned(), "aether-dev".to_owned())].into(),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("create a session: {}", e.message))?;
    if let Some(src) = &args.source_dir {
        let n = upload_tree(&api, &ctx, &session.id, src).await?;
        println!("copied {n} entries from {} into the session", src.display());
    }
    let cache_dir = match &args.cache_dir {
        Some(d) => absolute(d)?,
        None => data_dir.join("mount-cache"),
    };
    let plan = MountPlan {
        session_id: session.id.clone(),
        mount_dir: absolute(&args.mount_dir)?,
        endpoint: endpoint.clone(),
        token: DEV_TOKEN.to_owned(),
        shared_root: config.shared_root(&cache_dir),
        control_socket: config.control_socket(&cache_dir, &session.id),
        worker_id: runtime::worker_id(&config, &cache_dir)?,
        cache_dir: cache_dir.clone(),
        config,
        read_only: false,
        allow_other: false,
        writeback_cache: false,
    };
    let mount_dir = plan.mount_dir.clone();
    let _ = env;
    let mut signals = runtime::StopSignals::install();
    let running = match runtime::start(plan).await {
        Ok(r) => r,
        Err(e) => {
            server.stop(Duration::from_secs(5)).await;
            return Err(e);
        }
    };
    println!("AetherFS dev environment is up.");
    println!("  endpoint:   {endpoint}");
    println!("  token:      {DEV_TOKEN}");
    println!("  session:    {}", session.id);
    println!("  mounted at: {}", mount_dir.display());
    println!("Next:");
    println!("  cd {}  # work here with any tool", mount_dir.display());
    println!(
        "  AFS_AETHER_SERVER_ENDPOINT={endpoint} AFS_AUTH_TOKEN={DEV_TOKEN} aether session show --session-id {}",
        session.id
    );
    println!(
        "  aether status --session-id {} --cache-dir {}",
        session.id,
        cache_dir.display()
    );
    println!("Press Ctrl-C to flush, unmount and stop.");
    signals.wait(&running.stop_requested).await;
    println!("stopping: flushing pending writes, unmounting, stopping the server");
    let left = running.shutdown(Duration::from_secs(60)).await;
    server.stop(Duration::from_secs(10)).await;
    if left > 0 {
        bail!(
            "{left} changes were not written back; they are kept in {}",
            cache_dir.display()
        );
    }
    Ok(())
}

/// Copies a local tree into the session over the API; returns the number of entries.
async fn upload_tree(api: &impl SessionApi, ctx: &Ctx, session: &str, src: &Path) -> Result<u64> {
    if !src.is_dir() {
        bail!("--source-dir {} is not a directory", src.display());
    }
    let mut count = 0;
    let mut stack = vec![(src.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .with_context(|| format!("read {}", dir.display()))?
            .collect::<std::io::Result<_>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                tracing::warn!(path = %entry.path().display(), "skipping a name that is not UTF-8");
                continue;
            };
            let path = format!("{prefix}/{name}");
            let ft = entry.file_type()?;
            let fail = |e: aether_domain::Error| anyhow::anyhow!("copy {path}: {}", e.message);
            if ft.is_dir() {
                api.mkdir(
                    ctx,
                    session,
                    MkdirRequest {
                        path: path.clone(),
                        mode: None,
                        parents: true,
                    },
                )
                .await
                .map_err(fail)?;
                stack.push((entry.path(), path.clone()));
            } else if ft.is_symlink() {
                let target = std::fs::read_link(entry.path())?;
                api.symlink(
                    ctx,
                    session,
                    SymlinkRequest {
                        path: path.clone(),
                        target: target.to_string_lossy().into_owned(),
                    },
                )
                .await
                .map_err(fail)?;
            } else if ft.is_file() {
                use std::os::unix::fs::PermissionsExt;
                let data = std::fs::read(entry.path())?;
                let mode = entry.metadata()?.permissions().mode() & 0o7777;
                api.write_file(
                    ctx,
                    session,
                    WriteFileRequest {
                        path: path.clone(),
                        data: data.into(),
                        mode: Some(mode),
                        parents: true,
                        expected_hash: None,
                    },
                )
                .await
                .map_err(fail)?;
            } else {
                continue;
            }
            count += 1;
        }
    }
    Ok(count)
}
