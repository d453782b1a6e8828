//! Tidy: enforces the architecture guide's layout and dependency rules, crate manifest
//! conventions, `//!` module headers, and the absence of debugging leftovers.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the root")
        .to_owned()
}

const LAYERS: [&str; 5] = ["domain", "ports", "adapters", "apps", "conformance"];

/// Crates that do I/O or run an async runtime, forbidden in the pure layers.
const IO_CRATES: [&str; 10] = [
    "tokio",
    "reqwest",
    "axum",
    "hyper",
    "fuser",
    "rusqlite",
    "opentelemetry",
    "opentelemetry-otlp",
    "tower",
    "tempfile",
];

struct Krate {
    name: String,
    layer: String,
    dir: PathBuf,
    manifest: toml::Table,
}

impl Krate {
    fn deps(&self, section: &str) -> Vec<(String, toml::Value)> {
        self.manifest
            .get(section)
            .and_then(|d| d.as_table())
            .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }

    fn ours(&self, section: &str) -> BTreeSet<String> {
        self.deps(section)
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| k.starts_with("aether-") || k == "afs-server")
            .collect()
    }
}

fn load(root: &Path) -> Result<Vec<Krate>> {
    let mut out = Vec::new();
    for layer in LAYERS {
        let Ok(entries) = std::fs::read_dir(root.join(layer)) else {
            continue;
        };
        for entry in entries {
            let dir = entry?.path();
            let manifest_path = dir.join("Cargo.toml");
            let text = std::fs::read_to_string(&manifest_path)
                .with_context(|| format!("read {}", manifest_path.display()))?;
            let manifest: toml::Table = text
                .parse()
                .with_context(|| format!("parse {}", manifest_path.display()))?;
            let name = manifest["package"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            out.push(Krate {
                name,
                layer: layer.to_owned(),
                dir,
                manifest,
            });
        }
    }
    Ok(out)
}

pub(crate) fn check(root: &Path) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let crates = load(root)?;
    for k in &crates {
        check_manifest(k, &mut problems);
        check_layer_rules(k, &mut problems);
        check_sources(&k.dir, &k.name, &k.layer, &mut problems)?;
    }
    check_sources(&root.join("xtask"), "xtask", "xtask", &mut problems)?;
    check_dashboard(root, &mut problems)?;
    Ok(problems)
}

/// Every metric the Grafana dashboard queries is documented in `docs/metrics.md` and made
/// somewhere in the sources, so a renamed instrument cannot leave a blank panel behind.
fn check_dashboard(root: &Path, problems: &mut Vec<String>) -> Result<()> {
    let dashboard = root.join("docs/grafana-dashboard.json");
    if !dashboard.exists() {
        return Ok(());
    }
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&dashboard)?)
        .context("docs/grafana-dashboard.json is not JSON")?;
    let reference = std::fs::read_to_string(root.join("docs/metrics.md")).unwrap_or_default();
    let mut sources = String::new();
    for layer in ["apps", "adapters"] {
        let mut files = Vec::new();
        rust_files(&root.join(layer), &mut files)?;
        for f in files
            .iter()
            .filter(|f| !f.components().any(|c| c.as_os_str() == "tests"))
        {
            sources.push_str(&std::fs::read_to_string(f)?);
        }
    }
    let mut names = BTreeSet::new();
    for panel in json["panels"].as_array().into_iter().flatten() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap_or_default();
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("aether_") || word.starts_with("afs_server_") {
                    let base = ["_bucket", "_count", "_sum"]
                        .iter()
                        .find_map(|s| word.strip_suffix(s))
                        .unwrap_or(word);
                    names.insert(base.to_owned());
                }
            }
        }
    }
    for name in names {
        if !reference.contains(&format!("`{name}`")) {
            problems.push(format!(
                "docs/grafana-dashboard.json: {name} is not in docs/metrics.md"
            ));
        }
        if !sources.contains(&format!("\"{name}\"")) {
            problems.push(format!(
                "docs/grafana-dashboard.json: no instrument named {name}"
            ));
        }
    }
    Ok(())
}

fn check_manifest(k: &Krate, problems: &mut Vec<String>) {
    let folder = k
        .dir
        .file_name()
        .and_then(|f| f.to_str())
        .unwrap_or_default();
    if folder != k.name {
        problems.push(format!(
            "{}: folder name {folder} differs from the crate name",
            k.name
        ));
    }
    let pkg = &k.manifest["package"];
    if pkg.get("version").and_then(|v| v.as_str()) != Some("0.0.0") {
        problems.push(format!("{}: internal crates are version 0.0.0", k.name));
    }
    if pkg.get("publish").and_then(|v| v.as_bool()) != Some(false) {
        problems.push(format!("{}: internal crates set publish = false", k.name));
    }
    let lints_inherited = k
        .manifest
        .get("lints")
        .and_then(|l| l.get("workspace"))
        .and_then(|w| w.as_bool())
        == Some(true);
    if !lints_inherited {
        problems.push(format!("{}: missing [lints] workspace = true", k.name));
    }
    if !k.dir.join("src/lib.rs").exists() && !k.dir.join("src/main.rs").exists() {
        problems.push(format!("{}: needs src/lib.rs or src/main.rs", k.name));
    }
    for section in ["dependencies", "dev-dependencies"] {
        for (dep, spec) in k.deps(section) {
            let inherited = spec.get("workspace").and_then(|w| w.as_bool()) == Some(true);
            if !inherited {
                problems.push(format!("{}: {section}.{dep} must be declared once in [workspace.dependencies] and inherited", k.name));
            }
        }
    }
}

