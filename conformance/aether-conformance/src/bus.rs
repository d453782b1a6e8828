//! Bus clauses: publish, subscribe by topic globs, replay of retained messages then live ones,
//! and bad input.

use std::time::Duration;

use futures::StreamExt;

use aether_ports::*;

use crate::harness::*;

const WAIT: Duration = Duration::from_secs(10);

async fn publish<A: AetherApi>(
    h: &Harness<A>,
    s: &Session,
    topic: &str,
    payload: &str,
) -> BusMessage {
    h.api
        .publish(
            &h.owner,
            &s.id,
            PublishRequest {
                topic: topic.into(),
                payload: payload.as_bytes().to_vec(),
                headers: [("run".to_owned(), "42".to_owned())].into(),
            },
        )
        .await
        .unwrap_or_else(|e| panic!("publish {topic}: {e}"))
}

async fn next_message(feed: &mut BusStream) -> BusMessage {
    match tokio::time::timeout(WAIT, feed.next()).await {
        Ok(Some(Ok(BusDelivery::Message(m)))) => m,
        other => panic!("expected a bus message, got {other:?}"),
    }
}

pub async fn check_bus_replays_then_delivers_live_by_glob<A: AetherApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    let first = publish(h, &s, "tests:unit", "u1").await;
    assert_eq!(first.sequence, 1);
    assert_eq!(first.published_by, h.owner.principal.name);
    publish(h, &s, "build:x", "b1").await;
    publish(h, &s, "tests:e2e", "e1").await;
    let mut feed = h
        .api
        .subscribe(
            &h.owner,
            &s.id,
            SubscribeRequest {
                topics: vec!["tests:*".into()],
                scope: None,
                replay_limit: Some(10),
            },
        )
        .await
        .expect("subscribe");
    let a = next_message(&mut feed).await;
    let b = next_message(&mut feed).await;
    assert_eq!(
        (
            a.topic.as_str(),
            a.payload.as_slice(),
            b.topic.as_str(),
            b.sequence
        ),
        ("tests:unit", &b"u1"[..], "tests:e2e", 3)
    );
    assert_eq!(a.headers.get("run").map(String::as_str), Some("42"));
    publish(h, &s, "build:y", "b2").await;
    publish(h, &s, "tests:new", "n1").await;
    let live = next_message(&mut feed).await;
    assert_eq!(
        (live.topic.as_str(), live.sequence),
        ("tests:new", 5),
        "build:y filtered out"
    );

    let mut last_only = h
        .api
        .subscribe(
            &h.owner,
            &s.id,
            SubscribeRequest {
                topics: vec!["build:*".into(), "tests:e2e".into()],
                scope: Some("SESSION_ONLY".into()),
                replay_limit: Some(2),
            },
        )
        .await
        .expect("subscribe");
    let x = next_message(&mut last_only).await;
    let y = next_message(&mut last_only).await;
    assert_eq!(
        (x.topic.as_str(), y.topic.as_str()),
        ("tests:e2e", "build:y"),
        "the last two matching"
    );
    let mut fresh = h
        .api
        .subscribe(&h.owner, &s.id, SubscribeRequest::default())
        .await
        .expect("subscribe to everything, no replay");
    publish(h, &s, "any", "z").await;
    assert_eq!(
        next_message(&mut fresh).await.topic,
        "any",
        "no replay by default"
    );
}

pub async fn check_bus_rejects_bad_input<A: AetherApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    let publish_raw = |topic: &str, payload: Vec<u8>| {
        h.api.publish(
            &h.owner,
            &s.id,
            PublishRequest {
                topic: topic.into(),
                payload,
                headers: Default::default(),
            },
        )
    };
    let e = expect_err(
        publish_raw("has space", vec![]).await,
        Code::InvalidArgument,
        None,
    );
    assert!(e.message.contains("topic"), "{e}");
    let e = expect_err(
        publish_raw("big", vec![0; (256 << 10) + 1]).await,
        Code::InvalidArgument,
        None,
    );
    assert!(e.message.contains("limit"), "{e}");
    // A stream is not Debug; only whether it opened matters here.
    let sub = |topics: Vec<&str>, scope: Option<&str>, replay: Option<u32>| {
        let req = SubscribeRequest {
            topics: topics.into_iter().map(str::to_owned).collect(),
            scope: scope.map(str::to_owned),
            replay_limit: replay,
        };
        let id = s.id.clone();
        async move {
            h.api
                .subscribe(&h.owner, &id, req)
                .await
                .map(|_| "a stream")
        }
    };
    let e = expect_err(
        sub(vec!["tests[0-9]"], None, None).await,
        Code::InvalidArgument,
        None,
    );
    assert!(e.message.contains("glob"), "{e}");
    let e = expect_err(
        sub(vec!["*"], Some("TENANT"), None).await,
        Code::InvalidArgument,
        None,
    );
    assert!(e.message.contains("SESSION_ONLY"), "{e}");
    expect_err(
        sub(vec!["*"], None, Some(1_000_000)).await,
        Code::InvalidArgument,
        None,
    );
    expect_err(
        h.api
            .publish(
                &h.stranger,
                &s.id,
                PublishRequest {
                    topic: "x".into(),
                    payload: vec![],
                    headers: Default::default(),
                },
            )
            .await,
        Code::NotFound,
        None,
    );
    if let Some(reader) = &h.reader {
        if let Err(e) = h
            .api
            .subscribe(reader, &s.id, SubscribeRequest::default())
            .await
        {
            panic!("a reader subscribes: {e}");
        }
        expect_err(
            h.api
                .publish(
                    reader,
                    &s.id,
                    PublishRequest {
                        topic: "x".into(),
                        payload: vec![],
                        headers: Default::default(),
                    },
                )
                .await,
            Code::PermissionDenied,
            None,
        );
    }
}
