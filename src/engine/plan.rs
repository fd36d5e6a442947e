//! (desired, live, drift) -> the writes that repair a namespace. Audit-mode baselines get none.

use std::collections::{BTreeMap, BTreeSet};

use super::admission::onboarded_label;
use super::diff::{Drift, DriftReason, LiveState};
use super::object::{Kind, Object};
use super::pod_security::{
    PSA_LABEL_PREFIX, PSA_MODES, PodSecurityPolicy, level_label, policy_to_apply, version_label,
};
use super::render::{DesiredObject, DesiredState, pod_security_labels};
use super::validate::ValidBaseline;
use crate::api::{ConflictPolicy, Mode};

/// One write to a namespace. (Named apart from kube's `controller::Action`, which says when to
/// reconcile again.)
#[derive(Clone, Debug, PartialEq)]
pub enum Write {
    /// Server-side apply (forced: a repair takes back fields someone else changed).
    Apply(Object),
    /// Delete and create again: for changes the API cannot apply in place (a RoleBinding's roleRef).
    Recreate(Object),
    /// Delete one of our objects that its baseline no longer asks for; `uid` guards against
    /// deleting a same-named object created since we looked.
    Delete {
        kind: Kind,
        name: String,
        uid: Option<String>,
    },
    /// Apply the Namespace labels we own (always the full set: with server-side apply, a label
    /// left out of an apply is a label given up).
    ApplyNamespaceLabels(BTreeMap<String, String>),
    /// Apply `automountServiceAccountToken: false` to the `default` ServiceAccount.
    DisableDefaultTokenAutomount,
}

/// True when the operator repairs `drift` rather than only reporting it: its baseline is in
/// Enforce mode, and it is not a conflict (unless the baseline adopts conflicting objects).
pub fn repairable(desired: &DesiredState, drift: &Drift) -> bool {
    // Refused or failed writes are not tried again in this pass; others' policies are theirs.
    if matches!(
        drift.reason,
        DriftReason::Forbidden(_) | DriftReason::WriteFailed(_) | DriftReason::Widened(_)
    ) {
        return false;
    }
    desired.baseline(&drift.baseline).is_some_and(|b| {
        b.mode == Mode::Enforce
            && (drift.reason != DriftReason::Conflict || b.conflict_policy == ConflictPolicy::Adopt)
    })
}

/// True when `drift` left unrepaired keeps a namespace from being onboarded (its gate open): a
/// control that isolates or bounds pods is missing, weakened or not ours. Roles are not among
/// them: a missing least-privilege Role grants nothing.
pub fn blocks_onboarding(drift: &Drift) -> bool {
    !matches!(drift.kind, Kind::Role | Kind::RoleBinding)
        && matches!(
            drift.reason,
            DriftReason::Missing
                | DriftReason::Weakened(_)
                | DriftReason::Conflict
                | DriftReason::Relabelled
                | DriftReason::Forbidden(_)
                | DriftReason::WriteFailed(_)
        )
}

/// The onboarding markers to set after a pass: for each Enforce baseline whose drift left
/// (`remaining`: what the pass did not repair) blocks nothing, and whose marker the namespace
/// lacks.
pub fn markers_due(
    desired: &DesiredState,
    remaining: &[&Drift],
    labels: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    desired
        .baselines
        .iter()
        .filter(|b| b.mode == Mode::Enforce)
        .filter(|b| {
            !remaining
                .iter()
                .any(|d| d.baseline == b.name && blocks_onboarding(d))
        })
        .map(|b| onboarded_label(&b.name))
        .filter(|key| labels.get(key).map(String::as_str) != Some("true"))
        .map(|key| (key, "true".to_string()))
        .collect()
}

/// The namespace write that ends a pass: the onboarding markers due (`remaining`: the drift the
/// pass left), with the Pod Security labels as they must be now, read from `fresh`, the newest
/// namespace there is (a label someone raised during the pass stays raised). None when no marker
/// is due and no label write was held back for one ([`labels_wait_for_markers`]).
pub fn onboarding_write(
    desired: &DesiredState,
    leaving: &[ValidBaseline],
    fresh: &LiveState,
    remaining: &[&Drift],
    labels_held_back: bool,
) -> Option<Write> {
    let due = markers_due(desired, remaining, &fresh.namespace_labels);
    if due.is_empty() && !labels_held_back {
        return None;
    }
    let released = released_labels(desired, leaving, fresh);
    let mut labels = namespace_labels(desired, fresh, &released);
    labels.extend(due);
    Some(Write::ApplyNamespaceLabels(labels))
}