fn check_layer_rules(k: &Krate, problems: &mut Vec<String>) {
    let ours = k.ours("dependencies");
    let externals: Vec<(String, toml::Value)> = k
        .deps("dependencies")
        .into_iter()
        .filter(|(d, _)| !ours.contains(d))
        .collect();
    let allowed: &[&str] = match (k.layer.as_str(), k.name.as_str()) {
        ("domain", "aether-domain") => &[],
        ("ports", _) => &["aether-domain"],
        ("domain", _) => &["aether-domain", "aether-ports"],
        // The fake session API is the service's rules over in-memory stores (ARCHITECTURE.md).
        ("adapters", "aether-fakes") => &["aether-domain", "aether-ports", "aether-service"],
        ("adapters", _) => &["aether-domain", "aether-ports"],
        ("conformance", _) => &["aether-domain", "aether-ports"],
        ("apps", _) => return,
        _ => &[],
    };
    for dep in &ours {
        if !allowed.contains(&dep.as_str()) {
            problems.push(format!(
                "{} ({} layer) must not depend on {dep}",
                k.name, k.layer
            ));
        }
    }
    if k.layer == "conformance" {
        for dep in k.ours("dev-dependencies") {
            if dep != "aether-fakes" && !allowed.contains(&dep.as_str()) {
                problems.push(format!(
                    "{}: conformance may only test against aether-fakes, not {dep}",
                    k.name
                ));
            }
        }
    }
    let pure = k.layer == "domain" || k.layer == "ports";
    if pure {
        for (dep, spec) in &externals {
            let io = IO_CRATES.contains(&dep.as_str());
            // The service cores may use tokio's synchronisation primitives, never its runtime.
            let sync_only_tokio = dep == "tokio"
                && k.name != "aether-domain"
                && k.name != "aether-ports"
                && spec
                    .get("features")
                    .and_then(|f| f.as_array())
                    .is_some_and(|f| f.iter().all(|x| x.as_str() == Some("sync")));
            if io && !sync_only_tokio {
                problems.push(format!(
                    "{} ({} layer) must not depend on the I/O crate {dep}",
                    k.name, k.layer
                ));
            }
        }
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            rust_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

fn check_sources(dir: &Path, name: &str, layer: &str, problems: &mut Vec<String>) -> Result<()> {
    let mut files = Vec::new();
    for sub in ["src", "tests", "benches"] {
        if dir.join(sub).is_dir() {
            rust_files(&dir.join(sub), &mut files)?;
        }
    }
    for f in files {
        let text = std::fs::read_to_string(&f)?;
        let shown = f.strip_prefix(dir).unwrap_or(&f).display().to_string();
        if !text.trim_start().starts_with("//!") {
            problems.push(format!(
                "{name}/{shown}: must open with a //! line saying what it is"
            ));
        }
        for (needle, why) in [
            (concat!("dbg", "!("), "dbg! left in"),
            (concat!("todo", "!("), "todo! left in"),
            (
                concat!("#[", "ignore"),
                "ignored test (assert today's behaviour and leave a FIXME instead)",
            ),
        ] {
            if text.contains(needle) {
                problems.push(format!("{name}/{shown}: {why}"));
            }
        }
        if layer == "domain" {
            for (needle, why) in [
                (
                    concat!("tokio::", "spawn"),
                    "spawning belongs to apps; take a port",
                ),
                (
                    concat!("SystemTime::", "now"),
                    "reading the clock belongs to a port",
                ),
                (
                    concat!("Instant::", "now"),
                    "reading the clock belongs to a port",
                ),
                (concat!("std::", "fs"), "file I/O belongs to adapters"),
                (concat!("thread::", "spawn"), "spawning belongs to apps"),
            ] {
                if text.contains(needle) {
                    problems.push(format!("{name}/{shown}: {why}"));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs inside `cargo test --workspace`, so a layer violation fails the test command.
    #[test]
    fn workspace_is_tidy() {
        let problems = check(&workspace_root()).expect("tidy runs");
        assert!(
            problems.is_empty(),
            "tidy found problems:\n{}",
            problems.join("\n")
        );
    }

    #[test]
    fn tidy_flags_a_violation() {
        let dir = std::env::temp_dir().join(format!("tidy-selftest-{}", std::process::id()));
        let krate = dir.join("domain/aether-domain");
        std::fs::create_dir_all(krate.join("src")).expect("mkdir");
        std::fs::write(
            krate.join("Cargo.toml"),
            "[package]\nname = \"aether-domain\"\nversion = \"0.1.0\"\n[dependencies]\ntokio = \"1\"\naether-ports.workspace = true\n",
        )
        .expect("write");
        std::fs::write(
            krate.join("src/lib.rs"),
            "fn f() { let _ = std::time::SystemTime::now(); }\n",
        )
        .expect("write");
        std::fs::create_dir_all(dir.join("xtask/src")).expect("mkdir");
        let problems = check(&dir).expect("tidy runs");
        std::fs::remove_dir_all(&dir).ok();
        let all = problems.join("\n");
        for expected in [
            "version 0.0.0",
            "publish = false",
            "[lints]",
            "tokio",
            "must not depend on aether-ports",
            "//!",
            "clock",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
        }
    }
}
