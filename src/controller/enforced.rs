//! What each baseline enforces: its current generation when that is valid, else the last valid
//! generation (the one this process saw, else the one recorded in the baseline's status by the
//! operator before it), so an invalid or unreadable edit switches nothing off, across restarts and
//! leader changes. Nothing new is enforced for a baseline that has never been valid (it cannot
//! know what was meant), and nothing of it is removed either; the status says which generation is
//! enforced, and why not the newest.

use k8s_openapi::jiff::Timestamp;
use std::collections::HashMap;

use parking_lot::Mutex;

use super::decode::unreadable;
use crate::api::{LastValidSpec, MAX_RECORDED_SPEC_BYTES, SecurityBaseline};
use crate::engine::{InvalidSpec, ValidBaseline, validate};

/// What one baseline enforces now, and why its newest generation is not, if it is not.
pub struct Enforced {
    /// The generation enforced: the newest, or the last valid one.
    pub valid: Option<ValidBaseline>,
    /// Why the newest generation cannot be enforced.
    pub invalid: Option<InvalidSpec>,
}

impl Enforced {
    /// The generation being enforced, if any.
    pub fn generation(&self) -> Option<i64> {
        self.valid
            .as_ref()
            .map(|v| v.baseline.metadata.generation.unwrap_or(0))
    }
}

/// The last valid generation of each baseline, by uid (a baseline deleted and created again under
/// the same name starts afresh).
#[derive(Default)]
pub struct LastValid(Mutex<HashMap<String, ValidBaseline>>);

impl LastValid {
    /// What `baseline` enforces, remembering it when it is valid.
    pub fn enforced(&self, baseline: &SecurityBaseline) -> Enforced {
        let uid = baseline.metadata.uid.clone().unwrap_or_default();
        // A stand-in for a baseline that does not decode is invalid, whatever its empty spec says.
        let checked = match unreadable(baseline) {
            Some(error) => Err(error),
            None => validate(baseline, Timestamp::now().as_second()),
        };
        match checked {
            Ok(valid) => {
                self.0.lock().insert(uid, valid.clone());
                Enforced {
                    valid: Some(valid),
                    invalid: None,
                }
            }
            Err(invalid) => {
                let mut last = self.0.lock().get(&uid).cloned();
                if last.is_none() {
                    last = recorded(baseline);
                    if let Some(found) = &last {
                        self.0.lock().insert(uid, found.clone());
                    }
                }
                // A deletion in progress is the newest word, whatever the spec says.
                if let Some(last) = last.as_mut() {
                    last.baseline.metadata.deletion_timestamp =
                        baseline.metadata.deletion_timestamp.clone();
                }
                Enforced {
                    valid: last,
                    invalid: Some(invalid),
                }
            }
        }
    }

    /// Forgets baselines whose uid is not in `current`.
    pub fn retain(&self, current: &[String]) {
        self.0.lock().retain(|uid, _| current.contains(uid));
    }
}

/// The last valid generation the operator recorded in `baseline`'s status, validated again (the
/// status is written by the operator only, but what it holds must still be a valid spec, older
/// than the stored one).
fn recorded(baseline: &SecurityBaseline) -> Option<ValidBaseline> {
    let last = baseline.status.as_ref()?.last_valid.as_ref()?;
    if last.generation > baseline.metadata.generation.unwrap_or(0) {
        return None;
    }
    let spec = serde_json::from_value(last.spec.clone()).ok()?;
    let mut then = SecurityBaseline::new("", spec);
    then.metadata = baseline.metadata.clone();
    then.metadata.generation = Some(last.generation);
    // A horizon only moves on: what was valid when recorded is valid now, unless the rules changed.
    validate(&then, Timestamp::now().as_second()).ok()
}

