//! What `diff` finds in a namespace, and what `plan` repairs of it: missing, stale, weakened,
//! conflicting, relabelled and widened state.

use k8s_openapi::api::core::v1::ServiceAccount;

use super::test_support::{
    ENFORCE_LABEL, as_live, baseline_of as baseline, env, no_labels, none, psa_spec,
    restricted_spec, tenant_labels,
};
use super::*;
use crate::api::*;

#[test]
fn live_that_matches_has_no_drift_and_no_actions() {
    let desired = render(
        &[baseline("tenants", restricted_spec())],
        "team-a",
        &tenant_labels(),
        &env(),
    );
    let live = as_live(&desired);
    let drift = diff(&desired, &live);
    assert_eq!(drift, vec![]);
    assert_eq!(plan(&desired, &live, &drift, &none()), vec![]);
}

#[test]
fn empty_namespace_is_all_missing_and_enforce_applies_everything() {
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
    let drift = diff(&desired, &live);
    assert_eq!(
        drift
            .iter()
            .filter(|d| d.reason == DriftReason::Missing)
            .count(),
        // Every object, and the three level labels (an absent version label means latest).
        desired.objects.len() + 3
    );
    let actions = plan(&desired, &live, &drift, &none());
    let applies = actions
        .iter()
        .filter(|a| matches!(a, Write::Apply(_)))
        .count();
    assert_eq!(applies, desired.objects.len());
    assert!(actions.contains(&Write::DisableDefaultTokenAutomount));
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Write::ApplyNamespaceLabels(l) if l.len() == 6))
    );
}

#[test]
fn foreign_objects_are_conflicts_and_only_adopt_touches_them() {
    for forged_labels in [false, true] {
        let mut spec = restricted_spec();
        let desired = render(
            &[baseline("tenants", spec.clone())],
            "team-a",
            &tenant_labels(),
            &env(),
        );
        let mut live = as_live(&desired);
        let quota = live
            .objects
            .iter_mut()
            .find(|o| o.kind() == Kind::ResourceQuota)
            .unwrap();
        // A user's object: no apply by our field manager, with or without our labels copied onto it.
        quota.meta_mut().managed_fields = None;
        if !forged_labels {
            quota.meta_mut().labels = None;
        }
        let drift = diff(&desired, &live);
        assert_eq!(drift.len(), 1);
        assert_eq!(
            (drift[0].kind, &drift[0].reason),
            (Kind::ResourceQuota, &DriftReason::Conflict)
        );
        assert_eq!(
            plan(&desired, &live, &drift, &none()),
            vec![],
            "Report leaves it alone"
        );

        spec.conflict_policy = ConflictPolicy::Adopt;
        let desired = render(
            &[baseline("tenants", spec)],
            "team-a",
            &tenant_labels(),
            &env(),
        );
        let actions = plan(&desired, &live, &diff(&desired, &live), &none());
        assert!(
            matches!(&actions[..], [Write::Apply(Object::ResourceQuota(_))]),
            "{actions:?}"
        );
    }
}

#[test]
fn objects_no_longer_wanted_are_stale_and_deleted_by_uid() {
    let full = render(
        &[baseline("tenants", restricted_spec())],
        "team-a",
        &tenant_labels(),
        &env(),
    );
    let live = as_live(&full);
    let mut spec = restricted_spec();
    spec.rbac
        .as_mut()
        .unwrap()
        .roles
        .retain(|r| r.name == "viewer");
    let desired = render(
        &[baseline("tenants", spec)],
        "team-a",
        &tenant_labels(),
        &env(),
    );
    let drift = diff(&desired, &live);
    assert_eq!(drift.len(), 2);
    assert!(
        drift
            .iter()
            .all(|d| d.reason == DriftReason::Stale && d.name == "zt-tenants-editor")
    );
    let actions = plan(&desired, &live, &drift, &none());
    assert!(actions.contains(&Write::Delete {
        kind: Kind::Role,
        name: "zt-tenants-editor".into(),
        uid: Some("uid-zt-tenants-editor".into())
    }));
    // Objects of a baseline that does not select this namespace are not this diff's business.
    let other = render(&[], "team-a", &tenant_labels(), &env());
    assert_eq!(diff(&other, &live), vec![]);
}

#[test]
fn stricter_psa_is_not_drift_and_is_never_weakened() {
    let spec = SecurityBaselineSpec {
        pod_security: Some(PodSecuritySpec {
            enforce: Some(PodSecurityLevel::Baseline),
            ..Default::default()
        }),
        ..Default::default()
    };
    let desired = render(&[baseline("b", spec)], "ns", &no_labels(), &env());
    let mut live = as_live(&desired);
    live.namespace_labels.insert(
        "pod-security.kubernetes.io/enforce".into(),
        "restricted".into(),
    );
    assert_eq!(diff(&desired, &live), vec![]);
    live.namespace_labels.insert(
        "pod-security.kubernetes.io/enforce-version".into(),
        "v1.20".into(),
    );
    let drift = diff(&desired, &live);
    assert_eq!(drift.len(), 1);
    let actions = plan(&desired, &live, &drift, &none());
    let Write::ApplyNamespaceLabels(labels) = &actions[0] else {
        panic!("{actions:?}")
    };
    assert_eq!(
        labels["pod-security.kubernetes.io/enforce"], "restricted",
        "a stricter level is kept"
    );
    assert_eq!(
        labels["pod-security.kubernetes.io/enforce-version"],
        "latest"
    );
}

