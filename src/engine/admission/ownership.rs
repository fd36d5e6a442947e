//! Ownership no client can forge: labels are written by whoever writes the object, so only the
//! request's identity, which the API server authenticates, may give, change or remove our
//! ownership labels or an onboarding marker, on any object of the kinds we generate and on
//! Namespaces, in every namespace, whatever baseline the label names.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde_json::{Value, json};

use super::AdmissionSettings;
use super::onboarding_gate::ONBOARDED_LABEL_PREFIX;
use super::policy::{match_constraints, privileged, rule, validating_bound};
use super::tamper::generated_kind_rules;
use crate::engine::exemption::cel;
use crate::engine::object::{BASELINE_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE, Object};
use crate::engine::select::ALWAYS_EXCLUDED;
use crate::engine::validate::ValidBaseline;

/// What the policy says when it refuses.
pub const OWNERSHIP_MESSAGE: &str = "ownership is set only by zerotrust-operator: it alone gives, changes or removes the labels app.kubernetes.io/managed-by=zerotrust-operator, zerotrust.dev/baseline and onboarded.zerotrust.dev/* (labels prove nothing, the identity writing them does)";

/// The ownership policy of `baseline` and its binding. Every baseline renders the same rule (a
/// copy per baseline keeps it owned, kept and checked like the baseline's other protections; any
/// one copy suffices), bound to every namespace but the cluster's own and the operator's, and it
/// always denies, in Audit mode too: it guards the operator's bookkeeping, which no tenant writes,
/// not a control the baseline audits.
pub(super) fn ownership_protection(
    baseline: &ValidBaseline,
    settings: &AdmissionSettings,
) -> [Object; 2] {
    let write = ["CREATE", "UPDATE", "DELETE"];
    let rules = generated_kind_rules(&write)
        .into_iter()
        .chain([rule("", &["namespaces"], &["CREATE", "UPDATE"])])
        .collect();
    let spec = json!({
        "failurePolicy": "Fail",
        "matchConstraints": match_constraints(rules),
        "variables": [
            privileged(settings),
            json!({"name": "oldLabels", "expression": "oldObject != null && has(oldObject.metadata.labels) ? oldObject.metadata.labels : {}"}),
            json!({"name": "newLabels", "expression": "object != null && has(object.metadata.labels) ? object.metadata.labels : {}"}),
        ],
        "validations": [labels_kept()],
    });
    validating_bound(baseline, "ownership", spec, everywhere(settings), &["Deny"])
}

/// Every namespace but the cluster's own and the operator's, selected or not.
fn everywhere(settings: &AdmissionSettings) -> LabelSelector {
    let excluded: Vec<&str> = ALWAYS_EXCLUDED
        .iter()
        .copied()
        .chain([settings.operator_namespace.as_str()])
        .collect();
    serde_json::from_value(json!({"matchExpressions": [{
        "key": "kubernetes.io/metadata.name",
        "operator": "NotIn",
        "values": excluded,
    }]}))
    .expect("a label selector")
}

/// Whether the label `key` with value `value` (CEL expressions) is one of ours.
fn ours_cel(key: &str, value: &str) -> String {
    format!(
        "(({key} == {m} && {value} == {mv}) || {key} == {b} || {key}.startsWith({p}))",
        m = cel(MANAGED_BY_LABEL),
        mv = cel(MANAGED_BY_VALUE),
        b = cel(BASELINE_LABEL),
        p = cel(ONBOARDED_LABEL_PREFIX),
    )
}

/// Our labels are the same before and after the request: none given, changed or removed (a
/// delete removes them).
fn labels_kept_cel() -> String {
    let (old, new) = ("variables.oldLabels", "variables.newLabels");
    format!(
        "variables.privileged || ({old}.all(k, !{} || (k in {new} && {new}[k] == {old}[k])) && {new}.all(k, !{} || (k in {old} && {old}[k] == {new}[k])))",
        ours_cel("k", &format!("{old}[k]")),
        ours_cel("k", &format!("{new}[k]")),
    )
}

fn labels_kept() -> Value {
    json!({
        "expression": labels_kept_cel(),
        "messageExpression": format!(
            "request.resource.resource + ' ' + request.name + ': ' + {}",
            cel(OWNERSHIP_MESSAGE)
        ),
        "reason": "Forbidden",
    })
}

#[cfg(test)]
mod tests;
