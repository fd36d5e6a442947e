//! (desired, live, drift) -> the writes that repair a namespace. Audit-mode baselines get none.

use std::collections::{BTreeMap, BTreeSet};

use super::admission::{ONBOARDED_LABEL_PREFIX, marker_value, onboarded_label};
use super::diff::{Drift, DriftReason, LiveState};
use super::object::{Kind, Object, object_name};
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
    /// Remove these Namespace labels whoever set them (a merge patch, not an apply: a label
    /// another field manager owns outlives our apply): onboarding markers that may not stay.
    RemoveNamespaceLabels(BTreeSet<String>),
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

/// The onboarding markers a namespace may carry after a pass that leaves `remaining` unrepaired:
/// for each Enforce baseline none of whose drift left blocks onboarding, its marker with the value
/// only the operator can know ([`marker_value`]). None without the namespace's uid.
pub fn markers_wanted(
    desired: &DesiredState,
    remaining: &[&Drift],
    live: &LiveState,
) -> BTreeMap<String, String> {
    let Some(namespace_uid) = live.namespace_uid.as_deref() else {
        return BTreeMap::new();
    };
    desired
        .baselines
        .iter()
        .filter(|b| b.mode == Mode::Enforce)
        .filter(|b| {
            !remaining
                .iter()
                .any(|d| d.baseline == b.name && blocks_onboarding(d))
        })
        .map(|b| {
            let value = marker_value(namespace_uid, b.uid.as_deref());
            (onboarded_label(&b.name), value)
        })
        .collect()
}

/// The onboarding markers to set after a pass: those wanted ([`markers_wanted`]) that the
/// namespace lacks, or carries with another value.
pub fn markers_due(
    desired: &DesiredState,
    remaining: &[&Drift],
    live: &LiveState,
) -> BTreeMap<String, String> {
    markers_wanted(desired, remaining, live)
        .into_iter()
        .filter(|(key, value)| live.namespace_labels.get(key) != Some(value))
        .collect()
}

/// The onboarding markers on the namespace that may not stay, given the drift `unrepaired`: every
/// one not wanted ([`markers_wanted`]), whoever set it and whatever its value: a marker of a
/// baseline that does not select the namespace (so coming back is gated again), or only audits
/// it, or whose controls are not all in place. A wanted marker with a wrong value is rewritten
/// by [`markers_due`] instead (it opens nothing meanwhile: the gate compares the value).
pub fn markers_to_remove(
    desired: &DesiredState,
    unrepaired: &[&Drift],
    live: &LiveState,
) -> BTreeSet<String> {
    let wanted = markers_wanted(desired, unrepaired, live);
    live.namespace_labels
        .keys()
        .filter(|key| key.starts_with(ONBOARDED_LABEL_PREFIX) && !wanted.contains_key(*key))
        .cloned()
        .collect()
}

/// The onboarding markers to remove before a pass repairs anything: those that may not stay
/// ([`markers_to_remove`]) given the drift that leaves the namespace less protected than its
/// baseline asks. A missing allow policy (`zt-<b>-allow-*`) is left out: beside the default-deny
/// it only lets less through, so a baseline edit that adds an allow does not close the gate of
/// every namespace it selects (the marker waits for it all the same at the end of the pass).
pub fn markers_to_close(
    desired: &DesiredState,
    drift: &[Drift],
    live: &LiveState,
) -> BTreeSet<String> {
    let weakening: Vec<&Drift> = drift
        .iter()
        .filter(|d| {
            !(d.kind == Kind::NetworkPolicy
                && d.reason == DriftReason::Missing
                && d.name.starts_with(&object_name(&d.baseline, "allow-")))
        })
        .collect();
    markers_to_remove(desired, &weakening, live)
}

