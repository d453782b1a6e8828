//! The fault-injecting wrapper: errors before the call, dropped replies after it, latency, and
//! why idempotency keys matter when a reply is lost.

use std::time::Duration;

use aether_domain::{Code, Error, Principal, TenantId};
use aether_fakes::{Fault, FaultPlan, Faulty, fake_api};
use aether_ports::*;

fn ctx() -> Ctx {
    Ctx::new(Principal::full_access(
        TenantId::parse("11111111-1111-1111-1111-111111111111").expect("tenant"),
        "t",
    ))
}

fn write(path: &str) -> WriteFileRequest {
    WriteFileRequest {
        path: path.into(),
        data: "data".into(),
        mode: None,
        parents: false,
        expected_hash: None,
    }
}

/// A faulty fake with no faults planned yet, and one session in it.
async fn setup() -> (FaultPlan, Faulty<aether_fakes::FakeApi>, Session) {
    let plan = FaultPlan::default();
    let api = Faulty::new(fake_api(), plan.clone());
    let s = api
        .create_session(&ctx(), CreateSessionRequest::default())
        .await
        .expect("create");
    (plan, api, s)
}

#[tokio::test]
async fn a_dropped_reply_retried_with_its_key_applies_once() {
    let (plan, api, s) = setup().await;
    plan.set(
        "write_file",
        Fault {
            drop_reply: true,
            times: Some(1),
            ..Fault::default()
        },
    );
    let keyed = ctx().with_idempotency_key("retry-me");
    let lost = api
        .write_file(&keyed, &s.id, write("/f"))
        .await
        .unwrap_err();
    assert_eq!(lost.code, Code::Unavailable, "the caller saw a lost reply");
    assert_eq!(
        api.get_session(&ctx(), &s.id)
            .await
            .expect("get")
            .generation,
        1,
        "but the write happened"
    );
    let retried = api
        .write_file(&keyed, &s.id, write("/f"))
        .await
        .expect("retry");
    assert_eq!(
        retried.version, 1,
        "the retry replays the first write's reply"
    );
    assert_eq!(
        api.get_session(&ctx(), &s.id)
            .await
            .expect("get")
            .generation,
        1,
        "and applies nothing twice"
    );
}

#[tokio::test]
async fn without_a_key_a_retry_applies_again() {
    let (plan, api, s) = setup().await;
    plan.set(
        "write_file",
        Fault {
            drop_reply: true,
            times: Some(1),
            ..Fault::default()
        },
    );
    api.write_file(&ctx(), &s.id, write("/f"))
        .await
        .unwrap_err();
    api.write_file(&ctx(), &s.id, write("/f"))
        .await
        .expect("retry");
    assert_eq!(
        api.get_session(&ctx(), &s.id)
            .await
            .expect("get")
            .generation,
        2
    );
}

#[tokio::test]
async fn injected_errors_fail_before_the_call_and_run_out() {
    let (plan, api, s) = setup().await;
    plan.set(
        "mkdir",
        Fault {
            error: Some(Error::unavailable("injected")),
            times: Some(2),
            ..Fault::default()
        },
    );
    let c = ctx();
    let mk = || {
        api.mkdir(
            &c,
            &s.id,
            MkdirRequest {
                path: "/d".into(),
                mode: None,
                parents: false,
            },
        )
    };
    assert_eq!(mk().await.unwrap_err().message, "injected");
    assert_eq!(mk().await.unwrap_err().message, "injected");
    mk().await.expect("the third call goes through");
    assert_eq!(
        api.get_session(&ctx(), &s.id)
            .await
            .expect("get")
            .generation,
        1,
        "failed calls changed nothing"
    );
    plan.set(
        "*",
        Fault {
            error: Some(Error::unavailable("everything")),
            ..Fault::default()
        },
    );
    assert_eq!(
        api.get_session(&ctx(), &s.id).await.unwrap_err().message,
        "everything"
    );
    plan.clear();
    api.get_session(&ctx(), &s.id).await.expect("cleared");
}

