//! The pieces every admission policy of a baseline is built from: its metadata (named, labelled
//! and owned like every object of the baseline), the namespaces its binding selects, who passes
//! it, and its match rules.

use std::collections::BTreeSet;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingAdmissionPolicy, MutatingAdmissionPolicyBinding, ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use serde_json::{Value, json};

use super::AdmissionSettings;
use kube::Resource;

use crate::api::{Mode, SecurityBaseline};
use crate::engine::exemption::cel;
use crate::engine::object::{Object, object_name, owner_labels};
use crate::engine::select::ALWAYS_EXCLUDED;
use crate::engine::validate::ValidBaseline;

pub(super) fn metadata(baseline: &ValidBaseline, suffix: &str) -> ObjectMeta {
    let name = baseline.name();
    let meta = &baseline.baseline.metadata;
    // Owned by the baseline: the garbage collector removes them with it, operator running or
    // not, so nothing is left blocking.
    let owner = meta.uid.as_ref().map(|uid| OwnerReference {
        api_version: SecurityBaseline::api_version(&()).into_owned(),
        kind: SecurityBaseline::kind(&()).into_owned(),
        name: name.to_string(),
        uid: uid.clone(),
        controller: Some(true),
        block_owner_deletion: None,
    });
    ObjectMeta {
        name: Some(object_name(name, suffix)),
        labels: Some(owner_labels(name)),
        owner_references: owner.map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

/// The namespaces a binding applies to: those the baseline selects, never the cluster's own,
/// the operator's or the excluded ones (by their immutable name label).
pub(super) fn selection(baseline: &ValidBaseline, settings: &AdmissionSettings) -> LabelSelector {
    let spec = &baseline.baseline.spec;
    let mut selector = spec.namespace_selector.clone().unwrap_or_default();
    let excluded: BTreeSet<String> = ALWAYS_EXCLUDED
        .iter()
        .map(|n| n.to_string())
        .chain([settings.operator_namespace.clone()])
        .chain(spec.excluded_namespaces.iter().cloned())
        .collect();
    let mut expressions = selector.match_expressions.take().unwrap_or_default();
    expressions.push(
        serde_json::from_value(json!({
            "key": "kubernetes.io/metadata.name",
            "operator": "NotIn",
            "values": excluded,
        }))
        .expect("a label selector requirement"),
    );
    selector.match_expressions = Some(expressions);
    if selector.match_labels.as_ref().is_some_and(|m| m.is_empty()) {
        selector.match_labels = None;
    }
    selector
}

/// Who may do what the policies otherwise refuse: the operator, the break-glass group, and, in a
/// namespace being deleted, the namespace controller and garbage collector.
pub(super) fn privileged(settings: &AdmissionSettings) -> Value {
    json!({
        "name": "privileged",
        "expression": format!(
            "request.userInfo.username == {} || (has(request.userInfo.groups) && {} in request.userInfo.groups) || (namespaceObject != null && has(namespaceObject.metadata.deletionTimestamp))",
            cel(&settings.operator_user),
            cel(&settings.break_glass_group),
        ),
    })
}

pub(super) fn rule(group: &str, resources: &[&str], operations: &[&str]) -> Value {
    json!({
        "apiGroups": [group],
        "apiVersions": ["*"],
        "operations": operations,
        "resources": resources,
        "scope": "*",
    })
}

pub(super) fn match_constraints(rules: Vec<Value>) -> Value {
    json!({
        "matchPolicy": "Equivalent",
        "namespaceSelector": {},
        "objectSelector": {},
        "resourceRules": rules,
    })
}

/// The ValidatingAdmissionPolicy of `spec` and its binding to the baseline's namespaces: refusing
/// in Enforce mode, warning and auditing in Audit mode.
pub(super) fn validating_policy(
    baseline: &ValidBaseline,
    settings: &AdmissionSettings,
    suffix: &str,
    spec: Value,
) -> [Object; 2] {
    let actions: &[&str] = match baseline.baseline.spec.mode {
        Mode::Enforce => &["Deny"],
        Mode::Audit => &["Warn", "Audit"],
    };
    let selector = selection(baseline, settings);
    validating_bound(baseline, suffix, spec, selector, actions)
}

/// The ValidatingAdmissionPolicy of `spec` and its binding to the namespaces `selector` picks,
/// taking `actions`.
pub(super) fn validating_bound(
    baseline: &ValidBaseline,
    suffix: &str,
    spec: Value,
    selector: LabelSelector,
    actions: &[&str],
) -> [Object; 2] {
    let mut policy: ValidatingAdmissionPolicy =
        serde_json::from_value(json!({"spec": spec})).expect("a ValidatingAdmissionPolicy");
    policy.metadata = metadata(baseline, suffix);
    let mut spec = binding_spec(baseline, selector, suffix);
    spec["validationActions"] = json!(actions);
    let mut binding: ValidatingAdmissionPolicyBinding =
        serde_json::from_value(json!({ "spec": spec }))
            .expect("a ValidatingAdmissionPolicyBinding");
    binding.metadata = metadata(baseline, suffix);
    [
        Object::ValidatingAdmissionPolicy(policy),
        Object::ValidatingAdmissionPolicyBinding(binding),
    ]
}

/// The MutatingAdmissionPolicy of `spec` and its binding to the baseline's namespaces.
pub(super) fn mutating_policy(
    baseline: &ValidBaseline,
    settings: &AdmissionSettings,
    suffix: &str,
    spec: Value,
) -> [Object; 2] {
    let mut policy: MutatingAdmissionPolicy =
        serde_json::from_value(json!({ "spec": spec })).expect("a MutatingAdmissionPolicy");
    policy.metadata = metadata(baseline, suffix);
    let spec = binding_spec(baseline, selection(baseline, settings), suffix);
    let mut binding: MutatingAdmissionPolicyBinding =
        serde_json::from_value(json!({ "spec": spec })).expect("a MutatingAdmissionPolicyBinding");
    binding.metadata = metadata(baseline, suffix);
    [
        Object::MutatingAdmissionPolicy(policy),
        Object::MutatingAdmissionPolicyBinding(binding),
    ]
}

/// What every binding of ours says: which policy, and the namespaces `selector` picks.
fn binding_spec(baseline: &ValidBaseline, selector: LabelSelector, suffix: &str) -> Value {
    json!({
        "policyName": object_name(baseline.name(), suffix),
        "matchResources": {
            "matchPolicy": "Equivalent",
            "namespaceSelector": selector,
            "objectSelector": {},
        },
    })
}
