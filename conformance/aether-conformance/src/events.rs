//! Activity log and changefeed clauses.

use std::time::Duration;

use futures::StreamExt;

use aether_ports::*;

use crate::harness::*;

pub async fn check_events_log<A: SessionApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    put(h, &s, "/a", b"1").await;
    h.api
        .rename(
            &h.owner,
            &s.id,
            RenameRequest {
                from: "/a".into(),
                to: "/b".into(),
                no_replace: false,
                exchange: false,
            },
        )
        .await
        .expect("rename");
    let ckpt = h
        .api
        .create_checkpoint(&h.owner, &s.id, CreateCheckpointRequest::default())
        .await
        .expect("ckpt");
    let page = h
        .api
        .list_events(&h.owner, &s.id, ListEventsRequest::default())
        .await
        .expect("events");
    let kinds: Vec<&str> = page.items.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        vec![
            "SESSION_CREATED",
            "FILE_WRITTEN",
            "RENAMED",
            "CHECKPOINT_CREATED"
        ]
    );
    let seqs: Vec<u64> = page.items.iter().map(|e| e.sequence).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4]);
    assert!(
        page.items
            .iter()
            .all(|e| e.principal == h.owner.principal.name && e.session_id == s.id)
    );
    let renamed = &page.items[2];
    assert_eq!(
        (renamed.path.as_deref(), renamed.to_path.as_deref()),
        (Some("/a"), Some("/b"))
    );
    assert_eq!(page.items[1].generation, 1);
    assert!(page.items.windows(2).all(|w| w[0].time <= w[1].time));
    assert_eq!(
        page.items[3].related_id.as_deref(),
        Some(ckpt.id.as_str()),
        "a checkpoint event names the checkpoint"
    );
    assert_eq!(page.items[3].path, None);
    expect_err(
        h.api
            .list_events(&h.stranger, &s.id, ListEventsRequest::default())
            .await,
        Code::NotFound,
        None,
    );
    let fork = h
        .api
        .fork_session(&h.owner, &s.id, ForkSessionRequest::default())
        .await
        .expect("fork");
    let origin_log = h
        .api
        .list_events(
            &h.owner,
            &s.id,
            ListEventsRequest {
                after_sequence: Some(4),
                ..Default::default()
            },
        )
        .await
        .expect("events");
    assert_eq!(origin_log.items[0].kind, "SESSION_FORKED");
    assert_eq!(
        origin_log.items[0].related_id.as_deref(),
        Some(fork.id.as_str())
    );
    let fork_log = h
        .api
        .list_events(&h.owner, &fork.id, ListEventsRequest::default())
        .await
        .expect("events");
    assert_eq!(fork_log.items[0].kind, "SESSION_CREATED");
    assert_eq!(
        fork_log.items[0].related_id.as_deref(),
        Some(s.id.as_str()),
        "a fork's log names its origin"
    );
}

pub async fn check_events_pagination_and_filters<A: SessionApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    for i in 0..5 {
        put(h, &s, &format!("/f{i}"), b"x").await;
    }
    let mut seen = Vec::new();
    let mut token = None;
    loop {
        let page = h
            .api
            .list_events(
                &h.owner,
                &s.id,
                ListEventsRequest {
                    page: PageRequest {
                        page_size: Some(4),
                        page_token: token,
                    },
                    ..Default::default()
                },
            )
            .await
            .expect("events");
        seen.extend(page.items.iter().map(|e| e.sequence));
        match page.next_page_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(seen, (1..=6).collect::<Vec<_>>());
    let after = h
        .api
        .list_events(
            &h.owner,
            &s.id,
            ListEventsRequest {
                after_sequence: Some(4),
                ..Default::default()
            },
        )
        .await
        .expect("after");
    assert_eq!(
        after.items.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        vec![5, 6]
    );
    let typed = h
        .api
        .list_events(
            &h.owner,
            &s.id,
            ListEventsRequest {
                types: vec!["SESSION_CREATED".into()],
                ..Default::default()
            },
        )
        .await
        .expect("types");
    assert_eq!(typed.items.len(), 1);
    let all = h
        .api
        .list_events(&h.owner, &s.id, ListEventsRequest::default())
        .await
        .expect("all")
        .items;
    let window = h
        .api
        .list_events(
            &h.owner,
            &s.id,
            ListEventsRequest {
                since: Some(all[2].time),
                until: Some(all[4].time),
                ..Default::default()
            },
        )
        .await
        .expect("window");
    assert_eq!(
        window.items.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        vec![3, 4],
        "since is inclusive, until exclusive"
    );
    expect_err(
        h.api
            .list_events(
                &h.owner,
                &s.id,
                ListEventsRequest {
                    since: Some(all[4].time),
                    until: Some(all[2].time),
                    ..Default::default()
                },
            )
            .await,
        Code::InvalidArgument,
        None,
    );
}

/// Liveness bound for the changefeed, not a performance target.
const FEED_DEADLINE: Duration = Duration::from_secs(20);

pub async fn check_follow_events<A: SessionApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    put(h, &s, "/before", b"1").await;
    let mut feed = h
        .api
        .follow_events(&h.owner, &s.id, 1)
        .await
        .expect("follow");
    let first = tokio::time::timeout(FEED_DEADLINE, feed.next())
        .await
        .expect("backlog arrives")
        .expect("stream open")
        .expect("event");
    assert_eq!((first.sequence, first.kind.as_str()), (2, "FILE_WRITTEN"));
    put(h, &s, "/after", b"2").await;
    let live = tokio::time::timeout(FEED_DEADLINE, feed.next())
        .await
        .expect("live event arrives")
        .expect("stream open")
        .expect("event");
    assert_eq!((live.sequence, live.path.as_deref()), (3, Some("/after")));
    expect_err(
        h.api.follow_events(&h.stranger, &s.id, 0).await.map(|_| ()),
        Code::NotFound,
        None,
    );
}
