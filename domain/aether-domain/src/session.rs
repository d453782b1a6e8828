//! Session status state machine and approval-gated actions (SPEC §2).

use crate::error::{Error, Reason, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionStatus {
    Active,
    Archiving,
    Archived,
    Hydrating,
    PendingReview,
    Conflict,
    PendingApproval,
}

/// A status-changing request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Archive,
    Reactivate,
    RequestApproval,
    DecideApproval,
    RequestReview,
    FinishReview,
    DetectConflict,
}

impl SessionStatus {
    pub const ALL: [SessionStatus; 7] = [
        SessionStatus::Active,
        SessionStatus::Archiving,
        SessionStatus::Archived,
        SessionStatus::Hydrating,
        SessionStatus::PendingReview,
        SessionStatus::Conflict,
        SessionStatus::PendingApproval,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Active => "SESSION_STATUS_ACTIVE",
            SessionStatus::Archiving => "SESSION_STATUS_ARCHIVING",
            SessionStatus::Archived => "SESSION_STATUS_ARCHIVED",
            SessionStatus::Hydrating => "SESSION_STATUS_HYDRATING",
            SessionStatus::PendingReview => "SESSION_STATUS_PENDING_REVIEW",
            SessionStatus::Conflict => "SESSION_STATUS_CONFLICT",
            SessionStatus::PendingApproval => "SESSION_STATUS_PENDING_APPROVAL",
        }
    }

    pub fn parse(raw: &str) -> Result<Self> {
        SessionStatus::ALL
            .into_iter()
            .find(|s| s.as_str() == raw)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "unknown session status {raw:?}; expected one of {}",
                    SessionStatus::ALL.map(|s| s.as_str()).join(", ")
                ))
            })
    }

    /// Whether file mutations are accepted in this state. PENDING_APPROVAL accepts writes so
    /// that a write can make the pending approval stale, which is the whole point of binding an
    /// approval to a generation.
    pub fn accepts_writes(self) -> bool {
        matches!(
            self,
            SessionStatus::Active | SessionStatus::PendingApproval | SessionStatus::PendingReview
        )
    }

    pub fn check_writable(self) -> Result<()> {
        if self.accepts_writes() {
            Ok(())
        } else {
            Err(Error::precondition(format!(
                "session is {}; writes are accepted only while it is active",
                self.as_str()
            ))
            .with_reason(Reason::InvalidState))
        }
    }

    /// Applies a transition; archiving completes synchronously here, so ARCHIVING and HYDRATING
    /// are passed through within one step and never observed at rest.
    pub fn apply(self, t: Transition) -> Result<SessionStatus> {
        use SessionStatus::*;
        use Transition::*;
        let next = match (self, t) {
            (Active | PendingReview | PendingApproval | Conflict, Archive) => Some(Archived),
            (Archived, Reactivate) => Some(Active),
            // A request while one is pending (it went stale, or asks something else) or while
            // under review keeps or makes the session pending approval.
            (Active | PendingApproval | PendingReview, RequestApproval) => Some(PendingApproval),
            // A reviewer's decision ends a pending approval and a review alike.
            (PendingApproval | PendingReview, DecideApproval) => Some(Active),
            (Active, RequestReview) => Some(PendingReview),
            (PendingReview, FinishReview) => Some(Active),
            (Active | PendingApproval | PendingReview, DetectConflict) => Some(Conflict),
            _ => None,
        };
        next.ok_or_else(|| {
            Error::precondition(format!("cannot {t:?} a session that is {}", self.as_str()))
                .with_reason(Reason::InvalidState)
        })
    }
}

/// An action that a session's approval policy may gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    Commit,
    Promote,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Commit => "COMMIT",
            Action::Promote => "PROMOTE",
        }
    }

    pub fn parse(raw: &str) -> Result<Self> {
        match raw {
            "COMMIT" => Ok(Action::Commit),
            "PROMOTE" => Ok(Action::Promote),
            _ => Err(Error::invalid(format!(
                "unknown approval policy action {raw:?}; expected one of COMMIT, PROMOTE"
            ))),
        }
    }

    pub fn default_policy() -> Vec<Action> {
        vec![Action::Commit, Action::Promote]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn transition() -> impl Strategy<Value = Transition> {
        prop::sample::select(vec![
            Transition::Archive,
            Transition::Reactivate,
            Transition::RequestApproval,
            Transition::DecideApproval,
            Transition::RequestReview,
            Transition::FinishReview,
            Transition::DetectConflict,
        ])
    }

    #[test]
    fn table() {
        use SessionStatus::*;
        use Transition::*;
        let check = |from: SessionStatus, t, want: Option<SessionStatus>| {
            assert_eq!(from.apply(t).ok(), want, "{from:?} {t:?}");
        };
        check(Active, Archive, Some(Archived));
        check(Archived, Archive, None);
        check(Archived, Reactivate, Some(Active));
        check(Active, Reactivate, None);
        check(Active, RequestApproval, Some(PendingApproval));
        check(PendingApproval, RequestApproval, Some(PendingApproval));
        check(PendingReview, RequestApproval, Some(PendingApproval));
        check(Archived, RequestApproval, None);
        check(Active, DecideApproval, None);
        check(PendingReview, DecideApproval, Some(Active));
        check(PendingApproval, DecideApproval, Some(Active));
        check(Active, RequestReview, Some(PendingReview));
        check(Archived, DetectConflict, None);
        assert!(Archived.check_writable().is_err());
        assert!(Active.check_writable().is_ok());
    }

    proptest! {
        /// No sequence of transitions reaches a transient state at rest, and archived sessions
        /// only ever leave through reactivation.
        #[test]
        fn never_rests_in_transient_states(ts in prop::collection::vec(transition(), 0..40)) {
            let mut s = SessionStatus::Active;
            for t in ts {
                let before = s;
                if let Ok(next) = s.apply(t) {
                    s = next;
                    if before == SessionStatus::Archived {
                        prop_assert_eq!(t, Transition::Reactivate);
                    }
                }
                prop_assert!(!matches!(s, SessionStatus::Archiving | SessionStatus::Hydrating));
            }
        }
    }
}
