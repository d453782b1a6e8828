//! Namespace clauses: mkdir, rmdir, delete, rename, links, symlinks, xattrs, attributes,
//! manifest, batch, path rules, idempotency.

use aether_domain::EntryKind;
use aether_ports::*;

use crate::harness::*;

async fn rename<A: SessionApi>(
    h: &Harness<A>,
    s: &Session,
    from: &str,
    to: &str,
    no_replace: bool,
    exchange: bool,
) -> Result<()> {
    h.api
        .rename(
            &h.owner,
            &s.id,
            RenameRequest {
                from: from.into(),
                to: to.into(),
                no_replace,
                exchange,
            },
        )
        .await
}

pub async fn check_mkdir_rules<A: SessionApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    let d = h
        .api
        .mkdir(
            &h.owner,
            &s.id,
            MkdirRequest {
                path: "/d".into(),
                mode: Some(0o1750),
                parents: false,
            },
        )
        .await
        .expect("mkdir");
    assert_eq!((d.kind, d.mode, d.nlink), (EntryKind::Directory, 0o1750, 2));
    expect_err(mkdir(h, &s, "/d").await, Code::AlreadyExists, None);
    expect_err(mkdir(h, &s, "/").await, Code::AlreadyExists, None);
    expect_err(mkdir(h, &s, "/x/y").await, Code::NotFound, None);
    let deep = h
        .api
        .mkdir(
            &h.owner,
            &s.id,
            MkdirRequest {
                path: "/x/y/z".into(),
                mode: None,
                parents: true,
            },
        )
        .await
        .expect("mkdir -p");
    assert_eq!(deep.mode, 0o755);
    h.api
        .mkdir(
            &h.owner,
            &s.id,
            MkdirRequest {
                path: "/x/y/z".into(),
                mode: None,
                parents: true,
            },
        )
        .await
        .expect("mkdir -p of an existing dir");
    put(h, &s, "/file", b"f").await;
    expect_err(
        mkdir(h, &s, "/file/sub").await,
        Code::FailedPrecondition,
        Some(Reason::NotADirectory),
    );
    expect_err(
        h.api
            .mkdir(
                &h.owner,
                &s.id,
                MkdirRequest {
                    path: "/m".into(),
                    mode: Some(0o17777),
                    parents: false,
                },
            )
            .await,
        Code::InvalidArgument,
        None,
    );
    assert_eq!(
        stat(h, &s, "/").await.expect("root").nlink,
        4,
        "root links: itself, its entry, /d and /x"
    );
}

pub async fn check_rmdir_rules<A: SessionApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    put(h, &s, "/d/sub/f", b"f").await;
    expect_err(
        h.api
            .rmdir(
                &h.owner,
                &s.id,
                RmdirRequest {
                    path: "/d".into(),
                    recursive: false,
                },
            )
            .await,
        Code::FailedPrecondition,
        Some(Reason::NotEmpty),
    );
    expect_err(
        h.api
            .rmdir(
                &h.owner,
                &s.id,
                RmdirRequest {
                    path: "/d/sub/f".into(),
                    recursive: false,
                },
            )
            .await,
        Code::FailedPrecondition,
        Some(Reason::NotADirectory),
    );
    expect_err(
        h.api
            .rmdir(
                &h.owner,
                &s.id,
                RmdirRequest {
                    path: "/".into(),
                    recursive: true,
                },
            )
            .await,
        Code::FailedPrecondition,
        None,
    );
    expect_err(
        h.api
            .rmdir(
                &h.owner,
                &s.id,
                RmdirRequest {
                    path: "/nope".into(),
                    recursive: false,
                },
            )
            .await,
        Code::NotFound,
        None,
    );
    h.api
        .rmdir(
            &h.owner,
            &s.id,
            RmdirRequest {
                path: "/d".into(),
                recursive: true,
            },
        )
        .await
        .expect("rm -r");
    assert_eq!(paths(h, &s).await, vec!["/"]);
    mkdir(h, &s, "/e").await.expect("mkdir");
    h.api
        .rmdir(
            &h.owner,
            &s.id,
            RmdirRequest {
                path: "/e".into(),
                recursive: false,
            },
        )
        .await
        .expect("rmdir empty");
    mkdir(h, &s, "/e")
        .await
        .expect("a removed directory can be re-created");
    assert_eq!(paths(h, &s).await, vec!["/", "/e"]);
}

