//! (desired, live) -> drift: what in a namespace differs from its baselines, and how.
//!
//! Our own labels and fields the API server adds are not drift. Fields others add to our objects
//! are drift only where they weaken the baseline: an extra allow rule in our NetworkPolicy is, an
//! extra annotation is not.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use k8s_openapi::api::core::v1::{LimitRangeItem, ServiceAccount};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicySpec};
use k8s_openapi::api::rbac::v1::{PolicyRule, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use serde::Serialize;

use super::object::{Kind, Object, Ownership, ownership};
use super::pod_security::{PSA_MODES, PodSecurityPolicy, Shortfall, shortfall};
use super::quantity::{Quantity, same_quantity};
use super::render::{DesiredObject, DesiredState};
use super::widening::{ForeignPolicy, summarize, widening};

/// What a namespace holds now, as far as our baselines are concerned.
#[derive(Clone, Debug, Default)]
pub struct LiveState {
    pub namespace_labels: BTreeMap<String, String>,
    /// The `default` ServiceAccount, once the controller-manager has created it.
    pub default_service_account: Option<ServiceAccount>,
    /// Objects of the kinds we generate: those named like a desired object, and those carrying our
    /// labels.
    pub objects: Vec<Object>,
    /// Namespace label keys our field manager owns (from its managedFields entry).
    pub owned_namespace_labels: BTreeSet<String>,
    /// Objects that are ours though someone took our labels or field manager off them: the
    /// controller recognised them (by uid, or by our field manager's entry).
    pub relabelled: BTreeSet<(Kind, String)>,
    /// NetworkPolicies someone else made in the namespace, summarised.
    pub foreign_policies: Vec<ForeignPolicy>,
}

impl LiveState {
    /// The state of a namespace labelled `labels` that complies with `desired` as the operator
    /// leaves it: our objects as applied by our field manager, Pod Security labels meeting every
    /// selecting baseline (Enforce or Audit), the default ServiceAccount without a token if any
    /// baseline asks. For tests, the fuzzer and benchmarks: diffing it against `desired` must find
    /// nothing.
    pub fn complying(desired: &DesiredState, labels: &BTreeMap<String, String>) -> LiveState {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
        let objects = desired
            .objects
            .iter()
            .map(|d| {
                let mut object = d.object.clone();
                object.meta_mut().managed_fields = Some(vec![ManagedFieldsEntry {
                    manager: Some(super::object::FIELD_MANAGER.to_string()),
                    operation: Some("Apply".to_string()),
                    ..ManagedFieldsEntry::default()
                }]);
                object
            })
            .collect();
        let mut namespace_labels = labels.clone();
        for mode in PSA_MODES {
            let strictest = desired
                .requirements
                .iter()
                .filter_map(|r| r.pod_security.get(mode))
                .max_by_key(|p| p.strictness());
            if let Some(policy) = strictest {
                namespace_labels.extend(policy.labels(mode));
            }
        }
        let token_off = desired
            .requirements
            .iter()
            .any(|r| r.disable_token_automount);
        LiveState {
            namespace_labels,
            default_service_account: Some(ServiceAccount {
                automount_service_account_token: token_off.then_some(false),
                ..ServiceAccount::default()
            }),
            objects,
            owned_namespace_labels: desired.namespace_labels.keys().cloned().collect(),
            ..LiveState::default()
        }
    }
}

/// How something differs from its baseline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum DriftReason {
    /// The object or label does not exist.
    Missing,
    /// Someone changed it so it allows more than the baseline.
    Weakened(String),
    /// Someone changed it in another way.
    Modified(String),
    /// A same-named object exists that this operator did not create.
    Conflict,
    /// One of our objects, with our labels or field manager taken off: ours all the same.
    Relabelled,
    /// A NetworkPolicy someone else made lets through what the default-deny denies (policies are
    /// additive, so it opens the namespace without touching ours). Never ours to repair.
    Widened(String),
    /// Ours, but its baseline no longer asks for it.
    Stale,
    /// Would be repaired, but the API server refused the operator the write (RBAC); what the
    /// repair was for.
    Forbidden(Box<DriftReason>),
    /// Would be repaired, but the write failed (retried with back-off); what it was for.
    WriteFailed(Box<DriftReason>),
}

