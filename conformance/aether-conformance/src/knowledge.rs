//! Knowledge-cache clauses: values and versions, compare-and-set, TTL metadata, listing by
//! prefix, atomic batches, deletion, events, idempotent retries, concurrent swaps, bad input.

use aether_ports::*;

use crate::harness::*;

fn put_req(value: &[u8]) -> PutCacheRequest {
    PutCacheRequest {
        value: value.to_vec(),
        ttl_seconds: None,
    }
}

async fn cache_put<A: AetherApi>(
    h: &Harness<A>,
    s: &Session,
    key: &str,
    value: &[u8],
) -> CacheMetadata {
    h.api
        .cache_put(&h.owner, &s.id, key, put_req(value))
        .await
        .unwrap_or_else(|e| panic!("put {key:?}: {e}"))
}

async fn all_keys<A: AetherApi>(h: &Harness<A>, s: &Session, prefix: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = h
            .api
            .cache_keys(
                &h.owner,
                &s.id,
                ListCacheKeysRequest {
                    prefix: prefix.map(str::to_owned),
                    page: PageRequest {
                        page_size: Some(7),
                        page_token: token,
                    },
                },
            )
            .await
            .expect("list keys");
        assert!(page.items.len() <= 7, "a page holds at most pageSize keys");
        out.extend(page.items);
        match page.next_page_token {
            Some(t) => token = Some(t),
            None => return out,
        }
    }
}

pub async fn check_cache_values_and_versions<A: AetherApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    let m1 = cache_put(h, &s, "plan", b"v1").await;
    assert_eq!((m1.key.as_str(), m1.version, m1.size), ("plan", 1, 2));
    let got = h.api.cache_get(&h.owner, &s.id, "plan").await.expect("get");
    assert_eq!((got.value.as_slice(), got.version), (&b"v1"[..], 1));
    let m2 = cache_put(h, &s, "plan", b"second").await;
    assert_eq!(m2.version, 2, "every write increments the version");
    assert_eq!(m2.created_at, m1.created_at, "created once");
    assert!(m2.updated_at >= m1.updated_at);
    let meta = h
        .api
        .cache_metadata(&h.owner, &s.id, "plan")
        .await
        .expect("metadata");
    assert_eq!((meta.size, meta.version, meta.ttl_seconds), (6, 2, None));
    assert!(
        h.api
            .cache_exists(&h.owner, &s.id, "plan")
            .await
            .expect("exists")
            .exists
    );
    h.api
        .cache_delete(&h.owner, &s.id, "plan")
        .await
        .expect("delete");
    assert!(
        !h.api
            .cache_exists(&h.owner, &s.id, "plan")
            .await
            .expect("exists")
            .exists
    );
    expect_err(
        h.api.cache_get(&h.owner, &s.id, "plan").await,
        Code::NotFound,
        None,
    );
    expect_err(
        h.api.cache_metadata(&h.owner, &s.id, "plan").await,
        Code::NotFound,
        None,
    );
    expect_err(
        h.api.cache_delete(&h.owner, &s.id, "plan").await,
        Code::NotFound,
        None,
    );
    let m3 = cache_put(h, &s, "plan", b"again").await;
    assert_eq!(
        m3.version, 3,
        "a re-created key never reuses an old version"
    );
    // Keys with slashes, non-ASCII, spaces, and the names of the routes beside {key}.
    let odd = [
        "a/b/c",
        "ключ é",
        "with space?&#",
        "keys",
        "stats",
        "batch-get",
        "%2F",
    ];
    for k in odd {
        cache_put(h, &s, k, k.as_bytes()).await;
        let got = h.api.cache_get(&h.owner, &s.id, k).await.expect("odd key");
        assert_eq!((got.key.as_str(), got.value.as_slice()), (k, k.as_bytes()));
    }
    let mut expected: Vec<String> = odd.iter().map(|k| k.to_string()).collect();
    expected.push("plan".into());
    expected.sort();
    assert_eq!(
        all_keys(h, &s, None).await,
        expected,
        "keys sorted by their bytes"
    );
}

pub async fn check_cache_compare_and_set<A: AetherApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    let cas = |expected: u64, value: &'static [u8]| {
        h.api.cache_compare_and_set(
            &h.owner,
            &s.id,
            "lock",
            CompareAndSetRequest {
                expected_version: expected,
                value: value.to_vec(),
                ttl_seconds: None,
            },
        )
    };
    expect_err(cas(4, b"x").await, Code::NotFound, None);
    let r = cas(0, b"mine").await.expect("create");
    assert_eq!((r.swapped, r.current_version), (true, 1));
    let r = cas(0, b"theirs")
        .await
        .expect("must-not-exist on a present key");
    assert_eq!((r.swapped, r.current_version), (false, 1));
    let r = cas(1, b"next").await.expect("swap");
    assert_eq!((r.swapped, r.current_version), (true, 2));
    let r = cas(1, b"stale").await.expect("stale swap");
    assert_eq!((r.swapped, r.current_version), (false, 2));
    let got = h.api.cache_get(&h.owner, &s.id, "lock").await.expect("get");
    assert_eq!(got.value, b"next", "a failed swap changes nothing");
    h.api
        .cache_delete(&h.owner, &s.id, "lock")
        .await
        .expect("delete");
    let r = cas(0, b"fresh").await.expect("absent again");
    assert_eq!((r.swapped, r.current_version), (true, 3));
}

