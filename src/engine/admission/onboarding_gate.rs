//! The onboarding gate: pods are refused in every namespace a baseline selects until the operator
//! has put every control in place and set its onboarding marker.

use serde_json::json;

use super::AdmissionSettings;
use super::policy::{match_constraints, rule, validating_policy};
use crate::engine::exemption::cel;
use crate::engine::object::Object;
use crate::engine::validate::ValidBaseline;

/// Prefix of the label the operator sets on a Namespace once a baseline's controls are in place:
/// `onboarded.zerotrust.dev/<baseline>: <marker_value>`. Only the operator may set or change it.
pub const ONBOARDED_LABEL_PREFIX: &str = "onboarded.zerotrust.dev/";

/// How much of the baseline's uid the marker carries: the namespace's uid (36), a dot and this
/// fill a label value's 63 characters. 26 characters of a random uid are ~100 bits: unguessable.
const BASELINE_UID_CHARS: usize = 26;

/// The onboarding marker of `baseline`.
pub fn onboarded_label(baseline: &str) -> String {
    format!("{ONBOARDED_LABEL_PREFIX}{baseline}")
}

/// The value of the onboarding marker the operator writes: the namespace's uid, then (when the
/// baseline has one) a dot and the start of the baseline's uid. Nobody knows a namespace's uid
/// before the API server creates it, so a marker set at creation (or carried in from outside the
/// selector) never matches; the baseline's part makes a baseline deleted and created again under
/// the same name ignore the markers of the old one. The gate's CEL builds the same string.
pub fn marker_value(namespace_uid: &str, baseline_uid: Option<&str>) -> String {
    format!("{namespace_uid}{}", marker_suffix(baseline_uid))
}

/// The part of the marker that comes from the baseline: fixed for a baseline, so the gate's CEL
/// carries it as a constant.
fn marker_suffix(baseline_uid: Option<&str>) -> String {
    baseline_uid
        .map(|uid| {
            let start: String = uid.chars().take(BASELINE_UID_CHARS).collect();
            // A label value ends with an alphanumeric character.
            format!(
                ".{}",
                start.trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
            )
        })
        .unwrap_or_default()
}

/// Pods are refused in every namespace the baseline selects until the operator has put every
/// control in place and marked the namespace onboarded with the marker only it can know: however
/// the namespace came under the baseline (created in the selector, labelled into it, older than
/// the baseline), and whatever marker it carried before.
pub(super) fn onboarding_gate(
    baseline: &ValidBaseline,
    settings: &AdmissionSettings,
) -> [Object; 2] {
    let name = baseline.name();
    let marker = cel(&onboarded_label(name));
    // The API server declares the namespace's uid as `UID` but hands it over as `uid`: dyn()
    // resolves it at run time (and fails, so refuses, if it were ever missing).
    let expected = format!(
        "string(dyn(namespaceObject.metadata).uid) + {}",
        cel(&marker_suffix(baseline.baseline.metadata.uid.as_deref()))
    );
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
                "{break_glass} || (has(namespaceObject.metadata.labels) && {marker} in namespaceObject.metadata.labels && namespaceObject.metadata.labels[{marker}] == {expected})"
            ),
            "messageExpression": format!(
                "'namespace ' + request.namespace + ' is being onboarded by SecurityBaseline {name}: its controls are not all in place yet; retry in a few seconds'"
            ),
            "reason": "Forbidden",
        }],
    });
    validating_policy(baseline, settings, "onboarding-gate", spec)
}
