//! (baseline, outcomes of its selected namespaces, previous status) -> the status it should have:
//! counts, conditions and a capped drift list. Pure, so it is tested without an API server.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use super::outcomes::{Outcome, truncate};
use crate::api::{DriftRecord, MAX_STATUS_DRIFT, SecurityBaseline, SecurityBaselineStatus};
use crate::engine::InvalidSpec;

/// What the status says about a baseline's spec.
pub struct Spec<'a> {
    /// Why the newest generation cannot be enforced, if it cannot.
    pub invalid: Option<&'a InvalidSpec>,
    /// The generation enforced: the newest, the last valid one, or none.
    pub enforcing: Option<i64>,
    /// The last admission pass's outcome for the baseline's cluster-scoped policies.
    pub admission: Option<&'a Outcome>,
    /// Protections the baseline asks for that this API server cannot carry.
    pub unavailable: &'a [&'a str],
}

/// The status `baseline` should have. `outcomes` holds one entry per selected namespace (`None`
/// until it has been reconciled), `new_repairs` the repairs not yet counted in `previous`.
pub fn compute_status(
    baseline: &SecurityBaseline,
    spec: Spec<'_>,
    outcomes: &[Option<Outcome>],
    new_repairs: i64,
    previous: &SecurityBaselineStatus,
    now: Timestamp,
) -> SecurityBaselineStatus {
    let generation = baseline.metadata.generation.unwrap_or(0);
    let mut status = SecurityBaselineStatus {
        observed_generation: Some(generation),
        repairs: previous.repairs + new_repairs,
        ..SecurityBaselineStatus::default()
    };
    let mut conditions = Vec::new();
    let mut conflicts = 0;
    if let Some(enforcing) = spec.enforcing {
        let selected = outcomes.len();
        let mut pending = 0;
        let mut drift_count = 0usize;
        let mut counted = Vec::new();
        status.selected_namespaces = count(selected);
        for outcome in outcomes {
            match outcome {
                Some(o) if o.generation == enforcing => {
                    if o.drift_count == 0 && o.exempt.is_empty() {
                        status.compliant_namespaces += 1;
                    } else if o.drift_count == 0 {
                        // Neither compliant nor drift: a control is off here on purpose.
                        status.exempt_namespaces += 1;
                    } else {
                        status.drifted_namespaces += 1;
                        drift_count += o.drift_count;
                        conflicts += o.conflicts;
                        counted.push(o);
                    }
                }
                _ => pending += 1,
            }
        }
        // The admission policies count like one more place that can drift.
        let admission = spec.admission.filter(|o| o.generation == enforcing);
        let admission_drift = admission.map_or(0, |o| o.drift_count);
        drift_count += admission_drift;
        conflicts += admission.map_or(0, |o| o.conflicts);
        counted.extend(admission.filter(|o| o.drift_count > 0));
        status.drift_count = count(drift_count);
        status.drift = fair_selection(&counted);
        let (ready, reason, message) = if let Some(invalid) = spec.invalid {
            let message = format!("{invalid}; enforcing generation {enforcing}");
            (false, "InvalidSpec", truncate(&message, 1024))
        } else if pending > 0 {
            (
                false,
                "Progressing",
                format!("{pending} of {selected} selected namespaces not yet reconciled"),
            )
        } else if admission.is_none() {
            (
                false,
                "Progressing",
                "the admission policies are not yet in place".to_string(),
            )
        } else if admission_drift > 0 {
            (
                false,
                "Drifted",
                "the baseline's admission policies differ from what it renders".to_string(),
            )
        } else if status.drifted_namespaces > 0 {
            (
                false,
                "Drifted",
                format!(
                    "{} of {selected} selected namespaces differ from the baseline",
                    status.drifted_namespaces
                ),
            )
        } else if status.exempt_namespaces > 0 {
            (
                true,
                "CompliantWithExemptions",
                format!(
                    "{} of {selected} selected namespaces match the baseline; {} have controls exempt by the baseline's exemptions",
                    status.compliant_namespaces, status.exempt_namespaces
                ),
            )
        } else {
            (
                true,
                "Compliant",
                format!("all {selected} selected namespaces match the baseline"),
            )
        };
        conditions.push(condition("Ready", ready, reason, &message, now));
    } else if let Some(invalid) = spec.invalid {
        let message = truncate(&invalid.to_string(), 1024);
        conditions.push(condition("Ready", false, "InvalidSpec", &message, now));
    }
    if let Some(invalid) = spec.invalid {
        let message = truncate(&invalid.to_string(), 1024);
        conditions.push(condition("InvalidSpec", true, "InvalidSpec", &message, now));
    }
    if let Some(enforcing) = spec.enforcing {
        // "In place" only once an admission pass for the enforced generation found them so:
        // this condition must never claim a protection the API server does not yet apply.
        let admission = spec.admission.filter(|o| o.generation == enforcing);
        let (status, reason, message) = if spec.unavailable.is_empty() {
            match admission {
                None => (
                    false,
                    "Progressing",
                    "the admission policies are not yet in place".to_string(),
                ),
                Some(o) if o.drift_count > 0 => (
                    false,
                    "Drifted",
                    "the baseline's admission policies differ from what it renders".to_string(),
                ),
                Some(_) => (
                    true,
                    "Installed",
                    "every admission protection the baseline asks for is in place".to_string(),
                ),
            }
        } else {
            (
                false,
                "NotServed",
                format!(
                    "this API server does not serve what these protections need, so they are off (the operator's own writes still enforce the controls afterwards): {}",
                    spec.unavailable.join(", ")
                ),
            )
        };
        conditions.push(condition(
            "AdmissionPolicies",
            status,
            reason,
            &message,
            now,
        ));
    }
    // From the full counts, not the capped list: a conflict must show however many other
    // records sort before it.
    if conflicts > 0 {
        conditions.push(condition(
            "Conflict",
            true,
            "ObjectNotOwned",
            "same-named objects exist that zerotrust-operator did not create; see status.drift",
            now,
        ));
    }
    // A condition keeps its transition time until its status flips: no churn on every pass.
    for c in &mut conditions {
        if let Some(old) = previous.conditions.iter().find(|o| o.type_ == c.type_)
            && old.status == c.status
        {
            c.last_transition_time = old.last_transition_time.clone();
        }
        c.observed_generation = Some(generation);
    }
    status.conditions = conditions;
    status
}

