//! Secret clauses: values round-trip, scopes resolve most-specific first, listings carry names
//! only, events never carry values, and bad input.

use aether_ports::*;

use crate::harness::*;

fn scope(s: Option<&str>) -> SecretScope {
    SecretScope {
        scope: s.map(str::to_owned),
    }
}

fn value(v: &str) -> PutSecretRequest {
    PutSecretRequest {
        value: v.as_bytes().to_vec(),
    }
}

pub async fn check_secrets_resolve_by_scope_and_list_names_only<A: AetherApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    let other = new_session(h).await;
    let put = |sid: String, name: &'static str, sc: Option<&'static str>, v: &'static str| async move {
        h.api
            .put_secret(&h.owner, &sid, name, scope(sc), value(v))
            .await
    };
    let i = put(s.id.clone(), "DB_PASSWORD", None, "hunter2")
        .await
        .expect("put");
    assert_eq!(
        (i.name.as_str(), i.scope.as_str(), i.version),
        ("DB_PASSWORD", "session", 1)
    );
    put(s.id.clone(), "API_TOKEN", Some("tenant"), "tenant-wide")
        .await
        .expect("tenant put");
    put(s.id.clone(), "DB_PASSWORD", Some("tenant"), "shadowed")
        .await
        .expect("tenant put");
    let got = h
        .api
        .get_secret(&h.owner, &s.id, "DB_PASSWORD", scope(None))
        .await
        .expect("get");
    assert_eq!(
        (got.value.as_slice(), got.scope.as_str()),
        (&b"hunter2"[..], "session"),
        "most specific first"
    );
    let tenant = h
        .api
        .get_secret(&h.owner, &s.id, "DB_PASSWORD", scope(Some("tenant")))
        .await
        .expect("get tenant");
    assert_eq!(tenant.value, b"shadowed");
    let shared = h
        .api
        .get_secret(&h.owner, &other.id, "API_TOKEN", scope(None))
        .await
        .expect("another session of the tenant sees tenant secrets");
    assert_eq!(shared.value, b"tenant-wide");
    expect_err(
        h.api
            .get_secret(&h.owner, &other.id, "DB_PASSWORD", scope(Some("session")))
            .await,
        Code::NotFound,
        None,
    );
    let v2 = put(s.id.clone(), "DB_PASSWORD", None, "hunter3")
        .await
        .expect("again");
    assert_eq!(v2.version, 2);
    let listed = h
        .api
        .list_secrets(&h.owner, &s.id, ListSecretsRequest::default())
        .await
        .expect("list");
    let names: Vec<(String, String)> = listed
        .items
        .iter()
        .map(|i| (i.name.clone(), i.scope.clone()))
        .collect();
    assert_eq!(
        names,
        [
            ("API_TOKEN".to_owned(), "tenant".to_owned()),
            ("DB_PASSWORD".to_owned(), "session".to_owned()),
            ("DB_PASSWORD".to_owned(), "tenant".to_owned()),
        ]
    );
    let shown = format!("{listed:?} {got:?}");
    assert!(!shown.contains("hunter"), "values never print: {shown}");
    let events = h
        .api
        .list_events(
            &h.owner,
            &s.id,
            ListEventsRequest {
                types: vec!["SECRET_SET".into(), "SECRET_DELETED".into()],
                ..Default::default()
            },
        )
        .await
        .expect("events");
    assert_eq!(events.items.len(), 4);
    assert_eq!(
        events.items[0].related_id.as_deref(),
        Some("session/DB_PASSWORD")
    );
    h.api
        .delete_secret(&h.owner, &s.id, "DB_PASSWORD", scope(None))
        .await
        .expect("delete the session's");
    let now = h
        .api
        .get_secret(&h.owner, &s.id, "DB_PASSWORD", scope(None))
        .await
        .expect("the tenant's shows through");
    assert_eq!(now.scope, "tenant");
    expect_err(
        h.api
            .delete_secret(&h.owner, &s.id, "DB_PASSWORD", scope(Some("session")))
            .await,
        Code::NotFound,
        None,
    );
    h.api
        .delete_secret(&h.owner, &s.id, "DB_PASSWORD", scope(Some("tenant")))
        .await
        .expect("delete");
    h.api
        .delete_secret(&h.owner, &s.id, "API_TOKEN", scope(Some("tenant")))
        .await
        .expect("delete");
}

pub async fn check_secrets_reject_bad_input<A: AetherApi>(h: &Harness<A>) {
    let s = new_session(h).await;
    let e = expect_err(
        h.api
            .put_secret(&h.owner, &s.id, "has space", scope(None), value("x"))
            .await,
        Code::InvalidArgument,
        None,
    );
    assert!(e.message.contains("secret name"), "{e}");
    let e = expect_err(
        h.api
            .put_secret(&h.owner, &s.id, "X", scope(Some("global")), value("x"))
            .await,
        Code::InvalidArgument,
        None,
    );
    assert!(e.message.contains("global"), "{e}");
    let big = PutSecretRequest {
        value: vec![b'x'; 64 * 1024 + 1],
    };
    let e = expect_err(
        h.api
            .put_secret(&h.owner, &s.id, "BIG", scope(None), big)
            .await,
        Code::InvalidArgument,
        None,
    );
    assert!(e.message.contains("limit"), "{e}");
    expect_err(
        h.api.get_secret(&h.owner, &s.id, "NOPE", scope(None)).await,
        Code::NotFound,
        None,
    );
    h.api
        .put_secret(&h.owner, &s.id, "MINE", scope(None), value("v"))
        .await
        .expect("put");
    expect_err(
        h.api
            .get_secret(&h.stranger, &s.id, "MINE", scope(None))
            .await,
        Code::NotFound,
        None,
    );
    if let Some(reader) = &h.reader {
        let names = h
            .api
            .list_secrets(reader, &s.id, ListSecretsRequest::default())
            .await
            .expect("a reader lists names");
        assert_eq!(names.items.len(), 1);
        expect_err(
            h.api.get_secret(reader, &s.id, "MINE", scope(None)).await,
            Code::PermissionDenied,
            None,
        );
    }
}
