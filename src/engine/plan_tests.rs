//! What `plan` writes and when: Audit against Enforce, namespace labels kept, released and owned,
//! their order, and the wait for the onboarding marker and gate.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ManagedFieldsEntry};

use super::admission::{marker_value, onboarded_label};
use super::test_support::{
    ENFORCE_LABEL, as_live, baseline_of as baseline, env, no_labels, none, psa_spec,
    restricted_spec, tenant_labels,
};
use super::*;
use crate::api::*;

/// A namespace's uid, as the API server gives it.
pub(super) const NAMESPACE_UID: &str = "6f1c2a3b-1d2e-4f50-9a8b-000000000001";

#[test]
fn audit_mode_plans_nothing() {
    let mut spec = restricted_spec();
    spec.mode = Mode::Audit;
    let desired = render(
        &[baseline("tenants", spec)],
        "team-a",
        &tenant_labels(),
        &env(),
    );
    let live = LiveState::default();
    let drift = diff(&desired, &live);
    assert!(!drift.is_empty());
    assert_eq!(plan(&desired, &live, &drift, &none()), vec![]);
}

/// A Restricted baseline with `policy` whose selector matches no namespace.
fn unselecting_restricted(policy: DeletionPolicy) -> SecurityBaselineSpec {
    SecurityBaselineSpec {
        pod_security: Some(PodSecuritySpec {
            enforce: Some(PodSecurityLevel::Restricted),
            ..Default::default()
        }),
        deletion_policy: policy,
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([("nothing".into(), "here".into())])),
            match_expressions: None,
        }),
        ..Default::default()
    }
}

/// The objects a baseline named `name` renders in `ns`, as read back: an object "of" it.
fn objects_of_baseline(name: &str, ns: &str) -> Vec<Object> {
    let spec = SecurityBaselineSpec {
        network_policy: Some(NetworkPolicySpec {
            default_deny: vec![PolicyType::Ingress],
            ..Default::default()
        }),
        ..Default::default()
    };
    as_live(&render(&[baseline(name, spec)], ns, &no_labels(), &env())).objects
}

#[test]
fn labels_of_a_leaving_delete_baseline_are_released_others_kept() {
    let leaving = baseline("gone", unselecting_restricted(DeletionPolicy::Delete));
    let orphaned = baseline("kept", unselecting_restricted(DeletionPolicy::Orphan));
    let desired = render(
        &[leaving.clone(), orphaned.clone()],
        "ns",
        &no_labels(),
        &env(),
    );
    assert!(desired.is_empty(), "neither selects the namespace");
    let enforce = "pod-security.kubernetes.io/enforce".to_string();
    let version = "pod-security.kubernetes.io/enforce-version".to_string();
    let mut live = LiveState {
        namespace_labels: BTreeMap::from([
            (enforce.clone(), "restricted".into()),
            (version.clone(), "latest".into()),
        ]),
        namespace_uid: Some(NAMESPACE_UID.into()),
        owned_namespace_labels: [enforce.clone(), version.clone()].into(),
        ..LiveState::default()
    };
    // A Delete baseline that was never in force here (no marker, no object of it) releases
    // nothing, even where its levels equal the labels we own: another baseline set them.
    assert_eq!(
        released_labels(&desired, std::slice::from_ref(&leaving), &live),
        none()
    );
    let marker = onboarded_label("gone");
    live.namespace_labels
        .insert(marker.clone(), marker_value(NAMESPACE_UID, None));
    // A marker someone else set is no evidence either.
    assert_eq!(
        released_labels(&desired, std::slice::from_ref(&leaving), &live),
        none()
    );
    live.owned_namespace_labels.insert(marker.clone());
    // Nor one of ours with a value we would not write now (the "true" of older versions).
    let mut old_marker = live.clone();
    old_marker
        .namespace_labels
        .insert(marker.clone(), "true".into());
    assert_eq!(
        released_labels(&desired, std::slice::from_ref(&leaving), &old_marker),
        none()
    );
    let released = released_labels(&desired, std::slice::from_ref(&leaving), &live);
    assert_eq!(
        released,
        [enforce.clone(), version.clone(), marker.clone()].into()
    );
    // An object of it is no evidence: labels and field manager are not authenticated, and a
    // tenant could create one where no baseline protects the namespace any more.
    let mut by_object = live.clone();
    by_object.namespace_labels.remove(&marker);
    by_object.owned_namespace_labels.remove(&marker);
    by_object.objects = objects_of_baseline("gone", "ns");
    assert!(!by_object.objects.is_empty());
    assert_eq!(
        released_labels(&desired, std::slice::from_ref(&leaving), &by_object),
        none()
    );
    let actions = plan(&desired, &live, &[], &released);
    assert_eq!(
        actions,
        vec![Write::ApplyNamespaceLabels(BTreeMap::new())],
        "giving up both labels and the marker"
    );
    // Orphan: nothing is released.
    assert_eq!(released_labels(&desired, &[], &live), none());
    assert_eq!(plan(&desired, &live, &[], &none()), vec![]);
    // A value someone changed is theirs and stays.
    live.namespace_labels
        .insert(enforce.clone(), "baseline".into());
    assert_eq!(
        released_labels(&desired, &[leaving], &live),
        [version, marker].into()
    );
}

