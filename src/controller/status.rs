//! Per-namespace outcomes, aggregated into each baseline's status: counts, conditions and a capped
//! drift list, written only when something changed, so status stays small and quiet.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use crate::api::{DriftRecord, MAX_STATUS_DRIFT, SecurityBaseline, SecurityBaselineStatus};
use crate::engine::InvalidSpec;

/// What the last reconcile of one namespace found for one baseline.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// The baseline generation this outcome was computed from.
    pub generation: i64,
    /// Drift left after repair (all drift in Audit mode), capped at [`MAX_STATUS_DRIFT`].
    pub drift: Vec<DriftRecord>,
    /// How many drift records there were before capping.
    pub drift_count: usize,
}

/// Outcomes by baseline and namespace, plus repairs not yet counted in a status.
#[derive(Default)]
pub struct Outcomes {
    inner: Mutex<OutcomesState>,
}

#[derive(Default)]
struct OutcomesState {
    by_baseline: HashMap<String, HashMap<String, Outcome>>,
    pending_repairs: HashMap<String, i64>,
    /// The last status written per baseline uid: the cache may not have caught up with it yet.
    written: HashMap<String, SecurityBaselineStatus>,
}

impl Outcomes {
    /// Records `outcome` for (baseline, namespace); returns the previous one.
    pub fn record(
        &self,
        baseline: &str,
        namespace: &str,
        outcome: Outcome,
        repairs: i64,
    ) -> Option<Outcome> {
        let mut state = self.inner.lock().expect("outcomes lock");
        if repairs > 0 {
            *state
                .pending_repairs
                .entry(baseline.to_string())
                .or_default() += repairs;
        }
        state
            .by_baseline
            .entry(baseline.to_string())
            .or_default()
            .insert(namespace.to_string(), outcome)
    }

    pub fn previous(&self, baseline: &str, namespace: &str) -> Option<Outcome> {
        let state = self.inner.lock().expect("outcomes lock");
        state.by_baseline.get(baseline)?.get(namespace).cloned()
    }

    /// Forgets a namespace for every baseline except those in `keep`.
    pub fn forget_namespace(&self, namespace: &str, keep: &[&str]) {
        let mut state = self.inner.lock().expect("outcomes lock");
        for (baseline, outcomes) in state.by_baseline.iter_mut() {
            if !keep.contains(&baseline.as_str()) {
                outcomes.remove(namespace);
            }
        }
    }

    pub fn forget_baseline(&self, baseline: &str, uid: Option<&str>) {
        let mut state = self.inner.lock().expect("outcomes lock");
        state.by_baseline.remove(baseline);
        state.pending_repairs.remove(baseline);
        if let Some(uid) = uid {
            state.written.remove(uid);
        }
    }

    /// Outcomes for `baseline` in the given namespaces, and the repairs not yet in its status.
    fn snapshot(&self, baseline: &str, namespaces: &[String]) -> (Vec<Option<Outcome>>, i64) {
        let state = self.inner.lock().expect("outcomes lock");
        let outcomes = state.by_baseline.get(baseline);
        let found = namespaces
            .iter()
            .map(|ns| outcomes.and_then(|o| o.get(ns)).cloned())
            .collect();
        (
            found,
            state.pending_repairs.get(baseline).copied().unwrap_or(0),
        )
    }

    /// Remembers a status as written, with the `repairs` it counted.
    pub fn status_written(
        &self,
        baseline: &SecurityBaseline,
        status: SecurityBaselineStatus,
        repairs: i64,
    ) {
        let mut state = self.inner.lock().expect("outcomes lock");
        let name = baseline.metadata.name.clone().unwrap_or_default();
        if let Some(pending) = state.pending_repairs.get_mut(&name) {
            *pending -= repairs;
        }
        let uid = baseline.metadata.uid.clone().unwrap_or_default();
        state.written.insert(uid, status);
    }

    /// The status `baseline` has: what we last wrote, else what the cache says.
    pub fn current_status(&self, baseline: &SecurityBaseline) -> SecurityBaselineStatus {
        let state = self.inner.lock().expect("outcomes lock");
        let uid = baseline.metadata.uid.clone().unwrap_or_default();
        state
            .written
            .get(&uid)
            .cloned()
            .or_else(|| baseline.status.clone())
            .unwrap_or_default()
    }
}