impl DriftReason {
    /// One word, for status and metrics labels.
    pub fn short(&self) -> &'static str {
        match self {
            DriftReason::Missing => "Missing",
            DriftReason::Weakened(_) => "Weakened",
            DriftReason::Modified(_) => "Modified",
            DriftReason::Conflict => "Conflict",
            DriftReason::Relabelled => "Relabelled",
            DriftReason::Widened(_) => "Widened",
            DriftReason::Stale => "Stale",
            DriftReason::Forbidden(_) => "Forbidden",
            DriftReason::WriteFailed(_) => "WriteFailed",
        }
    }

    /// How much it matters, for choosing which records a capped status lists: controls that are
    /// off first, then what the operator cannot fix, then cosmetic differences.
    pub fn severity(&self) -> u8 {
        match self {
            DriftReason::Missing | DriftReason::Weakened(_) | DriftReason::Widened(_) => 3,
            DriftReason::Conflict
            | DriftReason::Relabelled
            | DriftReason::Forbidden(_)
            | DriftReason::WriteFailed(_) => 2,
            DriftReason::Modified(_) => 1,
            DriftReason::Stale => 0,
        }
    }
}

impl fmt::Display for DriftReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DriftReason::Weakened(detail)
            | DriftReason::Modified(detail)
            | DriftReason::Widened(detail) => {
                write!(f, "{}: {detail}", self.short())
            }
            DriftReason::Relabelled => {
                write!(
                    f,
                    "Relabelled: ours, with its labels or field manager taken off"
                )
            }
            DriftReason::WriteFailed(was) => {
                write!(f, "WriteFailed: the repair failed ({was}); retrying")
            }
            DriftReason::Forbidden(was) => {
                write!(
                    f,
                    "Forbidden: the operator may not repair it ({was}); see RBAC delegation in the README"
                )
            }
            DriftReason::Conflict => {
                write!(
                    f,
                    "Conflict: exists and was not created by zerotrust-operator"
                )
            }
            other => f.write_str(other.short()),
        }
    }
}

/// One thing in a namespace that differs from a baseline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Drift {
    pub baseline: String,
    pub kind: Kind,
    /// Object name, or the label key for Namespace labels.
    pub name: String,
    pub reason: DriftReason,
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.kind, self.name, self.reason)
    }
}

/// Everything in `live` that differs from `desired`, in a stable order.
pub fn diff(desired: &DesiredState, live: &LiveState) -> Vec<Drift> {
    let mut drift = Vec::new();
    let live_object = |kind: Kind, name: &str| {
        live.objects
            .iter()
            .find(|o| o.kind() == kind && o.name() == name)
    };
    for wanted in &desired.objects {
        let (kind, name) = (wanted.object.kind(), wanted.object.name());
        let reason = match live_object(kind, name) {
            None => Some(DriftReason::Missing),
            Some(found) => match ownership(found.meta()) {
                Ownership::Baseline(b) if b == wanted.baseline => compare(&wanted.object, found),
                _ if live.relabelled.contains(&(kind, name.to_string())) => {
                    Some(DriftReason::Relabelled)
                }
                _ => Some(DriftReason::Conflict),
            },
        };
        if let Some(reason) = reason {
            drift.push(Drift {
                baseline: wanted.baseline.clone(),
                kind,
                name: name.to_string(),
                reason,
            });
        }
    }
    for found in &live.objects {
        if let Ownership::Baseline(b) = ownership(found.meta())
            && desired.baseline(&b).is_some()
            && desired.object(found.kind(), found.name()).is_none()
        {
            drift.push(Drift {
                baseline: b,
                kind: found.kind(),
                name: found.name().to_string(),
                reason: DriftReason::Stale,
            });
        }
    }
    for requirement in &desired.requirements {
        let baseline = &requirement.baseline;
        for (mode, wanted) in &requirement.pod_security {
            if let Some((key, reason)) = compare_pod_security(mode, wanted, &live.namespace_labels)
            {
                drift.push(Drift {
                    baseline: baseline.clone(),
                    kind: Kind::Namespace,
                    name: key,
                    reason,
                });
            }
        }
        if requirement.disable_token_automount
            && let Some(sa) = &live.default_service_account
            && sa.automount_service_account_token != Some(false)
        {
            drift.push(Drift {
                baseline: baseline.clone(),
                kind: Kind::ServiceAccount,
                name: "default".to_string(),
                reason: DriftReason::Weakened(
                    "automountServiceAccountToken is not false".to_string(),
                ),
            });
        }
    }
    drift.extend(widened(desired, live));
    drift
}

