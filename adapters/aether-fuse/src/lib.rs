//! The FUSE bridge (adapter layer, fuser 0.18): mounts any `Vfs` at a directory, translating
//! each kernel request into one `Vfs` call run on the tokio runtime and its answer into a
//! reply. The only place `FsError` becomes an errno. No file-system logic lives here.

mod bridge;
mod errno;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aether_ports::vfs::{KernelNotifier, Vfs};
use fuser::{Config, INodeNo, MountOption, Notifier, SessionACL};

pub use errno::errno_of;

/// How to mount.
#[derive(Debug, Clone)]
pub struct MountSpec {
    pub fs_name: String,
    pub allow_other: bool,
    /// Let the kernel buffer writes and send them in large pieces (close-to-open still holds).
    pub writeback_cache: bool,
    pub read_only: bool,
    pub default_permissions: bool,
    /// FUSE worker threads, each with its own `/dev/fuse` clone.
    pub threads: usize,
    /// How long the kernel may remember that a name does not exist.
    pub negative_ttl: Duration,
    /// Further `-o` options, passed through.
    pub extra: Vec<String>,
}

impl Default for MountSpec {
    fn default() -> Self {
        MountSpec {
            fs_name: "aetherfs".into(),
            allow_other: false,
            writeback_cache: false,
            read_only: false,
            default_permissions: true,
            threads: 4,
            negative_ttl: Duration::from_secs(5),
            extra: Vec::new(),
        }
    }
}

/// A live mount; dropping it unmounts.
pub struct Mounted {
    session: Option<fuser::BackgroundSession>,
}

impl Mounted {
    /// Unmounts and waits for the worker threads to finish.
    pub fn unmount(mut self) -> std::io::Result<()> {
        match self.session.take() {
            Some(s) => s.umount_and_join(),
            None => Ok(()),
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            let _ = s.umount_and_join();
        }
    }
}

/// Sends cache invalidations to the kernel.
struct FuseNotifier(Notifier);

impl KernelNotifier for FuseNotifier {
    fn invalidate_entry(&self, parent: u64, name: &str) {
        // ENOENT means the kernel had nothing cached: not an error.
        let _ = self
            .0
            .inval_entry(INodeNo(parent), std::ffi::OsStr::new(name));
    }

    fn invalidate_inode(&self, ino: u64) {
        let _ = self.0.inval_inode(INodeNo(ino), 0, 0);
    }
}

/// Mounts `vfs` at `dir`. Returns the mount and the notifier the engine should use.
pub fn mount<V: Vfs>(
    vfs: Arc<V>,
    runtime: tokio::runtime::Handle,
    dir: &Path,
    spec: &MountSpec,
) -> std::io::Result<(Mounted, Box<dyn KernelNotifier>)> {
    let mut options = vec![
        MountOption::FSName(spec.fs_name.clone()),
        MountOption::Subtype("aetherfs".into()),
        MountOption::NoAtime,
    ];
    if spec.default_permissions {
        options.push(MountOption::DefaultPermissions);
    }
    if spec.read_only {
        options.push(MountOption::RO);
    }
    options.extend(spec.extra.iter().cloned().map(MountOption::CUSTOM));
    let mut config = Config::default();
    config.mount_options = options;
    config.acl = if spec.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    config.n_threads = Some(spec.threads.max(1));
    config.clone_fd = spec.threads > 1;
    let bridge = bridge::Bridge::new(vfs, runtime, spec.clone());
    let session = fuser::Session::new(bridge, dir, &config)?;
    let notifier = session.notifier();
    let background = session.spawn()?;
    Ok((
        Mounted {
            session: Some(background),
        },
        Box::new(FuseNotifier(notifier)),
    ))
}