/// At most [`MAX_STATUS_DRIFT`] records from the outcomes: the most severe first, and within a
/// severity spread over namespaces (each namespace's first record, then each one's second, ...),
/// so no namespace, however it is named or however much drift it has, crowds out the others.
fn fair_selection(outcomes: &[&Outcome]) -> Vec<DriftRecord> {
    let mut candidates: Vec<(std::cmp::Reverse<u8>, usize, &DriftRecord)> = Vec::new();
    for outcome in outcomes {
        let mut turn_in_severity = std::collections::HashMap::<u8, usize>::new();
        for (severity, record) in &outcome.drift {
            let turn = turn_in_severity.entry(*severity).or_default();
            candidates.push((std::cmp::Reverse(*severity), *turn, record));
            *turn += 1;
        }
    }
    candidates.sort();
    candidates
        .into_iter()
        .take(MAX_STATUS_DRIFT)
        .map(|(_, _, record)| record.clone())
        .collect()
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn condition(type_: &str, status: bool, reason: &str, message: &str, now: Timestamp) -> Condition {
    Condition {
        type_: type_.to_string(),
        status: if status { "True" } else { "False" }.to_string(),
        reason: reason.to_string(),
        message: message.to_string(),
        last_transition_time: Time(now),
        observed_generation: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Drift, DriftReason, FieldError, Kind};

    fn baseline(generation: i64) -> SecurityBaseline {
        let mut b = SecurityBaseline::new("b", Default::default());
        b.metadata.generation = Some(generation);
        b
    }

    fn drifted(namespace: &str, reasons: &[DriftReason]) -> Option<Outcome> {
        let drift: Vec<Drift> = reasons
            .iter()
            .enumerate()
            .map(|(i, reason)| Drift {
                baseline: "b".to_string(),
                kind: Kind::NetworkPolicy,
                name: format!("p{i}"),
                reason: reason.clone(),
            })
            .collect();
        Some(Outcome::new(1, namespace, &drift))
    }

    fn compliant() -> Option<Outcome> {
        Some(Outcome {
            generation: 1,
            ..Outcome::default()
        })
    }

    fn ready(status: &SecurityBaselineStatus) -> (&str, &str) {
        let c = condition_of(status, "Ready");
        (c.status.as_str(), c.reason.as_str())
    }

    fn condition_of<'a>(status: &'a SecurityBaselineStatus, type_: &str) -> &'a Condition {
        status.conditions.iter().find(|c| c.type_ == type_).unwrap()
    }

    /// A valid baseline at `generation` whose admission policies are in place.
    fn valid(generation: i64) -> Spec<'static> {
        let admission: &'static Outcome = Box::leak(Box::new(Outcome {
            generation,
            ..Outcome::default()
        }));
        Spec {
            invalid: None,
            enforcing: Some(generation),
            admission: Some(admission),
            unavailable: &[],
        }
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    #[test]
    fn counts_namespaces_by_state() {
        let prev = SecurityBaselineStatus::default();
        let all_good = compute_status(
            &baseline(1),
            valid(1),
            &[compliant(), compliant()],
            0,
            &prev,
            at(1),
        );
        assert_eq!(
            (all_good.selected_namespaces, all_good.compliant_namespaces),
            (2, 2)
        );
        assert_eq!(ready(&all_good), ("True", "Compliant"));

        let outcomes = [
            compliant(),
            drifted("a", &[DriftReason::Missing]),
            None,
            // Computed from an older generation: pending, not compliant.
            Some(Outcome::default()),
        ];
        let s = compute_status(&baseline(1), valid(1), &outcomes, 2, &prev, at(1));
        assert_eq!(
            (
                s.selected_namespaces,
                s.compliant_namespaces,
                s.drifted_namespaces,
                s.repairs
            ),
            (4, 1, 1, 2)
        );
        assert_eq!(ready(&s), ("False", "Progressing"));
        assert!(
            s.conditions
                .iter()
                .all(|c| c.observed_generation == Some(1))
        );
    }

    #[test]
    fn the_drift_list_is_capped_and_the_count_is_full() {
        let outcomes: Vec<_> = (0..30)
            .map(|i| {
                drifted(
                    &format!("ns-{i:02}"),
                    &[DriftReason::Missing, DriftReason::Missing],
                )
            })
            .collect();
        let s = compute_status(
            &baseline(1),
            valid(1),
            &outcomes,
            0,
            &Default::default(),
            at(1),
        );
        assert_eq!(s.drift.len(), MAX_STATUS_DRIFT);
        assert_eq!(s.drift_count, 60);
        assert_eq!(s.drifted_namespaces, 30);
        assert_eq!(ready(&s), ("False", "Drifted"));
    }

    #[test]
    fn a_conflict_shows_however_many_records_sort_before_it() {
        let mut outcomes: Vec<_> = (0..25)
            .map(|i| drifted(&format!("0-{i:02}"), &[DriftReason::Missing]))
            .collect();
        outcomes.push(drifted("zzz", &[DriftReason::Conflict]));
        let s = compute_status(
            &baseline(1),
            valid(1),
            &outcomes,
            0,
            &Default::default(),
            at(1),
        );
        assert!(s.drift.iter().all(|d| d.namespace != "zzz"));
        assert!(
            s.conditions
                .iter()
                .any(|c| c.type_ == "Conflict" && c.status == "True")
        );
    }

    #[test]
    fn the_listed_records_are_the_most_severe_spread_over_namespaces() {
        // One namespace named to sort first, with more drift than the list holds...
        let mut outcomes = vec![drifted(
            "0-noisy",
            &vec![DriftReason::Missing; MAX_STATUS_DRIFT + 5],
        )];
        // ...cannot push out the others, nor a severe record behind mild ones.
        for i in 0..5 {
            outcomes.push(drifted(&format!("team-{i}"), &[DriftReason::Missing]));
        }
        outcomes.push(drifted(
            "zz-quiet",
            &[
                DriftReason::Stale,
                DriftReason::Widened("allows ingress from anywhere".into()),
            ],
        ));
        let s = compute_status(
            &baseline(1),
            valid(1),
            &outcomes,
            0,
            &Default::default(),
            at(1),
        );
        assert_eq!(s.drift.len(), MAX_STATUS_DRIFT);
        for i in 0..5 {
            assert!(
                s.drift.iter().any(|d| d.namespace == format!("team-{i}")),
                "team-{i}"
            );
        }
        assert!(s.drift.iter().any(|d| d.reason.starts_with("Widened")));
        assert!(
            s.drift.iter().all(|d| d.reason != "Stale"),
            "the mildest is left out"
        );
        assert_eq!(s.drift_count, MAX_STATUS_DRIFT as i32 + 5 + 5 + 2);
    }

    #[test]
    fn transition_times_move_only_when_a_condition_flips() {
        let first = compute_status(
            &baseline(1),
            valid(1),
            &[compliant()],
            0,
            &Default::default(),
            at(10),
        );
        let again = compute_status(&baseline(1), valid(1), &[compliant()], 0, &first, at(20));
        assert_eq!(again, first);
        let flipped = compute_status(
            &baseline(1),
            valid(1),
            &[drifted("a", &[DriftReason::Missing])],
            0,
            &again,
            at(30),
        );
        let time = |s: &SecurityBaselineStatus| {
            s.conditions
                .iter()
                .find(|c| c.type_ == "Ready")
                .unwrap()
                .last_transition_time
                .clone()
        };
        assert_eq!(time(&flipped), Time(at(30)));
    }

    fn invalid() -> InvalidSpec {
        InvalidSpec {
            baseline: "b".to_string(),
            errors: vec![FieldError {
                path: "spec.x".to_string(),
                message: "bad".to_string(),
            }],
        }
    }

    #[test]
    fn an_invalid_baseline_never_valid_says_why_and_counts_nothing() {
        let invalid = invalid();
        let spec = Spec {
            invalid: Some(&invalid),
            enforcing: None,
            admission: None,
            unavailable: &[],
        };
        let s = compute_status(
            &baseline(2),
            spec,
            &[compliant()],
            0,
            &Default::default(),
            at(1),
        );
        assert_eq!(ready(&s), ("False", "InvalidSpec"));
        assert!(
            s.conditions
                .iter()
                .any(|c| c.type_ == "InvalidSpec" && c.message.contains("spec.x: bad"))
        );
        assert_eq!(s.selected_namespaces, 0);
    }

    #[test]
    fn an_invalid_edit_reports_the_generation_still_enforced() {
        let invalid = invalid();
        let spec = Spec {
            invalid: Some(&invalid),
            ..valid(1)
        };
        let s = compute_status(
            &baseline(2),
            spec,
            &[compliant(), drifted("a", &[DriftReason::Missing])],
            0,
            &Default::default(),
            at(1),
        );
        let c = s.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "InvalidSpec")
        );
        assert!(
            c.message.contains("spec.x: bad") && c.message.ends_with("enforcing generation 1"),
            "{}",
            c.message
        );
        assert_eq!(
            (
                s.selected_namespaces,
                s.compliant_namespaces,
                s.drifted_namespaces
            ),
            (2, 1, 1)
        );
        assert_eq!(s.observed_generation, Some(2));
    }

    #[test]
    fn admission_policies_count_in_the_status() {
        let missing = Drift {
            baseline: "b".to_string(),
            kind: Kind::ValidatingAdmissionPolicy,
            name: "zt-b-tamper".to_string(),
            reason: DriftReason::Conflict,
        };
        let admission = Outcome::new(1, "", &[missing]);
        let spec = Spec {
            admission: Some(&admission),
            ..valid(1)
        };
        let s = compute_status(
            &baseline(1),
            spec,
            &[compliant()],
            0,
            &Default::default(),
            at(1),
        );
        assert_eq!(ready(&s), ("False", "Drifted"));
        assert_eq!((s.drift_count, s.compliant_namespaces), (1, 1));
        assert!(s.conditions.iter().any(|c| c.type_ == "Conflict"));
        assert_eq!(s.drift[0].name, "zt-b-tamper");

        let not_yet = Spec {
            admission: None,
            ..valid(1)
        };
        let s = compute_status(
            &baseline(1),
            not_yet,
            &[compliant()],
            0,
            &Default::default(),
            at(1),
        );
        assert_eq!(ready(&s), ("False", "Progressing"));
        let c = condition_of(&s, "AdmissionPolicies");
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "Progressing"),
            "not claimed in place before an admission pass put them there"
        );

        let old_server = Spec {
            unavailable: &["pod-security-at-creation"],
            ..valid(1)
        };
        let s = compute_status(
            &baseline(1),
            old_server,
            &[compliant()],
            0,
            &Default::default(),
            at(1),
        );
        let c = condition_of(&s, "AdmissionPolicies");
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "NotServed")
        );
        assert!(c.message.contains("pod-security-at-creation"));
        assert_eq!(
            ready(&s),
            ("True", "Compliant"),
            "the rest is still enforced"
        );
    }
}