pub async fn check_delete_file_rules<A: SessionApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    put(h, &s, "/f", b"f").await;
    mkdir(h, &s, "/d").await.expect("mkdir");
    expect_err(
        h.api
            .delete_file(
                &h.owner,
                &s.id,
                DeleteFileRequest {
                    path: "/d".into(),
                    expected_hash: None,
                },
            )
            .await,
        Code::FailedPrecondition,
        Some(Reason::IsADirectory),
    );
    expect_err(
        h.api
            .delete_file(
                &h.owner,
                &s.id,
                DeleteFileRequest {
                    path: "/nope".into(),
                    expected_hash: None,
                },
            )
            .await,
        Code::NotFound,
        None,
    );
    h.api
        .delete_file(
            &h.owner,
            &s.id,
            DeleteFileRequest {
                path: "/f".into(),
                expected_hash: None,
            },
        )
        .await
        .expect("delete");
    expect_err(read(h, &s, "/f").await, Code::NotFound, None);
    put(h, &s, "/g", b"g").await;
    h.api
        .unlink(&h.owner, &s.id, PathRequest { path: "/g".into() })
        .await
        .expect("unlink");
    expect_err(
        h.api
            .unlink(&h.owner, &s.id, PathRequest { path: "/d".into() })
            .await,
        Code::FailedPrecondition,
        Some(Reason::IsADirectory),
    );
    assert_eq!(paths(h, &s).await, vec!["/", "/d"]);
}

pub async fn check_rename_rules<A: SessionApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    put(h, &s, "/a", b"a").await;
    put(h, &s, "/b", b"b").await;
    rename(h, &s, "/a", "/c", false, false)
        .await
        .expect("rename");
    expect_err(read(h, &s, "/a").await, Code::NotFound, None);
    assert_eq!(read(h, &s, "/c").await.expect("c"), b"a");
    expect_err(
        rename(h, &s, "/c", "/b", true, false).await,
        Code::AlreadyExists,
        None,
    );
    rename(h, &s, "/c", "/b", false, false)
        .await
        .expect("replace");
    assert_eq!(read(h, &s, "/b").await.expect("b"), b"a");
    rename(h, &s, "/b", "/b", false, false)
        .await
        .expect("rename onto itself is a no-op");
    put(h, &s, "/dir/x", b"x").await;
    put(h, &s, "/full/y", b"y").await;
    mkdir(h, &s, "/empty").await.expect("mkdir");
    expect_err(
        rename(h, &s, "/dir", "/dir/inside", false, false).await,
        Code::InvalidArgument,
        Some(Reason::IntoItself),
    );
    expect_err(
        rename(h, &s, "/dir", "/full", false, false).await,
        Code::FailedPrecondition,
        Some(Reason::NotEmpty),
    );
    expect_err(
        rename(h, &s, "/dir", "/b", false, false).await,
        Code::FailedPrecondition,
        Some(Reason::NotADirectory),
    );
    expect_err(
        rename(h, &s, "/b", "/empty", false, false).await,
        Code::FailedPrecondition,
        Some(Reason::IsADirectory),
    );
    expect_err(
        rename(h, &s, "/missing", "/z", false, false).await,
        Code::NotFound,
        None,
    );
    expect_err(
        rename(h, &s, "/b", "/nodir/z", false, false).await,
        Code::NotFound,
        None,
    );
    expect_err(
        rename(h, &s, "/b", "/", false, false).await,
        Code::InvalidArgument,
        None,
    );
    expect_err(
        rename(h, &s, "/b", "/q", true, true).await,
        Code::InvalidArgument,
        None,
    );
    rename(h, &s, "/dir", "/empty", false, false)
        .await
        .expect("replace an empty directory");
    assert_eq!(read(h, &s, "/empty/x").await.expect("moved"), b"x");
}

pub async fn check_rename_directory_moves_subtree<A: SessionApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    put(h, &s, "/src/a/1", b"1").await;
    put(h, &s, "/src/a/2", b"2").await;
    put(h, &s, "/src/b", b"b").await;
    put(h, &s, "/src-sibling", b"s").await;
    let before = generation(h, &s).await;
    rename(h, &s, "/src", "/dst", false, false)
        .await
        .expect("rename dir");
    assert_eq!(generation(h, &s).await, before + 1);
    assert_eq!(
        paths(h, &s).await,
        vec![
            "/",
            "/dst",
            "/dst/a",
            "/dst/a/1",
            "/dst/a/2",
            "/dst/b",
            "/src-sibling"
        ]
    );
    assert_eq!(read(h, &s, "/dst/a/2").await.expect("moved content"), b"2");
    rename(h, &s, "/dst/a", "/a", false, false)
        .await
        .expect("move up");
    assert_eq!(read(h, &s, "/a/1").await.expect("moved"), b"1");
}

pub async fn check_rename_exchange<A: SessionApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    put(h, &s, "/x", b"x").await;
    put(h, &s, "/d/inner", b"i").await;
    rename(h, &s, "/x", "/d", false, true)
        .await
        .expect("exchange");
    assert_eq!(read(h, &s, "/d").await.expect("file now at /d"), b"x");
    assert_eq!(read(h, &s, "/x/inner").await.expect("dir now at /x"), b"i");
    expect_err(
        rename(h, &s, "/d", "/absent", false, true).await,
        Code::NotFound,
        None,
    );
}

