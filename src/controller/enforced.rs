//! What each baseline enforces: its current generation when that is valid, else the last valid
//! generation this process saw, so an invalid edit does not switch every control off. Nothing is
//! enforced for a baseline that has been invalid since this process started (it cannot know what
//! was meant); the status says which generation is enforced, and why not the newest.

use k8s_openapi::jiff::Timestamp;
use std::collections::HashMap;

use parking_lot::Mutex;

use crate::api::SecurityBaseline;
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
        match validate(baseline, Timestamp::now().as_second()) {
            Ok(valid) => {
                self.0.lock().insert(uid, valid.clone());
                Enforced {
                    valid: Some(valid),
                    invalid: None,
                }
            }
            Err(invalid) => {
                let mut last = self.0.lock().get(&uid).cloned();
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
}