pub async fn check_cache_concurrent_swaps<A: AetherApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    cache_put(h, &s, "counter", b"0").await;
    let worker = |_: usize| async {
        let mut swapped = 0u64;
        for _ in 0..10 {
            let cur = h
                .api
                .cache_get(&h.owner, &s.id, "counter")
                .await
                .expect("get");
            let n: u64 = std::str::from_utf8(&cur.value)
                .expect("utf8")
                .parse()
                .expect("number");
            let r = h
                .api
                .cache_compare_and_set(
                    &h.owner,
                    &s.id,
                    "counter",
                    CompareAndSetRequest {
                        expected_version: cur.version,
                        value: (n + 1).to_string().into_bytes(),
                        ttl_seconds: None,
                    },
                )
                .await
                .expect("cas");
            swapped += u64::from(r.swapped);
        }
        swapped
    };
    let counts = futures::future::join_all((0..16).map(worker)).await;
    let swaps: u64 = counts.iter().sum();
    let end = h
        .api
        .cache_get(&h.owner, &s.id, "counter")
        .await
        .expect("get");
    assert_eq!(
        std::str::from_utf8(&end.value).expect("utf8"),
        swaps.to_string(),
        "16 writers: the value equals the number of successful swaps"
    );
    assert_eq!(end.version, swaps + 1);
    assert!(
        swaps >= 10,
        "at least one worker's every round can win: {swaps}"
    );
}

pub async fn check_cache_ttl_metadata<A: AetherApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    let m = h
        .api
        .cache_put(
            &h.owner,
            &s.id,
            "temp",
            PutCacheRequest {
                value: b"t".to_vec(),
                ttl_seconds: Some(3600),
            },
        )
        .await
        .expect("put with ttl");
    assert_eq!(m.ttl_seconds, Some(3600));
    assert_eq!(
        m.expires_at.map(|t| t.nanos() - m.updated_at.nanos()),
        Some(3600 * 1_000_000_000),
        "expiresAt = updatedAt + ttlSeconds"
    );
    let m = cache_put(h, &s, "temp", b"kept").await;
    assert_eq!(
        (m.ttl_seconds, m.expires_at),
        (None, None),
        "a write without ttl keeps the key"
    );
}

pub async fn check_cache_prefix_stats_and_deletion<A: AetherApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    for i in 0..12 {
        cache_put(h, &s, &format!("tests/{i:02}"), &[b'x'; 10]).await;
    }
    for i in 0..5 {
        cache_put(h, &s, &format!("testsuite/{i}"), b"yy").await;
    }
    cache_put(h, &s, "other", b"z").await;
    let listed = all_keys(h, &s, Some("tests/")).await;
    let expected: Vec<String> = (0..12).map(|i| format!("tests/{i:02}")).collect();
    assert_eq!(listed, expected, "only the prefix, in order, across pages");
    let stats = h.api.cache_stats(&h.owner, &s.id).await.expect("stats");
    assert_eq!(
        (stats.key_count, stats.total_bytes),
        (18, 12 * 10 + 5 * 2 + 1)
    );
    let d = h
        .api
        .cache_delete_by_prefix(
            &h.owner,
            &s.id,
            DeleteByPrefixRequest {
                prefix: "tests/".into(),
            },
        )
        .await
        .expect("delete by prefix");
    assert_eq!(d.deleted, 12);
    assert_eq!(
        all_keys(h, &s, Some("test")).await.len(),
        5,
        "testsuite/ kept"
    );
    let stats = h.api.cache_stats(&h.owner, &s.id).await.expect("stats");
    assert_eq!((stats.key_count, stats.total_bytes), (6, 11));
    expect_err(
        h.api
            .cache_delete_by_prefix(
                &h.owner,
                &s.id,
                DeleteByPrefixRequest {
                    prefix: String::new(),
                },
            )
            .await,
        Code::InvalidArgument,
        None,
    );
}