pub async fn check_link<A: SessionApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    put(h, &s, "/orig", b"content").await;
    let l = h
        .api
        .link(
            &h.owner,
            &s.id,
            LinkRequest {
                existing_path: "/orig".into(),
                new_path: "/alias".into(),
            },
        )
        .await
        .expect("link");
    assert_eq!((l.path.as_str(), l.nlink), ("/alias", 2));
    assert_eq!(stat(h, &s, "/orig").await.expect("orig").nlink, 2);
    assert_eq!(read(h, &s, "/alias").await.expect("read"), b"content");
    mkdir(h, &s, "/d").await.expect("mkdir");
    expect_err(
        h.api
            .link(
                &h.owner,
                &s.id,
                LinkRequest {
                    existing_path: "/d".into(),
                    new_path: "/d2".into(),
                },
            )
            .await,
        Code::PermissionDenied,
        None,
    );
    expect_err(
        h.api
            .link(
                &h.owner,
                &s.id,
                LinkRequest {
                    existing_path: "/orig".into(),
                    new_path: "/alias".into(),
                },
            )
            .await,
        Code::AlreadyExists,
        None,
    );
    expect_err(
        h.api
            .link(
                &h.owner,
                &s.id,
                LinkRequest {
                    existing_path: "/none".into(),
                    new_path: "/n2".into(),
                },
            )
            .await,
        Code::NotFound,
        None,
    );
}

pub async fn check_symlink<A: SessionApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    let l = h
        .api
        .symlink(
            &h.owner,
            &s.id,
            SymlinkRequest {
                path: "/ln".into(),
                target: "../some/where".into(),
            },
        )
        .await
        .expect("symlink");
    assert_eq!(
        (l.kind, l.size, l.target.as_deref()),
        (EntryKind::Symlink, 13, Some("../some/where"))
    );
    let t = h
        .api
        .read_symlink(&h.owner, &s.id, "/ln")
        .await
        .expect("readlink");
    assert_eq!(t.target, "../some/where");
    put(h, &s, "/f", b"f").await;
    expect_err(
        h.api.read_symlink(&h.owner, &s.id, "/f").await,
        Code::InvalidArgument,
        None,
    );
    expect_err(
        h.api.read_symlink(&h.owner, &s.id, "/none").await,
        Code::NotFound,
        None,
    );
    expect_err(
        h.api
            .symlink(
                &h.owner,
                &s.id,
                SymlinkRequest {
                    path: "/ln".into(),
                    target: "x".into(),
                },
            )
            .await,
        Code::AlreadyExists,
        None,
    );
    expect_err(
        h.api
            .symlink(
                &h.owner,
                &s.id,
                SymlinkRequest {
                    path: "/e".into(),
                    target: String::new(),
                },
            )
            .await,
        Code::InvalidArgument,
        None,
    );
    expect_err(
        h.api
            .read_file(
                &h.owner,
                &s.id,
                ReadFileRequest {
                    path: "/ln".into(),
                    range: None,
                },
            )
            .await,
        Code::FailedPrecondition,
        None,
    );
}

pub async fn check_xattrs<A: SessionApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    put(h, &s, "/f", b"f").await;
    let set = |name: &str, value: &[u8], mode| {
        h.api.set_xattr(
            &h.owner,
            &s.id,
            SetXattrRequest {
                path: "/f".into(),
                name: name.into(),
                value: value.to_vec(),
                mode,
            },
        )
    };
    set("user.color", b"blue", XattrSetMode::Either)
        .await
        .expect("set");
    set("user.bin", &[0, 255, 7], XattrSetMode::Create)
        .await
        .expect("create");
    expect_err(
        set("user.bin", b"x", XattrSetMode::Create).await,
        Code::AlreadyExists,
        None,
    );
    expect_err(
        set("user.none", b"x", XattrSetMode::Replace).await,
        Code::NotFound,
        Some(Reason::NoSuchAttribute),
    );
    set("user.color", b"red", XattrSetMode::Replace)
        .await
        .expect("replace");
    let get = |name: &str| {
        h.api.get_xattr(
            &h.owner,
            &s.id,
            XattrRequest {
                path: "/f".into(),
                name: name.into(),
            },
        )
    };
    assert_eq!(get("user.color").await.expect("get").value, b"red");
    assert_eq!(get("user.bin").await.expect("get").value, vec![0, 255, 7]);
    expect_err(
        get("user.none").await,
        Code::NotFound,
        Some(Reason::NoSuchAttribute),
    );
    let names = h
        .api
        .list_xattrs(&h.owner, &s.id, PathRequest { path: "/f".into() })
        .await
        .expect("list");
    assert_eq!(names.names, vec!["user.bin", "user.color"]);
    h.api
        .remove_xattr(
            &h.owner,
            &s.id,
            XattrRequest {
                path: "/f".into(),
                name: "user.bin".into(),
            },
        )
        .await
        .expect("remove");
    expect_err(
        h.api
            .remove_xattr(
                &h.owner,
                &s.id,
                XattrRequest {
                    path: "/f".into(),
                    name: "user.bin".into(),
                },
            )
            .await,
        Code::NotFound,
        Some(Reason::NoSuchAttribute),
    );
    expect_err(
        set("nonamespace", b"x", XattrSetMode::Either).await,
        Code::InvalidArgument,
        None,
    );
    expect_err(
        set("user.big", &vec![0; 70_000], XattrSetMode::Either).await,
        Code::InvalidArgument,
        None,
    );
    let after_write = put(h, &s, "/f", b"new content").await;
    assert_eq!(after_write.path, "/f");
    assert_eq!(
        get("user.color")
            .await
            .expect("xattrs survive a content write")
            .value,
        b"red"
    );
}

