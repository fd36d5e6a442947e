//! The MutatingAdmissionPolicy that sets a baseline's Pod Security labels on a Namespace as it is
//! created or updated into the selector, so a pod sent right behind its namespace meets them.

use serde_json::{Value, json};

use super::AdmissionSettings;
use super::policy::{match_constraints, mutating_policy, rule};
use crate::api::Control;
use crate::engine::exemption::{cel, exempt_cel};
use crate::engine::object::{FIELD_MANAGER, Object};
use crate::engine::pod_security::{
    PSA_VERSION_FLOOR, cel_level_ranks, cel_rank_of_version, level_label, level_rank,
    mode_variable, mode_variables, policies, version_label,
};
use crate::engine::validate::ValidBaseline;

/// Pod Security labels set on the Namespace as it is created or updated into the selector,
/// raising (never lowering) each mode to the baseline's policy, as the operator's own label apply
/// would; several baselines each raise, so the strictest wins.
pub(super) fn pod_security_at_creation(
    baseline: &ValidBaseline,
    settings: &AdmissionSettings,
    now: i64,
) -> [Object; 2] {
    let suffix = "pod-security";
    let (mode_variables, entries) = raised_labels(baseline);
    let mut variables = vec![
        json!({"name": "labels", "expression": "has(object.metadata.labels) ? object.metadata.labels : {}"}),
        cel_level_ranks(),
    ];
    variables.extend(mode_variables);
    // A namespace exempt from Pod Security is left as it is.
    let exempt = exempt_cel(
        baseline,
        Control::PodSecurity,
        now,
        "object.metadata.name",
        "(has(object.metadata.labels) ? object.metadata.labels : {})",
    );
    let mut spec = json!({
        "failurePolicy": "Fail",
        "reinvocationPolicy": "Never",
        "matchConstraints": match_constraints(vec![rule("", &["namespaces"], &["CREATE", "UPDATE"])]),
        "variables": variables,
            "mutations": [{
                "patchType": "ApplyConfiguration",
                "applyConfiguration": {
                    "expression": format!(
                        "Object{{metadata: Object.metadata{{labels: {{{}}}}}}}",
                        entries.join(", ")
                ),
            },
        }],
    });
    spec["matchConditions"] = json!(match_conditions(settings, exempt));
    mutating_policy(baseline, settings, suffix, spec)
}

/// The CEL variables reading each mode's labels, and the label entries of the apply
/// configuration: each level and version raised to the baseline's where the namespace's fall
/// short, kept where they are at least as strict.
fn raised_labels(baseline: &ValidBaseline) -> (Vec<Value>, Vec<String>) {
    let mut variables = Vec::new();
    let mut entries = Vec::new();
    for (mode, policy) in policies(baseline) {
        let (level, version) = (policy.level, policy.version);
        variables.extend(mode_variables("live", "variables.labels", mode));
        let name = mode_variable("live", mode);
        let (l, v) = (level_rank(level), cel_rank_of_version(&version));
        let floor = i64::from(PSA_VERSION_FLOOR);
        let key = cel(&level_label(mode));
        let version_key = cel(&version_label(mode));
        entries.push(format!(
            "{key}: variables.{name}Rank >= {l} ? variables.labels[{key}] : {}",
            cel(level.as_str())
        ));
        // Level and version are raised each on its own: a stricter level does not excuse an
        // older version (see `PodSecurityPolicy::meets`).
        entries.push(format!(
            "{version_key}: variables.{name}VersionRank >= {} ? variables.{name}Version : {}",
            v.max(floor),
            cel(&version)
        ));
    }
    (variables, entries)
}

/// Who and what the policy leaves alone. Not the operator's own label applies (its identity, its
/// field manager): they carry the composition of every Enforce baseline already, and raising them
/// here would undo a release, since a deleted Delete baseline's policy stays in force at the API
/// server for a moment after the operator removes it. Nor an exempt namespace (`exempt`).
fn match_conditions(settings: &AdmissionSettings, exempt: Option<String>) -> Vec<Value> {
    let mut conditions = vec![json!({
        "name": "not-the-operators-apply",
        "expression": format!(
            "!(request.userInfo.username == {} && has(request.options) && has(request.options.fieldManager) && request.options.fieldManager == {})",
            cel(&settings.operator_user),
            cel(FIELD_MANAGER),
        ),
    })];
    if let Some(exempt) = exempt {
        conditions.push(json!({"name": "not-exempt", "expression": format!("!{exempt}")}));
    }
    conditions
}
