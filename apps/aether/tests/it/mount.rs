//! Real-mount behaviour: file operations, git, tar, another writer's change, bad input.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::{Duration, Instant};

use crate::{Mount, Server, aether, sh};

fn errno(e: std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

#[test]
fn file_operations_round_trip_and_reach_the_server() {
    let server = Server::start();
    let session = server.new_session();
    let mut m = Mount::new(&server, &session, &[]);
    fs::create_dir_all(m.path("src/bin")).unwrap();
    fs::write(m.path("src/lib.rs"), b"pub fn f() {}\n").unwrap();
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(m.path("src/lib.rs"))
        .unwrap();
    f.write_all(b"// more\n").unwrap();
    drop(f);
    assert_eq!(
        fs::read(m.path("src/lib.rs")).unwrap(),
        b"pub fn f() {}\n// more\n"
    );
    // Random-access write in the middle, then truncate.
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.path("src/lib.rs"))
        .unwrap();
    f.seek(SeekFrom::Start(4)).unwrap();
    f.write_all(b"FN").unwrap();
    f.set_len(10).unwrap();
    let mut back = String::new();
    f.seek(SeekFrom::Start(0)).unwrap();
    f.read_to_string(&mut back).unwrap();
    assert_eq!(back, "pub FN f()");
    drop(f);
    fs::rename(m.path("src/lib.rs"), m.path("src/bin/main.rs")).unwrap();
    std::os::unix::fs::symlink("bin/main.rs", m.path("src/link")).unwrap();
    assert_eq!(
        fs::read_link(m.path("src/link")).unwrap().to_str(),
        Some("bin/main.rs")
    );
    assert_eq!(fs::read(m.path("src/link")).unwrap(), b"pub FN f()");
    fs::hard_link(m.path("src/bin/main.rs"), m.path("hard")).unwrap();
    assert_eq!(fs::metadata(m.path("hard")).unwrap().nlink(), 2);
    assert_eq!(
        fs::metadata(m.path("hard")).unwrap().ino(),
        fs::metadata(m.path("src/bin/main.rs")).unwrap().ino()
    );
    fs::set_permissions(m.path("hard"), fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(fs::metadata(m.path("hard")).unwrap().mode() & 0o777, 0o600);
    // Errors carry their POSIX meaning.
    assert_eq!(
        errno(fs::remove_dir(m.path("src")).unwrap_err()),
        39,
        "ENOTEMPTY"
    );
    assert_eq!(
        errno(fs::create_dir(m.path("src")).unwrap_err()),
        17,
        "EEXIST"
    );
    assert_eq!(errno(fs::read(m.path("missing")).unwrap_err()), 2, "ENOENT");
    let long = "x".repeat(256);
    assert_eq!(
        errno(fs::write(m.path(&long), b"").unwrap_err()),
        36,
        "ENAMETOOLONG"
    );
    let bad = std::ffi::OsStr::from_bytes(b"bad\xff");
    assert_eq!(
        errno(fs::write(m.dir.join(bad), b"").unwrap_err()),
        84,
        "EILSEQ"
    );
    // Extended attributes.
    sh(
        &m.dir,
        "setfattr -n user.note -v hello hard 2>/dev/null || python3 -c \"import os; os.setxattr('hard', 'user.note', b'hello')\"",
    );
    let got = sh(
        &m.dir,
        "python3 -c \"import os; print(os.getxattr('hard', 'user.note').decode())\"",
    );
    assert_eq!(got.trim(), "hello");
    fs::remove_file(m.path("hard")).unwrap();
    let mut names: Vec<_> = fs::read_dir(m.path("src"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["bin", "link"]);
    m.stop();
    // Everything reached the server.
    assert_eq!(
        server.read(&session, "/src/bin/main.rs").as_deref(),
        Some(&b"pub FN f()"[..])
    );
    assert_eq!(server.read(&session, "/hard"), None);
}

#[test]
fn a_large_file_streams_to_the_server_at_fsync_and_back_on_a_cold_mount() {
    let server = Server::start();
    let session = server.new_session();
    let mut m = Mount::new(&server, &session, &[]);
    // Not a multiple of the 1 MiB upload chunk, and not one repeated byte.
    let data: Vec<u8> = (0..(9u32 << 20) + 12_345)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut f = fs::File::create(m.path("big.bin")).unwrap();
    for chunk in data.chunks(1 << 20) {
        f.write_all(chunk).unwrap();
    }
    f.sync_all().unwrap();
    // fsync returned: the server holds every byte, before the mount stops.
    assert!(
        server.read(&session, "/big.bin").as_deref() == Some(&data[..]),
        "the server's copy differs after fsync"
    );
    drop(f);
    m.stop();
    // A mount with an empty cache reads it back by ranges.
    let mut cold = Mount::new(&server, &session, &[]);
    assert!(
        fs::read(cold.path("big.bin")).unwrap() == data,
        "cold read differs"
    );
    cold.stop();
}

#[test]
fn readers_of_a_large_file_on_a_cold_mount_each_get_their_bytes_while_it_streams_in() {
    let server = Server::start();
    let session = server.new_session();
    let data: Vec<u8> = (0..(21u32 << 20) + 4_321)
        .map(|i| (i.wrapping_mul(2_246_822_519) >> 11) as u8)
        .collect();
    server.write(&session, "/big.bin", &data);
    let mut m = Mount::new(&server, &session, &[]);
    let path = m.path("big.bin");
    // One reader goes front to back (streamed windows, read ahead); another reads pieces
    // from the back to the front, inside and outside the windows being streamed in.
    let (sequential, backwards) = std::thread::scope(|s| {
        let forward = s.spawn(|| fs::read(&path).unwrap());
        let back = s.spawn(|| {
            let mut f = fs::File::open(&path).unwrap();
            let piece = 700_001u64;
            let len = data.len() as u64;
            let mut pieces = Vec::new();
            let mut end = len;
            while end > 0 {
                let start = end.saturating_sub(piece);
                let mut buf = vec![0; (end - start) as usize];
                f.seek(SeekFrom::Start(start)).unwrap();
                f.read_exact(&mut buf).unwrap();
                pieces.push(buf);
                end = start;
            }
            pieces.reverse();
            pieces.concat()
        });
        (forward.join().unwrap(), back.join().unwrap())
    });
    assert!(sequential == data, "the sequential reader's bytes differ");
    assert!(backwards == data, "the backward reader's bytes differ");
    m.stop();
}

#[test]
fn a_file_past_the_servers_largest_fails_with_efbig_and_keeps_what_fits() {
    let server = Server::start_with(|cfg| cfg.max_file_bytes = 1 << 20);
    let session = server.new_session();
    let mut m = Mount::new(&server, &session, &[]);
    let data: Vec<u8> = (0..3u32 << 19).map(|i| (i % 251) as u8).collect();
    let mut f = fs::File::create(m.path("big.bin")).unwrap();
    // The first 1 MiB fits; the write that reaches past it is cut short, the next refused.
    let e = f.write_all(&data).unwrap_err();
    assert_eq!(errno(e), 27, "EFBIG");
    f.sync_all().unwrap();
    drop(f);
    assert_eq!(fs::metadata(m.path("big.bin")).unwrap().len(), 1 << 20);
    assert!(
        server.read(&session, "/big.bin").as_deref() == Some(&data[..1 << 20]),
        "the server holds the part that fits"
    );
    let out = m.run("status", &["--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        status["journal"]["rejected"], 0,
        "nothing set aside: {status}"
    );
    m.stop();
}

#[test]
fn a_reader_sees_what_a_writer_starting_over_writes_at_once() {
    let server = Server::start();
    let session = server.new_session();
    let mut m = Mount::new(&server, &session, &[]);
    let path = m.path("f.bin");
    fs::write(&path, vec![b'a'; 64 << 10]).unwrap();
    let mut r = fs::File::open(&path).unwrap();
    let mut buf = vec![0; 64 << 10];
    r.read_exact(&mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == b'a'));
    // A write-only truncating writer (written past the kernel's page cache): the reader, whose
    // cache holds the old bytes, reads the new ones as soon as each write returns.
    let mut w = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    w.write_all(&vec![b'b'; 64 << 10]).unwrap();
    r.seek(SeekFrom::Start(0)).unwrap();
    r.read_exact(&mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == b'b'), "after the rewrite");
    w.seek(SeekFrom::Start(4096)).unwrap();
    w.write_all(&[b'c'; 100]).unwrap();
    let mut part = [0u8; 200];
    r.seek(SeekFrom::Start(4050)).unwrap();
    r.read_exact(&mut part).unwrap();
    assert_eq!(&part[..46], &[b'b'; 46][..], "before the overwrite");
    assert_eq!(&part[46..146], &[b'c'; 100][..], "the overwrite");
    assert_eq!(&part[146..], &[b'b'; 54][..], "after the overwrite");
    drop(w);
    drop(r);
    let mut want = vec![b'b'; 64 << 10];
    want[4096..4196].fill(b'c');
    assert!(fs::read(&path).unwrap() == want, "a new reader");
    m.stop();
}

#[test]
fn git_works_inside_the_mount() {
    let server = Server::start();
    let session = server.new_session();
    let m = Mount::new(&server, &session, &[]);
    fs::write(m.path("README"), b"hello\n").unwrap();
    fs::create_dir(m.path("src")).unwrap();
    fs::write(m.path("src/a.c"), b"int main(){return 0;}\n").unwrap();
    sh(
        &m.dir,
        "git init -q . && git add -A && git -c user.email=t@e -c user.name=t commit -qm first",
    );
    assert_eq!(sh(&m.dir, "git status --porcelain"), "");
    fs::write(m.path("src/a.c"), b"int main(){return 1;}\n").unwrap();
    assert_eq!(sh(&m.dir, "git status --porcelain"), " M src/a.c\n");
    sh(
        &m.dir,
        "git -c user.email=t@e -c user.name=t commit -qam second",
    );
    assert_eq!(sh(&m.dir, "git log --oneline | wc -l").trim(), "2");
    assert_eq!(
        sh(
            &m.dir,
            "git fsck --no-progress 2>&1 | grep -c error || true"
        )
        .trim(),
        "0"
    );
}

#[test]
fn a_tar_round_trip_keeps_every_byte() {
    let server = Server::start();
    let session = server.new_session();
    let m = Mount::new(&server, &session, &[]);
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let tmp = tempfile::tempdir().unwrap();
    let tarball = tmp.path().join("src.tar");
    sh(
        &repo,
        &format!(
            "tar cf {} --exclude=target --exclude=.git domain ports adapters",
            tarball.display()
        ),
    );
    sh(&m.dir, &format!("tar xf {}", tarball.display()));
    let sums = "find domain ports adapters -type f | sort | xargs sha256sum";
    let original = sh(&repo, sums);
    assert_eq!(sh(&m.dir, sums), original);
    // And back out again through the mount.
    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    sh(
        &m.dir,
        &format!(
            "tar cf - domain ports adapters | tar xf - -C {}",
            out.display()
        ),
    );
    assert_eq!(sh(&out, sums), original);
}

#[test]
fn another_writers_change_shows_without_waiting_for_the_ttl() {
    let server = Server::start();
    let session = server.new_session();
    let m = Mount::new(
        &server,
        &session,
        &["--metadata-ttl", "3600", "--dir-cache-ttl", "3600"],
    );
    fs::create_dir(m.path("shared")).unwrap();
    fs::write(m.path("shared/doc.txt"), b"v1").unwrap();
    assert_eq!(fs::read(m.path("shared/doc.txt")).unwrap(), b"v1");
    let out = m.run("status", &["--json"]);
    assert!(out.status.success());
    // Wait until our own writes are on the server, then change the file from elsewhere.
    for _ in 0..100 {
        if server.read(&session, "/shared/doc.txt").as_deref() == Some(b"v1") {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    server.write(&session, "/shared/doc.txt", b"version two");
    server.write(&session, "/shared/new.txt", b"new");
    let start = Instant::now();
    let deadline = Duration::from_secs(5);
    let mut seen = false;
    while start.elapsed() < deadline {
        let doc = fs::read(m.path("shared/doc.txt")).unwrap_or_default();
        if doc == b"version two" && m.path("shared/new.txt").exists() {
            seen = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        seen,
        "the change did not show within {deadline:?} although the TTLs are an hour"
    );
    eprintln!("remote change visible after {:?}", start.elapsed());
}

#[test]
fn bad_mount_requests_get_clear_messages() {
    let server = Server::start();
    let session = server.new_session();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a-file");
    fs::write(&file, b"").unwrap();
    let cache = tmp.path().join("cache");
    let cache = cache.to_str().unwrap();
    let (m1, m2) = (tmp.path().join("m1"), tmp.path().join("m2"));
    let cases: [(Vec<&str>, &str); 4] = [
        (
            vec![
                "mount",
                "--session-id",
                &session,
                "--mount-dir",
                file.to_str().unwrap(),
                "--cache-dir",
                cache,
            ],
            "is not a directory",
        ),
        (
            vec![
                "mount",
                "--session-id",
                "sess_doesnotexist0000000000000000",
                "--mount-dir",
                m1.to_str().unwrap(),
                "--cache-dir",
                cache,
            ],
            "does not exist",
        ),
        (
            vec![
                "mount",
                "--session-id",
                "not a session",
                "--mount-dir",
                m2.to_str().unwrap(),
                "--cache-dir",
                cache,
            ],
            "--session-id",
        ),
        (
            vec!["status", "--session-id", &session, "--cache-dir", cache],
            "is not mounted",
        ),
    ];
    for (args, expected) in cases {
        let out = aether(&server.endpoint, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    // An unreachable endpoint.
    let out = aether(
        "http://127.0.0.1:9",
        &[
            "mount",
            "--session-id",
            &session,
            "--mount-dir",
            tmp.path().join("m3").to_str().unwrap(),
            "--cache-dir",
            cache,
        ],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot reach"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A second mount of the same session.
    let m = Mount::new(&server, &session, &[]);
    let second = tmp.path().join("m4");
    let out = aether(
        &server.endpoint,
        &[
            "mount",
            "--session-id",
            &session,
            "--mount-dir",
            second.to_str().unwrap(),
            "--cache-dir",
            m.cache.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already mounted"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The same directory mounted twice.
    let other = server.new_session();
    let out = aether(
        &server.endpoint,
        &[
            "mount",
            "--session-id",
            &other,
            "--mount-dir",
            m.dir.to_str().unwrap(),
            "--cache-dir",
            cache,
        ],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already a mount point"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The first mount still works.
    fs::write(m.path("still"), b"ok").unwrap();
    assert_eq!(fs::read(m.path("still")).unwrap(), b"ok");
}

#[test]
fn an_archived_session_mounts_read_only() {
    let server = Server::start();
    let session = server.new_session();
    server.write(&session, "/kept.txt", b"kept");
    let (api, ctx) = server.api();
    server
        .block_on(aether_ports::SessionsApi::archive_session(
            &api, &ctx, &session,
        ))
        .unwrap();
    let m = Mount::new(&server, &session, &[]);
    assert_eq!(fs::read(m.path("kept.txt")).unwrap(), b"kept");
    let err = fs::write(m.path("new.txt"), b"x").unwrap_err();
    assert_eq!(errno(err), 30, "EROFS");
}

#[test]
fn sighup_applies_journal_sync_settings_live_and_names_what_needs_a_restart() {
    let server = Server::start();
    let session = server.new_session();
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("aether.toml");
    fs::write(
        &config,
        "journal_sync_policy = \"interval\"\nlookup_ttl_secs = 60\n",
    )
    .unwrap();
    let config_arg = config.to_str().unwrap().to_owned();
    let m = Mount::new(&server, &session, &["--config", &config_arg]);
    fs::write(
        &config,
        "journal_sync_policy = \"immediate\"\nlookup_ttl_secs = 7\n",
    )
    .unwrap();
    let pid = m.pid.expect("runtime pid");
    std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    let log = m.cache.join("logs/aether.log");
    let mut text = String::new();
    for _ in 0..100 {
        text = fs::read_to_string(&log).unwrap_or_default();
        if text.contains("restart required") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(text.contains("journal sync policy changed"), "{text}");
    assert!(
        text.contains("restart required") && text.contains("lookup_ttl_secs"),
        "{text}"
    );
    // A broken file is reported and the mount keeps going.
    fs::write(&config, "journal_sync_policy = \"sometimes\"\n").unwrap();
    std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    for _ in 0..100 {
        text = fs::read_to_string(&log).unwrap_or_default();
        if text.contains("keeping the current one") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(text.contains("keeping the current one"), "{text}");
    fs::write(m.path("still-works"), b"yes").unwrap();
    assert_eq!(fs::read(m.path("still-works")).unwrap(), b"yes");
}

/// `ls -l` asks for every file's SELinux label; the mount says labels are not supported, and
/// `ls` stops asking, so a listing costs no kernel round trip per file for them (counted from
/// the mount's own request metrics).
#[test]
fn ls_l_probes_security_labels_once_per_listing_not_per_file() {
    let server = Server::start();
    let session = server.new_session();
    for i in 0..50 {
        server.write(&session, &format!("/labels/f{i:02}"), b"x");
    }
    let port = crate::ops::free_port();
    let addr = format!("127.0.0.1:{port}");
    let m = Mount::new(&server, &session, &["--metrics-addr", &addr]);
    let getxattrs = || crate::ops::fuse_requests(port, "getxattr");
    sh(&m.dir, "ls -l labels > /dev/null");
    let before = getxattrs();
    sh(&m.dir, "ls -l labels > /dev/null");
    let asked = getxattrs() - before;
    assert!(
        asked <= 3,
        "a second `ls -l` of 50 files made {asked} getxattr requests"
    );
    let said = std::process::Command::new("python3")
        .args([
            "-c",
            "import os, sys\ntry:\n    os.getxattr(sys.argv[1], 'security.selinux')\nexcept OSError as e:\n    print(e.errno)",
        ])
        .arg(m.path("labels/f00"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&said.stdout).trim(),
        "95",
        "a label read answers EOPNOTSUPP (95 on Linux)"
    );
}

/// A small file's content goes into the kernel's page cache when its writer closes it, so the
/// next reader costs no read request: files written past that cache (`>` opens write-only with
/// `O_TRUNC`) and files whose last page was written only in part (`w+`). Counted from the
/// mount's own request metrics.
#[test]
fn small_files_read_back_after_close_cost_no_read_request() {
    let server = Server::start();
    let session = server.new_session();
    let port = crate::ops::free_port();
    let addr = format!("127.0.0.1:{port}");
    let m = Mount::new(&server, &session, &["--metrics-addr", &addr]);
    let reads = || crate::ops::fuse_requests(port, "read");
    sh(
        &m.dir,
        "mkdir out && for i in $(seq 20); do echo \"past the cache $i\" > out/a$i; done",
    );
    sh(
        &m.dir,
        "python3 -c 'import sys\nfor i in range(1, 21):\n    f = open(f\"out/b{i}\", \"w+\"); f.write(f\"through it {i}\"); f.close()'",
    );
    let before = reads();
    let got = sh(
        &m.dir,
        "for i in $(seq 20); do cat out/a$i; done; for i in $(seq 20); do cat out/b$i; echo; done",
    );
    let asked = reads() - before;
    let want: String = (1..=20)
        .map(|i| format!("past the cache {i}\n"))
        .chain((1..=20).map(|i| format!("through it {i}\n")))
        .collect();
    assert_eq!(got, want);
    // The kernel sends a file's release in the background, after `close` returns: the last
    // file or two may be read before their release (and store) arrived.
    assert!(
        asked <= 2,
        "reading back 40 small files just written made {asked} read requests"
    );
}

/// Writers that close small files while readers read them. The store into the kernel's cache
/// at close waits for the file's pages, which a reader holds until its read is answered: with
/// every FUSE worker storing, no worker was left to answer, and this hung at once. No reader
/// may see content older than the last completed close, and a writer reading back its file
/// right after closing it sees exactly what it wrote.
#[test]
fn small_files_closed_while_being_read_neither_hang_nor_read_stale() {
    const SCRIPT: &str = r#"
n = 150
done, finished = {}, set()
def writer(k, mode):
    try:
        for i in range(n):
            with open(f"{d}/s{k}", mode) as f:
                f.write(f"{k}:{i:06d}:" + "x" * (i * 37 % 5000))
            done[k] = i
            with open(f"{d}/s{k}") as f:
                got = version(f.read())
            if got != i:
                errors.append(f"writer {k} wrote {i}, read back {got}")
    except OSError as e:
        errors.append(f"writer {k}: {e}")
    finished.add(k)
def reader(k):
    while k not in finished:
        last = done.get(k, -1)
        try:
            with open(f"{d}/s{k}") as f:
                got = version(f.read())
        except FileNotFoundError:
            continue
        except OSError as e:
            errors.append(f"reader {k}: {e}")
            break
        if 0 <= got < last:
            errors.append(f"reader {k} saw {got} after {last} was closed")
threads = []
for k, mode in enumerate(["w", "w+", "w", "w+"]):
    threads += [threading.Thread(target=writer, args=(k, mode)),
                threading.Thread(target=reader, args=(k,))]
run(threads)
"#;
    assert_eq!(race_in_a_new_mount(SCRIPT), "0 []");
}

/// Small files replaced by rename, appended to and truncated by path while others read them:
/// each changer reads back exactly what it made, and nothing fails or hangs.
#[test]
fn small_files_renamed_over_appended_and_truncated_while_being_read_stay_exact() {
    const SCRIPT: &str = r#"
n = 100
finished = set()
def renamer(k):
    for i in range(n):
        with open(f"{d}/r{k}.tmp", "w") as f:
            f.write(f"{k}:{i:06d}:" + "y" * (i * 31 % 3000))
        os.rename(f"{d}/r{k}.tmp", f"{d}/r{k}")
        with open(f"{d}/r{k}") as f:
            got = version(f.read())
        if got != i:
            errors.append(f"renamer {k} renamed {i} into place, read back {got}")
def appender(k):
    p = f"{d}/a{k}"
    open(p, "w").close()
    for i in range(n):
        with open(p, "a") as f:
            f.write(f"{i:06d}\n")
        with open(p) as f:
            lines = f.read().splitlines()
        if len(lines) != i + 1 or lines[-1] != f"{i:06d}":
            errors.append(f"appender {k} after {i}: {len(lines)} lines, last {lines[-1:]}")
def truncator(k):
    p = f"{d}/t{k}"
    for i in range(n):
        with open(p, "w") as f:
            f.write("z" * (1000 + i))
        os.truncate(p, 500 + i)
        size = os.stat(p).st_size
        with open(p) as f:
            got = len(f.read())
        if size != 500 + i or got != 500 + i:
            errors.append(f"truncator {k} at {i}: stat {size}, read {got}")
def changer(work, k, name):
    try:
        work(k)
    except OSError as e:
        errors.append(f"{name}: {e}")
    finished.add(name)
def reader(name):
    while name not in finished:
        try:
            with open(f"{d}/{name}") as f:
                f.read()
        except FileNotFoundError:
            continue
        except OSError as e:
            errors.append(f"reader of {name}: {e}")
            break
threads = []
for k in range(2):
    for work, prefix in [(renamer, "r"), (appender, "a"), (truncator, "t")]:
        name = f"{prefix}{k}"
        threads += [threading.Thread(target=changer, args=(work, k, name)),
                    threading.Thread(target=reader, args=(name,))]
run(threads)
"#;
    assert_eq!(race_in_a_new_mount(SCRIPT), "0 []");
}

/// Content changed through `mmap`, through one of two hard links, inside a directory renamed
/// right after, and by `ftruncate` on an open handle, while a reader keeps opening the same
/// files: each changer reads back exactly what it made.
#[test]
fn files_changed_by_mmap_links_renamed_dirs_and_ftruncate_read_back_exact() {
    const SCRIPT: &str = r#"
n = 60
def pattern(i, size):
    return bytes((i + j) % 251 for j in range(256)) * (size // 256) + bytes(size % 256)
def mapped(k):
    for i in range(n):
        size = 4096 + (i * 113) % 20000
        with open(f"{d}/m{k}", "w+b") as f:
            f.truncate(size)
            m = mmap.mmap(f.fileno(), size)
            m[:] = pattern(i, size)
            m.flush()
            m.close()
        with open(f"{d}/m{k}", "rb") as f:
            if f.read() != pattern(i, size):
                errors.append(f"mmap {k} at {i}")
def linked(k):
    a, b = f"{d}/l{k}a", f"{d}/l{k}b"
    open(a, "w").close()
    os.link(a, b)
    for i in range(n):
        with open(a if i % 2 else b, "w") as f:
            f.write(f"v{i}")
        with open(b if i % 2 else a) as f:
            got = f.read()
        if got != f"v{i}":
            errors.append(f"link {k} at {i}: {got!r}")
def moved(k):
    for i in range(n):
        src = f"{d}/dir{k}-{i}"
        os.makedirs(src)
        with open(f"{src}/f", "w") as f:
            f.write(f"in {i}")
        os.rename(src, src + "-moved")
        with open(src + "-moved/f") as f:
            got = f.read()
        if got != f"in {i}":
            errors.append(f"dir {k} at {i}: {got!r}")
def truncated(k):
    for i in range(n):
        fd = os.open(f"{d}/t{k}", os.O_RDWR | os.O_CREAT, 0o644)
        os.write(fd, b"a" * 3000)
        os.ftruncate(fd, 100 + i)
        os.pwrite(fd, b"END", 100 + i)
        os.close(fd)
        with open(f"{d}/t{k}", "rb") as f:
            got = f.read()
        if got != b"a" * (100 + i) + b"END":
            errors.append(f"ftruncate {k} at {i}: {len(got)} bytes")
def changer(work, k):
    try:
        work(k)
    except OSError as e:
        errors.append(f"{work.__name__} {k}: {e}")
def reader():
    while any(t.is_alive() for t in threads):
        for name in ["m0", "m1", "l0a", "l1b", "t0", "t1"]:
            try:
                with open(f"{d}/{name}", "rb") as f:
                    f.read()
            except FileNotFoundError:
                pass
            except OSError as e:
                errors.append(f"reader of {name}: {e}")
                return
threads = [threading.Thread(target=changer, args=(w, k))
           for k in range(2) for w in (mapped, linked, moved, truncated)]
run(threads + [threading.Thread(target=reader)])
"#;
    assert_eq!(race_in_a_new_mount(SCRIPT), "0 []");
}

/// Large files written in order upload while they are written; writes behind the writer
/// abandon that upload. Three such files written at once, each overwritten here and there as it
/// grows, reach the server exactly as written once `fsync` returns.
#[test]
fn large_files_overwritten_behind_their_early_upload_reach_the_server_exact() {
    use std::os::unix::fs::FileExt;
    let server = Server::start();
    let session = server.new_session();
    let m = Mount::new(&server, &session, &[]);
    let written: Vec<(String, Vec<u8>)> = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..3u64)
            .map(|k| {
                let path = m.path(&format!("big{k}"));
                scope.spawn(move || {
                    // A small xorshift: reproducible content and overwrite offsets.
                    let mut x = 0x9e37_79b9_7f4a_7c15_u64 ^ (k + 1);
                    let mut next = move || {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x
                    };
                    let mut f = fs::File::create(&path).unwrap();
                    let mut data = Vec::new();
                    for i in 0..24u64 {
                        let chunk: Vec<u8> = (0..1 << 20).map(|_| next() as u8).collect();
                        f.write_all(&chunk).unwrap();
                        data.extend_from_slice(&chunk);
                        if i >= 2 && next() % 6 == 0 {
                            let at = (next() % (data.len() as u64 - 4096)) as usize;
                            let patch = vec![(i as u8) ^ 0x5a; 4096];
                            f.write_all_at(&patch, at as u64).unwrap();
                            data[at..at + 4096].copy_from_slice(&patch);
                        }
                    }
                    f.sync_all().unwrap();
                    (format!("/big{k}"), data)
                })
            })
            .collect();
        writers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    for (path, data) in written {
        let stored = server
            .read(&session, &path)
            .expect("on the server after fsync");
        assert_eq!(stored.len(), data.len(), "{path}");
        assert!(
            stored == data,
            "{path}: the server's copy differs from what was written"
        );
    }
}

/// What every script of [`race_in_a_new_mount`] starts with: the mount directory `d`, the
/// `errors` its threads report, `version` (the number a changer wrote as `k:000123:…`), and
/// `run`, which starts the threads in order, waits for them, and prints the errors found.
const RACE_PRELUDE: &str = r#"
import mmap, os, sys, threading
d = sys.argv[1]
errors = []
def version(text):
    parts = text.split(":")
    return int(parts[1]) if len(parts) >= 3 else -1
def run(threads):
    for t in threads: t.start()
    for t in threads: t.join()
    print(len(errors), errors[:3])
"#;

/// Runs a Python `script` (after [`RACE_PRELUDE`]) in a new mount and returns its output;
/// fails, rather than hangs, if it has not finished in 120 s.
fn race_in_a_new_mount(script: &str) -> String {
    let server = Server::start();
    let session = server.new_session();
    let mut m = Mount::new(&server, &session, &[]);
    let mut child = std::process::Command::new("python3")
        .args(["-c", &format!("{RACE_PRELUDE}{script}")])
        .arg(&m.dir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            // Killing the runtime ends the connection, and with it every wait on the mount.
            m.kill9();
            let _ = child.wait();
            panic!("the script did not finish in 120 s: the mount hung");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Under FUSE_HANDLE_KILLPRIV_V2 the mount, not the kernel, clears set-ID bits; in return the
/// kernel asks for `security.capability` once per file rather than before every write.
#[test]
fn unprivileged_writes_clear_set_id_bits_without_a_probe_per_write() {
    let server = Server::start();
    let session = server.new_session();
    let port = crate::ops::free_port();
    let addr = format!("127.0.0.1:{port}");
    let m = Mount::new(
        &server,
        &session,
        &["--metrics-addr", &addr, "--allow-other"],
    );
    let getxattrs = || crate::ops::fuse_requests(port, "getxattr");
    let before = getxattrs();
    sh(&m.dir, "for i in $(seq 20); do echo data >> log; done");
    let asked = getxattrs() - before;
    assert!(
        asked <= 1,
        "20 appends to one file made {asked} getxattr requests"
    );

    // The unprivileged user works relative to a directory root entered for it: the mount's
    // parent directories are private to root.
    sh(
        &m.dir,
        "for f in root nobody nobody-gx trunc otrunc chown; do echo a > $f; done; \
         chmod 6775 root; chmod 6777 nobody; chmod 2766 nobody-gx; \
         chmod 4777 trunc otrunc; chmod 4755 chown",
    );
    let as_nobody = "setpriv --reuid=65534 --regid=65534 --clear-groups sh -c";
    sh(&m.dir, "echo b >> root");
    sh(
        &m.dir,
        &format!(
            "{as_nobody} 'echo b >> nobody && echo b >> nobody-gx && truncate -s 1 trunc && : > otrunc'"
        ),
    );
    sh(&m.dir, "chown 65534 chown");
    let mode = |name: &str| fs::metadata(m.path(name)).unwrap().mode() & 0o7777;
    assert_eq!(
        mode("root"),
        0o6775,
        "root keeps set-ID bits through a write"
    );
    assert_eq!(mode("nobody"), 0o777, "an unprivileged write clears both");
    assert_eq!(
        mode("nobody-gx"),
        0o2766,
        "set-group-ID without group execute stays"
    );
    assert_eq!(
        mode("trunc"),
        0o777,
        "an unprivileged truncate clears set-user-ID"
    );
    assert_eq!(
        mode("otrunc"),
        0o777,
        "so does an unprivileged O_TRUNC open"
    );
    assert_eq!(mode("chown"), 0o755, "a change of owner clears set-user-ID");
    assert_eq!(fs::read(m.path("nobody")).unwrap(), b"a\nb\n");
}

/// `cp` asks for `copy_file_range` and `SEEK_DATA` first: the mount declines both quietly and
/// the kernel copies through read and write.
#[test]
fn cp_within_the_mount_copies_without_warnings() {
    let server = Server::start();
    let session = server.new_session();
    let m = Mount::new(&server, &session, &[]);
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    fs::write(m.path("src.bin"), &data).unwrap();
    sh(
        &m.dir,
        "cp src.bin a.bin && cp --sparse=always src.bin b.bin",
    );
    assert_eq!(fs::read(m.path("a.bin")).unwrap(), data);
    assert_eq!(fs::read(m.path("b.bin")).unwrap(), data);
    let log = fs::read_to_string(m.cache.join("logs/aether.log")).unwrap_or_default();
    assert!(
        !log.contains("Not Implemented"),
        "the runtime logged an unimplemented operation:\n{log}"
    );
}

#[test]
fn a_large_directory_listed_then_stated_costs_no_lookup_per_entry() {
    let server = Server::start();
    let session = server.new_session();
    let (api, ctx) = server.api();
    for chunk in 0..3 {
        let operations = (chunk * 1000..(chunk + 1) * 1000)
            .map(|i| aether_ports::BatchOperation::WriteFile {
                path: format!("/big/f{i:04}"),
                data: b"x".to_vec(),
                mode: None,
                parents: true,
                expected_hash: None,
            })
            .collect();
        let batch = aether_ports::BatchRequest { operations };
        server
            .block_on(aether_ports::FilesystemApi::batch(
                &api, &ctx, &session, batch,
            ))
            .unwrap();
    }
    let port = crate::ops::free_port();
    let addr = format!("127.0.0.1:{port}");
    let m = Mount::new(&server, &session, &["--metrics-addr", &addr]);
    let lookups = || crate::ops::fuse_requests(port, "lookup");
    // A plain listing first (the kernel then serves the names from its own cache), then every
    // entry stated: each listing page carried the entries' attributes, so no name is looked up.
    assert_eq!(sh(&m.dir, "ls -f big | wc -l").trim(), "3002");
    let before = lookups();
    let listed = sh(&m.dir, "ls -l big | wc -l");
    assert_eq!(listed.trim(), "3001", "`total` and 3,000 files");
    let asked = lookups() - before;
    assert!(
        asked <= 3,
        "`ls -l` of 3,000 listed files made {asked} lookups"
    );
}

/// Files deleted or replaced while open for writing (`tmpfile()`, an editor's rename over a
/// file another program is writing) leave nothing in the cache's staging directory once
/// closed: before, each one's content stayed there for the life of the mount.
#[test]
fn files_deleted_while_written_leave_no_staging_files_behind() {
    let server = Server::start();
    let session = server.new_session();
    let m = Mount::new(&server, &session, &[]);
    let chunk = vec![b'x'; 200_000];
    for i in 0..10 {
        let path = m.path(&format!("scratch{i}"));
        let mut f = fs::File::create(&path).unwrap();
        fs::remove_file(&path).unwrap();
        f.write_all(&chunk).unwrap();
        f.write_all(&chunk).unwrap();
    }
    let mut victim = fs::File::create(m.path("victim")).unwrap();
    victim.write_all(&chunk).unwrap();
    fs::write(m.path("replacement"), b"new").unwrap();
    fs::rename(m.path("replacement"), m.path("victim")).unwrap();
    victim.write_all(&chunk).unwrap();
    drop(victim);
    assert_eq!(fs::read(m.path("victim")).unwrap(), b"new");

    let staging = m.cache.join(&session).join("content/staging");
    // The kernel sends `release` in the background after `close`.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let left: Vec<_> = fs::read_dir(&staging)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "staging files left behind: {left:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
