//! The review workflow: which steps each state allows and which roles may take them.
//!
//! In: an incident's current state and kind, the caller's [`Role`] and the step
//! asked for. Out: the new state, or an error that names the current state and
//! the steps allowed from it ([`Error::InvalidTransition`]) or the role that was
//! refused ([`Error::Forbidden`]). Pure: the store applies the result and writes
//! the audit trail in the same transaction.
//!
//! ```text
//! new ──start-review──► under-review ──record-review──► action-taken ──close──► closed
//!                            ▲                                                    │
//!                            └──────────────────────── reopen ◄──────────────────┘
//! ```
//! `record-review` from `new` passes through `under-review` (both steps audited).
//! Sign-off (principal, governor) is allowed once action is taken, and is not a
//! state change.
use crate::error::Error;
use crate::model::{IncidentKind, Role, State};

/// A workflow step.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// new → under-review.
    StartReview,
    /// under-review → action-taken, recording the result and actions.
    RecordReview,
    /// action-taken → closed.
    Close,
    /// closed → under-review.
    Reopen,
}

impl Step {
    /// The step's name, as in the audit trail and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::StartReview => "start-review",
            Step::RecordReview => "record-review",
            Step::Close => "close",
            Step::Reopen => "reopen",
        }
    }

    fn endpoints(self) -> (State, State) {
        match self {
            Step::StartReview => (State::New, State::UnderReview),
            Step::RecordReview => (State::UnderReview, State::ActionTaken),
            Step::Close => (State::ActionTaken, State::Closed),
            Step::Reopen => (State::Closed, State::UnderReview),
        }
    }
}

const STEPS: [Step; 4] = [
    Step::StartReview,
    Step::RecordReview,
    Step::Close,
    Step::Reopen,
];

/// The steps allowed from a state.
pub fn allowed_from(state: State) -> Vec<Step> {
    STEPS
        .into_iter()
        .filter(|s| s.endpoints().0 == state)
        .collect()
}

/// The state after `step`, or why not.
pub fn transition(number: u64, current: State, step: Step) -> Result<State, Error> {
    let (from, to) = step.endpoints();
    if from == current {
        return Ok(to);
    }
    let allowed = allowed_from(current)
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>();
    Err(Error::InvalidTransition {
        number,
        current,
        requested: step.as_str(),
        allowed: if allowed.is_empty() {
            "none".into()
        } else {
            allowed.join(", ")
        },
    })
}

/// Whether `role` may move incidents of `kind` through the workflow.
///
/// Illegal and safeguarding incidents are the safeguarding lead's alone (they
/// involve a child's welfare and, for illegal content, a police referral); the
/// e-safety officer handles the rest. Technicians, principals and governors read
/// and sign off, they do not review.
pub fn may_review(role: Role, kind: IncidentKind) -> Result<(), Error> {
    let ok = match role {
        Role::SafeguardingLead => true,
        Role::EsafetyOfficer => !matches!(kind, IncidentKind::Illegal | IncidentKind::Safeguarding),
        Role::Technician | Role::Principal | Role::Governor => false,
    };
    if ok {
        Ok(())
    } else {
        let hint = match kind {
            IncidentKind::Illegal | IncidentKind::Safeguarding => {
                format!("{kind} incidents are reviewed by the safeguarding-lead")
            }
            _ => {
                format!("{kind} incidents are reviewed by the esafety-officer or safeguarding-lead")
            }
        };
        Err(Error::Forbidden {
            role,
            action: "review incidents",
            hint: Some(hint),
        })
    }
}

/// Whether `role` may sign off, and as whom: only principal and governor sign,
/// and only once the review is recorded (action-taken or closed).
pub fn may_sign(number: u64, role: Role, state: State) -> Result<(), Error> {
    if !matches!(role, Role::Principal | Role::Governor) {
        return Err(Error::Forbidden {
            role,
            action: "sign off",
            hint: Some("sign-off is by principal or governor".into()),
        });
    }
    if matches!(state, State::ActionTaken | State::Closed) {
        Ok(())
    } else {
        Err(Error::InvalidTransition {
            number,
            current: state,
            requested: "sign",
            allowed: allowed_from(state)
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}

/// Whether `role` may see the URL of an incident of `kind`.
pub fn may_see_url(role: Role, kind: IncidentKind) -> bool {
    kind != IncidentKind::Illegal || role == Role::SafeguardingLead
}

/// Whether `role` may export evidence or delete incidents: the safeguarding lead
/// only (evidence holds the illegal URL; deleting removes a safeguarding record).
pub fn may_handle_records(role: Role, action: &'static str) -> Result<(), Error> {
    if role == Role::SafeguardingLead {
        Ok(())
    } else {
        Err(Error::Forbidden {
            role,
            action,
            hint: Some("only the safeguarding-lead may".into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_table() {
        use State::*;
        let table = [
            (New, Step::StartReview, Some(UnderReview)),
            (New, Step::Close, None),
            (UnderReview, Step::RecordReview, Some(ActionTaken)),
            (UnderReview, Step::Reopen, None),
            (ActionTaken, Step::Close, Some(Closed)),
            (Closed, Step::Reopen, Some(UnderReview)),
            (Closed, Step::Close, None),
        ];
        for (from, step, want) in table {
            assert_eq!(transition(1, from, step).ok(), want, "{from} {step:?}");
        }
        let err = transition(7, State::New, Step::Close)
            .expect_err("refused")
            .to_string();
        assert_eq!(
            err,
            "incident 7 is new: cannot close; allowed from new: start-review"
        );
    }

    #[test]
    fn roles_table() {
        assert!(may_review(Role::EsafetyOfficer, IncidentKind::Inappropriate).is_ok());
        assert!(may_review(Role::EsafetyOfficer, IncidentKind::Illegal).is_err());
        assert!(may_review(Role::Technician, IncidentKind::Access).is_err());
        assert!(may_review(Role::SafeguardingLead, IncidentKind::Illegal).is_ok());
        assert!(may_sign(1, Role::Principal, State::ActionTaken).is_ok());
        assert!(may_sign(1, Role::Principal, State::New).is_err());
        assert!(may_sign(1, Role::SafeguardingLead, State::Closed).is_err());
        for role in Role::ALL {
            assert_eq!(
                may_see_url(*role, IncidentKind::Illegal),
                *role == Role::SafeguardingLead
            );
            assert!(may_see_url(*role, IncidentKind::Safeguarding));
        }
    }
}