/// The cluster-scoped admission objects that differ from what the baselines render: missing,
/// changed, someone else's under our name, or ours with no baseline rendering them any more.
pub fn diff_admission(desired: &[DesiredObject], live: &[Object]) -> Vec<Drift> {
    let mut drift = Vec::new();
    for wanted in desired {
        let (kind, name) = (wanted.object.kind(), wanted.object.name());
        let found = live.iter().find(|o| o.kind() == kind && o.name() == name);
        let reason = match found {
            None => Some(DriftReason::Missing),
            Some(found) => match ownership(found.meta()) {
                Ownership::Baseline(b) if b == wanted.baseline => compare(&wanted.object, found),
                _ => Some(DriftReason::Conflict),
            },
        };
        drift.extend(reason.map(|reason| Drift {
            baseline: wanted.baseline.clone(),
            kind,
            name: name.to_string(),
            reason,
        }));
    }
    for found in live {
        let wanted = desired
            .iter()
            .any(|d| d.object.kind() == found.kind() && d.object.name() == found.name());
        if let Ownership::Baseline(b) = ownership(found.meta())
            && !wanted
        {
            drift.push(Drift {
                baseline: b,
                kind: found.kind(),
                name: found.name().to_string(),
                reason: DriftReason::Stale,
            });
        }
    }
    drift
}

/// Findings for NetworkPolicies of others that open what a selecting baseline's default-deny
/// closes, beyond the allows that baseline makes itself.
fn widened(desired: &DesiredState, live: &LiveState) -> Vec<Drift> {
    let mut found = Vec::new();
    for baseline in &desired.baselines {
        let ours: Vec<&k8s_openapi::api::networking::v1::NetworkPolicy> = desired
            .objects
            .iter()
            .filter(|d| d.baseline == baseline.name)
            .filter_map(|d| match &d.object {
                Object::NetworkPolicy(p) => Some(p),
                _ => None,
            })
            .collect();
        for policy in &live.foreign_policies {
            if let Some(detail) = widening(policy, &ours) {
                found.push(Drift {
                    baseline: baseline.name.clone(),
                    kind: Kind::NetworkPolicy,
                    name: policy.name.clone(),
                    reason: DriftReason::Widened(detail),
                });
            }
        }
    }
    found
}

/// Whether the namespace's labels for `mode` hold at least `wanted`: the drift on the level or the
/// version label if not ([`shortfall`]).
fn compare_pod_security(
    mode: &str,
    wanted: &PodSecurityPolicy,
    labels: &BTreeMap<String, String>,
) -> Option<(String, DriftReason)> {
    Some(match shortfall(mode, wanted, labels)? {
        Shortfall::Missing(key) => (key, DriftReason::Missing),
        Shortfall::Weakened(key, detail) => (key, DriftReason::Weakened(detail)),
    })
}

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
