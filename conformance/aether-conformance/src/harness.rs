//! The harness: who calls (an owner, a stranger from another tenant, a read-only reader), small
//! helpers, and the runner that executes every check and names each failure.

use std::panic::AssertUnwindSafe;

use futures::FutureExt;

use aether_ports::*;

/// An implementation under test and the principals the checks act as.
pub struct Harness<A> {
    pub api: A,
    /// Full access in tenant A.
    pub owner: Ctx,
    /// Another principal with full access in tenant A (decides the owner's approvals).
    pub reviewer: Ctx,
    /// Full access in tenant B: must never see tenant A's objects.
    pub stranger: Ctx,
    /// Tenant A with only read scopes; `None` where the transport cannot express scopes.
    pub reader: Option<Ctx>,
}

/// Names of checks that failed, with their messages.
#[derive(Debug, Default)]
pub struct Report {
    pub passed: Vec<&'static str>,
    pub failed: Vec<(&'static str, String)>,
}

impl Report {
    pub fn assert_all_passed(&self) {
        assert!(
            self.failed.is_empty(),
            "{} of {} conformance checks failed:\n{}",
            self.failed.len(),
            self.failed.len() + self.passed.len(),
            self.failed
                .iter()
                .map(|(n, m)| format!("- {n}: {m}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

macro_rules! checks {
    ($($name:ident),* $(,)?) => {
        /// Runs every check against `h`, catching each failure so the report names them all.
        pub async fn run_all<A: AetherApi>(h: &Harness<A>) -> Report {
            let mut report = Report::default();
            $(
                // Boxed: held inline, the largest check's state would sit on the test's stack.
                match AssertUnwindSafe(Box::pin(crate::$name(h))).catch_unwind().await {
                    Ok(()) => report.passed.push(stringify!($name)),
                    Err(panic) => {
                        let msg = panic
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_else(|| "panicked".to_owned());
                        report.failed.push((stringify!($name), msg));
                    }
                }
            )*
            report
        }
    };
}

checks!(
    check_create_empty_session,
    check_create_session_rejects_bad_input,
    check_get_unknown_session,
    check_tenant_isolation,
    check_list_sessions_paginates,
    check_list_sessions_filters,
    check_delete_session,
    check_archive_and_reactivate,
    check_fork_is_isolated,
    check_checkpoint_and_restore,
    check_partial_restore,
    check_restore_unknown_checkpoint,
    check_read_only_scope,
    check_write_read_round_trip,
    check_write_streamed_body,
    check_read_ranges,
    check_read_streamed,
    check_expected_hash,
    check_write_parents,
    check_write_onto_directory,
    check_patch_segments,
    check_patch_segments_of_a_large_file,
    check_mkdir_rules,
    check_rmdir_rules,
    check_delete_file_rules,
    check_rename_rules,
    check_rename_directory_moves_subtree,
    check_rename_exchange,
    check_link,
    check_hard_links_share_the_file,
    check_symlink,
    check_xattrs,
    check_set_attributes,
    check_mknod,
    check_manifest_listing,
    check_manifest_pagination,
    check_manifest_cas_extents,
    check_batch_is_atomic,
    check_path_validation,
    check_idempotent_replay,
    check_concurrent_copies_apply_once,
    check_concurrent_writers_each_get_a_generation,
    check_events_log,
    check_events_pagination_and_filters,
    check_follow_events,
    check_cache_values_and_versions,
    check_cache_compare_and_set,
    check_cache_concurrent_swaps,
    check_cache_ttl_metadata,
    check_cache_prefix_stats_and_deletion,
    check_cache_batches_are_atomic,
    check_cache_events_and_idempotency,
    check_cache_rejects_bad_input,
    check_approval_goes_stale_and_is_decided_once,
    check_commit_is_gated_by_a_current_approval,
    check_denied_approval_opens_nothing,
    check_annotations_anchor_to_content,
    check_review_requests_move_the_session,
    check_review_rejects_bad_input,
    check_archive_imports_become_revisions,
    check_promotion_is_gated_and_detects_conflicts,
    check_sources_reject_bad_input,
    check_bus_replays_then_delivers_live_by_glob,
    check_bus_rejects_bad_input,
    check_secrets_resolve_by_scope_and_list_names_only,
    check_secrets_reject_bad_input,
    check_health_reports_and_test_results,
    check_analytics_count_writes_reads_and_checkpoints,
    check_usage_and_cas_metrics,
);

/// A fresh empty session owned by `h.owner`, tagged so list checks can find their own.
pub(crate) async fn new_session<A: SessionApi>(h: &Harness<A>) -> Session {
    h.api
        .create_session(
            &h.owner,
            CreateSessionRequest {
                empty: Some(Empty {}),
                ..Default::default()
            },
        )
        .await
        .expect("create a session")
}

pub(crate) async fn put<A: SessionApi>(
    h: &Harness<A>,
    s: &Session,
    path: &str,
    data: &[u8],
) -> Entry {
    h.api
        .write_file(
            &h.owner,
            &s.id,
            WriteFileRequest {
                path: path.into(),
                data: data.to_vec().into(),
                mode: None,
                parents: true,
                expected_hash: None,
            },
        )
        .await
        .unwrap_or_else(|e| panic!("write {path}: {e}"))
}

pub(crate) async fn read<A: SessionApi>(
    h: &Harness<A>,
    s: &Session,
    path: &str,
) -> Result<Vec<u8>> {
    h.api
        .read_file(
            &h.owner,
            &s.id,
            ReadFileRequest {
                path: path.into(),
                range: None,
            },
        )
        .await
        .map(|c| c.data.to_vec())
}

pub(crate) async fn stat<A: SessionApi>(h: &Harness<A>, s: &Session, path: &str) -> Result<Entry> {
    let m = h
        .api
        .manifest(
            &h.owner,
            &s.id,
            ManifestRequest {
                path_prefix: Some(path.into()),
                recursive: Some(false),
                ..Default::default()
            },
        )
        .await?;
    Ok(m.entries
        .items
        .into_iter()
        .next()
        .expect("a manifest of an existing path starts with the path"))
}

/// Every path of the session, sorted.
pub(crate) async fn paths<A: SessionApi>(h: &Harness<A>, s: &Session) -> Vec<String> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let m = h
            .api
            .manifest(
                &h.owner,
                &s.id,
                ManifestRequest {
                    page: PageRequest {
                        page_size: Some(1000),
                        page_token: token,
                    },
                    ..Default::default()
                },
            )
            .await
            .expect("manifest");
        out.extend(m.entries.items.into_iter().map(|e| e.path));
        match m.entries.next_page_token {
            Some(t) => token = Some(t),
            None => return out,
        }
    }
}

pub(crate) async fn generation<A: SessionApi>(h: &Harness<A>, s: &Session) -> u64 {
    h.api
        .get_session(&h.owner, &s.id)
        .await
        .expect("get session")
        .generation
}

/// Asserts an error's code (and reason, when given).
#[track_caller]
pub(crate) fn expect_err<T: std::fmt::Debug>(
    r: Result<T>,
    code: Code,
    reason: Option<Reason>,
) -> ApiError {
    match r {
        Ok(v) => panic!("expected {}, got success: {v:?}", code.as_str()),
        Err(e) => {
            assert_eq!(e.code, code, "wrong code for error: {e}");
            if reason.is_some() {
                assert_eq!(e.reason, reason, "wrong reason for error: {e}");
            }
            assert!(!e.message.is_empty(), "error without message");
            e
        }
    }
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    aether_domain::tree::content_hash(data)
}

/// `mkdir` of `path` with the default mode and no parents.
pub(crate) async fn mkdir<A: SessionApi>(h: &Harness<A>, s: &Session, path: &str) -> Result<Entry> {
    h.api
        .mkdir(
            &h.owner,
            &s.id,
            MkdirRequest {
                path: path.into(),
                mode: None,
                parents: false,
            },
        )
        .await
}
