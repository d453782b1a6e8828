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
    /// Told of every kernel request: its name, how long it took, whether it succeeded.
    pub observe: Option<OpObserver>,
}

/// Receives each kernel request's name, latency and success (the app records metrics).
#[derive(Clone)]
pub struct OpObserver(pub Arc<ObserveOp>);

/// What an [`OpObserver`] calls: operation, latency, success.
pub type ObserveOp = dyn Fn(&'static str, Duration, bool) + Send + Sync;

impl std::fmt::Debug for OpObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OpObserver")
    }
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
            observe: None,
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

/// A notification the kernel is to hear about.
enum Notice {
    Entry {
        parent: u64,
        name: String,
    },
    Inode(u64),
    Store {
        ino: u64,
        content: Vec<u8>,
        stored: aether_ports::vfs::Stored,
    },
}

/// Sends invalidations to the kernel from a thread of their own, in the order asked, and
/// stores of file content from the caller's thread when that is safe.
///
/// A reverse notification waits for the kernel's lock on the directory, which a lookup in
/// flight holds; if that lookup waits for the same runtime worker that is blocked notifying
/// (tokio's LIFO slot cannot be stolen), the mount hangs. Seen live, with a thread parked in
/// `fuse_reverse_inval_entry`. Off the runtime, the notification simply waits its turn.
///
/// A store waits for the page locks of the file, which a reader holds until its `READ` is
/// answered, and a queued `READ` needs a free FUSE worker. The engine stores from the FUSE
/// worker that handles a `release`; were every worker storing, none would be left to answer
/// those reads, and the mount hangs (seen live, with both workers in `__filemap_get_folio`).
/// So at most all workers but one store in place; past that, a store goes to the notifier
/// thread. In place it costs no wakeup of another thread: measured with every store queued,
/// the stores cost about what the reads they spare did.
struct FuseNotifier {
    queue: std::sync::Mutex<std::sync::mpsc::Sender<Notice>>,
    direct: Notifier,
    /// How many more stores may be sent in place at once.
    in_place: std::sync::atomic::AtomicUsize,
}

impl FuseNotifier {
    fn start(notifier: Notifier, workers: usize) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::channel::<Notice>();
        let direct = notifier.clone();
        std::thread::Builder::new()
            .name("aether-notify".to_owned())
            .spawn(move || {
                // Errors are expected: ENOENT when the kernel had nothing cached, and every
                // call after the unmount. Neither is worth more than ignoring.
                for notice in rx {
                    let _ = match notice {
                        Notice::Entry { parent, name } => {
                            notifier.inval_entry(INodeNo(parent), std::ffi::OsStr::new(&name))
                        }
                        Notice::Inode(ino) => notifier.inval_inode(INodeNo(ino), 0, 0),
                        Notice::Store {
                            ino,
                            content,
                            stored,
                        } => {
                            let sent = notifier.store(INodeNo(ino), 0, &content);
                            stored();
                            sent
                        }
                    };
                }
            })?;
        Ok(FuseNotifier {
            queue: std::sync::Mutex::new(tx),
            direct,
            in_place: std::sync::atomic::AtomicUsize::new(workers.saturating_sub(1)),
        })
    }

    fn send(&self, notice: Notice) {
        let tx = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        // The thread only ends with the sender, so a send cannot fail while `self` lives.
        let _ = tx.send(notice);
    }
}

impl KernelNotifier for FuseNotifier {
    fn invalidate_entry(&self, parent: u64, name: &str) {
        self.send(Notice::Entry {
            parent,
            name: name.to_owned(),
        });
    }

    fn invalidate_inode(&self, ino: u64) {
        self.send(Notice::Inode(ino));
    }

    fn store(&self, ino: u64, content: Vec<u8>, stored: aether_ports::vfs::Stored) {
        use std::sync::atomic::Ordering;
        let claimed = self
            .in_place
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok();
        if !claimed {
            self.send(Notice::Store {
                ino,
                content,
                stored,
            });
            return;
        }
        // ENOENT when the kernel has forgotten `ino`, and every call after the unmount: the
        // next reader then simply asks.
        let _ = self.direct.store(INodeNo(ino), 0, &content);
        self.in_place.fetch_add(1, Ordering::AcqRel);
        stored();
    }
}

/// Where kernels that carry it expose the FUSE `wake_here` switch (not in mainline Linux).
const WAKE_HERE: &str = "/sys/module/fuse/parameters/wake_here";

/// The kernel's FUSE `wake_here` switch: `None` when this kernel has none. When on, the two ends
/// of a request wake each other on the CPU they run on; small-file work through any FUSE mount
/// then avoids a cross-CPU wakeup per request (docs/mount.md, "Host tuning").
pub fn kernel_wake_here() -> Option<bool> {
    let v = std::fs::read_to_string(WAKE_HERE).ok()?;
    Some(matches!(v.trim(), "Y" | "y" | "1"))
}

/// Whether this is a virtual machine whose idle vCPUs halt at once: its idle driver is
/// `haltpoll` with `guest_halt_poll_ns` at 0. Waking such a vCPU (a FUSE worker, or the caller
/// waiting for its reply) is an exit to the host; letting it poll first is a host setting with
/// about the effect of `wake_here` (docs/mount.md, "Host tuning").
pub fn vcpus_halt_at_once() -> bool {
    let read = |p: &str| std::fs::read_to_string(p).map(|v| v.trim().to_owned());
    read("/sys/devices/system/cpu/cpuidle/current_driver").is_ok_and(|d| d == "haltpoll")
        && read("/sys/module/haltpoll/parameters/guest_halt_poll_ns").is_ok_and(|n| n == "0")
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
        Box::new(FuseNotifier::start(notifier, spec.threads.max(1))?),
    ))
}
