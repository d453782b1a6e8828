//! `cargo xtask bench workflow`: the workflow API's figures against a release `afs-server` on
//! loopback: knowledge-cache GET/PUT of 100-byte values beside `redis-benchmark` against a
//! Redis server in the same run, bus publish→deliver latency with 10 subscribers, and the
//! import of a 10,000-file tree with the time to create a session from its revision. Prints a
//! Markdown table; never asserts on time.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;

use aether_domain::{Principal, TenantId};
use aether_http_client::{ClientConfig, HttpClient, TokenSource};
use aether_ports::*;

const TENANT: &str = "11111111-1111-1111-1111-111111111111";
/// Concurrent clients for the key/value rows, as `redis-benchmark -c`.
const CLIENTS: usize = 50;
const REDIS_PORT: u16 = 16379;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server(bin: &Path, data: &Path, import_root: &Path) -> (Proc, String) {
    let mut child = Command::new(bin)
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .arg("--import-root")
        .arg(import_root)
        .env("AFS_SERVER_LOG_LEVEL", "warn")
        .env("AFS_SERVER_TENANT_REQUESTS_PER_SEC", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start afs-server (cargo build --release -p afs-server)");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read the listening line");
    let addr = afs_server::parse_listening_line(&line)
        .expect("afs-server prints where it listens")
        .to_owned();
    (Proc(child), addr)
}

fn ctx(name: &str) -> Ctx {
    Ctx::new(Principal::full_access(
        TenantId::parse(TENANT).expect("tenant"),
        name,
    ))
}