/// The namespace writes that end a pass: the markers that may not stay removed, then the markers
/// due (`remaining`: the drift the pass left) applied with the Pod Security labels as they must be
/// now, read from `fresh`, the newest namespace there is (a label someone raised during the pass
/// stays raised), less `released`. The apply comes only when a marker is due or a label write was
/// held back for one ([`labels_wait_for_markers`]).
pub fn onboarding_write(
    desired: &DesiredState,
    released: &BTreeSet<String>,
    fresh: &LiveState,
    remaining: &[&Drift],
    labels_held_back: bool,
) -> Vec<Write> {
    let mut writes = Vec::new();
    let removed = markers_to_remove(desired, remaining, fresh);
    if !removed.is_empty() {
        writes.push(Write::RemoveNamespaceLabels(removed.clone()));
    }
    let due = markers_due(desired, remaining, fresh);
    if !due.is_empty() || labels_held_back {
        let given_up: BTreeSet<String> = released.union(&removed).cloned().collect();
        let mut labels = namespace_labels(desired, fresh, &given_up);
        labels.extend(due);
        writes.push(Write::ApplyNamespaceLabels(labels));
    }
    writes
}

/// True when a pass may hold back `labels`, its Pod Security label write, to make it with the
/// onboarding markers in one apply at the end of the pass: one Namespace write instead of two
/// per onboarded namespace, and one event fewer for every namespace watcher in the cluster.
///
/// Only where that opens nothing early. The API server's PodSecurity check and the onboarding
/// gate read the namespace at different moments of one pod's admission, so a single write that
/// both raised Pod Security and set a marker could let a pod pass PodSecurity on the old labels
/// and the gate on the new marker. So the labels wait only when a marker can be due after this
/// pass (an Enforce baseline's marker is missing, and no drift the pass cannot repair,
/// `remaining`, already keeps it back), and the write raises no Pod Security label (the mutating
/// policy set them at creation, and the write only takes them over). Every selected namespace is
/// gated, whenever it was created: one older than the baseline gets its labels, then its marker.
/// The held-back labels are written even when every other write of the pass fails
/// (`reconcile::mark_onboarded`).
pub fn labels_wait_for_markers(
    desired: &DesiredState,
    live: &LiveState,
    remaining: &[&Drift],
    labels: &BTreeMap<String, String>,
) -> bool {
    if markers_due(desired, remaining, live).is_empty() {
        return false;
    }
    !labels
        .iter()
        .any(|(k, v)| k.starts_with(PSA_LABEL_PREFIX) && live.namespace_labels.get(k) != Some(v))
}

/// PSA labels (and onboarding markers) to give up: those a leaving baseline (`deletionPolicy: Delete`, and no longer
/// selecting the namespace or being deleted) set, that no selecting baseline wants, and whose value
/// is still the one it set (a value someone changed is theirs, and stays).
///
/// Only a baseline that was in force here releases anything: every Delete baseline of the cluster
/// that does not select this namespace is "leaving" it, and one whose levels happen to equal those
/// an Orphan baseline left behind must not take them away. With one field manager we cannot tell
/// who set a label, so the evidence is the baseline's onboarding marker on the namespace, with the
/// value only the operator can know (the namespace's and the baseline's uids). Not one of its
/// objects: a tenant can create an object that looks like ours (labels and field manager are not
/// authenticated) where no baseline protects the namespace any more. Without the marker the labels
/// stay (the stricter state wins).
pub fn released_labels(
    desired: &DesiredState,
    leaving: &[ValidBaseline],
    live: &LiveState,
) -> BTreeSet<String> {
    leaving
        .iter()
        .filter_map(|b| Some((b, in_force_marker(b, live)?)))
        .flat_map(|(b, marker)| {
            let mut labels = pod_security_labels(b);
            labels.insert(onboarded_label(b.name()), marker);
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

/// The value of `baseline`'s onboarding marker on the namespace when the operator set it: the
/// baseline was in force here. None for any other value (one someone else set, one of a baseline
/// deleted and created again under the same name, the `"true"` of older versions).
fn in_force_marker(baseline: &ValidBaseline, live: &LiveState) -> Option<String> {
    let marker = onboarded_label(baseline.name());
    let value = marker_value(
        live.namespace_uid.as_deref()?,
        baseline.baseline.metadata.uid.as_deref(),
    );
    (live.namespace_labels.get(&marker) == Some(&value)
        && live.owned_namespace_labels.contains(&marker))
    .then_some(value)
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
            Write::RemoveNamespaceLabels(_) => false,
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
