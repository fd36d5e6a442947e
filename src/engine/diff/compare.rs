//! (desired object, live object) -> how the live one falls short, for every generated kind:
//! specs compared as the API server stores them (defaults filled in, order that carries no
//! meaning ignored), extra rules or subjects counted as widening.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::LimitRangeItem;
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicySpec};
use k8s_openapi::api::rbac::v1::{PolicyRule, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use serde::Serialize;

use super::DriftReason;
use crate::engine::object::Object;
use crate::engine::quantity::{Quantity, same_quantity};
use crate::engine::widening::{summarize, widening};

/// Compares one of our objects with what the baseline wants; `None` when it complies.
pub fn compare(desired: &Object, live: &Object) -> Option<DriftReason> {
    match (desired, live) {
        (Object::NetworkPolicy(d), Object::NetworkPolicy(l)) => compare_network_policy(d, l),
        (Object::Role(d), Object::Role(l)) => compare_rules(
            d.rules.as_deref().unwrap_or_default(),
            l.rules.as_deref().unwrap_or_default(),
        ),
        (Object::RoleBinding(d), Object::RoleBinding(l)) => {
            if d.role_ref != l.role_ref {
                return Some(DriftReason::Modified("roleRef".to_string()));
            }
            compare_subjects(
                d.subjects.as_deref().unwrap_or_default(),
                l.subjects.as_deref().unwrap_or_default(),
            )
        }
        (Object::ResourceQuota(d), Object::ResourceQuota(l)) => {
            let d = d.spec.clone().unwrap_or_default();
            let l = l.spec.clone().unwrap_or_default();
            if l.scopes.as_ref().is_some_and(|s| !s.is_empty()) || l.scope_selector.is_some() {
                return Some(DriftReason::Weakened(
                    "spec.scopes narrow the quota".to_string(),
                ));
            }
            compare_hard(&d.hard.unwrap_or_default(), &l.hard.unwrap_or_default())
        }
        (Object::LimitRange(d), Object::LimitRange(l)) => {
            let d = d
                .spec
                .as_ref()
                .map(|s| s.limits.as_slice())
                .unwrap_or_default();
            let l = l
                .spec
                .as_ref()
                .map(|s| s.limits.as_slice())
                .unwrap_or_default();
            let same = d.len() == l.len() && d.iter().zip(l).all(|(a, b)| same_limit_item(a, b));
            (!same).then(|| DriftReason::Modified("spec.limits".to_string()))
        }
        (Object::ValidatingAdmissionPolicy(d), Object::ValidatingAdmissionPolicy(l)) => {
            compare_spec(&d.spec, &l.spec)
        }
        (
            Object::ValidatingAdmissionPolicyBinding(d),
            Object::ValidatingAdmissionPolicyBinding(l),
        ) => compare_spec(&d.spec, &l.spec),
        (Object::MutatingAdmissionPolicy(d), Object::MutatingAdmissionPolicy(l)) => {
            compare_spec(&d.spec, &l.spec)
        }
        (Object::MutatingAdmissionPolicyBinding(d), Object::MutatingAdmissionPolicyBinding(l)) => {
            compare_spec(&d.spec, &l.spec)
        }
        _ => Some(DriftReason::Conflict),
    }
}

/// An admission policy or binding must be exactly as rendered (we render every field the API
/// server would default): any other change, however small, may narrow what it refuses.
fn compare_spec<T: Serialize>(desired: &T, live: &T) -> Option<DriftReason> {
    let normal = |v: &T| pruned(serde_json::to_value(v).unwrap_or_default());
    (normal(desired) != normal(live))
        .then(|| DriftReason::Weakened("spec differs from the rendered policy".to_string()))
}

/// JSON with nulls, empty lists and empty maps left out: the API server drops them.
fn pruned(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, pruned(v)))
                .filter(|(_, v)| !is_empty(v))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(pruned).collect()),
        other => other,
    }
}