/// The status `baseline` should have, given the namespaces it selects (by name) or why it is invalid.
pub fn compute_status(
    baseline: &SecurityBaseline,
    selected: &[String],
    outcomes: &Outcomes,
    invalid: Option<&InvalidSpec>,
) -> (SecurityBaselineStatus, i64) {
    let name = baseline.metadata.name.as_deref().unwrap_or_default();
    let generation = baseline.metadata.generation.unwrap_or(0);
    let previous = outcomes.current_status(baseline);
    let (found, new_repairs) = outcomes.snapshot(name, selected);
    let mut status = SecurityBaselineStatus {
        observed_generation: Some(generation),
        repairs: previous.repairs + new_repairs,
        ..SecurityBaselineStatus::default()
    };
    let mut conditions = Vec::new();
    if let Some(invalid) = invalid {
        let message = truncate(&invalid.to_string(), 1024);
        conditions.push(condition("Ready", false, "InvalidSpec", &message));
        conditions.push(condition("InvalidSpec", true, "InvalidSpec", &message));
    } else {
        let mut pending = 0;
        let mut drift: Vec<DriftRecord> = Vec::new();
        let mut drift_count = 0usize;
        status.selected_namespaces = count(selected.len());
        for outcome in &found {
            match outcome {
                Some(o) if o.generation == generation => {
                    if o.drift_count == 0 {
                        status.compliant_namespaces += 1;
                    } else {
                        status.drifted_namespaces += 1;
                        drift_count += o.drift_count;
                        drift.extend(o.drift.iter().cloned());
                    }
                }
                _ => pending += 1,
            }
        }
        drift.sort();
        drift.truncate(MAX_STATUS_DRIFT);
        let conflicts = drift
            .iter()
            .filter(|d| d.reason.starts_with("Conflict"))
            .count();
        status.drift_count = count(drift_count);
        status.drift = drift;
        let (ready, reason, message) = if pending > 0 {
            (
                false,
                "Progressing",
                format!(
                    "{pending} of {} selected namespaces not yet reconciled",
                    selected.len()
                ),
            )
        } else if status.drifted_namespaces > 0 {
            (
                false,
                "Drifted",
                format!(
                    "{} of {} selected namespaces differ from the baseline",
                    status.drifted_namespaces,
                    selected.len()
                ),
            )
        } else {
            (
                true,
                "Compliant",
                format!(
                    "all {} selected namespaces match the baseline",
                    selected.len()
                ),
            )
        };
        conditions.push(condition("Ready", ready, reason, &message));
        if conflicts > 0 {
            conditions.push(condition(
                "Conflict",
                true,
                "ObjectNotOwned",
                "same-named objects exist that zerotrust-operator did not create; see status.drift",
            ));
        }
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
    (status, new_repairs)
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

fn condition(type_: &str, status: bool, reason: &str, message: &str) -> Condition {
    Condition {
        type_: type_.to_string(),
        status: if status { "True" } else { "False" }.to_string(),
        reason: reason.to_string(),
        message: message.to_string(),
        last_transition_time: Time(Timestamp::now()),
        observed_generation: None,
    }
}

/// The server-side-apply body for a status write.
pub fn status_patch(status: &SecurityBaselineStatus) -> serde_json::Value {
    json!({
        "apiVersion": "zerotrust.dev/v1alpha1",
        "kind": "SecurityBaseline",
        "status": status,
    })
}

/// Drift records for the status: namespace-qualified, sorted, capped.
pub fn drift_records<'a>(
    namespace: &str,
    drift: impl Iterator<Item = &'a crate::engine::Drift>,
) -> (Vec<DriftRecord>, usize) {
    let mut records: Vec<DriftRecord> = drift
        .map(|d| DriftRecord {
            namespace: namespace.to_string(),
            kind: d.kind.to_string(),
            name: d.name.clone(),
            reason: truncate(&d.reason.to_string(), 200),
        })
        .collect();
    let total = records.len();
    records.sort();
    records.truncate(MAX_STATUS_DRIFT);
    (records, total)
}