pub async fn check_set_attributes<A: SessionApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    let f = put(h, &s, "/f", b"f").await;
    let mtime = aether_domain::Timestamp(1_600_000_000_123_456_789);
    let e = h
        .api
        .set_attributes(
            &h.owner,
            &s.id,
            SetAttributesRequest {
                path: "/f".into(),
                mode: Some(0o2711),
                uid: Some(1000),
                gid: Some(100),
                mtime: Some(mtime),
                atime: None,
            },
        )
        .await
        .expect("setattr");
    assert_eq!((e.mode, e.uid, e.gid, e.mtime), (0o2711, 1000, 100, mtime));
    assert!(e.ctime >= f.ctime);
    assert_eq!(e.content_hash, f.content_hash);
    assert_eq!(stat(h, &s, "/f").await.expect("stat"), e);
    expect_err(
        h.api
            .set_attributes(
                &h.owner,
                &s.id,
                SetAttributesRequest {
                    path: "/none".into(),
                    ..Default::default()
                },
            )
            .await,
        Code::NotFound,
        None,
    );
}

pub async fn check_mknod<A: SessionApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    let fifo = h
        .api
        .mknod(
            &h.owner,
            &s.id,
            MknodRequest {
                path: "/fifo".into(),
                kind: EntryKind::Fifo,
                mode: 0o600,
                rdev: 0,
            },
        )
        .await
        .expect("fifo");
    assert_eq!((fifo.kind, fifo.mode), (EntryKind::Fifo, 0o600));
    let dev = h
        .api
        .mknod(
            &h.owner,
            &s.id,
            MknodRequest {
                path: "/null".into(),
                kind: EntryKind::CharDevice,
                mode: 0o666,
                rdev: 0x0103,
            },
        )
        .await
        .expect("chardev");
    assert_eq!(dev.rdev, 0x0103);
    expect_err(
        h.api
            .mknod(
                &h.owner,
                &s.id,
                MknodRequest {
                    path: "/f".into(),
                    kind: EntryKind::File,
                    mode: 0o600,
                    rdev: 0,
                },
            )
            .await,
        Code::InvalidArgument,
        None,
    );
}

pub async fn check_manifest_listing<A: SessionApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    put(h, &s, "/b/2", b"2").await;
    put(h, &s, "/b/1/deep", b"d").await;
    put(h, &s, "/a", b"a").await;
    put(h, &s, "/b-c", b"bc").await;
    assert_eq!(
        paths(h, &s).await,
        vec!["/", "/a", "/b", "/b-c", "/b/1", "/b/1/deep", "/b/2"],
        "sorted by path bytes"
    );
    let list = |prefix: &str, recursive| {
        h.api.manifest(
            &h.owner,
            &s.id,
            ManifestRequest {
                path_prefix: Some(prefix.into()),
                recursive: Some(recursive),
                ..Default::default()
            },
        )
    };
    let m = list("/b", false).await.expect("ls /b");
    let names: Vec<_> = m.entries.items.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        names,
        vec!["/b", "/b/1", "/b/2"],
        "the directory itself, then its children"
    );
    assert_eq!(m.generation, generation(h, &s).await);
    let m = list("/b", true).await.expect("ls -R /b");
    let names: Vec<_> = m.entries.items.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(names, vec!["/b", "/b/1", "/b/1/deep", "/b/2"]);
    let m = list("/a", false).await.expect("stat /a");
    assert_eq!(m.entries.items.len(), 1);
    assert_eq!(m.entries.items[0].size, 1);
    expect_err(list("/zzz", false).await, Code::NotFound, None);
    expect_err(list("b", false).await, Code::InvalidArgument, None);
}