#[tokio::test(start_paused = true)]
async fn latency_delays_the_call() {
    let (plan, api, s) = setup().await;
    plan.set(
        "get_session",
        Fault {
            latency: Some(Duration::from_secs(30)),
            ..Fault::default()
        },
    );
    let start = tokio::time::Instant::now();
    api.get_session(&ctx(), &s.id).await.expect("slow but fine");
    assert!(
        start.elapsed() >= Duration::from_secs(30),
        "virtual time advanced by the injected latency"
    );
}

#[tokio::test]
async fn a_cache_key_past_its_ttl_is_gone_and_its_version_continues() {
    let (api, time) = aether_fakes::fake_api_with_time();
    let s = api
        .create_session(&ctx(), CreateSessionRequest::default())
        .await
        .expect("create");
    let owner = ctx();
    let put = |key: &'static str, ttl: Option<u64>| {
        api.cache_put(
            &owner,
            &s.id,
            key,
            PutCacheRequest {
                value: b"v".to_vec(),
                ttl_seconds: ttl,
            },
        )
    };
    put("short", Some(10)).await.expect("put");
    put("long", Some(3600)).await.expect("put");
    put("forever", None).await.expect("put");
    time.advance(Duration::from_secs(9));
    assert!(
        api.cache_exists(&ctx(), &s.id, "short")
            .await
            .expect("exists")
            .exists
    );
    time.advance(Duration::from_secs(2));
    let gone = api.cache_get(&ctx(), &s.id, "short").await.unwrap_err();
    assert_eq!(gone.code, Code::NotFound);
    let keys = api
        .cache_keys(&ctx(), &s.id, ListCacheKeysRequest::default())
        .await
        .expect("keys");
    assert_eq!(keys.items, ["forever", "long"]);
    let stats = api.cache_stats(&ctx(), &s.id).await.expect("stats");
    assert_eq!(stats.key_count, 2);
    // Expired counts as absent for compare-and-set, and the version does not go back.
    let r = api
        .cache_compare_and_set(
            &ctx(),
            &s.id,
            "short",
            CompareAndSetRequest {
                expected_version: 0,
                value: b"again".to_vec(),
                ttl_seconds: None,
            },
        )
        .await
        .expect("cas");
    assert_eq!((r.swapped, r.current_version), (true, 2));
}

#[tokio::test]
async fn a_slow_bus_subscriber_never_blocks_publishers_and_learns_what_it_missed() {
    use futures::StreamExt;
    let api = fake_api();
    let s = api
        .create_session(&ctx(), CreateSessionRequest::default())
        .await
        .expect("create");
    let mut slow = api
        .subscribe(&ctx(), &s.id, SubscribeRequest::default())
        .await
        .expect("subscribe");
    let owner = ctx();
    let publish = |i: u32| {
        api.publish(
            &owner,
            &s.id,
            PublishRequest {
                topic: "load".into(),
                payload: i.to_string().into_bytes(),
                headers: Default::default(),
            },
        )
    };
    // Far more than a subscriber's buffer, without reading: every publish still completes.
    let all = tokio::time::timeout(Duration::from_secs(10), async {
        for i in 1..=1500 {
            publish(i).await.expect("publish");
        }
    })
    .await;
    assert!(all.is_ok(), "publishers waited for a slow subscriber");
    let mut missed = 0;
    let mut last = 0;
    while last < 1500 {
        match slow.next().await.expect("an item").expect("delivery") {
            BusDelivery::Missed { count } => missed += count,
            BusDelivery::Message(m) => {
                assert!(m.sequence > last, "in order");
                last = m.sequence;
            }
        }
    }
    assert!(missed >= 1500 - 1024, "told what it missed: {missed}");
    // Replay is bounded by the retention (1000 by default).
    let mut replay = api
        .subscribe(
            &ctx(),
            &s.id,
            SubscribeRequest {
                topics: vec![],
                scope: None,
                replay_limit: Some(10_000),
            },
        )
        .await
        .expect("subscribe");
    let first = match replay.next().await.expect("item").expect("delivery") {
        BusDelivery::Message(m) => m.sequence,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        first, 501,
        "the oldest retained of 1500 with a retention of 1000"
    );
}
