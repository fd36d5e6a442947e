//! What the last reconcile of each namespace found for each baseline, kept until the status writer
//! aggregates it, and the statuses last written.

use std::collections::HashMap;

use parking_lot::Mutex;

use crate::api::{DriftRecord, MAX_STATUS_DRIFT, SecurityBaseline, SecurityBaselineStatus};
use crate::engine::{Drift, DriftReason, ExemptControl};

/// What the last reconcile of one namespace found for one baseline.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    /// The baseline generation this outcome was computed from.
    pub generation: i64,
    /// Drift left after repair (all drift in Audit mode), most severe first, capped at
    /// [`MAX_STATUS_DRIFT`]; each with its severity ([`DriftReason::severity`]).
    pub drift: Vec<(u8, DriftRecord)>,
    /// How many drift records there were before capping.
    pub drift_count: usize,
    /// How many of them are conflicts (same-named objects we did not create).
    pub conflicts: usize,
    /// The controls exempt here, sorted; bounded by the baseline's own schema (6 controls and
    /// 32 roles per exemption, 32 exemptions).
    pub exempt: Vec<ExemptControl>,
    /// The namespace has complied under this baseline at some pass (after that pass's repairs):
    /// from then on drift put right is a repair, whatever else is left beside it.
    pub onboarded: bool,
}

impl Outcome {
    /// The outcome of `drift` left in `namespace` under `generation`.
    pub fn new<'a>(
        generation: i64,
        namespace: &str,
        drift: impl IntoIterator<Item = &'a Drift>,
    ) -> Outcome {
        let mut outcome = Outcome {
            generation,
            ..Outcome::default()
        };
        for d in drift {
            outcome.drift_count += 1;
            if d.reason == DriftReason::Conflict {
                outcome.conflicts += 1;
            }
            let record = DriftRecord {
                namespace: namespace.to_string(),
                kind: d.kind.to_string(),
                name: d.name.clone(),
                reason: truncate(&d.reason.to_string(), 200),
            };
            outcome.drift.push((d.reason.severity(), record));
        }
        outcome
            .drift
            .sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        outcome.drift.truncate(MAX_STATUS_DRIFT);
        outcome
    }
}

/// `text` cut to at most `max` bytes (on a character boundary), marked when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// Outcomes by baseline and namespace, plus repairs not yet counted in a status.
#[derive(Default)]
pub struct Outcomes {
    inner: Mutex<OutcomesState>,
}

#[derive(Default)]
struct OutcomesState {
    by_baseline: HashMap<String, HashMap<String, Outcome>>,
    /// The last admission pass's outcome per baseline (its cluster-scoped objects).
    cluster: HashMap<String, Outcome>,
    pending_repairs: HashMap<String, i64>,
    /// The last status written per baseline uid: the cache may not have caught up with it yet.
    written: HashMap<String, SecurityBaselineStatus>,
}

impl Outcomes {
    /// Records `outcome` for (baseline, namespace), with the repairs it made.
    pub fn record(&self, baseline: &str, namespace: &str, outcome: Outcome, repairs: i64) {
        let mut state = self.inner.lock();
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
            .insert(namespace.to_string(), outcome);
    }

    /// Records what the admission pass found for `baseline`'s cluster-scoped objects.
    pub fn record_cluster(&self, baseline: &str, outcome: Outcome) {
        self.inner
            .lock()
            .cluster
            .insert(baseline.to_string(), outcome);
    }

    /// What the last admission pass found for `baseline`.
    pub fn cluster(&self, baseline: &str) -> Option<Outcome> {
        self.inner.lock().cluster.get(baseline).cloned()
    }

    pub fn previous(&self, baseline: &str, namespace: &str) -> Option<Outcome> {
        let state = self.inner.lock();
        state.by_baseline.get(baseline)?.get(namespace).cloned()
    }