/// What the status records of `enforced`: its generation and spec, or nothing when too large to
/// record (the process still enforces it; a restart then holds what exists, deleting nothing).
pub fn record(enforced: &ValidBaseline) -> Option<LastValidSpec> {
    let spec = serde_json::to_value(&enforced.baseline.spec).ok()?;
    let size = serde_json::to_vec(&spec)
        .map(|b| b.len())
        .unwrap_or(usize::MAX);
    (size <= MAX_RECORDED_SPEC_BYTES).then(|| LastValidSpec {
        generation: enforced.baseline.metadata.generation.unwrap_or(0),
        spec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::parse_baselines;

    fn stored(generation: i64, spec: &str) -> SecurityBaseline {
        let text = format!(
            "apiVersion: zerotrust.dev/v1alpha1\nkind: SecurityBaseline\nmetadata: {{name: b}}\nspec: {spec}\n"
        );
        let mut b = parse_baselines(&text).unwrap().remove(0);
        b.metadata.uid = Some("u1".to_string());
        b.metadata.generation = Some(generation);
        b
    }

    const VALID: &str = "{networkPolicy: {defaultDeny: [Ingress]}}";
    const INVALID: &str = "{namespaceSelector: {matchExpressions: [{key: a, operator: Has}]}, networkPolicy: {defaultDeny: [Egress]}}";

    #[test]
    fn an_invalid_edit_keeps_the_last_valid_generation() {
        let last = LastValid::default();
        let first = last.enforced(&stored(1, VALID));
        assert_eq!(
            (first.generation(), first.invalid.is_none()),
            (Some(1), true)
        );
        let edited = last.enforced(&stored(2, INVALID));
        assert_eq!(
            edited.generation(),
            Some(1),
            "generation 1 is still enforced"
        );
        let why = edited.invalid.expect("generation 2 is invalid").to_string();
        assert!(
            why.contains("spec.namespaceSelector.matchExpressions[0].operator"),
            "{why}"
        );
        let fixed = last.enforced(&stored(3, VALID));
        assert_eq!(
            (fixed.generation(), fixed.invalid.is_none()),
            (Some(3), true)
        );
    }

    #[test]
    fn nothing_is_enforced_for_a_baseline_never_seen_valid() {
        let last = LastValid::default();
        let e = last.enforced(&stored(5, INVALID));
        assert!(e.valid.is_none() && e.invalid.is_some());
        last.enforced(&stored(1, VALID));
        last.retain(&[]);
        assert!(
            last.enforced(&stored(2, INVALID)).valid.is_none(),
            "forgotten"
        );
    }

    fn with_record(mut b: SecurityBaseline, last: &SecurityBaseline) -> SecurityBaseline {
        let record = record(&validate(last, crate::engine::test_support::VALIDATED_AT).unwrap())
            .expect("small enough to record");
        b.status = Some(crate::api::SecurityBaselineStatus {
            last_valid: Some(record),
            ..Default::default()
        });
        b
    }

    #[test]
    fn after_a_restart_an_invalid_edit_enforces_the_generation_the_status_recorded() {
        // A new process: nothing in memory, only what the status recorded.
        let last = LastValid::default();
        let e = last.enforced(&with_record(stored(2, INVALID), &stored(1, VALID)));
        assert_eq!(e.generation(), Some(1), "the recorded generation");
        assert!(e.invalid.is_some(), "and the newest is still reported");
        let spec = &e.valid.unwrap().baseline.spec;
        assert_eq!(spec, &stored(1, VALID).spec, "the recorded spec");
    }

    #[test]
    fn an_unreadable_stand_in_is_invalid_and_enforces_the_recorded_generation() {
        let mut b = with_record(stored(3, "{}"), &stored(2, VALID));
        b.status.as_mut().unwrap().unreadable = Some(crate::api::Unreadable {
            path: "spec.exemptions[0].expiresAt".to_string(),
            message: "cannot be read".to_string(),
        });
        let e = LastValid::default().enforced(&b);
        assert_eq!(e.generation(), Some(2));
        let why = e.invalid.expect("the stand-in is invalid").to_string();
        assert!(why.contains("expiresAt"), "{why}");
        // Without a record: nothing enforced, and still invalid (its empty spec is never used).
        b.status.as_mut().unwrap().last_valid = None;
        let e = LastValid::default().enforced(&b);
        assert!(e.valid.is_none() && e.invalid.is_some());
    }

    #[test]
    fn a_recorded_spec_is_validated_again_and_never_from_a_newer_generation() {
        let mut b = with_record(stored(2, INVALID), &stored(1, VALID));
        let recorded = b.status.as_mut().unwrap().last_valid.as_mut().unwrap();
        recorded.spec = serde_json::json!({"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "Has"}]}});
        assert!(
            LastValid::default().enforced(&b).valid.is_none(),
            "invalid record"
        );
        let mut b = with_record(stored(2, INVALID), &stored(1, VALID));
        b.status
            .as_mut()
            .unwrap()
            .last_valid
            .as_mut()
            .unwrap()
            .generation = 3;
        assert!(
            LastValid::default().enforced(&b).valid.is_none(),
            "from the future"
        );
    }
}
