//! Review rules (SPEC §2): approvals bound to the generation they were requested at, the gate
//! that gated actions pass, and what annotations and commit messages may hold.

use crate::error::{Error, Reason, Result};
use crate::session::Action;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApprovalStatus {
    Pending,
    Granted,
    Denied,
    /// The session was written after the request: what the reviewer saw is gone.
    Stale,
}

impl ApprovalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "PENDING",
            ApprovalStatus::Granted => "GRANTED",
            ApprovalStatus::Denied => "DENIED",
            ApprovalStatus::Stale => "STALE",
        }
    }

    pub fn parse(raw: &str) -> Result<Self> {
        match raw {
            "PENDING" => Ok(ApprovalStatus::Pending),
            "GRANTED" => Ok(ApprovalStatus::Granted),
            "DENIED" => Ok(ApprovalStatus::Denied),
            "STALE" => Ok(ApprovalStatus::Stale),
            _ => Err(Error::invalid(format!(
                "unknown approval status {raw:?}; expected one of PENDING, GRANTED, DENIED, STALE"
            ))),
        }
    }

    /// The status as seen at the session's `current` generation: a pending or granted
    /// approval requested at an earlier generation is stale. A denial stays a denial.
    pub fn at(self, requested_at: u64, current: u64) -> ApprovalStatus {
        match self {
            ApprovalStatus::Pending | ApprovalStatus::Granted if current > requested_at => {
                ApprovalStatus::Stale
            }
            s => s,
        }
    }
}

/// Whether a reviewer may decide an approval whose stored status is `stored`, requested at
/// generation `requested_at` by `requester`, now that the session is at `current`.
pub fn check_decidable(
    id: &str,
    stored: ApprovalStatus,
    requested_at: u64,
    current: u64,
    requester: &str,
    decider: &str,
) -> Result<()> {
    match stored.at(requested_at, current) {
        ApprovalStatus::Pending => {}
        ApprovalStatus::Stale => {
            return Err(Error::precondition(format!(
                "approval {id} is STALE: it was requested at generation {requested_at} and the \
                 session is at {current}; request a new approval"
            ))
            .with_reason(Reason::InvalidState));
        }
        decided => {
            return Err(Error::precondition(format!(
                "approval {id} was already decided: {}",
                decided.as_str()
            ))
            .with_reason(Reason::InvalidState));
        }
    }
    if requester == decider {
        return Err(Error::denied(format!(
            "approval {id} was requested by {requester}; another principal must decide it"
        )));
    }
    Ok(())
}

/// The gate: `action` passes if the policy does not list it, or if some approval is granted
/// and not stale (`granted_at`: generations at which granted approvals were requested).
pub fn check_gate(
    action: Action,
    policy: &[Action],
    granted_at: &[u64],
    current: u64,
    session: &str,
) -> Result<()> {
    if !policy.contains(&action) || granted_at.contains(&current) {
        return Ok(());
    }
    let why = if granted_at.is_empty() {
        "no approval has been granted".to_owned()
    } else {
        format!(
            "every granted approval is stale (the session is at generation {current}; request a new one)"
        )
    };
    Err(Error::precondition(format!(
        "{} of session {session} needs a granted approval: {why}",
        action.as_str()
    ))
    .with_reason(Reason::ApprovalRequired))
}

pub const MAX_TEXT_BYTES: usize = 16 * 1024;
pub const MAX_LABELS: usize = 32;

/// A required free-text field (commit message, annotation comment): 1–16 KiB.
pub fn check_text(field: &str, text: &str) -> Result<()> {
    if text.trim().is_empty() {
        return Err(Error::invalid(format!("{field} is empty")));
    }
    if text.len() > MAX_TEXT_BYTES {
        return Err(Error::invalid(format!(
            "{field} is {} bytes; the limit is {MAX_TEXT_BYTES}",
            text.len()
        )));
    }
    Ok(())
}

/// An approval reason such as `COMMIT_TO_MAIN`: 1–128 characters of `A-Z`, `0-9`, `_`, `.`, `-`.
pub fn check_reason(reason: &str) -> Result<()> {
    let ok = !reason.is_empty()
        && reason.len() <= 128
        && reason
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "reason {reason:?} must be 1-128 characters of A-Z, 0-9, _, . and - (such as COMMIT_TO_MAIN)"
        )))
    }
}

/// Annotation labels: at most 32, each 1–64 characters without control characters.
pub fn check_labels(labels: &[String]) -> Result<()> {
    if labels.len() > MAX_LABELS {
        return Err(Error::invalid(format!(
            "{} labels; the limit is {MAX_LABELS}",
            labels.len()
        )));
    }
    for l in labels {
        if l.is_empty() || l.chars().count() > 64 || l.chars().any(char::is_control) {
            return Err(Error::invalid(format!(
                "label {l:?} must be 1-64 characters without control characters"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ApprovalStatus::*;

    #[test]
    fn staleness() {
        let check = |s: ApprovalStatus, at, now, want| assert_eq!(s.at(at, now), want, "{s:?}");
        check(Pending, 3, 3, Pending);
        check(Pending, 3, 4, Stale);
        check(Granted, 3, 3, Granted);
        check(Granted, 3, 5, Stale);
        check(Denied, 3, 9, Denied);
    }

    #[test]
    fn deciding() {
        assert!(check_decidable("a", Pending, 2, 2, "alice", "bob").is_ok());
        let e = check_decidable("a", Pending, 2, 3, "alice", "bob").unwrap_err();
        assert!(e.message.contains("STALE"), "{e}");
        let e = check_decidable("a", Granted, 2, 2, "alice", "bob").unwrap_err();
        assert!(e.message.contains("already decided: GRANTED"), "{e}");
        let e = check_decidable("a", Pending, 2, 2, "alice", "alice").unwrap_err();
        assert_eq!(e.code, crate::Code::PermissionDenied);
    }

    #[test]
    fn gate() {
        let policy = [Action::Commit];
        assert!(
            check_gate(Action::Promote, &policy, &[], 5, "s").is_ok(),
            "not gated"
        );
        assert!(check_gate(Action::Commit, &policy, &[5], 5, "s").is_ok());
        let e = check_gate(Action::Commit, &policy, &[], 5, "s").unwrap_err();
        assert!(e.message.contains("no approval"), "{e}");
        let e = check_gate(Action::Commit, &policy, &[4], 5, "s").unwrap_err();
        assert!(e.message.contains("stale"), "{e}");
    }

    #[test]
    fn texts_reasons_labels() {
        assert!(check_text("message", "fix the bug").is_ok());
        assert!(check_text("message", "  ").is_err());
        assert!(check_text("message", &"x".repeat(MAX_TEXT_BYTES + 1)).is_err());
        assert!(check_reason("COMMIT_TO_MAIN").is_ok());
        assert!(check_reason("commit").is_err());
        assert!(check_reason("").is_err());
        assert!(check_labels(&["bug".into(), "needs-test".into()]).is_ok());
        assert!(check_labels(&[String::new()]).is_err());
        assert!(check_labels(&vec!["l".into(); 33]).is_err());
    }
}