pub async fn check_manifest_pagination<A: SessionApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    let ops = (0..25)
        .map(|i| BatchOperation::WriteFile {
            path: format!("/d/f{i:02}"),
            data: vec![i as u8],
            mode: None,
            parents: true,
            expected_hash: None,
        })
        .collect();
    h.api
        .batch(&h.owner, &s.id, BatchRequest { operations: ops })
        .await
        .expect("batch");
    for (recursive, size) in [(true, 1), (true, 7), (false, 10), (false, 1000)] {
        let mut got = Vec::new();
        let mut token = None;
        loop {
            let m = h
                .api
                .manifest(
                    &h.owner,
                    &s.id,
                    ManifestRequest {
                        path_prefix: Some("/d".into()),
                        recursive: Some(recursive),
                        page: PageRequest {
                            page_size: Some(size),
                            page_token: token,
                        },
                        ..Default::default()
                    },
                )
                .await
                .expect("manifest page");
            assert!(
                m.entries.items.len() <= size as usize,
                "page of {} > {size}",
                m.entries.items.len()
            );
            got.extend(m.entries.items.into_iter().map(|e| e.path));
            match m.entries.next_page_token {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        let mut want = vec!["/d".to_owned()];
        want.extend((0..25).map(|i| format!("/d/f{i:02}")));
        assert_eq!(got, want, "recursive={recursive} pageSize={size}");
    }
}

pub async fn check_batch_is_atomic<A: SessionApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    put(h, &s, "/exists", b"e").await;
    let before = generation(h, &s).await;
    let failing = BatchRequest {
        operations: vec![
            BatchOperation::Mkdir(MkdirRequest {
                path: "/new".into(),
                mode: None,
                parents: false,
            }),
            BatchOperation::WriteFile {
                path: "/new/f".into(),
                data: b"f".to_vec(),
                mode: None,
                parents: false,
                expected_hash: None,
            },
            BatchOperation::Mkdir(MkdirRequest {
                path: "/exists".into(),
                mode: None,
                parents: false,
            }),
        ],
    };
    let e = expect_err(
        h.api.batch(&h.owner, &s.id, failing).await,
        Code::AlreadyExists,
        None,
    );
    assert!(e.message.contains("/exists"), "{e}");
    assert_eq!(
        paths(h, &s).await,
        vec!["/", "/exists"],
        "nothing of a failed batch is applied"
    );
    assert_eq!(generation(h, &s).await, before);
    let ok = BatchRequest {
        operations: vec![
            BatchOperation::Mkdir(MkdirRequest {
                path: "/new".into(),
                mode: None,
                parents: false,
            }),
            BatchOperation::WriteFile {
                path: "/new/f".into(),
                data: b"f".to_vec(),
                mode: None,
                parents: false,
                expected_hash: None,
            },
            BatchOperation::Rename(RenameRequest {
                from: "/exists".into(),
                to: "/new/e".into(),
                no_replace: false,
                exchange: false,
            }),
            BatchOperation::Symlink(SymlinkRequest {
                path: "/ln".into(),
                target: "new/f".into(),
            }),
        ],
    };
    let r = h.api.batch(&h.owner, &s.id, ok).await.expect("batch");
    assert_eq!(r.generation, before + 1, "a batch is one generation");
    assert_eq!(r.results.len(), 4);
    assert_eq!(
        r.results[0].entry.as_ref().map(|e| e.path.as_str()),
        Some("/new")
    );
    assert_eq!(r.results[1].entry.as_ref().map(|e| e.size), Some(1));
    assert!(r.results[2].entry.is_none());
    assert_eq!(
        paths(h, &s).await,
        vec!["/", "/ln", "/new", "/new/e", "/new/f"]
    );
    expect_err(
        h.api
            .batch(&h.owner, &s.id, BatchRequest { operations: vec![] })
            .await,
        Code::InvalidArgument,
        None,
    );
    let e = expect_err(
        h.api
            .batch(
                &h.owner,
                &s.id,
                BatchRequest {
                    operations: vec![BatchOperation::Unlink(PathRequest { path: "rel".into() })],
                },
            )
            .await,
        Code::InvalidArgument,
        None,
    );
    assert!(e.message.contains("operations[0]"), "{e}");
}