fn client(addr: &str) -> HttpClient {
    HttpClient::new(ClientConfig::new(
        format!("http://{addr}"),
        TokenSource::FromPrincipal,
    ))
    .expect("client")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Runs `op` from `CLIENTS` tasks for `secs`; operations per second.
async fn throughput<F, Fut>(secs: u64, op: F) -> f64
where
    F: Fn(usize, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|w| {
            let (op, done) = (op.clone(), done.clone());
            tokio::spawn(async move {
                let mut i = 0;
                while Instant::now() < deadline {
                    op(w, i).await;
                    i += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("worker");
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// `redis-benchmark` GET and SET of 100-byte values with the same concurrency, if Redis is here.
fn redis(requests: u32) -> Option<(f64, f64)> {
    let server = Command::new("redis-server")
        .args([
            "--port",
            &REDIS_PORT.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
        .map(Proc)?;
    std::thread::sleep(Duration::from_millis(500));
    let out = Command::new("redis-benchmark")
        .args(["-p", &REDIS_PORT.to_string(), "-t", "set,get", "-d", "100"])
        .args([
            "-c",
            &CLIENTS.to_string(),
            "-n",
            &requests.to_string(),
            "-q",
        ])
        .output()
        .ok()?;
    drop(server);
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "\n");
    let rate = |op: &str| -> Option<f64> {
        text.lines()
            .filter(|l| l.starts_with(op))
            .filter_map(|l| l.split(':').nth(1))
            .filter_map(|r| r.split_whitespace().next()?.parse().ok())
            .next_back()
    };
    Some((rate("GET")?, rate("SET")?))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (kv_secs, bus_messages, import_files) = if quick {
        (3, 500, 2_000)
    } else {
        (10, 2_000, 10_000)
    };
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release/afs-server");
    let tmp = tempfile::tempdir().expect("temp dir");
    let tree = tmp.path().join("tree");
    for d in 0..100 {
        std::fs::create_dir_all(tree.join(format!("d{d}"))).expect("mkdir");
    }
    for i in 0..import_files {
        let body: Vec<u8> = (0..1024u32).map(|b| (b ^ i as u32) as u8).collect();
        std::fs::write(tree.join(format!("d{}/f{i}", i % 100)), body).expect("write");
    }
    let (_server, addr) = start_server(&bin, &tmp.path().join("data"), &tree);
    let api = Arc::new(client(&addr));
    let c = ctx("bench");
    let s = api
        .create_session(&c, CreateSessionRequest::default())
        .await
        .expect("session");
    let sid = Arc::new(s.id.clone());

    // Knowledge cache: PUT then GET, 100-byte values, 50 clients.
    let value = vec![b'v'; 100];
    let put_rate = {
        let (api, sid, value) = (api.clone(), sid.clone(), value.clone());
        throughput(kv_secs, move |w, i| {
            let (api, sid, value) = (api.clone(), sid.clone(), value.clone());
            async move {
                api.cache_put(
                    &ctx("bench"),
                    &sid,
                    &format!("k{w}-{}", i % 100),
                    PutCacheRequest {
                        value,
                        ttl_seconds: None,
                    },
                )
                .await
                .expect("put");
            }
        })
        .await
    };
    let get_rate = {
        let (api, sid) = (api.clone(), sid.clone());
        throughput(kv_secs, move |w, i| {
            let (api, sid) = (api.clone(), sid.clone());
            async move {
                api.cache_get(&ctx("bench"), &sid, &format!("k{w}-{}", i % 100))
                    .await
                    .expect("get");
            }
        })
        .await
    };
    let redis_rates = redis(if quick { 50_000 } else { 200_000 });

    // Bus: 10 subscribers; each message carries its send time.
    let mut feeds = Vec::new();
    for _ in 0..10 {
        feeds.push(
            api.subscribe(&c, &sid, SubscribeRequest::default())
                .await
                .expect("subscribe"),
        );
    }
    let epoch = Instant::now();
    let collectors: Vec<_> = feeds
        .into_iter()
        .map(|mut feed| {
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(bus_messages);
                while lat.len() < bus_messages {
                    match tokio::time::timeout(Duration::from_secs(30), feed.next()).await {
                        Ok(Some(Ok(BusDelivery::Message(m)))) => {
                            let sent =
                                u64::from_le_bytes(m.payload[..8].try_into().expect("8 bytes"));
                            let now = epoch.elapsed().as_nanos() as u64;
                            lat.push((now - sent) as f64 / 1e6);
                        }
                        Ok(Some(Ok(BusDelivery::Missed { .. }))) => {}
                        _ => break,
                    }
                }
                lat
            })
        })
        .collect();
    let publish_start = Instant::now();
    for _ in 0..bus_messages {
        let sent = epoch.elapsed().as_nanos() as u64;
        let mut payload = sent.to_le_bytes().to_vec();
        payload.resize(100, 0);
        api.publish(
            &c,
            &sid,
            PublishRequest {
                topic: "bench:latency".into(),
                payload,
                headers: Default::default(),
            },
        )
        .await
        .expect("publish");
    }
    let publish_rate = bus_messages as f64 / publish_start.elapsed().as_secs_f64();
    let mut latencies = Vec::new();
    for t in collectors {
        latencies.extend(t.await.expect("collector"));
    }
    latencies.sort_by(|a, b| a.total_cmp(b));
    let delivered = latencies.len();

    // Import, then sessions from the revision.
    let src = api
        .create_source(
            &c,
            CreateSourceRequest {
                display_name: "bench".into(),
                kind: "SOURCE_KIND_LOCAL_PATH".into(),
                origin: SourceOrigin {
                    path: Some(tree.display().to_string()),
                    ..Default::default()
                },
                labels: Default::default(),
            },
        )
        .await
        .expect("source");
    let import_start = Instant::now();
    let mut job = api.start_import(&c, &src.id).await.expect("import");
    while !job.state.ends_with("_SUCCEEDED") && !job.state.ends_with("_FAILED") {
        tokio::time::sleep(Duration::from_millis(20)).await;
        job = api.get_job(&c, &src.id, &job.id).await.expect("job");
    }
    let import_secs = import_start.elapsed().as_secs_f64();
    assert_eq!(job.state, "UNDERLAY_IMPORT_JOB_STATE_SUCCEEDED", "{job:?}");
    let mut creates = Vec::new();
    for _ in 0..21 {
        let t = Instant::now();
        api.create_session(
            &c,
            CreateSessionRequest {
                source_ref: Some(SourceRef {
                    source_id: src.id.clone(),
                    revision_id: None,
                }),
                ..Default::default()
            },
        )
        .await
        .expect("session from revision");
        creates.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    creates.sort_by(|a, b| a.total_cmp(b));

    println!("| row | aether | peer | ratio |");
    println!("|---|---|---|---|");
    let (rg, rs) = redis_rates.unwrap_or((f64::NAN, f64::NAN));
    println!(
        "| knowledge cache PUT, 100 B, {CLIENTS} clients (ops/s) | {put_rate:.0} | redis SET {rs:.0} | {:.3} |",
        put_rate / rs
    );
    println!(
        "| knowledge cache GET, 100 B, {CLIENTS} clients (ops/s) | {get_rate:.0} | redis GET {rg:.0} | {:.3} |",
        get_rate / rg
    );
    println!(
        "| bus publish→deliver, 10 subscribers, p50 / p99 (ms) | {:.2} / {:.2} | — | — |",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );
    println!(
        "| bus messages published per second (one publisher, 10 subscribers; {delivered} deliveries of {}) | {publish_rate:.0} | — | — |",
        bus_messages * 10
    );
    println!(
        "| import of {import_files} files of 1 KiB from a host directory (files/s) | {:.0} | — | — |",
        import_files as f64 / import_secs
    );
    println!(
        "| session from that revision, median / max of 21, client-observed (ms) | {:.2} / {:.2} | — | goal ≤ 20 |",
        percentile(&creates, 0.5),
        creates[creates.len() - 1]
    );
    if redis_rates.is_none() {
        eprintln!(
            "note: redis-server/redis-benchmark missing (apt-get install redis-server); ratios are NaN"
        );
    }
}