/// True when a pass may hold back `labels`, its Pod Security label write, to make it with the
/// onboarding markers in one apply at the end of the pass: one Namespace write instead of two
/// per onboarded namespace, and one event fewer for every namespace watcher in the cluster.
///
/// Only where that opens nothing early. The API server's PodSecurity check and the onboarding
/// gate read the namespace at different moments of one pod's admission, so a single write that
/// both raised Pod Security and set a marker could let a pod pass PodSecurity on the old labels
/// and the gate on the new marker. So the labels wait only when
/// - a marker can be due after this pass (an Enforce baseline's marker is missing, and no drift
///   the pass cannot repair, `remaining`, already keeps it back), and
/// - every baseline whose marker would come with them does not gate this namespace (`gated`: the
///   namespace is not older than the baseline), or the write raises no Pod Security label (the
///   mutating policy set them at creation, and the write only takes them over).
///
/// A namespace that existed before the baseline ran pods unchecked until this pass anyway; its
/// labels wait only for the pass's own object writes. The held-back labels are written even when
/// every other write of the pass fails (`reconcile::mark_onboarded`).
pub fn labels_wait_for_markers(
    desired: &DesiredState,
    live: &LiveState,
    remaining: &[&Drift],
    labels: &BTreeMap<String, String>,
    gated: impl Fn(&str) -> bool,
) -> bool {
    let due = markers_due(desired, remaining, &live.namespace_labels);
    if due.is_empty() {
        return false;
    }
    let raises_pod_security = labels
        .iter()
        .any(|(k, v)| k.starts_with(PSA_LABEL_PREFIX) && live.namespace_labels.get(k) != Some(v));
    !raises_pod_security
        || desired
            .baselines
            .iter()
            .filter(|b| due.contains_key(&onboarded_label(&b.name)))
            .all(|b| !gated(&b.name))
}

/// PSA labels (and onboarding markers) to give up: those a leaving baseline (`deletionPolicy: Delete`, and no longer
/// selecting the namespace or being deleted) set, that no selecting baseline wants, and whose value
/// is still the one it set (a value someone changed is theirs, and stays).
///
/// Only a baseline that was in force here releases anything: every Delete baseline of the cluster
/// that does not select this namespace is "leaving" it, and one whose levels happen to equal those
/// an Orphan baseline left behind must not take them away. With one field manager we cannot tell
/// who set a label, so the evidence is the baseline's onboarding marker on the namespace, which
/// only the operator may set (its tamper policy). Not one of its objects: a tenant can create an
/// object that looks like ours (labels and field manager are not authenticated) where no baseline
/// protects the namespace any more. Without the marker the labels stay (the stricter state wins).
pub fn released_labels(
    desired: &DesiredState,
    leaving: &[ValidBaseline],
    live: &LiveState,
) -> BTreeSet<String> {
    leaving
        .iter()
        .filter(|b| was_in_force(b.name(), live))
        .flat_map(|b| {
            let mut labels = pod_security_labels(b);
            labels.insert(onboarded_label(b.name()), "true".to_string());
            labels
        })
        .filter(|(key, value)| {
            !desired.namespace_labels.contains_key(key)
                && live.owned_namespace_labels.contains(key)
                && live.namespace_labels.get(key) == Some(value)
        })
        .map(|(key, _)| key)
        .collect()
}

/// True when the namespace carries `baseline`'s onboarding marker, set by us: it was in force
/// here. (Baselines are known by name: one deleted and created again under the same name is
/// the same baseline to its markers and objects.)
fn was_in_force(baseline: &str, live: &LiveState) -> bool {
    let marker = onboarded_label(baseline);
    live.namespace_labels.get(&marker).map(String::as_str) == Some("true")
        && live.owned_namespace_labels.contains(&marker)
}

