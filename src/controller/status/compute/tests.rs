//! Tests of `compute_status`: counts, the capped drift list, conditions and their transition
//! times, from outcomes made up here.

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
        permanent_exemptions: vec![],
        unclaimed: &[],
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
        permanent_exemptions: vec![],
        unclaimed: &[],
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
        permanent_exemptions: vec![],
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

#[test]
fn unclaimed_names_are_a_notice_that_leaves_ready_alone() {
    let unclaimed = [crate::engine::TrustedName {
        namespace: "monitoring".into(),
        trusted_by: "networkPolicy.allow[monitoring]".into(),
    }];
    let spec = Spec {
        unclaimed: &unclaimed,
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
    assert_eq!(ready(&s).0, "True");
    let c = condition_of(&s, "UnclaimedNamespaces");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("True", "NamespaceNotFound")
    );
    assert!(
        c.message
            .contains("monitoring (networkPolicy.allow[monitoring])"),
        "{}",
        c.message
    );
    // Once the namespace exists, the condition goes.
    let s = compute_status(&baseline(1), valid(1), &[compliant()], 0, &s, at(2));
    assert!(
        s.conditions
            .iter()
            .all(|c| c.type_ != "UnclaimedNamespaces")
    );
}