#[test]
fn owned_labels_not_released_are_kept_in_every_label_apply() {
    let spec = SecurityBaselineSpec {
        pod_security: Some(PodSecuritySpec {
            enforce: Some(PodSecurityLevel::Baseline),
            ..Default::default()
        }),
        ..Default::default()
    };
    let desired = render(&[baseline("b", spec)], "ns", &no_labels(), &env());
    let mut live = as_live(&desired);
    live.namespace_labels
        .remove("pod-security.kubernetes.io/enforce");
    live.namespace_labels.insert(
        "pod-security.kubernetes.io/audit".into(),
        "restricted".into(),
    );
    live.owned_namespace_labels
        .insert("pod-security.kubernetes.io/audit".into());
    let actions = plan(&desired, &live, &diff(&desired, &live), &none());
    let [Write::ApplyNamespaceLabels(labels)] = &actions[..] else {
        panic!("{actions:?}")
    };
    assert_eq!(
        labels["pod-security.kubernetes.io/audit"], "restricted",
        "an orphaned label we own stays ours"
    );
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "baseline");
}

#[test]
fn owned_label_keys_come_from_our_managed_fields() {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ObjectMeta};
    let entry = |manager: &str, key: &str| ManagedFieldsEntry {
        manager: Some(manager.into()),
        operation: Some("Apply".into()),
        fields_v1: Some(FieldsV1(
            serde_json::json!({"f:metadata": {"f:labels": {format!("f:{key}"): {}}}}),
        )),
        ..Default::default()
    };
    let meta = ObjectMeta {
        managed_fields: Some(vec![
            entry(FIELD_MANAGER, "pod-security.kubernetes.io/warn"),
            entry("kubectl", "team"),
        ]),
        ..Default::default()
    };
    assert_eq!(
        owned_label_keys(&meta),
        ["pod-security.kubernetes.io/warn".to_string()].into()
    );
}

#[test]
fn an_audit_baseline_never_changes_what_an_enforce_baseline_writes() {
    let a = baseline(
        "a",
        psa_spec(Mode::Enforce, PodSecurityLevel::Baseline, None),
    );
    let mut b_spec = psa_spec(Mode::Audit, PodSecurityLevel::Restricted, None);
    b_spec.service_accounts = Some(ServiceAccountsSpec {
        automount_default_token: Some(false),
    });
    let b = baseline("b", b_spec);
    let desired = render(&[a, b], "ns", &no_labels(), &env());
    // What render shows is what is written: A's level, not B's.
    assert_eq!(desired.namespace_labels[ENFORCE_LABEL].value, "baseline");
    assert_eq!(desired.namespace_labels[ENFORCE_LABEL].baseline, "a");
    assert_eq!(
        desired.disable_default_token_automount, None,
        "B is Audit: no write"
    );

    // A fresh namespace: A's label is missing and repaired; B's shortfall is B's own drift.
    let live = LiveState {
        default_service_account: Some(ServiceAccount::default()),
        ..LiveState::default()
    };
    let drift = diff(&desired, &live);
    let writes = plan(&desired, &live, &drift, &none());
    let [Write::ApplyNamespaceLabels(labels)] = &writes[..] else {
        panic!("{writes:?}")
    };
    assert_eq!(labels[ENFORCE_LABEL], "baseline");

    // Once A is in place: A complies, B reports what it wants, and nothing is written.
    let mut live = live;
    live.namespace_labels
        .insert(ENFORCE_LABEL.into(), "baseline".into());
    let drift = diff(&desired, &live);
    assert!(drift.iter().all(|d| d.baseline == "b"), "{drift:?}");
    assert!(drift.iter().any(|d| d.kind == Kind::Namespace
        && d.name == ENFORCE_LABEL
        && matches!(&d.reason, DriftReason::Weakened(w) if w == "baseline instead of restricted")));
    assert!(drift.iter().any(|d| d.kind == Kind::ServiceAccount));
    assert_eq!(plan(&desired, &live, &drift, &none()), vec![]);
}

