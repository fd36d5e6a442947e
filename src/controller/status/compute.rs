//! (baseline, outcomes of its selected namespaces, previous status) -> the status it should have:
//! counts, conditions and a capped drift list. Pure, so it is tested without an API server.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use super::outcomes::{Outcome, truncate};
use crate::api::{DriftRecord, MAX_STATUS_DRIFT, SecurityBaseline, SecurityBaselineStatus};
use crate::engine::{InvalidSpec, TrustedName, unclaimed_message};

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
    /// The enforced generation's exemptions without end, by index in `spec.exemptions`.
    pub permanent_exemptions: Vec<i32>,
    /// Namespaces the baseline trusts by name that do not exist (names that can be squatted).
    pub unclaimed: &'a [TrustedName],
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
        permanent_exemptions: spec.permanent_exemptions.clone(),
        ..SecurityBaselineStatus::default()
    };
    // A baseline never valid enforces no generation, so nothing is counted against it.
    let tally = spec
        .enforcing
        .map(|enforcing| count_outcomes(&mut status, outcomes, enforcing, spec.admission));
    let conditions = [
        ready_condition(&status, tally.as_ref(), &spec, now),
        invalid_spec_condition(&spec, now),
        admission_condition(&spec, now),
        conflict_condition(tally.as_ref(), now),
        unclaimed_condition(&spec, now),
    ];
    status.conditions = conditions.into_iter().flatten().collect();
    keep_transition_times(&mut status.conditions, previous, generation);
    status
}

/// What counting the outcomes found beside the counts it put in the status.
struct Tally<'a> {
    /// The generation enforced, which the outcomes were counted against.
    enforcing: i64,
    /// Selected namespaces, then those not yet reconciled at the enforced generation.
    selected: usize,
    pending: usize,
    /// The admission pass at the enforced generation, if there was one.
    admission: Option<&'a Outcome>,
    /// Conflicts in the namespaces and the admission policies.
    conflicts: usize,
}

/// Step 1: counts the selected namespaces by state and their drift into `status`, the admission
/// policies counting like one more place that can drift.
fn count_outcomes<'a>(
    status: &mut SecurityBaselineStatus,
    outcomes: &[Option<Outcome>],
    enforcing: i64,
    admission: Option<&'a Outcome>,
) -> Tally<'a> {
    let selected = outcomes.len();
    let mut pending = 0;
    let mut drift_count = 0usize;
    let mut conflicts = 0;
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
    let admission = admission.filter(|o| o.generation == enforcing);
    drift_count += admission.map_or(0, |o| o.drift_count);
    conflicts += admission.map_or(0, |o| o.conflicts);
    counted.extend(admission.filter(|o| o.drift_count > 0));
    status.drift_count = count(drift_count);
    status.drift = fair_selection(&counted);
    Tally {
        enforcing,
        selected,
        pending,
        admission,
        conflicts,
    }
}

/// Step 2: Ready, from the counts in `status`: the first thing wrong, or why all is well. A
/// baseline never valid is not ready because its spec is invalid.
fn ready_condition(
    status: &SecurityBaselineStatus,
    tally: Option<&Tally<'_>>,
    spec: &Spec<'_>,
    now: Timestamp,
) -> Option<Condition> {
    let Some(tally) = tally else {
        let message = truncate(&spec.invalid?.to_string(), 1024);
        return Some(condition("Ready", false, "InvalidSpec", &message, now));
    };
    let (ready, reason, message) = readiness(status, tally, spec.invalid);
    Some(condition("Ready", ready, reason, &message, now))
}

/// Whether a baseline enforcing a generation is ready, the reason, and a message for people.
fn readiness(
    status: &SecurityBaselineStatus,
    tally: &Tally<'_>,
    invalid: Option<&InvalidSpec>,
) -> (bool, &'static str, String) {
    let (enforcing, selected, pending) = (tally.enforcing, tally.selected, tally.pending);
    let admission_drift = tally.admission.map_or(0, |o| o.drift_count);
    if let Some(invalid) = invalid {
        let message = format!("{invalid}; enforcing generation {enforcing}");
        (false, "InvalidSpec", truncate(&message, 1024))
    } else if pending > 0 {
        (
            false,
            "Progressing",
            format!("{pending} of {selected} selected namespaces not yet reconciled"),
        )
    } else if tally.admission.is_none() {
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
    }
}

/// Step 3: InvalidSpec, while the newest generation cannot be enforced.
fn invalid_spec_condition(spec: &Spec<'_>, now: Timestamp) -> Option<Condition> {
    let message = truncate(&spec.invalid?.to_string(), 1024);
    Some(condition("InvalidSpec", true, "InvalidSpec", &message, now))
}

/// Step 4: AdmissionPolicies, for a baseline enforcing a generation. "In place" only once an
/// admission pass for the enforced generation found them so: this condition must never claim a
/// protection the API server does not yet apply.
fn admission_condition(spec: &Spec<'_>, now: Timestamp) -> Option<Condition> {
    let enforcing = spec.enforcing?;
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
    Some(condition(
        "AdmissionPolicies",
        status,
        reason,
        &message,
        now,
    ))
}

/// Step 5: Conflict, from the full counts, not the capped list: a conflict must show however
/// many other records sort before it.
fn conflict_condition(tally: Option<&Tally<'_>>, now: Timestamp) -> Option<Condition> {
    if tally.is_none_or(|t| t.conflicts == 0) {
        return None;
    }
    Some(condition(
        "Conflict",
        true,
        "ObjectNotOwned",
        "same-named objects exist that zerotrust-operator did not create; see status.drift",
        now,
    ))
}

/// Step 5b: UnclaimedNamespaces, while the baseline trusts names no namespace holds: a warning
/// (Ready does not depend on it: a shipped example names `monitoring`, which many clusters lack),
/// bounded to a few names and a count.
fn unclaimed_condition(spec: &Spec<'_>, now: Timestamp) -> Option<Condition> {
    let message = unclaimed_message(spec.unclaimed)?;
    Some(condition(
        "UnclaimedNamespaces",
        true,
        "NamespaceNotFound",
        &truncate(&message, 1024),
        now,
    ))
}

/// Step 6: a condition keeps its transition time until its status flips: no churn on every pass.
fn keep_transition_times(
    conditions: &mut [Condition],
    previous: &SecurityBaselineStatus,
    generation: i64,
) {
    for c in conditions {
        if let Some(old) = previous.conditions.iter().find(|o| o.type_ == c.type_)
            && old.status == c.status
        {
            c.last_transition_time = old.last_transition_time.clone();
        }
        c.observed_generation = Some(generation);
    }
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
mod tests;
