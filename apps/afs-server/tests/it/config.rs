//! Configuration layering and validation: defaults < file < environment < flags, with errors
//! that name their source.

use clap::Parser;

use afs_server::config::{Flags, ServerConfig};

fn flags(args: &[&str]) -> Flags {
    Flags::try_parse_from(std::iter::once("afs-server").chain(args.iter().copied()))
        .expect("flags parse")
}

fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn layers_apply_in_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("afs-server.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:7001\"\nmax_json_bytes = 1000\nfsync = true\n",
    )
    .expect("write");
    let path = file.to_str().expect("utf8");
    let cfg = ServerConfig::load(&flags(&["--config", path]), &[]).expect("file");
    assert_eq!(
        (cfg.listen.as_str(), cfg.max_json_bytes, cfg.fsync),
        ("127.0.0.1:7001", 1000, true)
    );
    assert_eq!(cfg.auth, "dev", "defaults fill the rest");
    let cfg = ServerConfig::load(
        &flags(&["--config", path]),
        &env(&[("AFS_SERVER_LISTEN", "127.0.0.1:7002")]),
    )
    .expect("env");
    assert_eq!(cfg.listen, "127.0.0.1:7002", "environment beats the file");
    let cfg = ServerConfig::load(
        &flags(&["--config", path, "--listen", "127.0.0.1:7003"]),
        &env(&[("AFS_SERVER_LISTEN", "127.0.0.1:7002")]),
    )
    .expect("flags");
    assert_eq!(cfg.listen, "127.0.0.1:7003", "flags beat the environment");
    let cfg = ServerConfig::load(&flags(&[]), &env(&[("AFS_SERVER_CONFIG", path)]))
        .expect("AFS_SERVER_CONFIG");
    assert_eq!(cfg.listen, "127.0.0.1:7001");
}

#[test]
fn errors_name_their_source() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("nope.toml");
    let e = ServerConfig::load(&flags(&["--config", missing.to_str().expect("utf8")]), &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("ConfigFileNotFound") && e.contains("nope.toml"),
        "{e}"
    );
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "listen = \"127.0.0.1:1\"\nlisten_port = 3\n").expect("write");
    let e = ServerConfig::load(&flags(&["--config", file.to_str().expect("utf8")]), &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("listen_port") && e.contains("bad.toml"), "{e}");
    let e = ServerConfig::load(&flags(&[]), &env(&[("AFS_SERVER_MAX_JSON_BYTES", "lots")]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("max_json_bytes") && e.contains("AFS_SERVER"),
        "{e}"
    );
    let e = ServerConfig::load(&flags(&[]), &env(&[("AFS_SERVER_MAX_FILE_BYTES", "0")]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("greater than zero"), "{e}");
    let e = ServerConfig::load(
        &flags(&[]),
        &env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("OTEL_EXPORTER_OTLP_ENDPOINT") && e.contains("http://"),
        "{e}"
    );
    let ok = ServerConfig::load(
        &flags(&[]),
        &env(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://c:4318/v1/traces",
        )]),
    )
    .expect("a per-signal endpoint");
    assert!(ok.otlp.traces && !ok.otlp.metrics, "{:?}", ok.otlp);
    let e = ServerConfig::load(
        &flags(&[]),
        &env(&[("AFS_SERVER_METADATA", "postgres://db/x")]),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("postgres"), "{e}");
    let e = ServerConfig::load(&flags(&[]), &env(&[("AFS_SERVER_AUTH", "ldap")]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("dev, static"), "{e}");
    assert!(Flags::try_parse_from(["afs-server", "--auth", "ldap"]).is_err());
}

#[test]
fn static_auth_requires_a_valid_tokens_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cfg = ServerConfig {
        auth: "static".into(),
        ..ServerConfig::default()
    };
    assert!(
        afs_server::auth_mode(&cfg)
            .unwrap_err()
            .to_string()
            .contains("tokens_file")
    );
    let file = dir.path().join("tokens.toml");
    std::fs::write(&file, "[[tokens]]\nsha256 = \"abc\"\ntenant = \"11111111-1111-1111-1111-111111111111\"\nprincipal = \"p\"\nscopes = []\n").expect("write");
    cfg.tokens_file = Some(file);
    let e = afs_server::auth_mode(&cfg).unwrap_err().to_string();
    assert!(e.contains("tokens[0].sha256"), "{e}");
}