pub async fn check_path_validation<A: SessionApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    let long_component = format!("/{}", "n".repeat(256));
    let long_path = format!("/{}", vec!["p"; 2100].join("/"));
    for bad in [
        "",
        "relative",
        "/a/",
        "//a",
        "/a/./b",
        "/a/../b",
        "/a\0b",
        &long_component,
        &long_path,
    ] {
        let e = expect_err(
            h.api
                .write_file(
                    &h.owner,
                    &s.id,
                    WriteFileRequest {
                        path: bad.into(),
                        data: "x".into(),
                        mode: None,
                        parents: true,
                        expected_hash: None,
                    },
                )
                .await,
            Code::InvalidArgument,
            None,
        );
        assert!(!e.message.is_empty());
        expect_err(mkdir(h, &s, bad).await, Code::InvalidArgument, None);
        expect_err(read(h, &s, bad).await, Code::InvalidArgument, None);
    }
    assert_eq!(
        paths(h, &s).await,
        vec!["/"],
        "no bad path created anything"
    );
    let ok = format!("/{}", "n".repeat(255));
    put(h, &s, &ok, b"max").await;
}

pub async fn check_idempotent_replay<A: SessionApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    let key = format!("idem-{}", s.id);
    let ctx = h.owner.clone().with_idempotency_key(&key);
    let req = || WriteFileRequest {
        path: "/once".into(),
        data: "payload".into(),
        mode: None,
        parents: false,
        expected_hash: None,
    };
    let first = h.api.write_file(&ctx, &s.id, req()).await.expect("first");
    let gen_after_first = generation(h, &s).await;
    let again = h.api.write_file(&ctx, &s.id, req()).await.expect("retry");
    assert_eq!(again, first, "a retry replays the recorded reply");
    assert_eq!(
        generation(h, &s).await,
        gen_after_first,
        "a retry applies nothing"
    );
    let mk = h.owner.clone().with_idempotency_key(format!("{key}-mkdir"));
    let d1 = h
        .api
        .mkdir(
            &mk,
            &s.id,
            MkdirRequest {
                path: "/d".into(),
                mode: None,
                parents: false,
            },
        )
        .await
        .expect("mkdir");
    let d2 = h
        .api
        .mkdir(
            &mk,
            &s.id,
            MkdirRequest {
                path: "/d".into(),
                mode: None,
                parents: false,
            },
        )
        .await
        .expect("mkdir retry is not ALREADY_EXISTS");
    assert_eq!(d1, d2);
    let ck = h
        .owner
        .clone()
        .with_idempotency_key(format!("{key}-create"));
    let c1 = h
        .api
        .create_session(&ck, CreateSessionRequest::default())
        .await
        .expect("create");
    let c2 = h
        .api
        .create_session(&ck, CreateSessionRequest::default())
        .await
        .expect("create retry");
    assert_eq!(c1.id, c2.id, "a retried create returns the same session");
    let bad = h.owner.clone().with_idempotency_key("has space");
    expect_err(
        h.api.write_file(&bad, &s.id, req()).await,
        Code::InvalidArgument,
        None,
    );
}

/// Copies of one request sent at the same time (a client retry overtaking a slow original) apply
/// once: each copy answers the recorded reply or UNAVAILABLE, and a later retry the reply.
pub async fn check_concurrent_copies_apply_once<A: SessionApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    let before = generation(h, &s).await;
    let ctx = h
        .owner
        .clone()
        .with_idempotency_key(format!("copies-{}", s.id));
    let copy = || {
        h.api.write_file(
            &ctx,
            &s.id,
            WriteFileRequest {
                path: "/copied".into(),
                data: "same request, eight copies".into(),
                mode: None,
                parents: false,
                expected_hash: None,
            },
        )
    };
    let replies = futures::future::join_all((0..8).map(|_| copy())).await;
    let mut applied = None;
    for reply in replies {
        match reply {
            Ok(entry) => match &applied {
                None => applied = Some(entry),
                Some(first) => assert_eq!(&entry, first, "every copy answers the same reply"),
            },
            Err(e) => assert_eq!(
                e.code,
                Code::Unavailable,
                "a concurrent copy may only be asked to retry: {e}"
            ),
        }
    }
    assert_eq!(
        generation(h, &s).await,
        before + 1,
        "eight copies of one request changed the session once"
    );
    let retried = copy()
        .await
        .expect("a retry after the copies replays the reply");
    if let Some(first) = applied {
        assert_eq!(retried, first, "the retry answers what the copies answered");
    }
    let written = h
        .api
        .list_events(
            &h.owner,
            &s.id,
            ListEventsRequest {
                types: vec!["FILE_WRITTEN".into()],
                ..Default::default()
            },
        )
        .await
        .expect("events");
    assert_eq!(
        written.items.len(),
        1,
        "one FILE_WRITTEN event for one request"
    );
}