#[test]
fn an_audit_baseline_does_not_release_an_enforced_label() {
    let a = baseline(
        "a",
        psa_spec(Mode::Enforce, PodSecurityLevel::Baseline, None),
    );
    let b = baseline(
        "b",
        psa_spec(Mode::Audit, PodSecurityLevel::Restricted, None),
    );
    let desired = render(&[a, b], "ns", &no_labels(), &env());
    // Onboarded under A, then someone lowers the level: the repair writes A's label back.
    let mut live = as_live(&desired);
    live.namespace_labels
        .insert(ENFORCE_LABEL.into(), "privileged".into());
    let drift = diff(&desired, &live);
    let writes = plan(&desired, &live, &drift, &none());
    let [Write::ApplyNamespaceLabels(labels)] = &writes[..] else {
        panic!("{writes:?}")
    };
    assert_eq!(labels[ENFORCE_LABEL], "baseline");
}

#[test]
fn pod_security_labels_are_written_before_anything_else() {
    let desired = render(
        &[baseline("tenants", restricted_spec())],
        "team-a",
        &tenant_labels(),
        &env(),
    );
    let live = LiveState {
        default_service_account: Some(ServiceAccount::default()),
        ..LiveState::default()
    };
    let writes = plan(&desired, &live, &diff(&desired, &live), &none());
    assert!(
        matches!(writes[0], Write::ApplyNamespaceLabels(_)),
        "{writes:?}"
    );
    assert!(writes.len() > 1);
}

#[test]
fn labels_wait_for_the_marker_only_where_that_opens_nothing_early() {
    let desired = render(
        &[baseline("tenants", restricted_spec())],
        "team-a",
        &tenant_labels(),
        &env(),
    );
    let mut live = LiveState {
        namespace_uid: Some(NAMESPACE_UID.into()),
        ..LiveState::default()
    };
    let marker = onboarded_label("tenants");
    let labels = namespace_labels(&desired, &live, &none());
    assert!(labels.keys().any(|k| k.starts_with(PSA_LABEL_PREFIX)));
    let waits = |live: &LiveState, remaining: &[&Drift]| {
        labels_wait_for_markers(&desired, live, remaining, &labels)
    };
    // Every selected namespace is gated, whenever it was created: raising Pod Security in the
    // write that opens the gate could let a pod pass PodSecurity on the old labels and the gate
    // on the new marker. Labels first.
    assert!(!waits(&live, &[]));
    // Unless the mutating policy already set them at creation: the write then raises nothing.
    let mut created_labelled = live.clone();
    created_labelled.namespace_labels = labels.clone();
    assert!(waits(&created_labelled, &[]));
    // A finding the pass cannot repair keeps the marker back, so nothing waits for it.
    let drift = diff(&desired, &live);
    let conflict = Drift {
        reason: DriftReason::Conflict,
        ..drift
            .iter()
            .find(|d| d.kind == Kind::NetworkPolicy)
            .unwrap()
            .clone()
    };
    assert!(!waits(&created_labelled, &[&conflict]));
    // A missing Role does not keep the marker back.
    let roles: Vec<&Drift> = drift.iter().filter(|d| d.kind == Kind::Role).collect();
    assert!(!roles.is_empty());
    assert!(waits(&created_labelled, &roles));
    // Onboarded: a repair writes its labels at once.
    created_labelled
        .namespace_labels
        .insert(marker.clone(), marker_value(NAMESPACE_UID, None));
    assert!(!waits(&created_labelled, &[]));
    // A marker with another value is not the operator's: still onboarding.
    created_labelled
        .namespace_labels
        .insert(marker.clone(), "true".into());
    assert!(waits(&created_labelled, &[]));
    // Without the namespace's uid no marker can be due: nothing waits for one.
    live.namespace_labels = labels.clone();
    live.namespace_uid = None;
    assert!(!waits(&live, &[]));
    // Audit baselines set no marker and write nothing: nothing waits.
    let mut spec = restricted_spec();
    spec.mode = Mode::Audit;
    let audit = render(
        &[baseline("audit", spec)],
        "team-a",
        &tenant_labels(),
        &env(),
    );
    assert!(!labels_wait_for_markers(
        &audit,
        &created_labelled,
        &[],
        &labels
    ));
}