    /// Forgets a namespace for every baseline except those in `keep`.
    pub fn forget_namespace(&self, namespace: &str, keep: &[&str]) {
        let mut state = self.inner.lock();
        for (baseline, outcomes) in state.by_baseline.iter_mut() {
            if !keep.contains(&baseline.as_str()) {
                outcomes.remove(namespace);
            }
        }
    }

    pub fn forget_baseline(&self, baseline: &str, uid: Option<&str>) {
        let mut state = self.inner.lock();
        state.by_baseline.remove(baseline);
        state.cluster.remove(baseline);
        state.pending_repairs.remove(baseline);
        if let Some(uid) = uid {
            state.written.remove(uid);
        }
    }

    /// Outcomes for `baseline` in the given namespaces, and the repairs not yet in its status.
    pub fn snapshot(&self, baseline: &str, namespaces: &[String]) -> (Vec<Option<Outcome>>, i64) {
        let state = self.inner.lock();
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
        let mut state = self.inner.lock();
        let name = baseline.metadata.name.clone().unwrap_or_default();
        if let Some(pending) = state.pending_repairs.get_mut(&name) {
            *pending -= repairs;
        }
        let uid = baseline.metadata.uid.clone().unwrap_or_default();
        state.written.insert(uid, status);
    }

    /// The status `baseline` has: what we last wrote, else what the cache says.
    pub fn current_status(&self, baseline: &SecurityBaseline) -> SecurityBaselineStatus {
        let state = self.inner.lock();
        let uid = baseline.metadata.uid.clone().unwrap_or_default();
        state
            .written
            .get(&uid)
            .cloned()
            .or_else(|| baseline.status.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Kind;

    fn drift(name: &str, reason: DriftReason) -> Drift {
        Drift {
            baseline: "b".to_string(),
            kind: Kind::NetworkPolicy,
            name: name.to_string(),
            reason,
        }
    }

    #[test]
    fn an_outcome_counts_everything_and_lists_at_most_the_cap() {
        let many: Vec<Drift> = (0..MAX_STATUS_DRIFT + 5)
            .map(|i| drift(&format!("p{i:02}"), DriftReason::Missing))
            .chain([drift("zz", DriftReason::Conflict)])
            .collect();
        let outcome = Outcome::new(3, "ns", &many);
        assert_eq!(outcome.generation, 3);
        assert_eq!(outcome.drift_count, MAX_STATUS_DRIFT + 6);
        assert_eq!(outcome.conflicts, 1);
        assert_eq!(outcome.drift.len(), MAX_STATUS_DRIFT);
        assert_eq!(outcome.drift[0].1.name, "p00");
        assert_eq!(outcome.drift[0].1.namespace, "ns");
        let few = [
            drift("a", DriftReason::Stale),
            drift("b", DriftReason::Conflict),
        ];
        let ranked = Outcome::new(1, "ns", &few);
        assert_eq!(ranked.drift[0].1.name, "b", "most severe first");
    }

    #[test]
    fn truncation_respects_character_boundaries() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("ééé", 3), "é...");
    }

    #[test]
    fn repairs_are_pending_until_a_status_counts_them() {
        let outcomes = Outcomes::default();
        outcomes.record("b", "ns", Outcome::default(), 2);
        outcomes.record("b", "ns2", Outcome::default(), 1);
        let (found, pending) = outcomes.snapshot("b", &["ns".to_string(), "x".to_string()]);
        assert_eq!(pending, 3);
        assert_eq!(found, vec![Some(Outcome::default()), None]);
        let baseline = SecurityBaseline::new("b", Default::default());
        outcomes.status_written(&baseline, SecurityBaselineStatus::default(), 3);
        assert_eq!(outcomes.snapshot("b", &[]).1, 0);
        outcomes.forget_namespace("ns", &[]);
        assert_eq!(outcomes.previous("b", "ns"), None);
        assert!(outcomes.previous("b", "ns2").is_some());
        outcomes.forget_namespace("ns2", &["b"]);
        assert!(outcomes.previous("b", "ns2").is_some());
        outcomes.forget_baseline("b", None);
        assert_eq!(outcomes.previous("b", "ns2"), None);
    }
}