/// Concurrent writers of one session: each successful write is its own generation (the
/// server may commit several together), and a failing write takes nothing of the others with it.
pub async fn check_concurrent_writers_each_get_a_generation<A: SessionApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    put(h, &s, "/file", b"a file, not a directory").await;
    let guarded = put(h, &s, "/guarded", b"v1").await;
    let before = generation(h, &s).await;
    let write = |ctx: Ctx, path: String, expected_hash: Option<String>| {
        let id = s.id.clone();
        async move {
            let req = WriteFileRequest {
                path: path.clone(),
                data: format!("content of {path}").into_bytes().into(),
                mode: None,
                parents: true,
                expected_hash,
            };
            (path, h.api.write_file(&ctx, &id, req).await)
        }
    };
    let mut writes = Vec::new();
    for i in 0..24 {
        writes.push(write(h.owner.clone(), format!("/w/{i}"), None));
        if i % 6 == 0 {
            writes.push(write(h.owner.clone(), format!("/file/x{i}"), None));
            writes.push(write(
                h.owner.clone(),
                "/guarded".into(),
                Some("0".repeat(64)),
            ));
            let keyed = h
                .owner
                .clone()
                .with_idempotency_key(format!("writer-{i}-{}", s.id));
            writes.push(write(keyed, format!("/k/{i}"), None));
        }
    }
    let replies = futures::future::join_all(writes).await;
    let mut versions = Vec::new();
    for (path, reply) in &replies {
        let fails = path.starts_with("/file/") || path == "/guarded";
        match reply {
            Ok(entry) if !fails => versions.push(entry.version),
            Ok(entry) => panic!("{path} must fail, but was written: {entry:?}"),
            Err(e) if path == "/guarded" => assert_eq!(
                e.reason,
                Some(Reason::HashMismatch),
                "a stale expectedHash: {e}"
            ),
            Err(e) if fails => assert_eq!(
                e.reason,
                Some(Reason::NotADirectory),
                "a parent that is a file: {e}"
            ),
            Err(e) => panic!("{path} must be written: {e}"),
        }
    }
    let written = versions.len() as u64;
    assert_eq!(written, 28, "24 plain and 4 keyed writes");
    versions.sort_unstable();
    assert_eq!(
        versions,
        (before + 1..=before + written).collect::<Vec<_>>(),
        "each write has a generation of its own, with no gaps"
    );
    assert_eq!(generation(h, &s).await, before + written);
    for (path, _) in replies.iter().filter(|(p, _)| p.starts_with("/file/")) {
        assert!(read(h, &s, path).await.is_err(), "{path} left nothing");
    }
    assert_eq!(
        stat(h, &s, "/guarded").await.expect("stat").content_hash,
        guarded.content_hash,
        "a rejected conditional write left the file as it was"
    );
    assert_eq!(
        read(h, &s, "/w/7").await.expect("read"),
        b"content of /w/7",
        "a concurrent write's content"
    );
    let events = h
        .api
        .list_events(
            &h.owner,
            &s.id,
            ListEventsRequest {
                types: vec!["FILE_WRITTEN".into()],
                ..Default::default()
            },
        )
        .await
        .expect("events");
    let mut event_generations: Vec<u64> = events
        .items
        .iter()
        .map(|e| e.generation)
        .filter(|g| *g > before)
        .collect();
    event_generations.sort_unstable();
    assert_eq!(
        event_generations, versions,
        "one FILE_WRITTEN event per write, at that write's generation"
    );
    let (path, first) = replies
        .iter()
        .find(|(p, _)| p == "/k/6")
        .expect("a keyed write");
    let again = write(
        h.owner
            .clone()
            .with_idempotency_key(format!("writer-6-{}", s.id)),
        path.clone(),
        None,
    )
    .await
    .1
    .expect("a keyed write's retry");
    assert_eq!(
        Some(&again),
        first.as_ref().ok(),
        "a retry replays the reply its first copy got"
    );
    assert_eq!(
        generation(h, &s).await,
        before + written,
        "and changes nothing"
    );
}

pub async fn check_manifest_cas_extents<A: SessionApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    let f = put(h, &s, "/d/f", b"twelve bytes").await;
    put(h, &s, "/d/empty", b"").await;
    let list = |extents| {
        h.api.manifest(
            &h.owner,
            &s.id,
            ManifestRequest {
                path_prefix: Some("/d".into()),
                include_cas_extents: Some(extents),
                ..Default::default()
            },
        )
    };
    let with = list(true).await.expect("manifest");
    let by_path = |p: &str| {
        with.entries
            .items
            .iter()
            .find(|e| e.path == p)
            .cloned()
            .expect("listed")
    };
    assert_eq!(
        by_path("/d/f").cas_extents,
        Some(vec![CasExtent {
            offset: 0,
            length: 12,
            hash: f.content_hash.clone().expect("hash")
        }])
    );
    assert_eq!(
        by_path("/d/empty").cas_extents,
        Some(vec![]),
        "an empty file has no extents"
    );
    assert_eq!(by_path("/d").cas_extents, None, "directories have none");
    let without = list(false).await.expect("manifest");
    assert!(
        without
            .entries
            .items
            .iter()
            .all(|e| e.cas_extents.is_none()),
        "extents only when asked"
    );
}

