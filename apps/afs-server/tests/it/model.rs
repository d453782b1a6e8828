//! Property test: random sequences of file operations, forks, checkpoints and restores applied to
//! the SQLite-backed service and to a naive in-memory model give the same outcomes and tree.

use std::collections::BTreeMap;

use proptest::prelude::*;

use aether_ports::*;

use crate::support::*;

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Dir,
    File(Vec<u8>),
}

#[derive(Debug, Clone)]
enum Op {
    Write(String, Vec<u8>),
    Mkdir(String),
    Unlink(String),
    Rmdir(String, bool),
    Rename(String, String),
    Patch(String, u8, Vec<u8>),
    Checkpoint,
    Restore,
    Fork,
}

fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(vec!["a", "b", "c"]), 1..4)
        .prop_map(|parts| format!("/{}", parts.join("/")))
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (path(), prop::collection::vec(any::<u8>(), 0..8)).prop_map(|(p, d)| Op::Write(p, d)),
        3 => path().prop_map(Op::Mkdir),
        2 => path().prop_map(Op::Unlink),
        2 => (path(), any::<bool>()).prop_map(|(p, r)| Op::Rmdir(p, r)),
        3 => (path(), path()).prop_map(|(a, b)| Op::Rename(a, b)),
        2 => (path(), 0u8..12, prop::collection::vec(any::<u8>(), 1..4)).prop_map(|(p, o, d)| Op::Patch(p, o, d)),
        1 => Just(Op::Checkpoint),
        1 => Just(Op::Restore),
        1 => Just(Op::Fork),
    ]
}

type Tree = BTreeMap<String, Node>;

fn parent(p: &str) -> String {
    match p.rfind('/') {
        Some(0) | None => "/".into(),
        Some(i) => p[..i].into(),
    }
}

fn is_below(anc: &str, p: &str) -> bool {
    p.len() > anc.len() && p.starts_with(anc) && p.as_bytes()[anc.len()] == b'/'
}

fn parent_is_dir(t: &Tree, p: &str) -> bool {
    t.get(&parent(p)) == Some(&Node::Dir)
}

