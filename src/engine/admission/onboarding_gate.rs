//! The onboarding gate: pods are refused in a namespace created after the baseline until the
//! operator has put every control in place and set its onboarding marker.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;

use super::AdmissionSettings;
use super::policy::{match_constraints, rule, validating_policy};
use crate::engine::exemption::cel;
use crate::engine::object::Object;
use crate::engine::validate::ValidBaseline;

/// Prefix of the label the operator sets on a Namespace once a baseline's controls are in place:
/// `onboarded.zerotrust.dev/<baseline>: "true"`. Only the operator may set or change it.
pub const ONBOARDED_LABEL_PREFIX: &str = "onboarded.zerotrust.dev/";

/// The onboarding marker of `baseline`.
pub fn onboarded_label(baseline: &str) -> String {
    format!("{ONBOARDED_LABEL_PREFIX}{baseline}")
}

/// Whether a baseline created at `baseline_created` gates a namespace created at
/// `namespace_created`: the rule of the gate's CEL below (a namespace older than the baseline is
/// not gated); gated when either time is unknown, as the CEL is without the baseline's.
pub fn gates_namespace(baseline_created: Option<&Time>, namespace_created: Option<&Time>) -> bool {
    match (baseline_created, namespace_created) {
        (Some(baseline), Some(namespace)) => namespace.0 >= baseline.0,
        _ => true,
    }
}

/// Pods are refused in a namespace created after the baseline until the operator has put every
/// control in place and marked the namespace onboarded. Namespaces that existed before the
/// baseline already run pods; they are onboarded without a gate.
pub(super) fn onboarding_gate(
    baseline: &ValidBaseline,
    settings: &AdmissionSettings,
) -> [Object; 2] {
    let name = baseline.name();
    let marker = cel(&onboarded_label(name));
    let before = baseline
        .baseline
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| {
            format!(
                // Declared a timestamp, handed over as a string: dyn() resolves at run time.
                "timestamp(dyn(namespaceObject.metadata.creationTimestamp)) < timestamp({}) || ",
                cel(&t.0.to_string())
            )
        })
        .unwrap_or_default();
    // The operator never creates pods, so only the break-glass group passes the gate.
    let break_glass = format!(
        "(has(request.userInfo.groups) && {} in request.userInfo.groups)",
        cel(&settings.break_glass_group)
    );
    let spec = json!({
        "failurePolicy": "Fail",
        "matchConstraints": match_constraints(vec![rule("", &["pods"], &["CREATE"])]),
        "validations": [{
            "expression": format!(
                "{break_glass} || {before}(has(namespaceObject.metadata.labels) && {marker} in namespaceObject.metadata.labels && namespaceObject.metadata.labels[{marker}] == 'true')"
            ),
            "messageExpression": format!(
                "'namespace ' + request.namespace + ' is being onboarded by SecurityBaseline {name}: its controls are not all in place yet; retry in a few seconds'"
            ),
            "reason": "Forbidden",
        }],
    });
    validating_policy(baseline, settings, "onboarding-gate", spec)
}