pub async fn check_hard_links_share_the_file<A: SessionApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    let a = put(h, &s, "/a", b"one").await;
    let linked = h
        .api
        .link(
            &h.owner,
            &s.id,
            LinkRequest {
                existing_path: "/a".into(),
                new_path: "/d/b".into(),
            },
        )
        .await;
    expect_err(linked, Code::NotFound, None);
    mkdir(h, &s, "/d").await.expect("mkdir");
    let b = h
        .api
        .link(
            &h.owner,
            &s.id,
            LinkRequest {
                existing_path: "/a".into(),
                new_path: "/d/b".into(),
            },
        )
        .await
        .expect("link");
    assert_eq!(b.inode, a.inode, "two names, one file");
    assert_ne!(stat(h, &s, "/d").await.expect("dir").inode, a.inode);
    put(h, &s, "/d/b", b"written through b").await;
    assert_eq!(
        read(h, &s, "/a").await.expect("a"),
        b"written through b",
        "a write through one name shows through the other"
    );
    h.api
        .set_attributes(
            &h.owner,
            &s.id,
            SetAttributesRequest {
                path: "/a".into(),
                mode: Some(0o600),
                ..Default::default()
            },
        )
        .await
        .expect("chmod");
    assert_eq!(
        stat(h, &s, "/d/b").await.expect("b").mode,
        0o600,
        "attributes are the file's, not the name's"
    );
    h.api
        .set_xattr(
            &h.owner,
            &s.id,
            SetXattrRequest {
                path: "/d/b".into(),
                name: "user.k".into(),
                value: b"v".to_vec(),
                mode: XattrSetMode::Either,
            },
        )
        .await
        .expect("setxattr");
    let via_a = h
        .api
        .get_xattr(
            &h.owner,
            &s.id,
            XattrRequest {
                path: "/a".into(),
                name: "user.k".into(),
            },
        )
        .await
        .expect("getxattr");
    assert_eq!(via_a.value, b"v");
    h.api
        .rename(
            &h.owner,
            &s.id,
            RenameRequest {
                from: "/a".into(),
                to: "/d/b".into(),
                no_replace: false,
                exchange: false,
            },
        )
        .await
        .expect("rename onto another name of the same file");
    assert_eq!(
        stat(h, &s, "/a").await.expect("a stays").nlink,
        2,
        "renaming a name onto its sibling does nothing"
    );
    let c = h
        .api
        .link(
            &h.owner,
            &s.id,
            LinkRequest {
                existing_path: "/d/b".into(),
                new_path: "/c".into(),
            },
        )
        .await
        .expect("third name");
    assert_eq!(c.nlink, 3);
    assert_eq!(stat(h, &s, "/a").await.expect("a").nlink, 3);
    h.api
        .unlink(&h.owner, &s.id, PathRequest { path: "/a".into() })
        .await
        .expect("unlink");
    assert_eq!(
        stat(h, &s, "/c").await.expect("c").nlink,
        2,
        "removing a name drops the count"
    );
    h.api
        .rmdir(
            &h.owner,
            &s.id,
            RmdirRequest {
                path: "/d".into(),
                recursive: true,
            },
        )
        .await
        .expect("rm -r");
    let last = stat(h, &s, "/c").await.expect("c");
    assert_eq!(
        last.nlink, 1,
        "a name removed with its directory drops the count too"
    );
    assert_eq!(
        read(h, &s, "/c").await.expect("content survives"),
        b"written through b"
    );
    let fork = h
        .api
        .fork_session(&h.owner, &s.id, ForkSessionRequest::default())
        .await
        .expect("fork");
    h.api
        .link(
            &h.owner,
            &fork.id,
            LinkRequest {
                existing_path: "/c".into(),
                new_path: "/e".into(),
            },
        )
        .await
        .expect("link in fork");
    h.api
        .write_file(
            &h.owner,
            &fork.id,
            WriteFileRequest {
                path: "/e".into(),
                data: "fork".into(),
                mode: None,
                parents: false,
                expected_hash: None,
            },
        )
        .await
        .expect("write in fork");
    let in_fork = h
        .api
        .read_file(
            &h.owner,
            &fork.id,
            ReadFileRequest {
                path: "/c".into(),
                range: None,
            },
        )
        .await
        .expect("read");
    assert_eq!(&in_fork.data[..], b"fork", "links work across layers");
    assert_eq!(
        read(h, &s, "/c").await.expect("origin"),
        b"written through b",
        "and stay in their session"
    );
}