/// The writes that bring `live` to `desired`, given the `drift` between them and the labels to
/// give up. The Pod Security labels come first: they are what protects a new namespace most, so
/// nothing written before them may delay them.
pub fn plan(
    desired: &DesiredState,
    live: &LiveState,
    drift: &[Drift],
    released: &BTreeSet<String>,
) -> Vec<Write> {
    let mut actions = Vec::new();
    let mut labels_drifted = false;
    for d in drift.iter().filter(|d| repairable(desired, d)) {
        match (d.kind, &d.reason) {
            (Kind::Namespace, _) => labels_drifted = true,
            (Kind::ServiceAccount, _) => actions.push(Write::DisableDefaultTokenAutomount),
            (_, DriftReason::Stale) => {
                let uid = live
                    .objects
                    .iter()
                    .find(|o| o.kind() == d.kind && o.name() == d.name)
                    .and_then(|o| o.meta().uid.clone());
                actions.push(Write::Delete {
                    kind: d.kind,
                    name: d.name.clone(),
                    uid,
                });
            }
            (Kind::RoleBinding, DriftReason::Modified(field)) if field == "roleRef" => {
                if let Some(wanted) = desired.object(d.kind, &d.name) {
                    actions.push(Write::Recreate(wanted.object.clone()));
                }
            }
            _ => {
                if let Some(wanted) = desired.object(d.kind, &d.name) {
                    actions.push(Write::Apply(wanted.object.clone()));
                }
            }
        }
    }
    if labels_drifted || !released.is_empty() {
        actions.insert(
            0,
            Write::ApplyNamespaceLabels(namespace_labels(desired, live, released)),
        );
    }
    actions
}

/// The PSA labels to own on the Namespace: the Enforce baselines' composed policy per mode, or
/// the namespace's own where it is stricter, plus those we own already and are not releasing (an
/// apply that left them out would remove them, and `deletionPolicy: Orphan` keeps security
/// controls in place).
pub fn namespace_labels(
    desired: &DesiredState,
    live: &LiveState,
    released: &BTreeSet<String>,
) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    for mode in PSA_MODES {
        let composed = |key: String| desired.namespace_labels.get(&key);
        let (Some(level), Some(version)) =
            (composed(level_label(mode)), composed(version_label(mode)))
        else {
            continue;
        };
        let Some(level) = crate::api::PodSecurityLevel::parse(&level.value) else {
            continue;
        };
        let composed = PodSecurityPolicy {
            level,
            version: version.value.clone(),
        };
        let policy = policy_to_apply(mode, &composed, &live.namespace_labels);
        labels.extend(policy.labels(mode));
    }
    let kept: Vec<(String, String)> = live
        .owned_namespace_labels
        .iter()
        .filter(|k| !released.contains(*k) && !labels.contains_key(*k))
        .filter_map(|k| Some((k.clone(), live.namespace_labels.get(k)?.clone())))
        .collect();
    labels.extend(kept);
    labels
}

impl Write {
    /// True when this action repairs `drift`.
    pub fn repairs(&self, drift: &Drift) -> bool {
        match self {
            Write::Apply(o) | Write::Recreate(o) => {
                o.kind() == drift.kind && o.name() == drift.name
            }
            Write::Delete { kind, name, .. } => *kind == drift.kind && *name == drift.name,
            Write::ApplyNamespaceLabels(_) => drift.kind == Kind::Namespace,
            Write::DisableDefaultTokenAutomount => drift.kind == Kind::ServiceAccount,
        }
    }
}

/// The writes that bring the cluster-scoped admission objects to `desired`: created or applied
/// when missing or changed, deleted when no baseline renders them any more (they go with their
/// baseline), left alone and reported when someone else's (a conflict).
pub fn plan_admission(desired: &[DesiredObject], live: &[Object], drift: &[Drift]) -> Vec<Write> {
    drift
        .iter()
        .filter_map(|d| match &d.reason {
            DriftReason::Conflict | DriftReason::Forbidden(_) | DriftReason::WriteFailed(_) => None,
            DriftReason::Stale => Some(Write::Delete {
                kind: d.kind,
                name: d.name.clone(),
                uid: live
                    .iter()
                    .find(|o| o.kind() == d.kind && o.name() == d.name)
                    .and_then(|o| o.meta().uid.clone()),
            }),
            _ => desired
                .iter()
                .find(|o| o.object.kind() == d.kind && o.object.name() == d.name)
                .map(|o| Write::Apply(o.object.clone())),
        })
        .collect()
}
