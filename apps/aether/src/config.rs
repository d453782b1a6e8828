//! Client configuration (SPEC 5.1): built-in defaults < `aether.toml` < environment < flags,
//! strict validation whose messages name the source of the bad value.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Backoff {
    pub start_ms: u64,
    pub max_ms: u64,
    pub multiplier: f64,
    pub jitter_percent: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            start_ms: 1000,
            max_ms: 60_000,
            multiplier: 2.0,
            jitter_percent: 20.0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Bridge {
    pub server_endpoint: Option<String>,
    pub worker_id: Option<String>,
    pub reconnect_backoff: Backoff,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Sampling {
    pub prefetch_debug_every: u64,
    pub invalidation_debug_every: u64,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            prefetch_debug_every: 64,
            invalidation_debug_every: 32,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Logging {
    pub format: String,
    pub destination: String,
    pub path: Option<PathBuf>,
    pub rotation: String,
    pub redaction: String,
    pub sampling: Sampling,
}

impl Default for Logging {
    fn default() -> Self {
        Logging {
            format: "json".into(),
            destination: "stderr".into(),
            path: None,
            rotation: "none".into(),
            redaction: "hash".into(),
            sampling: Sampling::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Transport {
    pub heartbeat_interval_ms: u64,
    pub idle_timeout_ms: u64,
    pub connection_window_bytes: u64,
    pub stream_window_bytes: u64,
}

impl Default for Transport {
    fn default() -> Self {
        Transport {
            heartbeat_interval_ms: 2000,
            idle_timeout_ms: 10_000,
            connection_window_bytes: 67_108_864,
            stream_window_bytes: 16_777_216,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Backpressure {
    pub cache_disk_low_free_bytes: u64,
    pub cache_disk_high_free_bytes: u64,
    pub cache_disk_low_free_percent: f64,
    pub cache_dirty_high_water_bytes: u64,
    pub cache_dirty_low_water_bytes: u64,
    pub journal_high_water_bytes: u64,
    pub journal_low_water_bytes: u64,
    pub journal_high_water_entries: u64,
    pub journal_low_water_entries: u64,
    pub journal_max_age_seconds: u64,
    pub journal_clear_age_seconds: u64,
}

impl Default for Backpressure {
    fn default() -> Self {
        Backpressure {
            cache_disk_low_free_bytes: 512 << 20,
            cache_disk_high_free_bytes: 768 << 20,
            cache_disk_low_free_percent: 5.0,
            cache_dirty_high_water_bytes: 64 << 20,
            cache_dirty_low_water_bytes: 48 << 20,
            journal_high_water_bytes: 32 << 20,
            journal_low_water_bytes: 24 << 20,
            journal_high_water_entries: 4096,
            journal_low_water_entries: 2048,
            journal_max_age_seconds: 30,
            journal_clear_age_seconds: 10,
        }
    }
}

/// Every key of SPEC 5.1's table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct AetherConfig {
    pub bridge: Bridge,
    pub cache_dir: Option<PathBuf>,
    pub shared_cache_root: Option<String>,
    pub control_socket: Option<PathBuf>,
    pub mount_options: Vec<String>,
    pub log_level: String,
    pub metrics_addr: String,
    pub lookup_ttl_secs: u64,
    pub negative_lookup_ttl_secs: u64,
    pub dir_cache_ttl_secs: u64,
    pub disable: bool,
    pub journal_sync_policy: String,
    pub journal_sync_interval_ms: u64,
    pub journal_sync_backlog_bytes: u64,
    /// [ours] The most the cache's clean content may take before the oldest is dropped
    /// (0: no bound but the disk's low-free mark).
    pub cache_max_bytes: u64,
    pub logging: Logging,
    pub transport: Transport,
    pub backpressure: Backpressure,
}

impl Default for AetherConfig {
    fn default() -> Self {
        AetherConfig {
            bridge: Bridge::default(),
            cache_dir: None,
            shared_cache_root: None,
            control_socket: None,
            mount_options: Vec::new(),
            log_level: "info".into(),
            metrics_addr: "127.0.0.1:9600".into(),
            lookup_ttl_secs: 60,
            negative_lookup_ttl_secs: 5,
            dir_cache_ttl_secs: 30,
            disable: false,
            journal_sync_policy: "interval".into(),
            journal_sync_interval_ms: 5,
            journal_sync_backlog_bytes: 2_097_152,
            cache_max_bytes: 10 << 30,
            logging: Logging::default(),
            transport: Transport::default(),
            backpressure: Backpressure::default(),
        }
    }
}

/// Environment variables and the keys they set (SPEC 5.1).
const ENV_KEYS: &[(&str, &str)] = &[
    ("AFS_AETHER_SERVER_ENDPOINT", "bridge.server_endpoint"),
    ("AFS_AETHER_WORKER_ID", "bridge.worker_id"),
    ("AFS_AETHER_CACHE_DIR", "cache_dir"),
    ("AFS_AETHER_CACHE_MAX_BYTES", "cache_max_bytes"),
    ("AFS_AETHER_CACHE_SHARED_ROOT", "shared_cache_root"),
    ("AFS_AETHER_CONTROL_SOCKET", "control_socket"),
    ("AFS_AETHER_MOUNT_OPTIONS", "mount_options"),
    ("AFS_AETHER_LOG", "log_level"),
    ("AFS_AETHER_CLIENT_METRICS_ADDR", "metrics_addr"),
    ("AFS_AETHER_LOOKUP_TTL_SECS", "lookup_ttl_secs"),
    (
        "AFS_AETHER_NEGATIVE_LOOKUP_TTL_SECS",
        "negative_lookup_ttl_secs",
    ),
    ("AFS_AETHER_DIR_CACHE_TTL_SECS", "dir_cache_ttl_secs"),
    ("AFS_AETHER_DISABLE", "disable"),
    ("AFS_AETHER_JOURNAL_SYNC_POLICY", "journal_sync_policy"),
    (
        "AFS_AETHER_JOURNAL_SYNC_INTERVAL_MS",
        "journal_sync_interval_ms",
    ),
    (
        "AFS_AETHER_JOURNAL_SYNC_BACKLOG_BYTES",
        "journal_sync_backlog_bytes",
    ),
    (
        "AFS_AETHER_RECONNECT_START_MS",
        "bridge.reconnect_backoff.start_ms",
    ),
    (
        "AFS_AETHER_RECONNECT_MAX_MS",
        "bridge.reconnect_backoff.max_ms",
    ),
    (
        "AFS_AETHER_RECONNECT_MULTIPLIER",
        "bridge.reconnect_backoff.multiplier",
    ),
    (
        "AFS_AETHER_RECONNECT_JITTER_PERCENT",
        "bridge.reconnect_backoff.jitter_percent",
    ),
    ("AFS_AETHER_LOG_FORMAT", "logging.format"),
    ("AFS_AETHER_LOG_DESTINATION", "logging.destination"),
    ("AFS_AETHER_LOG_PATH", "logging.path"),
    ("AFS_AETHER_LOG_ROTATION", "logging.rotation"),
    ("AFS_AETHER_LOG_REDACT", "logging.redaction"),
    (
        "AFS_AETHER_LOG_SAMPLE_PREFETCH",
        "logging.sampling.prefetch_debug_every",
    ),
    (
        "AFS_AETHER_LOG_SAMPLE_INVALIDATION",
        "logging.sampling.invalidation_debug_every",
    ),
    (
        "AFS_AETHER_TRANSPORT_HEARTBEAT_INTERVAL_MS",
        "transport.heartbeat_interval_ms",
    ),
    (
        "AFS_AETHER_TRANSPORT_IDLE_TIMEOUT_MS",
        "transport.idle_timeout_ms",
    ),
    (
        "AFS_AETHER_TRANSPORT_CONN_WINDOW_BYTES",
        "transport.connection_window_bytes",
    ),
    (
        "AFS_AETHER_TRANSPORT_STREAM_WINDOW_BYTES",
        "transport.stream_window_bytes",
    ),
    (
        "AFS_AETHER_CACHE_DISK_LOW_FREE_BYTES",
        "backpressure.cache_disk_low_free_bytes",
    ),
    (
        "AFS_AETHER_CACHE_DISK_HIGH_FREE_BYTES",
        "backpressure.cache_disk_high_free_bytes",
    ),
    (
        "AFS_AETHER_CACHE_DISK_LOW_FREE_PERCENT",
        "backpressure.cache_disk_low_free_percent",
    ),
    (
        "AFS_AETHER_CACHE_DIRTY_HIGH_WATER_BYTES",
        "backpressure.cache_dirty_high_water_bytes",
    ),
    (
        "AFS_AETHER_CACHE_DIRTY_LOW_WATER_BYTES",
        "backpressure.cache_dirty_low_water_bytes",
    ),
    (
        "AFS_AETHER_JOURNAL_HIGH_WATER_BYTES",
        "backpressure.journal_high_water_bytes",
    ),
    (
        "AFS_AETHER_JOURNAL_LOW_WATER_BYTES",
        "backpressure.journal_low_water_bytes",
    ),
    (
        "AFS_AETHER_JOURNAL_HIGH_WATER_ENTRIES",
        "backpressure.journal_high_water_entries",
    ),
    (
        "AFS_AETHER_JOURNAL_LOW_WATER_ENTRIES",
        "backpressure.journal_low_water_entries",
    ),
    (
        "AFS_AETHER_JOURNAL_MAX_AGE_SECS",
        "backpressure.journal_max_age_seconds",
    ),
    (
        "AFS_AETHER_JOURNAL_CLEAR_AGE_SECS",
        "backpressure.journal_clear_age_seconds",
    ),
];

/// Keys whose values are lists (comma-separated in the environment).
const LIST_KEYS: &[&str] = &["mount_options"];

/// One key set by one environment variable or flag, as a figment provider, so that errors
/// and `aether config` name it.
struct OneKey {
    label: String,
    key: &'static str,
    value: Value,
}

/// The value of an environment variable: lists split on commas, numbers and booleans parsed,
/// free-text keys kept as strings.
fn env_value(key: &str, raw: &str) -> Value {
    if LIST_KEYS.contains(&key) {
        Value::from(
            raw.split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>(),
        )
    } else if key.ends_with("server_endpoint")
        || key.ends_with("worker_id")
        || key.ends_with("shared_cache_root")
    {
        Value::from(raw.to_owned())
    } else {
        raw.parse().unwrap_or_else(|_| Value::from(raw.to_owned()))
    }
}

impl Provider for OneKey {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.label.clone())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut parts: Vec<&str> = self.key.split('.').collect();
        let last = parts.pop().expect("keys are not empty");
        let mut dict = Dict::new();
        dict.insert(last.to_owned(), self.value.clone());
        while let Some(p) = parts.pop() {
            let mut outer = Dict::new();
            outer.insert(p.to_owned(), Value::from(dict));
            dict = outer;
        }
        Ok(Profile::Default.collect(dict))
    }
}

/// A loaded configuration and the figment it came from (to tell which layer set a key).
pub(crate) struct Loaded {
    pub config: AetherConfig,
    pub figment: Figment,
    pub file: Option<PathBuf>,
}

/// Which file to read: `--config` > `AFS_AETHER_CONFIG` > `./aether.toml` if present.
pub(crate) fn config_file(
    flag: Option<&Path>,
    env: &[(String, String)],
) -> Result<Option<PathBuf>> {
    let named = flag.map(Path::to_path_buf).or_else(|| {
        env.iter()
            .find(|(k, _)| k == "AFS_AETHER_CONFIG")
            .map(|(_, v)| PathBuf::from(v))
    });
    match named {
        Some(p) if p.exists() => Ok(Some(p)),
        Some(p) => bail!(
            "ConfigFileNotFound: configuration file {} does not exist",
            p.display()
        ),
        None => Ok(Some(PathBuf::from("aether.toml")).filter(|p| p.exists())),
    }
}

impl AetherConfig {
    /// Loads the layers; `flags` holds values given on the command line (already nested).
    pub(crate) fn load(
        file: Option<&Path>,
        env: &[(String, String)],
        flags: Vec<(&'static str, &'static str, Value)>,
    ) -> Result<Loaded> {
        let mut fig = Figment::from(Serialized::defaults(AetherConfig::default()));
        if let Some(f) = file {
            fig = fig.merge(Toml::file_exact(f));
        }
        for (var, key) in ENV_KEYS {
            if let Some((_, v)) = env.iter().find(|(k, _)| k == var) {
                fig = fig.merge(OneKey {
                    label: format!("environment variable {var}"),
                    key,
                    value: env_value(key, v),
                });
            }
        }
        for (flag, key, value) in flags {
            fig = fig.merge(OneKey {
                label: format!("flag {flag}"),
                key,
                value,
            });
        }
        let config: AetherConfig = fig.extract().map_err(describe)?;
        config.validate(&fig)?;
        Ok(Loaded {
            config,
            figment: fig,
            file: file.map(Path::to_path_buf),
        })
    }

    fn validate(&self, fig: &Figment) -> Result<()> {
        let at = |key: &str| source_of(fig, key);
        let one_of = |key: &str, v: &str, allowed: &[&str]| -> Result<()> {
            if allowed.contains(&v) {
                Ok(())
            } else {
                bail!(
                    "{}: {v:?} is not valid; expected one of {}",
                    at(key),
                    allowed.join(", ")
                )
            }
        };
        one_of(
            "journal_sync_policy",
            &self.journal_sync_policy,
            &["immediate", "manual", "interval"],
        )?;
        one_of("logging.format", &self.logging.format, &["text", "json"])?;
        one_of(
            "logging.destination",
            &self.logging.destination,
            &["stderr", "stdout", "file"],
        )?;
        one_of(
            "logging.rotation",
            &self.logging.rotation,
            &["none", "hourly", "daily", "size"],
        )?;
        one_of(
            "logging.redaction",
            &self.logging.redaction,
            &["off", "hash"],
        )?;
        one_of(
            "log_level",
            &self.log_level.to_ascii_lowercase(),
            &["trace", "debug", "info", "warn", "error", "off"],
        )?;
        let positive: [(&str, u64); 14] = [
            ("journal_sync_interval_ms", self.journal_sync_interval_ms),
            (
                "journal_sync_backlog_bytes",
                self.journal_sync_backlog_bytes,
            ),
            (
                "bridge.reconnect_backoff.start_ms",
                self.bridge.reconnect_backoff.start_ms,
            ),
            (
                "bridge.reconnect_backoff.max_ms",
                self.bridge.reconnect_backoff.max_ms,
            ),
            (
                "transport.heartbeat_interval_ms",
                self.transport.heartbeat_interval_ms,
            ),
            ("transport.idle_timeout_ms", self.transport.idle_timeout_ms),
            (
                "transport.connection_window_bytes",
                self.transport.connection_window_bytes,
            ),
            (
                "transport.stream_window_bytes",
                self.transport.stream_window_bytes,
            ),
            (
                "backpressure.journal_high_water_bytes",
                self.backpressure.journal_high_water_bytes,
            ),
            (
                "backpressure.journal_high_water_entries",
                self.backpressure.journal_high_water_entries,
            ),
            (
                "backpressure.cache_dirty_high_water_bytes",
                self.backpressure.cache_dirty_high_water_bytes,
            ),
            (
                "backpressure.journal_max_age_seconds",
                self.backpressure.journal_max_age_seconds,
            ),
            (
                "logging.sampling.prefetch_debug_every",
                self.logging.sampling.prefetch_debug_every,
            ),
            (
                "logging.sampling.invalidation_debug_every",
                self.logging.sampling.invalidation_debug_every,
            ),
        ];
        for (key, v) in positive {
            if v == 0 {
                bail!("{}: value must be greater than zero", at(key));
            }
        }
        let b = &self.bridge.reconnect_backoff;
        if b.multiplier < 1.0 || !b.multiplier.is_finite() {
            bail!(
                "{}: {} is not valid; the multiplier must be at least 1.0",
                at("bridge.reconnect_backoff.multiplier"),
                b.multiplier
            );
        }
        if !(0.0..=100.0).contains(&b.jitter_percent) {
            bail!(
                "{}: {} is not valid; expected a percentage from 0 to 100",
                at("bridge.reconnect_backoff.jitter_percent"),
                b.jitter_percent
            );
        }
        if b.max_ms < b.start_ms {
            bail!(
                "{}: {} is below start_ms ({})",
                at("bridge.reconnect_backoff.max_ms"),
                b.max_ms,
                b.start_ms
            );
        }
        let bp = &self.backpressure;
        for (low, high, lv, hv) in [
            (
                "journal_low_water_bytes",
                "journal_high_water_bytes",
                bp.journal_low_water_bytes,
                bp.journal_high_water_bytes,
            ),
            (
                "journal_low_water_entries",
                "journal_high_water_entries",
                bp.journal_low_water_entries,
                bp.journal_high_water_entries,
            ),
            (
                "cache_dirty_low_water_bytes",
                "cache_dirty_high_water_bytes",
                bp.cache_dirty_low_water_bytes,
                bp.cache_dirty_high_water_bytes,
            ),
            (
                "cache_disk_low_free_bytes",
                "cache_disk_high_free_bytes",
                bp.cache_disk_low_free_bytes,
                bp.cache_disk_high_free_bytes,
            ),
        ] {
            if lv > hv {
                bail!(
                    "{}: {lv} must not exceed backpressure.{high} ({hv})",
                    at(&format!("backpressure.{low}"))
                );
            }
        }
        if let Some(id) = &self.bridge.worker_id
            && uuid::Uuid::parse_str(id).is_err()
        {
            bail!("{}: {id:?} is not a UUID", at("bridge.worker_id"));
        }
        if let Some(ep) = &self.bridge.server_endpoint
            && !(ep.starts_with("http://") || ep.starts_with("https://"))
        {
            bail!(
                "{}: {ep:?} is not valid; expected an http:// or https:// URL",
                at("bridge.server_endpoint")
            );
        }
        if self.metrics_addr.parse::<std::net::SocketAddr>().is_err() {
            bail!(
                "{}: {:?} is not a socket address such as 127.0.0.1:9600",
                at("metrics_addr"),
                self.metrics_addr
            );
        }
        Ok(())
    }

    /// The cache directory: configured, else `$XDG_CACHE_HOME/aetherfs-aether`, else
    /// `$HOME/.cache/aetherfs-aether`, else `$TMPDIR/aetherfs-aether`.
    pub(crate) fn cache_dir(&self, env: &[(String, String)]) -> PathBuf {
        let var = |k: &str| {
            env.iter()
                .find(|(n, v)| n == k && !v.is_empty())
                .map(|(_, v)| PathBuf::from(v))
        };
        self.cache_dir.clone().unwrap_or_else(|| {
            var("XDG_CACHE_HOME")
                .map(|p| p.join("aetherfs-aether"))
                .or_else(|| var("HOME").map(|h| h.join(".cache/aetherfs-aether")))
                .unwrap_or_else(|| {
                    var("TMPDIR")
                        .unwrap_or_else(std::env::temp_dir)
                        .join("aetherfs-aether")
                })
        })
    }

    /// The shared store root, or `None` when disabled.
    pub(crate) fn shared_root(&self, cache_dir: &Path) -> Option<PathBuf> {
        match self.shared_cache_root.as_deref().map(str::trim) {
            None => Some(cache_dir.join("shared")),
            Some(v)
                if ["off", "none", "disabled", "false", "0", ""]
                    .contains(&v.to_ascii_lowercase().as_str()) =>
            {
                None
            }
            Some(v) => Some(PathBuf::from(v)),
        }
    }

    pub(crate) fn control_socket(&self, cache_dir: &Path, session: &str) -> PathBuf {
        self.control_socket
            .clone()
            .unwrap_or_else(|| cache_dir.join(session).join("content/locks/control.sock"))
    }
}

/// Names where a key's value came from: `<file>:<key>`, the env var, the flag, or the default.
pub(crate) fn source_of(fig: &Figment, key: &str) -> String {
    match fig.find_metadata(key) {
        Some(m) if m.name.starts_with("TOML file") => {
            let file = m
                .source
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_else(|| "aether.toml".into());
            format!("{file}:{key}")
        }
        Some(m) if m.name.starts_with("environment variable") => m.name.to_string(),
        Some(m) if m.name.starts_with("flag") => format!("{} ({key})", m.name),
        _ => format!("{key} (default)"),
    }
}

fn describe(e: figment::Error) -> anyhow::Error {
    let mut out = Vec::new();
    for err in e {
        let key = err.path.join(".");
        let source = match &err.metadata {
            Some(m) if m.name.starts_with("TOML file") => format!(
                "{}:{key}",
                m.source.as_ref().map(|s| s.to_string()).unwrap_or_default()
            ),
            Some(m) if m.name.starts_with("environment variable") => m.name.to_string(),
            Some(m) => format!("{} ({key})", m.name),
            None => key.clone(),
        };
        out.push(format!("{source}: {}", err.kind));
    }
    anyhow::anyhow!("invalid configuration: {}", out.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn load_err(file_text: Option<&str>, e: &[(&str, &str)]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aether.toml");
        if let Some(t) = file_text {
            std::fs::write(&path, t).unwrap();
        }
        let file = file_text.map(|_| path.as_path());
        match AetherConfig::load(file, &env(e), vec![]) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aether.toml");
        std::fs::write(
            &path,
            "lookup_ttl_secs = 10\ndir_cache_ttl_secs = 11\nmount_options = [\"a\"]\n",
        )
        .unwrap();
        let loaded = AetherConfig::load(
            Some(&path),
            &env(&[
                ("AFS_AETHER_DIR_CACHE_TTL_SECS", "12"),
                ("AFS_AETHER_MOUNT_OPTIONS", "b, c"),
                ("AFS_AETHER_CACHE_MAX_BYTES", "0"),
            ]),
            vec![(
                "--negative-lookup-ttl",
                "negative_lookup_ttl_secs",
                Value::from(7u64),
            )],
        )
        .unwrap();
        let c = &loaded.config;
        assert_eq!(c.lookup_ttl_secs, 10);
        assert_eq!(c.dir_cache_ttl_secs, 12);
        assert_eq!(c.negative_lookup_ttl_secs, 7);
        assert_eq!(c.cache_max_bytes, 0, "0 turns the bound off");
        assert_eq!(
            c.mount_options,
            ["b", "c"],
            "lists are replaced, not merged"
        );
        assert!(
            source_of(&loaded.figment, "lookup_ttl_secs").ends_with("aether.toml:lookup_ttl_secs")
        );
        assert_eq!(
            source_of(&loaded.figment, "dir_cache_ttl_secs"),
            "environment variable AFS_AETHER_DIR_CACHE_TTL_SECS"
        );
        assert_eq!(
            source_of(&loaded.figment, "log_level"),
            "log_level (default)"
        );
        assert_eq!(
            source_of(&loaded.figment, "negative_lookup_ttl_secs"),
            "flag --negative-lookup-ttl (negative_lookup_ttl_secs)"
        );
    }

    #[test]
    fn bad_values_name_their_source() {
        // (file text, environment, expected message fragment)
        type Case<'a> = (Option<&'a str>, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            (Some("bogus = 1\n"), &[], "bogus"),
            (
                Some("[logging]\nformat = \"xml\"\n"),
                &[],
                "aether.toml:logging.format: \"xml\" is not valid; expected one of text, json",
            ),
            (
                None,
                &[("AFS_AETHER_JOURNAL_SYNC_POLICY", "sometimes")],
                "environment variable AFS_AETHER_JOURNAL_SYNC_POLICY: \"sometimes\" is not valid; expected one of immediate, manual, interval",
            ),
            (
                None,
                &[("AFS_AETHER_JOURNAL_SYNC_INTERVAL_MS", "0")],
                "value must be greater than zero",
            ),
            (
                None,
                &[("AFS_AETHER_LOOKUP_TTL_SECS", "soon")],
                "AFS_AETHER_LOOKUP_TTL_SECS",
            ),
            (
                None,
                &[("AFS_AETHER_WORKER_ID", "not-a-uuid")],
                "is not a UUID",
            ),
            (
                None,
                &[("AFS_AETHER_SERVER_ENDPOINT", "ftp://x")],
                "expected an http:// or https:// URL",
            ),
            (
                None,
                &[("AFS_AETHER_RECONNECT_JITTER_PERCENT", "150")],
                "percentage",
            ),
            (
                None,
                &[("AFS_AETHER_CLIENT_METRICS_ADDR", "nowhere")],
                "socket address",
            ),
            (
                None,
                &[("AFS_AETHER_CACHE_MAX_BYTES", "10G")],
                "AFS_AETHER_CACHE_MAX_BYTES",
            ),
        ];
        for (file, e, expected) in cases {
            let got = load_err(*file, e);
            assert!(got.contains(expected), "{file:?} {e:?}: {got}");
        }
    }

    #[test]
    fn missing_named_file_is_an_error() {
        let err = config_file(Some(Path::new("/nonexistent/aether.toml")), &[]).unwrap_err();
        assert!(err.to_string().starts_with("ConfigFileNotFound"), "{err}");
        let err = config_file(None, &env(&[("AFS_AETHER_CONFIG", "/nope.toml")])).unwrap_err();
        assert!(err.to_string().contains("/nope.toml"), "{err}");
    }

    #[test]
    fn shared_root_can_be_disabled() {
        let mut c = AetherConfig::default();
        let dir = Path::new("/c");
        assert_eq!(c.shared_root(dir), Some(PathBuf::from("/c/shared")));
        for off in ["off", "none", "disabled", "false", "0", "", "OFF"] {
            c.shared_cache_root = Some(off.into());
            assert_eq!(c.shared_root(dir), None, "{off}");
        }
    }
}
