//! (previous outcome, this pass's drift) -> what the pass means for one baseline in one namespace:
//! which repairs count, whether Audit drift changed, whether onboarding just completed. Pure, so
//! the bookkeeping is tested without an API server.

use super::status::Outcome;
use crate::engine::Drift;

/// What one reconcile pass amounts to for one baseline in one namespace.
#[derive(Debug, PartialEq)]
pub struct Verdict<'a> {
    /// What to record: the drift left after repair.
    pub outcome: Outcome,
    /// Repairs to count and report: drift repaired in a namespace that complied at some earlier
    /// pass, even if a finding the operator cannot repair (a tenant's widening policy, a
    /// conflict) is left beside it. A namespace being onboarded gets its objects created, which
    /// is not a repair.
    pub repaired: Vec<&'a Drift>,
    /// Drift left unrepaired (all of it in Audit mode) to report as Events, because it differs
    /// from what was last reported.
    pub reported: Vec<&'a Drift>,
    /// The namespace complies for the first time (onboarding completed); not again when it
    /// complies after later drift.
    pub first_compliant: bool,
}

/// Decides what a pass means. `drift` is this baseline's drift as the pass found it, `repairable`
/// tells which of it the pass repaired, and `first_touch` which repairs were merely the first
/// setting of a shared field (the default ServiceAccount's automount), which is onboarding.
pub fn verdict<'a>(
    namespace: &str,
    generation: i64,
    drift: &[&'a Drift],
    repairable: impl Fn(&Drift) -> bool,
    first_touch: impl Fn(&Drift) -> bool,
    previous: Option<&Outcome>,
) -> Verdict<'a> {
    let mut outcome = Outcome::new(
        generation,
        namespace,
        drift.iter().copied().filter(|d| !repairable(d)),
    );
    let onboarded_before = previous.is_some_and(|p| p.onboarded || p.drift_count == 0);
    outcome.onboarded = onboarded_before || outcome.drift_count == 0;
    let repaired = if onboarded_before {
        drift
            .iter()
            .copied()
            .filter(|d| repairable(d) && !first_touch(d))
            .collect()
    } else {
        Vec::new()
    };
    let reported = if outcome.drift_count > 0 && previous.map(|p| &p.drift) != Some(&outcome.drift)
    {
        drift.iter().copied().filter(|d| !repairable(d)).collect()
    } else {
        Vec::new()
    };
    let first_compliant = outcome.drift_count == 0 && !onboarded_before;
    Verdict {
        outcome,
        repaired,
        reported,
        first_compliant,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{DriftReason, Kind};

    fn drift(kind: Kind, reason: DriftReason) -> Drift {
        Drift {
            baseline: "b".to_string(),
            kind,
            name: "x".to_string(),
            reason,
        }
    }

    fn compliant() -> Outcome {
        Outcome {
            generation: 1,
            onboarded: true,
            ..Outcome::default()
        }
    }

    #[test]
    fn onboarding_creates_and_repairs_nothing() {
        let missing = drift(Kind::NetworkPolicy, DriftReason::Missing);
        let v = verdict("ns", 1, &[&missing], |_| true, |_| false, None);
        assert!(v.repaired.is_empty());
        assert!(v.first_compliant);
        assert_eq!(v.outcome, compliant());
    }

    #[test]
    fn drift_in_a_compliant_namespace_is_a_repair_except_a_first_touch() {
        let deleted = drift(Kind::NetworkPolicy, DriftReason::Missing);
        let token = drift(
            Kind::ServiceAccount,
            DriftReason::Weakened("automount".to_string()),
        );
        let first_touch = |d: &Drift| d.kind == Kind::ServiceAccount;
        let v = verdict(
            "ns",
            1,
            &[&deleted, &token],
            |_| true,
            first_touch,
            Some(&compliant()),
        );
        assert_eq!(v.repaired, vec![&deleted]);
        assert!(!v.first_compliant, "it complied before");
        assert!(v.reported.is_empty());
    }

    #[test]
    fn what_is_not_repaired_stays_in_the_outcome() {
        let conflict = drift(Kind::Role, DriftReason::Conflict);
        let v = verdict(
            "ns",
            2,
            &[&conflict],
            |_| false,
            |_| false,
            Some(&compliant()),
        );
        assert!(v.repaired.is_empty());
        assert_eq!((v.outcome.drift_count, v.outcome.conflicts), (1, 1));
        assert_eq!(v.outcome.generation, 2);
        assert!(!v.first_compliant);
    }

    #[test]
    fn unrepaired_drift_is_reported_once_until_it_changes() {
        let weakened = drift(
            Kind::Namespace,
            DriftReason::Weakened("baseline".to_string()),
        );
        let first = verdict(
            "ns",
            1,
            &[&weakened],
            |_| false,
            |_| false,
            Some(&compliant()),
        );
        assert_eq!(first.reported, vec![&weakened]);
        let again = verdict(
            "ns",
            1,
            &[&weakened],
            |_| false,
            |_| false,
            Some(&first.outcome),
        );
        assert!(again.reported.is_empty());
        let other = drift(Kind::Role, DriftReason::Missing);
        let changed = verdict(
            "ns",
            1,
            &[&weakened, &other],
            |_| false,
            |_| false,
            Some(&again.outcome),
        );
        assert_eq!(changed.reported.len(), 2);
        // Enforce reports only what it could not repair.
        let conflict = drift(Kind::Role, DriftReason::Conflict);
        let enforce = verdict(
            "ns",
            1,
            &[&other, &conflict],
            |d| d.reason != DriftReason::Conflict,
            |_| false,
            None,
        );
        assert_eq!(enforce.reported, vec![&conflict]);
    }

    #[test]
    fn a_repair_beside_a_finding_left_unrepaired_still_counts_once_onboarded() {
        let widened = drift(
            Kind::NetworkPolicy,
            DriftReason::Widened("allows ingress from anywhere".to_string()),
        );
        let relabelled = drift(Kind::NetworkPolicy, DriftReason::Relabelled);
        let repairable = |d: &Drift| d.reason == DriftReason::Relabelled;
        let onboarded = verdict("ns", 1, &[], |_| true, |_| false, None);
        let widening = verdict(
            "ns",
            1,
            &[&widened, &relabelled],
            repairable,
            |_| false,
            Some(&onboarded.outcome),
        );
        assert_eq!(widening.repaired, vec![&relabelled]);
        assert_eq!(widening.outcome.drift_count, 1, "the widening is left");
        // The widening is still there when our policy is taken over again: a repair all the same.
        let again = verdict(
            "ns",
            1,
            &[&widened, &relabelled],
            repairable,
            |_| false,
            Some(&widening.outcome),
        );
        assert_eq!(again.repaired, vec![&relabelled]);
        // Complying again after that is no second onboarding.
        let cleared = verdict("ns", 1, &[], |_| true, |_| false, Some(&again.outcome));
        assert!(!cleared.first_compliant);
        // A namespace that never complied is still being onboarded: nothing counts as a repair.
        let blocked = verdict("ns", 1, &[&widened], repairable, |_| false, None);
        let created = verdict(
            "ns",
            1,
            &[&widened, &relabelled],
            repairable,
            |_| false,
            Some(&blocked.outcome),
        );
        assert!(created.repaired.is_empty());
    }

    #[test]
    fn first_compliance_is_seen_once() {
        let missing = drift(Kind::Role, DriftReason::Missing);
        let blocked = verdict("ns", 1, &[&missing], |_| false, |_| false, None);
        assert!(!blocked.first_compliant);
        let now = verdict("ns", 1, &[], |_| false, |_| false, Some(&blocked.outcome));
        assert!(now.first_compliant);
        let later = verdict("ns", 1, &[], |_| false, |_| false, Some(&now.outcome));
        assert!(!later.first_compliant);
    }
}
