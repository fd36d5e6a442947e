//! Test helpers shared by the engine's unit tests: a baseline from YAML, label maps.

use std::collections::BTreeMap;

use super::validate::{ValidBaseline, validate};
use crate::api::parse_baselines;

/// The baseline `b` with the spec `spec` (YAML for the spec's fields, block or flow style), or
/// why it is refused (parse or validation error).
pub fn try_baseline(spec: &str) -> Result<ValidBaseline, String> {
    let spec: String = spec.lines().map(|l| format!("  {l}\n")).collect();
    let text = format!(
        "apiVersion: zerotrust.dev/v1alpha1\nkind: SecurityBaseline\nmetadata: {{name: b}}\nspec:\n{spec}"
    );
    let parsed = parse_baselines(&text).map_err(|e| e.to_string())?;
    validate(&parsed[0]).map_err(|e| e.to_string())
}

/// The valid baseline `b` with the spec `spec`; panics with the error otherwise.
pub fn baseline(spec: &str) -> ValidBaseline {
    try_baseline(spec).unwrap_or_else(|e| panic!("{e}"))
}

pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