fn is_empty(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Null => true,
        serde_json::Value::Array(a) => a.is_empty(),
        serde_json::Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// The API server defaults a port's protocol to TCP and policyTypes from the rules present.
fn normalize_network_policy(spec: Option<&NetworkPolicySpec>) -> NetworkPolicySpec {
    let mut spec = spec.cloned().unwrap_or_default();
    let ports = spec
        .ingress
        .iter_mut()
        .flatten()
        .flat_map(|r| r.ports.iter_mut().flatten())
        .chain(
            spec.egress
                .iter_mut()
                .flatten()
                .flat_map(|r| r.ports.iter_mut().flatten()),
        );
    for port in ports {
        port.protocol.get_or_insert_with(|| "TCP".to_string());
    }
    // An empty rule list is stored as an absent one.
    if spec.ingress.as_ref().is_some_and(Vec::is_empty) {
        spec.ingress = None;
    }
    if spec.egress.as_ref().is_some_and(Vec::is_empty) {
        spec.egress = None;
    }
    if spec.policy_types.is_none() {
        let mut types = vec!["Ingress".to_string()];
        if spec.egress.is_some() {
            types.push("Egress".to_string());
        }
        spec.policy_types = Some(types);
    }
    if let Some(types) = spec.policy_types.as_mut() {
        types.sort();
    }
    spec.pod_selector.get_or_insert_with(Default::default);
    // An empty selector may come back with empty maps instead of absent ones.
    for selector in spec.pod_selector.iter_mut() {
        if selector.match_labels.as_ref().is_some_and(|m| m.is_empty()) {
            selector.match_labels = None;
        }
        if selector
            .match_expressions
            .as_ref()
            .is_some_and(|m| m.is_empty())
        {
            selector.match_expressions = None;
        }
    }
    spec
}

fn compare_network_policy(desired: &NetworkPolicy, live: &NetworkPolicy) -> Option<DriftReason> {
    let (d, l) = (
        normalize_network_policy(desired.spec.as_ref()),
        normalize_network_policy(live.spec.as_ref()),
    );
    if d == l {
        return None;
    }
    let count = |rules: Option<usize>| rules.unwrap_or(0);
    let (d_in, l_in) = (
        count(d.ingress.as_ref().map(Vec::len)),
        count(l.ingress.as_ref().map(Vec::len)),
    );
    let (d_out, l_out) = (
        count(d.egress.as_ref().map(Vec::len)),
        count(l.egress.as_ref().map(Vec::len)),
    );
    let rules_count = |n: usize, what: &str| format!("spec.{what} has {n} more allow rule(s)");
    let dropped_type = d
        .policy_types
        .iter()
        .flatten()
        .find(|t| !l.policy_types.iter().flatten().any(|x| x == *t));
    Some(if l_in > d_in {
        DriftReason::Weakened(rules_count(l_in - d_in, "ingress"))
    } else if l_out > d_out {
        DriftReason::Weakened(rules_count(l_out - d_out, "egress"))
    } else if d.pod_selector != l.pod_selector {
        DriftReason::Weakened("spec.podSelector no longer selects every pod".to_string())
    } else if let Some(dropped) = dropped_type {
        DriftReason::Weakened(format!("spec.policyTypes no longer isolates {dropped}"))
    } else if let Some(detail) = widening(&summarize(live), &[desired]) {
        // An allow edited to let more through: another peer, a wider block, another port.
        DriftReason::Weakened(detail)
    } else {
        DriftReason::Modified("spec".to_string())
    })
}

/// A rule with its lists sorted and empty lists dropped, so order and `[]` vs absent don't matter.
fn normalize_rule(rule: &PolicyRule) -> PolicyRule {
    let sorted = |v: &Option<Vec<String>>| {
        v.as_ref().filter(|v| !v.is_empty()).map(|v| {
            let mut v = v.clone();
            v.sort();
            v.dedup();
            v
        })
    };
    PolicyRule {
        api_groups: sorted(&rule.api_groups),
        resources: sorted(&rule.resources),
        resource_names: sorted(&rule.resource_names),
        non_resource_urls: sorted(&rule.non_resource_urls),
        verbs: sorted(&Some(rule.verbs.clone())).unwrap_or_default(),
    }
}

fn compare_rules(desired: &[PolicyRule], live: &[PolicyRule]) -> Option<DriftReason> {
    let key = |r: &PolicyRule| serde_json::to_string(&normalize_rule(r)).unwrap_or_default();
    let d: BTreeSet<String> = desired.iter().map(key).collect();
    let l: BTreeSet<String> = live.iter().map(key).collect();
    if d == l {
        return None;
    }
    let extra = l.difference(&d).count();
    Some(if extra > 0 {
        DriftReason::Weakened(format!("rules: {extra} rule(s) not in the baseline"))
    } else {
        DriftReason::Modified("rules: rule(s) removed".to_string())
    })
}

fn subject_key(s: &Subject) -> (String, String, String, String) {
    (
        s.kind.clone(),
        s.name.clone(),
        s.namespace.clone().unwrap_or_default(),
        s.api_group.clone().unwrap_or_default(),
    )
}

fn compare_subjects(desired: &[Subject], live: &[Subject]) -> Option<DriftReason> {
    let d: BTreeSet<_> = desired.iter().map(subject_key).collect();
    let l: BTreeSet<_> = live.iter().map(subject_key).collect();
    if d == l {
        return None;
    }
    Some(match l.difference(&d).next() {
        Some((kind, name, _, _)) => DriftReason::Weakened(format!("subjects: {kind} {name} added")),
        None => DriftReason::Modified("subjects: subject(s) removed".to_string()),
    })
}

fn compare_hard(
    desired: &BTreeMap<String, K8sQuantity>,
    live: &BTreeMap<String, K8sQuantity>,
) -> Option<DriftReason> {
    for (resource, want) in desired {
        let Some(have) = live.get(resource) else {
            return Some(DriftReason::Weakened(format!(
                "spec.hard.{resource} removed"
            )));
        };
        if same_quantity(&want.0, &have.0) {
            continue;
        }
        let raised = match (Quantity::parse(&want.0), Quantity::parse(&have.0)) {
            (Ok(w), Ok(h)) => h > w,
            _ => true,
        };
        let detail = format!("spec.hard.{resource} is {} instead of {}", have.0, want.0);
        return Some(if raised {
            DriftReason::Weakened(detail)
        } else {
            DriftReason::Modified(detail)
        });
    }
    live.keys()
        .find(|k| !desired.contains_key(*k))
        .map(|extra| DriftReason::Modified(format!("spec.hard.{extra} added")))
}

fn same_quantity_map(
    a: &Option<BTreeMap<String, K8sQuantity>>,
    b: &Option<BTreeMap<String, K8sQuantity>>,
) -> bool {
    let empty = BTreeMap::new();
    let (a, b) = (a.as_ref().unwrap_or(&empty), b.as_ref().unwrap_or(&empty));
    a.len() == b.len()
        && a.iter()
            .all(|(k, v)| b.get(k).is_some_and(|w| same_quantity(&v.0, &w.0)))
}

fn same_limit_item(a: &LimitRangeItem, b: &LimitRangeItem) -> bool {
    a.type_ == b.type_
        && same_quantity_map(&a.default, &b.default)
        && same_quantity_map(&a.default_request, &b.default_request)
        && same_quantity_map(&a.max, &b.max)
        && same_quantity_map(&a.min, &b.min)
        && same_quantity_map(&a.max_limit_request_ratio, &b.max_limit_request_ratio)
}
