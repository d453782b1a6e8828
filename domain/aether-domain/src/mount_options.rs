//! Mount-option tokens (SPEC §5.1): comma-separated, trimmed, case-insensitive, `-` ≡ `_`;
//! `flag`, `flag=true|false|1|0|yes|no|on|off`, `no_flag`; unknown or malformed tokens are
//! ignored with a warning; the baseline is `default_permissions` and `fs_name=aetherfs`.

use std::collections::BTreeMap;

/// The boolean options a mount understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MountFlag {
    AllowOther,
    AllowRoot,
    AutoUnmount,
    DefaultPermissions,
    ReadOnly,
    WritebackCache,
    Exec,
    Suid,
    Dev,
    Atime,
}

impl MountFlag {
    pub const ALL: [MountFlag; 10] = [
        MountFlag::AllowOther,
        MountFlag::AllowRoot,
        MountFlag::AutoUnmount,
        MountFlag::DefaultPermissions,
        MountFlag::ReadOnly,
        MountFlag::WritebackCache,
        MountFlag::Exec,
        MountFlag::Suid,
        MountFlag::Dev,
        MountFlag::Atime,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MountFlag::AllowOther => "allow_other",
            MountFlag::AllowRoot => "allow_root",
            MountFlag::AutoUnmount => "auto_unmount",
            MountFlag::DefaultPermissions => "default_permissions",
            MountFlag::ReadOnly => "read_only",
            MountFlag::WritebackCache => "writeback_cache",
            MountFlag::Exec => "exec",
            MountFlag::Suid => "suid",
            MountFlag::Dev => "dev",
            MountFlag::Atime => "atime",
        }
    }

    fn parse(name: &str) -> Option<MountFlag> {
        if name == "ro" {
            return Some(MountFlag::ReadOnly);
        }
        MountFlag::ALL.into_iter().find(|f| f.as_str() == name)
    }
}

/// The resolved options, and what was ignored and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    pub flags: BTreeMap<MountFlag, bool>,
    pub fs_name: String,
    pub subtype: Option<String>,
    pub warnings: Vec<String>,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            flags: [(MountFlag::DefaultPermissions, true)]
                .into_iter()
                .collect(),
            fs_name: "aetherfs".to_owned(),
            subtype: None,
            warnings: Vec::new(),
        }
    }
}

impl MountOptions {
    pub fn is_set(&self, flag: MountFlag) -> bool {
        self.flags.get(&flag).copied().unwrap_or(false)
    }

    /// Applies each token of each list in order over the baseline; later tokens win.
    pub fn parse<'a>(lists: impl IntoIterator<Item = &'a str>) -> MountOptions {
        let mut opts = MountOptions::default();
        for list in lists {
            for raw in list.split(',') {
                opts.apply(raw);
            }
        }
        opts
    }

    fn apply(&mut self, raw: &str) {
        let token = raw.trim();
        if token.is_empty() {
            return;
        }
        let (name, value) = match token.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (token, None),
        };
        let name = name.to_ascii_lowercase().replace('-', "_");
        match name.as_str() {
            "fs_name" | "fsname" | "subtype" => {
                let Some(v) = value.filter(|v| {
                    !v.is_empty() && v.chars().all(|c| c.is_ascii_graphic() && c != ',')
                }) else {
                    self.warn(token, "needs a value of visible characters");
                    return;
                };
                if name == "subtype" {
                    self.subtype = Some(v.to_owned());
                } else {
                    self.fs_name = v.to_owned();
                }
                return;
            }
            _ => {}
        }
        let (flag, on) = match (MountFlag::parse(&name), value) {
            (Some(f), None) => (f, true),
            (Some(f), Some(v)) => match parse_bool(v) {
                Some(b) => (f, b),
                None => {
                    return self.warn(
                        token,
                        "has a value that is not one of true, false, 1, 0, yes, no, on, off",
                    );
                }
            },
            (None, None) => match name.strip_prefix("no_").and_then(MountFlag::parse) {
                Some(f) => (f, false),
                None => return self.warn(token, "is not a known mount option"),
            },
            (None, Some(_)) => return self.warn(token, "is not a known mount option"),
        };
        self.flags.insert(flag, on);
    }

    fn warn(&mut self, token: &str, why: &str) {
        self.warnings
            .push(format!("ignoring mount option {token:?}: it {why}"));
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(lists: &[&str], on: &[MountFlag], off: &[MountFlag], warnings: usize) {
        let o = MountOptions::parse(lists.iter().copied());
        for f in on {
            assert!(
                o.is_set(*f),
                "{lists:?}: {} should be on ({o:?})",
                f.as_str()
            );
        }
        for f in off {
            assert!(
                !o.is_set(*f),
                "{lists:?}: {} should be off ({o:?})",
                f.as_str()
            );
        }
        assert_eq!(o.warnings.len(), warnings, "{lists:?}: {:?}", o.warnings);
    }

    #[test]
    fn token_rules() {
        use MountFlag::*;
        check(&[], &[DefaultPermissions], &[AllowOther, ReadOnly], 0);
        check(&["allow_other"], &[AllowOther, DefaultPermissions], &[], 0);
        check(&[" Allow-Other , RO "], &[AllowOther, ReadOnly], &[], 0);
        check(
            &["writeback_cache=yes,allow_other=off"],
            &[WritebackCache],
            &[AllowOther],
            0,
        );
        for v in ["true", "1", "yes", "on", "TRUE"] {
            check(&[&format!("auto_unmount={v}")], &[AutoUnmount], &[], 0);
        }
        for v in ["false", "0", "no", "off"] {
            check(
                &[&format!("default_permissions={v}")],
                &[],
                &[DefaultPermissions],
                0,
            );
        }
        check(&["no_default_permissions"], &[], &[DefaultPermissions], 0);
        check(&["No-Default-Permissions"], &[], &[DefaultPermissions], 0);
        check(&["allow_other,no_allow_other"], &[], &[AllowOther], 0);
        check(&["allow_other", "no_allow_other"], &[], &[AllowOther], 0);
        check(
            &["bogus,allow_other,allow_other=maybe,,"],
            &[AllowOther],
            &[],
            2,
        );
        check(&["no_such_thing"], &[], &[], 1);
    }

    #[test]
    fn string_options() {
        let o = MountOptions::parse(["fs_name=mine,subtype=aether"]);
        assert_eq!(
            (o.fs_name.as_str(), o.subtype.as_deref()),
            ("mine", Some("aether"))
        );
        let o = MountOptions::parse(["fs_name="]);
        assert_eq!(
            o.fs_name, "aetherfs",
            "a malformed value keeps the baseline"
        );
        assert_eq!(o.warnings.len(), 1);
        assert!(o.warnings[0].contains("fs_name="), "{:?}", o.warnings);
    }
}