pub async fn check_cache_batches_are_atomic<A: AetherApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    cache_put(h, &s, "b", b"old").await;
    let w = |key: &str, value: &[u8]| CacheWrite {
        key: key.to_owned(),
        value: value.to_vec(),
        ttl_seconds: None,
    };
    let set = h
        .api
        .cache_batch_set(
            &h.owner,
            &s.id,
            BatchSetRequest {
                entries: vec![w("a", b"1"), w("b", b"2"), w("c", b"3")],
            },
        )
        .await
        .expect("batch set");
    let versions: Vec<(String, u64)> = set
        .entries
        .iter()
        .map(|m| (m.key.clone(), m.version))
        .collect();
    assert_eq!(
        versions,
        [("a".into(), 1), ("b".into(), 2), ("c".into(), 1)]
    );
    let got = h
        .api
        .cache_batch_get(
            &h.owner,
            &s.id,
            CacheKeysRequest {
                keys: vec!["c".into(), "nope".into(), "a".into()],
            },
        )
        .await
        .expect("batch get");
    let keys: Vec<&str> = got.entries.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["c", "a"], "present keys in the order asked");
    assert_eq!(got.missing, ["nope"]);
    // One bad entry refuses the whole batch.
    expect_err(
        h.api
            .cache_batch_set(
                &h.owner,
                &s.id,
                BatchSetRequest {
                    entries: vec![w("a", b"changed"), w(&"k".repeat(513), b"x")],
                },
            )
            .await,
        Code::InvalidArgument,
        None,
    );
    let a = h.api.cache_get(&h.owner, &s.id, "a").await.expect("get");
    assert_eq!(
        (a.value.as_slice(), a.version),
        (&b"1"[..], 1),
        "nothing of a refused batch applied"
    );
    let d = h
        .api
        .cache_batch_delete(
            &h.owner,
            &s.id,
            CacheKeysRequest {
                keys: vec!["a".into(), "nope".into(), "c".into()],
            },
        )
        .await
        .expect("batch delete");
    assert_eq!(d.deleted, 2, "only present keys count");
    expect_err(
        h.api
            .cache_batch_get(&h.owner, &s.id, CacheKeysRequest { keys: vec![] })
            .await,
        Code::InvalidArgument,
        None,
    );
}

pub async fn check_cache_events_and_idempotency<A: AetherApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    let ctx = h.owner.clone().with_idempotency_key(format!("kv-{}", s.id));
    let first = h
        .api
        .cache_put(&ctx, &s.id, "once", put_req(b"1"))
        .await
        .expect("put");
    let again = h
        .api
        .cache_put(&ctx, &s.id, "once", put_req(b"1"))
        .await
        .expect("retry");
    assert_eq!(again, first, "a retry replays the recorded reply");
    let meta = h
        .api
        .cache_metadata(&h.owner, &s.id, "once")
        .await
        .expect("metadata");
    assert_eq!(meta.version, 1, "a retry applies nothing");
    h.api
        .cache_delete(&h.owner, &s.id, "once")
        .await
        .expect("delete");
    let events = h
        .api
        .list_events(
            &h.owner,
            &s.id,
            ListEventsRequest {
                types: vec!["CACHE_SET".into(), "CACHE_DELETED".into()],
                ..Default::default()
            },
        )
        .await
        .expect("events");
    let seen: Vec<(&str, Option<&str>, &str)> = events
        .items
        .iter()
        .map(|e| {
            (
                e.kind.as_str(),
                e.related_id.as_deref(),
                e.principal.as_str(),
            )
        })
        .collect();
    let who = h.owner.principal.name.as_str();
    assert_eq!(
        seen,
        [
            ("CACHE_SET", Some("once"), who),
            ("CACHE_DELETED", Some("once"), who)
        ]
    );
}

pub async fn check_cache_rejects_bad_input<A: AetherApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    let put = |key: String, req: PutCacheRequest| {
        let id = s.id.clone();
        async move { h.api.cache_put(&h.owner, &id, &key, req).await }
    };
    let e = expect_err(
        put(String::new(), put_req(b"x")).await,
        Code::InvalidArgument,
        None,
    );
    assert!(e.message.contains("empty"), "{e}");
    let e = expect_err(
        put("k".repeat(513), put_req(b"x")).await,
        Code::InvalidArgument,
        None,
    );
    assert!(e.message.contains("512"), "{e}");
    let big = vec![0u8; (1 << 20) + 1];
    let e = expect_err(
        put("big".into(), put_req(&big)).await,
        Code::InvalidArgument,
        None,
    );
    assert!(e.message.contains("limit"), "{e}");
    let e = expect_err(
        put(
            "ttl".into(),
            PutCacheRequest {
                value: b"x".to_vec(),
                ttl_seconds: Some(0),
            },
        )
        .await,
        Code::InvalidArgument,
        None,
    );
    assert!(e.message.contains("ttlSeconds"), "{e}");
    expect_err(
        h.api
            .cache_get(&h.owner, "sess_0000000000000000000000000000", "k")
            .await,
        Code::NotFound,
        None,
    );
    cache_put(h, &s, "mine", b"secret").await;
    expect_err(
        h.api.cache_get(&h.stranger, &s.id, "mine").await,
        Code::NotFound,
        None,
    );
    expect_err(
        h.api
            .cache_put(&h.stranger, &s.id, "mine", put_req(b"x"))
            .await,
        Code::NotFound,
        None,
    );
    if let Some(reader) = &h.reader {
        h.api
            .cache_get(reader, &s.id, "mine")
            .await
            .expect("a reader reads");
        expect_err(
            h.api.cache_put(reader, &s.id, "mine", put_req(b"x")).await,
            Code::PermissionDenied,
            None,
        );
    }
    let got = h.api.cache_get(&h.owner, &s.id, "mine").await.expect("get");
    assert_eq!(got.value, b"secret", "nothing refused changed the value");
}
