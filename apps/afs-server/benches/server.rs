//! `cargo xtask bench server`: the foundation's performance figures against a release
//! `afs-server` process on loopback, with nginx as the peer for small-file GETs. Prints a
//! Markdown table; never asserts on time.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aether_domain::{Principal, TenantId};
use aether_http_client::{ClientConfig, HttpClient, TokenSource};
use aether_ports::*;

const TENANT: &str = "11111111-1111-1111-1111-111111111111";
const TOKEN: &str = "11111111-1111-1111-1111-111111111111:bench";

struct Sizes {
    fork_files: usize,
    dir_entries: usize,
    put_files: usize,
    session_bytes: u64,
    rss_sessions: usize,
    wrk_secs: u32,
}

struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(bin: &Path, data: &Path) -> Server {
    let mut child = Command::new(bin)
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env("AFS_SERVER_LOG_LEVEL", "warn")
        // Throughput is measured from one tenant; the per-tenant limit would cap it.
        .env("AFS_SERVER_TENANT_REQUESTS_PER_SEC", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start afs-server (build it with cargo build --release -p afs-server)");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read the listening line");
    let addr = afs_server::parse_listening_line(&line)
        .expect("afs-server prints where it listens")
        .to_owned();
    Server { child, addr }
}

fn ctx() -> Ctx {
    Ctx::new(Principal::full_access(
        TenantId::parse(TENANT).expect("tenant"),
        "bench",
    ))
}

fn client(addr: &str) -> HttpClient {
    HttpClient::new(ClientConfig::new(
        format!("http://{addr}"),
        TokenSource::FromPrincipal,
    ))
    .expect("client")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Fills `dir` of a session with `n` small files through batches of 1000.
async fn populate(c: &HttpClient, sid: &str, dir: &str, n: usize, bytes: usize) -> Duration {
    let start = Instant::now();
    let mut i = 0;
    while i < n {
        let ops = (i..(i + 1000).min(n))
            .map(|k| BatchOperation::WriteFile {
                path: format!("{dir}/f{k:06}"),
                data: vec![(k % 251) as u8; bytes],
                mode: None,
                parents: true,
                expected_hash: None,
            })
            .collect();
        c.batch(&ctx(), sid, BatchRequest { operations: ops })
            .await
            .expect("batch");
        i += 1000;
    }
    start.elapsed()
}

/// The `nextPageToken` of a raw page, found without decoding the entries.
fn find_token(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let key = "\"nextPageToken\":\"";
    let at = text.find(key)? + key.len();
    Some(text[at..].split('"').next()?.to_owned())
}

/// 4 KiB of content no other (worker, index) pair produces, so every PUT stores a new blob.
fn distinct_4k(worker: u64, index: u64) -> Vec<u8> {
    let mut data = vec![worker as u8; 4096];
    data[..8].copy_from_slice(&worker.to_le_bytes());
    data[8..16].copy_from_slice(&index.to_le_bytes());
    data
}

fn dir_bytes(p: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            total += if m.is_dir() {
                dir_bytes(&e.path())
            } else {
                m.len()
            };
        }
    }
    total
}

fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn wrk(url: &str, secs: u32, auth: bool) -> Option<f64> {
    let mut cmd = Command::new("wrk");
    cmd.args(["-t2", "-c32", &format!("-d{secs}s"), "--latency"]);
    if auth {
        cmd.args(["-H", &format!("Authorization: Bearer {TOKEN}")]);
    }
    let out = cmd.arg(url).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let non2xx = text.lines().any(|l| l.contains("Non-2xx"));
    if non2xx {
        eprintln!("wrk saw errors against {url}:\n{text}");
        return None;
    }
    text.lines()
        .find(|l| l.starts_with("Requests/sec:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// A wrk script that PUTs distinct 4 KiB bodies to fresh paths, round-robin over `sessions`;
/// `setup` numbers wrk's threads so that their paths never collide.
fn put_script(sessions: &[String]) -> String {
    let list = sessions
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let mut script = format!("local sids = {{{list}}}\n");
    script.push_str("local threads = 0\nfunction setup(thread)\n  threads = threads + 1\n  thread:set(\"tid\", threads)\nend\n");
    script.push_str("local n = 0\nlocal pad = string.rep(\"x\", 4096 - 23)\n");
    script.push_str("request = function()\n  n = n + 1\n  local sid = sids[(n % #sids) + 1]\n  local tag = string.format(\"%08d-%014d\", tid, n)\n");
    script.push_str(&format!(
        "  return wrk.format(\"PUT\", \"/v1/sessions/\" .. sid .. \"/files?path=/wrk/\" .. tag .. \"&parents=true\", {{[\"Authorization\"] = \"Bearer {TOKEN}\"}}, pad .. tag)\nend\n"
    ));
    script
}

fn wrk_script(base: &str, secs: u32, script: &Path) -> Option<f64> {
    let out = Command::new("wrk")
        .args(["-t2", "-c32", &format!("-d{secs}s"), "-s"])
        .arg(script)
        .arg(base)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.lines().any(|l| l.contains("Non-2xx")) {
        eprintln!("wrk saw errors:\n{text}");
        return None;
    }
    text.lines()
        .find(|l| l.starts_with("Requests/sec:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

fn nginx(root: &Path, file: &[u8]) -> Option<(Child, String)> {
    let html = root.join("html");
    std::fs::create_dir_all(&html).ok()?;
    std::fs::write(html.join("small"), file).ok()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let conf = root.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "worker_processes auto;\npid {pid};\nerror_log {log} warn;\ndaemon off;\nevents {{ worker_connections 1024; }}\nhttp {{\n access_log off;\n sendfile on;\n keepalive_requests 1000000;\n server {{ listen 127.0.0.1:{port}; root {html}; }}\n}}\n",
            pid = root.join("nginx.pid").display(),
            log = root.join("error.log").display(),
            html = html.display()
        ),
    )
    .ok()?;
    let child = Command::new("nginx")
        .args(["-c"])
        .arg(&conf)
        .args(["-p"])
        .arg(root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    std::thread::sleep(Duration::from_millis(500));
    Some((child, format!("http://127.0.0.1:{port}/small")))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let sizes = if quick {
        Sizes {
            fork_files: 10_000,
            dir_entries: 10_000,
            put_files: 2_000,
            session_bytes: 64 << 20,
            rss_sessions: 100,
            wrk_secs: 3,
        }
    } else {
        Sizes {
            fork_files: 100_000,
            dir_entries: 10_000,
            put_files: 20_000,
            session_bytes: 1 << 30,
            rss_sessions: 1_000,
            wrk_secs: 10,
        }
    };
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/release/afs-server");
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut rows: Vec<(String, String, String, String)> = Vec::new();
    let mut row = |what: &str, ours: String, peer: String, goal: &str| {
        rows.push((what.to_owned(), ours, peer, goal.to_owned()))
    };

    let data = tmp.path().join("data");
    let server = start_server(&bin, &data);
    let c = client(&server.addr);

    // Fork: O(1) in the size of the session.
    let big = c
        .create_session(&ctx(), CreateSessionRequest::default())
        .await
        .expect("create");
    let took = populate(&c, &big.id, "/tree", sizes.fork_files, 64).await;
    row(
        &format!("batch import of {} files (64 B)", sizes.fork_files),
        format!(
            "{:.0} files/s",
            sizes.fork_files as f64 / took.as_secs_f64()
        ),
        "—".into(),
        "—",
    );
    let small = c
        .create_session(&ctx(), CreateSessionRequest::default())
        .await
        .expect("create");
    populate(&c, &small.id, "/tree", 10, 64).await;
    let mut times_big = Vec::new();
    let mut times_small = Vec::new();
    for _ in 0..21 {
        let t = Instant::now();
        c.fork_session(&ctx(), &big.id, ForkSessionRequest::default())
            .await
            .expect("fork");
        times_big.push(ms(t.elapsed()));
        let t = Instant::now();
        c.fork_session(&ctx(), &small.id, ForkSessionRequest::default())
            .await
            .expect("fork");
        times_small.push(ms(t.elapsed()));
    }
    let (mb, msm) = (median(times_big), median(times_small));
    row(
        &format!(
            "fork, session of {} files (HTTP round trip, median of 21)",
            sizes.fork_files
        ),
        format!("{mb:.2} ms"),
        format!("{msm:.2} ms with 10 files (ratio {:.2})", mb / msm),
        "≤ 20 ms, same for 10 files",
    );

    // Manifest of a 10,000-entry directory, all pages.
    let dir_session = c
        .create_session(&ctx(), CreateSessionRequest::default())
        .await
        .expect("create");
    populate(&c, &dir_session.id, "/dir", sizes.dir_entries, 16).await;
    let mut listing = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        let mut token = None;
        let mut n = 0;
        loop {
            let m = c
                .manifest(
                    &ctx(),
                    &dir_session.id,
                    ManifestRequest {
                        path_prefix: Some("/dir".into()),
                        recursive: Some(false),
                        page: PageRequest {
                            page_size: Some(1000),
                            page_token: token,
                        },
                        ..Default::default()
                    },
                )
                .await
                .expect("manifest");
            n += m.entries.items.len();
            match m.entries.next_page_token {
                Some(tk) => token = Some(tk),
                None => break,
            }
        }
        assert_eq!(n, sizes.dir_entries + 1, "listing is complete");
        listing.push(ms(t.elapsed()));
    }
    let decoded = median(listing);
    let raw_http = reqwest::Client::new();
    let mut raw = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        let mut token: Option<String> = None;
        loop {
            let mut q = vec![
                ("pathPrefix", "/dir".to_owned()),
                ("recursive", "false".to_owned()),
                ("pageSize", "1000".to_owned()),
            ];
            if let Some(tk) = &token {
                q.push(("pageToken", tk.clone()));
            }
            let body = raw_http
                .get(format!(
                    "http://{}/v1/sessions/{}/manifest",
                    server.addr, dir_session.id
                ))
                .query(&q)
                .bearer_auth(TOKEN)
                .send()
                .await
                .expect("manifest")
                .bytes()
                .await
                .expect("body");
            // Only the continuation token is looked at: this figure is the server's work.
            token = find_token(&body);
            if token.is_none() {
                break;
            }
        }
        raw.push(ms(t.elapsed()));
    }
    row(
        &format!(
            "manifest of a {}-entry directory (10 pages of 1000, HTTP, median of 7)",
            sizes.dir_entries
        ),
        format!("{:.1} ms", median(raw)),
        format!("{decoded:.1} ms incl. client JSON decoding"),
        "≤ 50 ms",
    );

    // Small-file PUT: new 4 KiB files, 32 concurrent writers over 8 sessions.
    let mut sessions = Vec::new();
    for _ in 0..8 {
        sessions.push(
            c.create_session(&ctx(), CreateSessionRequest::default())
                .await
                .expect("create")
                .id,
        );
    }
    let per_worker = sizes.put_files / 32;
    let t = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..32 {
        let c = c.clone();
        let sid = sessions[w % sessions.len()].clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per_worker {
                let req = WriteFileRequest {
                    path: format!("/w{w}/f{i}"),
                    data: distinct_4k(w as u64, i as u64).into(),
                    mode: None,
                    parents: true,
                    expected_hash: None,
                };
                c.write_file(&ctx(), &sid, req).await.expect("put");
            }
        }));
    }
    for task in tasks {
        task.await.expect("writer");
    }
    let rate = (per_worker * 32) as f64 / t.elapsed().as_secs_f64();
    let script = tmp.path().join("put.lua");
    std::fs::write(&script, put_script(&sessions)).expect("write the wrk script");
    let wrk_put = wrk_script(&format!("http://{}", server.addr), sizes.wrk_secs, &script);
    row(
        "PUT of new 4 KiB files (wrk -t2 -c32, 8 sessions, unique paths)",
        wrk_put.map_or_else(|| "wrk missing".to_owned(), |r| format!("{r:.0} files/s")),
        format!(
            "{rate:.0} files/s through aether-http-client (32 tasks, {} files)",
            per_worker * 32
        ),
        "≥ 5,000/s",
    );
    let t = Instant::now();
    let one = &sessions[0];
    let mut seq = 0;
    while t.elapsed() < Duration::from_secs(3) {
        let req = WriteFileRequest {
            path: format!("/seq/f{seq}"),
            data: distinct_4k(999, seq as u64).into(),
            mode: None,
            parents: true,
            expected_hash: None,
        };
        c.write_file(&ctx(), one, req).await.expect("put");
        seq += 1;
    }
    row(
        "PUT of new 4 KiB files (one writer, one session)",
        format!("{:.0} files/s", seq as f64 / t.elapsed().as_secs_f64()),
        "—".into(),
        "—",
    );

    // Small-file GET with wrk against nginx serving the same bytes from disk.
    let content: Vec<u8> = (0..4096u32).map(|i| (i % 256) as u8).collect();
    let get_session = c
        .create_session(&ctx(), CreateSessionRequest::default())
        .await
        .expect("create");
    c.write_file(
        &ctx(),
        &get_session.id,
        WriteFileRequest {
            path: "/small".into(),
            data: content.clone().into(),
            mode: None,
            parents: false,
            expected_hash: None,
        },
    )
    .await
    .expect("put");
    let ours = wrk(
        &format!(
            "http://{}/v1/sessions/{}/files?path=/small",
            server.addr, get_session.id
        ),
        sizes.wrk_secs,
        true,
    );
    let peer = nginx(&tmp.path().join("nginx"), &content).and_then(|(mut child, url)| {
        let r = wrk(&url, sizes.wrk_secs, false);
        let _ = child.kill();
        let _ = child.wait();
        r
    });
    match (ours, peer) {
        (Some(o), Some(p)) => row(
            "GET of a 4 KiB file (wrk -t2 -c32)",
            format!("{o:.0} req/s"),
            format!("nginx {p:.0} req/s (ratio {:.2})", o / p),
            "ratio ≥ 0.5",
        ),
        (o, p) => row(
            "GET of a 4 KiB file (wrk -t2 -c32)",
            format!("{o:?}"),
            format!("nginx {p:?} (wrk or nginx missing?)"),
            "ratio ≥ 0.5",
        ),
    }

    // Storage added by editing one 4 KiB file in a session holding `session_bytes`.
    let store = c
        .create_session(&ctx(), CreateSessionRequest::default())
        .await
        .expect("create");
    let chunk = 4 << 20;
    for i in 0..(sizes.session_bytes / chunk) {
        let data: Vec<u8> = (0..chunk).map(|b| ((b * 31 + i * 7) % 251) as u8).collect();
        c.write_file(
            &ctx(),
            &store.id,
            WriteFileRequest {
                path: format!("/big/{i:04}"),
                data: data.into(),
                mode: None,
                parents: true,
                expected_hash: None,
            },
        )
        .await
        .expect("put");
    }
    c.write_file(
        &ctx(),
        &store.id,
        WriteFileRequest {
            path: "/edit.txt".into(),
            data: vec![b'a'; 4096].into(),
            mode: None,
            parents: false,
            expected_hash: None,
        },
    )
    .await
    .expect("put");
    let fork = c
        .fork_session(&ctx(), &store.id, ForkSessionRequest::default())
        .await
        .expect("fork");
    std::thread::sleep(Duration::from_millis(200));
    // Both the data directory's files and the blob store's own count: a small blob is a row,
    // which may land in SQLite pages the directory already holds.
    let blob_bytes = async || c.cas_metrics(&ctx()).await.expect("cas metrics").blob_bytes;
    let (before, blobs_before) = (dir_bytes(&data), blob_bytes().await);
    c.patch_segments(
        &ctx(),
        &fork.id,
        PatchSegmentsRequest {
            path: "/edit.txt".into(),
            segments: vec![Segment {
                offset: 100,
                data: b"edited".to_vec(),
            }],
            truncate_to: None,
            expected_hash: None,
            create: false,
        },
    )
    .await
    .expect("patch");
    std::thread::sleep(Duration::from_millis(200));
    let added = dir_bytes(&data).saturating_sub(before);
    let blobs_added = blob_bytes().await.saturating_sub(blobs_before);
    row(
        &format!(
            "storage added by editing 4 KiB in a forked {} MiB session",
            sizes.session_bytes >> 20
        ),
        format!("{blobs_added} bytes of blobs, data directory {added} bytes"),
        format!(
            "{:.4}% of the session",
            added.max(blobs_added) as f64 * 100.0 / sizes.session_bytes as f64
        ),
        "< 1%",
    );
    drop(server);

    // Memory: one process holding many sessions of 100 files each.
    let rss_data = tmp.path().join("rss");
    let server = start_server(&bin, &rss_data);
    let c = client(&server.addr);
    let (idle, _) = rss_kib(server.child.id());
    for _ in 0..sizes.rss_sessions {
        let s = c
            .create_session(&ctx(), CreateSessionRequest::default())
            .await
            .expect("create");
        populate(&c, &s.id, "/src", 100, 256).await;
    }
    let (rss, hwm) = rss_kib(server.child.id());
    row(
        &format!(
            "server RSS holding {} sessions × 100 files",
            sizes.rss_sessions
        ),
        format!(
            "{:.1} MiB (peak {:.1} MiB)",
            rss as f64 / 1024.0,
            hwm as f64 / 1024.0
        ),
        format!("idle {:.1} MiB", idle as f64 / 1024.0),
        "≤ 300 MiB",
    );
    drop(server);

    println!("\n| measure | AetherFS | peer / reference | goal |\n|---|---|---|---|");
    for (what, ours, peer, goal) in rows {
        println!("| {what} | {ours} | {peer} | {goal} |");
    }
}