/// The naive model: returns whether the operation succeeds, applying it if so.
fn apply(t: &mut Tree, op: &Op) -> bool {
    match op {
        Op::Write(p, d) => {
            if !parent_is_dir(t, p) || t.get(p) == Some(&Node::Dir) {
                return false;
            }
            t.insert(p.clone(), Node::File(d.clone()));
            true
        }
        Op::Mkdir(p) => {
            if t.contains_key(p) || !parent_is_dir(t, p) {
                return false;
            }
            t.insert(p.clone(), Node::Dir);
            true
        }
        Op::Unlink(p) => match t.get(p) {
            Some(Node::File(_)) => {
                t.remove(p);
                true
            }
            _ => false,
        },
        Op::Rmdir(p, recursive) => {
            if t.get(p) != Some(&Node::Dir) {
                return false;
            }
            let below: Vec<String> = t.keys().filter(|k| is_below(p, k)).cloned().collect();
            if !below.is_empty() && !recursive {
                return false;
            }
            for k in below {
                t.remove(&k);
            }
            t.remove(p);
            true
        }
        Op::Rename(from, to) => {
            let Some(src) = t.get(from).cloned() else {
                return false;
            };
            if from == to {
                return true;
            }
            if is_below(from, to) || !parent_is_dir(t, to) {
                return false;
            }
            if let Some(dst) = t.get(to) {
                match (&src, dst) {
                    (Node::Dir, Node::File(_)) | (Node::File(_), Node::Dir) => return false,
                    (Node::Dir, Node::Dir) if t.keys().any(|k| is_below(to, k)) => return false,
                    _ => {}
                }
            }
            let moved: Vec<(String, Node)> = t
                .iter()
                .filter(|(k, _)| *k == from || is_below(from, k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            t.remove(to);
            for (k, _) in &moved {
                t.remove(k);
            }
            for (k, v) in moved {
                t.insert(format!("{to}{}", &k[from.len()..]), v);
            }
            true
        }
        Op::Patch(p, offset, data) => match t.get_mut(p) {
            Some(Node::File(content)) => {
                let end = *offset as usize + data.len();
                if content.len() < end {
                    content.resize(end, 0);
                }
                content[*offset as usize..end].copy_from_slice(data);
                true
            }
            _ => false,
        },
        Op::Checkpoint | Op::Restore | Op::Fork => unreachable!("handled by the driver"),
    }
}

async fn actual_tree<A: SessionApi>(api: &A, c: &Ctx, sid: &str) -> Tree {
    let m = api
        .manifest(
            c,
            sid,
            ManifestRequest {
                page: PageRequest {
                    page_size: Some(1000),
                    page_token: None,
                },
                ..Default::default()
            },
        )
        .await
        .expect("manifest");
    let mut out = Tree::new();
    for e in m.entries.items.into_iter().filter(|e| e.path != "/") {
        let node = if e.kind == aether_domain::EntryKind::Directory {
            Node::Dir
        } else {
            Node::File(
                api.read_file(
                    c,
                    sid,
                    ReadFileRequest {
                        path: e.path.clone(),
                        range: None,
                    },
                )
                .await
                .expect("read")
                .data
                .to_vec(),
            )
        };
        out.insert(e.path, node);
    }
    out
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("temp dir");
    let api = afs_server::build_service(&config(dir.path())).expect("service");
    let c = ctx(TENANT_A, "prop");
    let mut sid = api
        .create_session(&c, CreateSessionRequest::default())
        .await
        .expect("create")
        .id;
    let mut model = Tree::new();
    model.insert("/".into(), Node::Dir);
    let mut checkpoints: Vec<(String, Tree)> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let ok = match op {
            Op::Checkpoint => {
                let ck = api
                    .create_checkpoint(&c, &sid, CreateCheckpointRequest::default())
                    .await
                    .expect("checkpoint");
                checkpoints.push((ck.id, model.clone()));
                continue;
            }
            Op::Restore => {
                let Some((id, tree)) = checkpoints.last().cloned() else {
                    continue;
                };
                match api
                    .restore_checkpoint(
                        &c,
                        &sid,
                        RestoreRequest {
                            checkpoint_id: id,
                            paths: None,
                        },
                    )
                    .await
                {
                    Ok(_) => model = tree,
                    // After a fork, the checkpoint belongs to the origin session.
                    Err(e) => prop_assert_eq!(e.code, Code::NotFound),
                }
                continue;
            }
            Op::Fork => {
                sid = api
                    .fork_session(&c, &sid, ForkSessionRequest::default())
                    .await
                    .expect("fork")
                    .id;
                checkpoints.clear();
                continue;
            }
            Op::Write(p, d) => api
                .write_file(
                    &c,
                    &sid,
                    WriteFileRequest {
                        path: p.clone(),
                        data: d.clone().into(),
                        mode: None,
                        parents: false,
                        expected_hash: None,
                    },
                )
                .await
                .is_ok(),
            Op::Mkdir(p) => api
                .mkdir(
                    &c,
                    &sid,
                    MkdirRequest {
                        path: p.clone(),
                        mode: None,
                        parents: false,
                    },
                )
                .await
                .is_ok(),
            Op::Unlink(p) => api
                .unlink(&c, &sid, PathRequest { path: p.clone() })
                .await
                .is_ok(),
            Op::Rmdir(p, r) => api
                .rmdir(
                    &c,
                    &sid,
                    RmdirRequest {
                        path: p.clone(),
                        recursive: *r,
                    },
                )
                .await
                .is_ok(),
            Op::Rename(a, b) => api
                .rename(
                    &c,
                    &sid,
                    RenameRequest {
                        from: a.clone(),
                        to: b.clone(),
                        no_replace: false,
                        exchange: false,
                    },
                )
                .await
                .is_ok(),
            Op::Patch(p, o, d) => api
                .patch_segments(
                    &c,
                    &sid,
                    PatchSegmentsRequest {
                        path: p.clone(),
                        segments: vec![Segment {
                            offset: u64::from(*o),
                            data: d.clone(),
                        }],
                        truncate_to: None,
                        expected_hash: None,
                        create: false,
                    },
                )
                .await
                .is_ok(),
        };
        let want = apply(&mut model, op);
        prop_assert_eq!(ok, want, "step {} {:?}", i, op);
    }
    let mut want = model;
    want.remove("/");
    prop_assert_eq!(actual_tree(&api, &c, &sid).await, want);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn service_matches_naive_model(ops in prop::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(run(ops))?;
    }
}
