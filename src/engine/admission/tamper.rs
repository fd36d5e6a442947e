//! Tamper protection: nobody but the operator (or break-glass) may change what a baseline owns.

use serde_json::{Value, json};

use super::AdmissionSettings;
use super::policy::{match_constraints, privileged, rule, validating_policy};
use crate::api::Control;
use crate::engine::exemption::{cel, exempt_cel};
use crate::engine::object::{BASELINE_LABEL, Kind, MANAGED_BY_LABEL, MANAGED_BY_VALUE, Object};
use crate::engine::pod_security::{
    PSA_VERSION_FLOOR, cel_level_ranks, cel_rank_of_version, level_rank, mode_variable,
    mode_variables, policies,
};
use crate::engine::validate::ValidBaseline;

/// Nobody but the operator (or the break-glass group, or the namespace controller in a namespace
/// being deleted) may create, change or delete what the baseline owns: its objects, their
/// ownership labels, the Pod Security labels it set (lowered or removed), the default
/// ServiceAccount's automount setting. (The onboarding marker is the ownership protection's.)
pub(super) fn tamper_protection(
    baseline: &ValidBaseline,
    settings: &AdmissionSettings,
    now: i64,
) -> [Object; 2] {
    let name = baseline.name();
    let mut variables = vec![
        privileged(settings),
        json!({"name": "oldLabels", "expression": "oldObject != null && has(oldObject.metadata.labels) ? oldObject.metadata.labels : {}"}),
        json!({"name": "newLabels", "expression": "object != null && has(object.metadata.labels) ? object.metadata.labels : {}"}),
        cel_level_ranks(),
    ];
    let (mode_variables, pod_security) = pod_security_kept(baseline, now);
    variables.extend(mode_variables);
    // The onboarding marker is guarded by the ownership protection, for every baseline's key.
    let mut validations = vec![owned_objects_kept(name), pod_security];
    validations.extend(token_setting_kept(baseline, now));
    let write = ["CREATE", "UPDATE", "DELETE"];
    let policy_spec = json!({
        "failurePolicy": "Fail",
        "matchConstraints": match_constraints(generated_kind_rules(&write).into_iter().chain([
            rule("", &["namespaces"], &["CREATE", "UPDATE"]),
            rule("", &["serviceaccounts"], &["UPDATE"]),
        ]).collect()),
        "variables": variables,
        "validations": validations,
    });
    validating_policy(baseline, settings, "tamper", policy_spec)
}

/// The baseline's objects, and their ownership labels, are the operator's to write.
fn owned_objects_kept(name: &str) -> Value {
    let ours = |labels: &str| {
        format!(
            "({m} in {labels} && {labels}[{m}] == {mv} && {b} in {labels} && {labels}[{b}] == {bv})",
            m = cel(MANAGED_BY_LABEL),
            mv = cel(MANAGED_BY_VALUE),
            b = cel(BASELINE_LABEL),
            bv = cel(name),
        )
    };
    let plurals: Vec<String> = Kind::GENERATED
        .iter()
        .map(|k| cel(&k.api_resource().plural))
        .collect();
    let owned_kinds = format!("[{}]", plurals.join(", "));
    json!({
        "expression": format!(
            "variables.privileged || !(request.resource.resource in {owned_kinds}) || !({} || {})",
            ours("variables.oldLabels"),
            ours("variables.newLabels"),
        ),
        "messageExpression": format!(
            "request.resource.resource + ' ' + request.name + ' belongs to SecurityBaseline {name}: only zerotrust-operator may create, change or delete it, or give or take its ownership labels'"
        ),
        "reason": "Forbidden",
    })
}

/// Pod Security labels that met the baseline's policy keep meeting it: the CEL variables reading
/// each mode's old and new labels, and the validation. A mode's policy is met by labels holding
/// at least the baseline's level and at least its version, never one older than the floor: the
/// same rule as the operator's diff ([`PodSecurityPolicy::meets`](crate::engine::pod_security::PodSecurityPolicy::meets)).
fn pod_security_kept(baseline: &ValidBaseline, now: i64) -> (Vec<Value>, Value) {
    let mut variables = Vec::new();
    let mut kept = Vec::new();
    for (mode, policy) in policies(baseline) {
        variables.extend(mode_variables("old", "variables.oldLabels", mode));
        variables.extend(mode_variables("new", "variables.newLabels", mode));
        let (l, v) = (
            level_rank(policy.level),
            cel_rank_of_version(&policy.version),
        );
        // Met at a level at least as strict and a version at least as new, never below the floor.
        let v = v.max(i64::from(PSA_VERSION_FLOOR));
        let met = |side: &str| {
            let n = mode_variable(side, mode);
            format!("(variables.{n}Rank >= {l} && variables.{n}VersionRank >= {v})")
        };
        kept.push(format!("(!{} || {})", met("old"), met("new")));
    }
    // Exempt namespaces keep whatever labels they are given.
    let psa_exempt = exempt_cel(
        baseline,
        Control::PodSecurity,
        now,
        "object.metadata.name",
        "variables.newLabels",
    );
    let psa_kept = match (kept.is_empty(), psa_exempt) {
        (true, _) => "true".to_string(),
        (false, None) => kept.join(" && "),
        (false, Some(exempt)) => format!("{exempt} || ({})", kept.join(" && ")),
    };
    let name = baseline.name();
    let validation = json!({
        "expression": format!(
            "variables.privileged || request.resource.resource != 'namespaces' || request.operation != 'UPDATE' || ({psa_kept})"
        ),
        "message": format!("SecurityBaseline {name} requires these Pod Security labels: they may not be removed or weakened"),
        "reason": "Forbidden",
    });
    (variables, validation)
}

/// The default ServiceAccount keeps its token unmounted, where the baseline asks for that.
fn token_setting_kept(baseline: &ValidBaseline, now: i64) -> Option<Value> {
    let automount = baseline
        .baseline
        .spec
        .service_accounts
        .as_ref()
        .and_then(|s| s.automount_default_token);
    if automount != Some(false) {
        return None;
    }
    let exempt = exempt_cel(
        baseline,
        Control::ServiceAccount,
        now,
        "namespaceObject.metadata.name",
        "(has(namespaceObject.metadata.labels) ? namespaceObject.metadata.labels : {})",
    )
    .map(|e| format!("{e} || "))
    .unwrap_or_default();
    let name = baseline.name();
    Some(json!({
        "expression": format!("variables.privileged || request.resource.resource != 'serviceaccounts' || object == null || object.metadata.name != 'default' || {exempt}!(has(oldObject.automountServiceAccountToken) && oldObject.automountServiceAccountToken == false) || (has(object.automountServiceAccountToken) && object.automountServiceAccountToken == false)"),
        "message": format!("SecurityBaseline {name} keeps the default ServiceAccount from automounting its token"),
        "reason": "Forbidden",
    }))
}

/// One match rule per API group of the generated kinds ([`Kind::GENERATED`], in its order).
pub(super) fn generated_kind_rules(operations: &[&str]) -> Vec<Value> {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for kind in Kind::GENERATED {
        let resource = kind.api_resource();
        match groups.last_mut() {
            Some((group, plurals)) if *group == resource.group => plurals.push(resource.plural),
            _ => groups.push((resource.group, vec![resource.plural])),
        }
    }
    groups
        .iter()
        .map(|(group, plurals)| {
            let plurals: Vec<&str> = plurals.iter().map(String::as_str).collect();
            rule(group, &plurals, operations)
        })
        .collect()
}
