//! (desired, live) -> drift: what in a namespace differs from its baselines, and how.
//!
//! Our own labels and fields the API server adds are not drift. Fields others add to our objects
//! are drift only where they weaken the baseline: an extra allow rule in our NetworkPolicy is, an
//! extra annotation is not.

mod compare;

pub use compare::compare;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use k8s_openapi::api::core::v1::ServiceAccount;
use serde::Serialize;

use super::object::{Kind, Object, Ownership, ownership};
use super::pod_security::{PSA_MODES, PodSecurityPolicy, Shortfall, shortfall};
use super::render::{DesiredObject, DesiredState};
use super::widening::{PolicySummary, summarize, widening};

/// What a namespace holds now, as far as our baselines are concerned.
#[derive(Clone, Debug, Default)]
pub struct LiveState {
    pub namespace_labels: BTreeMap<String, String>,
    /// The namespace's uid: what its onboarding markers carry (none: no marker can be set).
    pub namespace_uid: Option<String>,
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
    /// Every NetworkPolicy in the namespace, ours included, summarised: whose it is is judged by
    /// content (is it a selecting baseline's desired object?), never by labels or field managers.
    pub network_policies: Vec<PolicySummary>,
}

impl LiveState {
    /// The state of a namespace labelled `labels` that complies with `desired` as the operator
    /// leaves it: our objects as applied by our field manager, Pod Security labels meeting every
    /// selecting baseline (Enforce or Audit), the default ServiceAccount without a token if any
    /// baseline asks. For tests, the fuzzer and benchmarks: diffing it against `desired` must find
    /// nothing.
    pub fn complying(desired: &DesiredState, labels: &BTreeMap<String, String>) -> LiveState {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
        let network_policies = desired
            .objects
            .iter()
            .filter_map(|d| match &d.object {
                Object::NetworkPolicy(p) => Some(summarize(p)),
                _ => None,
            })
            .collect();
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
            let composed = desired
                .requirements
                .iter()
                .filter_map(|r| r.pod_security.get(mode))
                .cloned()
                .reduce(|a, b| a.join(&b));
            if let Some(policy) = composed {
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
            network_policies,
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
    /// A NetworkPolicy that is not one of the baseline's own (a tenant's, whatever its labels, or
    /// another selecting baseline's) lets through what the default-deny denies (policies are
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

/// Findings for NetworkPolicies that open what a selecting baseline's default-deny closes, beyond
/// the allows that baseline makes itself: every policy in the namespace but the baseline's own
/// desired ones is judged, whatever its labels or field managers say (both are forgeable). A
/// policy that is another selecting baseline's desired object is named as such: NetworkPolicies
/// add up, so another baseline's allow opens this one's default-deny, and the stricter baseline
/// reports it.
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
        let own = |name: &str| {
            ours.iter()
                .any(|p| p.metadata.name.as_deref() == Some(name))
        };
        for policy in live.network_policies.iter().filter(|p| !own(&p.name)) {
            if let Some(detail) = widening(policy, &ours) {
                found.push(Drift {
                    baseline: baseline.name.clone(),
                    kind: Kind::NetworkPolicy,
                    name: policy.name.clone(),
                    reason: DriftReason::Widened(composed(desired, &baseline.name, policy, detail)),
                });
            }
        }
    }
    found
}

/// The Widened detail, naming first the other selecting baseline when the policy is one of its
/// desired objects (known from what the engine rendered, never from the object's labels).
fn composed(
    desired: &DesiredState,
    baseline: &str,
    policy: &PolicySummary,
    detail: String,
) -> String {
    match desired.object(Kind::NetworkPolicy, &policy.name) {
        Some(other) if other.baseline != baseline => format!(
            "SecurityBaseline {}'s policy {detail}, which {baseline}'s allows do not (NetworkPolicies add up: another baseline's allow opens this one's default-deny)",
            other.baseline
        ),
        _ => detail,
    }
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