#[test]
fn rolebinding_roleref_change_is_recreated() {
    let desired = render(
        &[baseline("tenants", restricted_spec())],
        "team-a",
        &tenant_labels(),
        &env(),
    );
    let mut live = as_live(&desired);
    for o in &mut live.objects {
        if let Object::RoleBinding(rb) = o {
            rb.role_ref.name = "cluster-admin".into();
            rb.role_ref.kind = "ClusterRole".into();
        }
    }
    let actions = plan(&desired, &live, &diff(&desired, &live), &none());
    assert_eq!(
        actions
            .iter()
            .filter(|a| matches!(a, Write::Recreate(_)))
            .count(),
        2
    );
}

/// A stricter level does not excuse an older version: `restricted` at v1.34 admits what `baseline`
/// at `latest` may come to refuse, so it falls short of it, as does any version older than the
/// floor; the repair keeps the stricter level, at the newer version.
#[test]
fn a_stricter_level_at_an_older_version_falls_short_of_a_newer_one() {
    let desired = render(
        &[baseline(
            "a",
            psa_spec(Mode::Enforce, PodSecurityLevel::Baseline, None),
        )],
        "ns",
        &no_labels(),
        &env(),
    );
    let version_label = "pod-security.kubernetes.io/enforce-version";
    for older in ["v1.34", "v1.0"] {
        let mut live = as_live(&desired);
        live.namespace_labels
            .insert(ENFORCE_LABEL.into(), "restricted".into());
        live.namespace_labels
            .insert(version_label.into(), older.into());
        let drift = diff(&desired, &live);
        assert_eq!(drift.len(), 1, "{older}: {drift:?}");
        assert_eq!(drift[0].name, version_label);
        let [Write::ApplyNamespaceLabels(labels)] = &plan(&desired, &live, &drift, &none())[..]
        else {
            panic!("{older}")
        };
        assert_eq!(labels[ENFORCE_LABEL], "restricted");
        assert_eq!(labels[version_label], "latest");
        // A malformed level is drift too (admission would fall back to the cluster default).
        live.namespace_labels
            .insert(ENFORCE_LABEL.into(), "strict".into());
        assert!(
            diff(&desired, &live)
                .iter()
                .any(|d| d.name == ENFORCE_LABEL)
        );
    }
}

#[test]
fn an_object_of_ours_with_its_marks_taken_off_is_relabelled_and_repaired() {
    let desired = render(
        &[baseline("tenants", restricted_spec())],
        "team-a",
        &tenant_labels(),
        &env(),
    );
    let mut live = as_live(&desired);
    let deny = "zt-tenants-default-deny";
    let object = live.objects.iter_mut().find(|o| o.name() == deny).unwrap();
    object.meta_mut().managed_fields = None;
    // Without the controller recognising it, it is someone else's: a conflict, left alone.
    let drift = diff(&desired, &live);
    assert_eq!(drift.len(), 1);
    assert_eq!(drift[0].reason, DriftReason::Conflict);
    // Recognised (by uid) as ours: repaired, whatever the conflict policy says.
    live.relabelled
        .insert((Kind::NetworkPolicy, deny.to_string()));
    let drift = diff(&desired, &live);
    assert_eq!(drift[0].reason, DriftReason::Relabelled);
    assert!(repairable(&desired, &drift[0]));
    let writes = plan(&desired, &live, &drift, &none());
    assert!(
        matches!(&writes[..], [Write::Apply(o)] if o.name() == deny),
        "{writes:?}"
    );
}

#[test]
fn a_foreign_policy_that_opens_the_namespace_is_a_finding_never_repaired() {
    let desired = render(
        &[baseline("tenants", restricted_spec())],
        "team-a",
        &tenant_labels(),
        &env(),
    );
    let mut live = as_live(&desired);
    let allow_all: k8s_openapi::api::networking::v1::NetworkPolicy =
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "allow-all", "namespace": "team-a"},
            "spec": {"podSelector": {}, "ingress": [{}], "egress": [{}],
                     "policyTypes": ["Ingress", "Egress"]},
        }))
        .unwrap();
    live.network_policies.push(summarize(&allow_all));
    let drift = diff(&desired, &live);
    assert_eq!(drift.len(), 1, "{drift:?}");
    assert_eq!(
        (drift[0].kind, drift[0].name.as_str()),
        (Kind::NetworkPolicy, "allow-all")
    );
    assert!(matches!(&drift[0].reason, DriftReason::Widened(w) if w.contains("anywhere")));
    assert!(
        !repairable(&desired, &drift[0]),
        "others' policies are never written"
    );
    assert_eq!(plan(&desired, &live, &drift, &none()), vec![]);
}
