//! One FUSE operation's trace across two processes: a real `afs-server` and a real mount both
//! export spans over OTLP/HTTP to a receiver this test runs; the operation's span parents its
//! HTTP request's span, which parents the server's handler span (W3C `traceparent`), which
//! parents the store's spans. Both processes' metrics arrive at the same receiver.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aether_ports::*;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use crate::Mount;

/// A span as received: the exporting service and the fields the chain is made of.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    name: String,
    trace: Vec<u8>,
    id: Vec<u8>,
    parent: Vec<u8>,
}

/// What the receiver kept: spans, and (service, metric name) pairs.
#[derive(Default)]
struct Collected {
    spans: Vec<Received>,
    metrics: Vec<(String, String)>,
}

fn service_of(resource: &Option<Resource>) -> String {
    resource
        .iter()
        .flat_map(|r| r.attributes.iter())
        .find(|a| a.key == "service.name")
        .and_then(|a| a.value.as_ref())
        .map(|v| format!("{:?}", v.value))
        .unwrap_or_default()
}

/// An OTLP/HTTP receiver: answers every POST with 200 and keeps what `/v1/traces` and
/// `/v1/metrics` bring.
fn receiver() -> (String, Arc<Mutex<Collected>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let spans = Arc::new(Mutex::new(Collected::default()));
    let keep = spans.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let keep = keep.clone();
            std::thread::spawn(move || serve_connection(conn, &keep));
        }
    });
    (format!("http://{addr}"), spans)
}

fn serve_connection(conn: std::net::TcpStream, keep: &Mutex<Collected>) {
    let mut out = conn.try_clone().unwrap();
    let mut reader = BufReader::new(conn);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if request_line.contains("/v1/traces") {
            let req = ExportTraceServiceRequest::decode(body.as_slice()).expect("OTLP protobuf");
            let mut kept = keep.lock().unwrap();
            for rs in req.resource_spans {
                let service = service_of(&rs.resource);
                for ss in rs.scope_spans {
                    for s in ss.spans {
                        kept.spans.push(Received {
                            service: service.clone(),
                            name: s.name,
                            trace: s.trace_id,
                            id: s.span_id,
                            parent: s.parent_span_id,
                        });
                    }
                }
            }
        } else if request_line.contains("/v1/metrics") {
            let req = ExportMetricsServiceRequest::decode(body.as_slice()).expect("OTLP protobuf");
            let mut kept = keep.lock().unwrap();
            for rm in req.resource_metrics {
                let service = service_of(&rm.resource);
                for sm in rm.scope_metrics {
                    for m in sm.metrics {
                        kept.metrics.push((service.clone(), m.name));
                    }
                }
            }
        }
        let _ = out.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n",
        );
    }
}

/// The `afs-server` binary beside this package's `aether` (built by `cargo test --workspace`;
/// built here when this test runs alone).
fn afs_server_binary() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_aether")).with_file_name("afs-server");
    if !bin.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "afs-server", "--bin", "afs-server"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building afs-server failed");
    }
    bin
}

/// A real `afs-server` exporting its spans to `collector`.
struct ServerProcess {
    child: Child,
    endpoint: String,
    _data: tempfile::TempDir,
}

impl ServerProcess {
    fn start(otel: &[(String, String)]) -> ServerProcess {
        let data = tempfile::tempdir().unwrap();
        let mut child = Command::new(afs_server_binary())
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data.path())
            .envs(otel.iter().map(|(k, v)| (k, v)))
            .current_dir(data.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start afs-server");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let endpoint = loop {
            let line = lines
                .next()
                .expect("afs-server exited before listening")
                .unwrap();
            if let Some(addr) = afs_server::parse_listening_line(&line) {
                break format!("http://{addr}");
            }
        };
        ServerProcess {
            child,
            endpoint,
            _data: data,
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The chain fuse op → client request → server handler → store work, if one trace holds it.
fn chain(spans: &[Received]) -> Option<Vec<Received>> {
    let by_id = |id: &[u8]| spans.iter().find(|s| s.id == id);
    for store in spans
        .iter()
        .filter(|s| s.name.starts_with("sqlite.") || s.name == "blob.get")
    {
        // Up from the store span to the server's handler, then across to the client.
        let mut server = by_id(&store.parent);
        while let Some(s) = server
            && !s.name.starts_with("GET ")
            && !s.name.starts_with("POST ")
        {
            server = by_id(&s.parent);
        }
        let Some(server) = server else { continue };
        let Some(client) = by_id(&server.parent) else {
            continue;
        };
        let Some(fuse) = by_id(&client.parent) else {
            continue;
        };
        let one_trace = [server, client, fuse]
            .iter()
            .all(|s| s.trace == store.trace);
        if one_trace && server.service.contains("afs-server") && fuse.service.contains("aether") {
            return Some(vec![
                fuse.clone(),
                client.clone(),
                server.clone(),
                store.clone(),
            ]);
        }
    }
    None
}

#[test]
fn a_fuse_operation_traces_through_the_request_into_the_server_and_its_store() {
    let (collector, spans) = receiver();
    let otel = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(), collector),
        ("OTEL_BSP_SCHEDULE_DELAY".to_owned(), "100".to_owned()),
        ("OTEL_METRIC_EXPORT_INTERVAL".to_owned(), "500".to_owned()),
    ];
    let server = ServerProcess::start(&otel);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (api, ctx) = crate::api_at(&server.endpoint);
    let session = rt
        .block_on(api.create_session(&ctx, CreateSessionRequest::default()))
        .unwrap()
        .id;
    rt.block_on(api.write_file(
        &ctx,
        &session,
        WriteFileRequest {
            path: "/traced/file.txt".into(),
            data: b"followed across processes".to_vec().into(),
            mode: None,
            parents: true,
            expected_hash: None,
        },
    ))
    .unwrap();
    let mut mount = Mount::at(&server.endpoint, &session, &[], &otel);
    // Content is fetched on first read: open and read ask the server from inside FUSE spans.
    assert_eq!(
        std::fs::read(mount.path("traced/file.txt")).unwrap(),
        b"followed across processes"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let found = loop {
        if let Some(c) = chain(&spans.lock().unwrap().spans) {
            break c;
        }
        assert!(
            Instant::now() < deadline,
            "no complete trace after 60 s; spans received: {:#?}",
            spans
                .lock()
                .unwrap()
                .spans
                .iter()
                .map(|s| format!("{} {}", s.service, s.name))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let names: Vec<&str> = found.iter().map(|s| s.name.as_str()).collect();
    assert!(
        names[1].starts_with("GET /v1/sessions/{id}/"),
        "the client span is named by route, never by id: {names:?}"
    );
    assert!(
        names[2].starts_with("GET /v1/sessions/{id}/"),
        "the server span is named by route template: {names:?}"
    );
    assert!(
        ["lookup", "open", "read", "getattr", "readdirplus"].contains(&names[0]),
        "the root is the kernel request: {names:?}"
    );
    // Metrics: each process exports its own instruments every 500 ms here.
    let wanted = [
        ("afs-server", "afs_server_requests_total"),
        ("aether", "aether_journal_pending_entries"),
    ];
    let deadline = Instant::now() + Duration::from_secs(60);
    while !wanted.iter().all(|(service, name)| {
        spans
            .lock()
            .unwrap()
            .metrics
            .iter()
            .any(|(s, n)| s.contains(service) && n == name)
    }) {
        assert!(
            Instant::now() < deadline,
            "metrics not exported after 60 s; received: {:?}",
            spans.lock().unwrap().metrics
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    mount.stop();
}
