//! The onboarding marker: its value only the operator can know, which markers a namespace keeps,
//! which are removed (and when: before a repair, at the end of a pass), and the gate's CEL.

use std::collections::{BTreeMap, BTreeSet};

use super::admission::{AdmissionSettings, marker_value, onboarded_label};
use super::plan_tests::NAMESPACE_UID;
use super::test_support::{baseline_of as baseline, env, none, restricted_spec, tenant_labels};
use super::*;
use crate::api::*;

const BASELINE_UID: &str = "0b9d4c1e-7a2f-4e3b-8c5d-1234567890ab";

/// The tenants baseline (restricted, default-deny) as stored, with a uid.
fn tenants(uid: Option<&str>) -> ValidBaseline {
    let mut b = baseline("tenants", restricted_spec());
    b.baseline.metadata.uid = uid.map(str::to_string);
    b
}

/// `team-a` as the operator leaves it under `baselines`, with its uid.
fn compliant(baselines: &[ValidBaseline]) -> (DesiredState, LiveState) {
    let desired = render(baselines, "team-a", &tenant_labels(), &env());
    let mut live = LiveState::complying(&desired, &tenant_labels());
    live.namespace_uid = Some(NAMESPACE_UID.into());
    (desired, live)
}

fn marker() -> String {
    onboarded_label("tenants")
}

#[test]
fn the_marker_value_is_the_namespaces_uid_and_the_baselines() {
    assert_eq!(marker_value(NAMESPACE_UID, None), NAMESPACE_UID);
    let value = marker_value(NAMESPACE_UID, Some(BASELINE_UID));
    assert_eq!(value.len(), 63, "a label value's limit");
    assert!(value.starts_with(&format!("{NAMESPACE_UID}.0b9d4c1e-7a2f")));
    assert!(value.ends_with(|c: char| c.is_ascii_alphanumeric()));
    // A baseline created again under the same name has another uid, so another marker.
    let again = marker_value(NAMESPACE_UID, Some("9f00c1e0-7a2f-4e3b-8c5d-1234567890ab"));
    assert_ne!(value, again);
}

#[test]
fn a_compliant_namespace_gets_the_marker_only_the_operator_can_know() {
    let (desired, live) = compliant(&[tenants(Some(BASELINE_UID))]);
    let ours = marker_value(NAMESPACE_UID, Some(BASELINE_UID));
    let wanted = markers_wanted(&desired, &[], &live);
    assert_eq!(wanted, BTreeMap::from([(marker(), ours.clone())]));
    assert_eq!(markers_due(&desired, &[], &live), wanted);
    // Set: nothing more to do.
    let mut marked = live.clone();
    marked.namespace_labels.insert(marker(), ours.clone());
    assert!(markers_due(&desired, &[], &marked).is_empty());
    assert!(onboarding_write(&desired, &none(), &marked, &[], false).is_empty());
    // No uid known: no marker can be written (and none is kept).
    let mut unknown = marked.clone();
    unknown.namespace_uid = None;
    assert!(markers_wanted(&desired, &[], &unknown).is_empty());
    assert_eq!(
        markers_to_remove(&desired, &[], &unknown),
        BTreeSet::from([marker()])
    );
}

#[test]
fn a_marker_the_operator_did_not_write_is_replaced_once_controls_are_in_place() {
    let (desired, mut live) = compliant(&[tenants(Some(BASELINE_UID))]);
    let ours = marker_value(NAMESPACE_UID, Some(BASELINE_UID));
    // Forged at creation ("true", or any value: the uid did not exist yet), the "true" of older
    // versions, or the marker of a deleted baseline of the same name.
    for forged in [
        "true".to_string(),
        marker_value(NAMESPACE_UID, Some("9f00c1e0-7a2f-4e3b-8c5d-1234567890ab")),
    ] {
        live.namespace_labels.insert(marker(), forged);
        assert_eq!(
            onboarding_write(&desired, &none(), &live, &[], false),
            vec![Write::ApplyNamespaceLabels(
                namespace_labels(&desired, &live, &none())
                    .into_iter()
                    .chain([(marker(), ours.clone())])
                    .collect()
            )]
        );
    }
}

#[test]
fn a_namespace_whose_controls_are_not_in_place_keeps_no_marker() {
    let (desired, mut live) = compliant(&[tenants(Some(BASELINE_UID))]);
    let ours = marker_value(NAMESPACE_UID, Some(BASELINE_UID));
    live.namespace_labels.insert(marker(), ours.clone());
    live.owned_namespace_labels.insert(marker());
    // Someone deletes the default-deny: the marker goes before the repair.
    let deny = object_name("tenants", "default-deny");
    live.objects
        .retain(|o| !(o.kind() == Kind::NetworkPolicy && o.name() == deny));
    let drift = diff(&desired, &live);
    let missing: Vec<&Drift> = drift.iter().collect();
    assert!(
        missing
            .iter()
            .any(|d| d.kind == Kind::NetworkPolicy && d.name == deny)
    );
    assert_eq!(
        markers_to_remove(&desired, &missing, &live),
        BTreeSet::from([marker()])
    );
    // A repair that failed: the marker is removed, and our apply does not bring it back.
    let failed = Drift {
        reason: DriftReason::WriteFailed(Box::new(DriftReason::Missing)),
        ..missing[0].clone()
    };
    let writes = onboarding_write(&desired, &none(), &live, &[&failed], true);
    let [
        Write::RemoveNamespaceLabels(removed),
        Write::ApplyNamespaceLabels(labels),
    ] = &writes[..]
    else {
        panic!("{writes:?}")
    };
    assert_eq!(removed, &BTreeSet::from([marker()]));
    assert!(!labels.contains_key(&marker()), "{labels:?}");
    // A missing Role keeps nothing closed: it grants nothing.
    let role = drift.iter().find(|d| d.kind == Kind::Role).cloned();
    if let Some(role) = role {
        assert!(markers_to_remove(&desired, &[&role], &live).is_empty());
    }
}

#[test]
fn a_missing_allow_policy_closes_no_gate_before_the_repair() {
    let mut spec = restricted_spec();
    let np = spec.network_policy.get_or_insert_with(Default::default);
    np.allow = vec![AllowRule {
        name: "monitoring".into(),
        direction: PolicyType::Ingress,
        peers: vec![AllowPeer {
            namespace: Some("monitoring".into()),
            ..AllowPeer::default()
        }],
        ports: vec![],
    }];
    let mut tenants = baseline("tenants", spec);
    tenants.baseline.metadata.uid = Some(BASELINE_UID.into());
    let (desired, mut live) = compliant(&[tenants]);
    live.namespace_labels
        .insert(marker(), marker_value(NAMESPACE_UID, Some(BASELINE_UID)));
    // A baseline edit added the allow: it only lets less through until it is there.
    let allow = object_name("tenants", "allow-monitoring");
    live.objects.retain(|o| o.name() != allow);
    let drift = diff(&desired, &live);
    assert!(drift.iter().any(|d| d.name == allow));
    assert!(markers_to_close(&desired, &drift, &live).is_empty());
    // The marker still waits for it at the end of a pass that could not create it.
    let failed: Vec<&Drift> = drift.iter().collect();
    assert_eq!(
        markers_to_remove(&desired, &failed, &live),
        BTreeSet::from([marker()])
    );
    // The default-deny missing closes the gate at once.
    let deny = object_name("tenants", "default-deny");
    live.objects.retain(|o| o.name() != deny);
    let drift = diff(&desired, &live);
    assert_eq!(
        markers_to_close(&desired, &drift, &live),
        BTreeSet::from([marker()])
    );
}

#[test]
fn markers_of_baselines_that_do_not_enforce_here_are_removed() {
    let (desired, mut live) = compliant(&[tenants(None)]);
    let ours = marker_value(NAMESPACE_UID, None);
    live.namespace_labels.insert(marker(), ours.clone());
    // Of a baseline that does not select the namespace (it left, so coming back is gated), or
    // that does not exist: whoever set it, whatever its value.
    live.namespace_labels
        .insert(onboarded_label("left"), marker_value(NAMESPACE_UID, None));
    live.namespace_labels
        .insert(onboarded_label("nobody"), "true".into());
    assert_eq!(
        markers_to_remove(&desired, &[], &live),
        BTreeSet::from([onboarded_label("left"), onboarded_label("nobody")])
    );
    // An Audit baseline writes no marker and keeps none.
    let mut spec = restricted_spec();
    spec.mode = Mode::Audit;
    let audit = render(
        &[baseline("tenants", spec)],
        "team-a",
        &tenant_labels(),
        &env(),
    );
    assert!(markers_to_remove(&audit, &[], &live).contains(&marker()));
    // Other labels are never touched.
    assert!(
        markers_to_remove(&desired, &[], &live)
            .iter()
            .all(|k| k.starts_with(super::admission::ONBOARDED_LABEL_PREFIX))
    );
}

#[test]
fn the_gate_opens_only_for_the_marker_with_the_namespaces_uid() {
    let b = tenants(Some(BASELINE_UID));
    let settings = AdmissionSettings {
        operator_user: "op".into(),
        break_glass_group: "bg".into(),
        operator_namespace: "zerotrust-system".into(),
        validating: true,
        mutating: true,
    };
    let rendered = render_admission(&b, &settings, 0);
    let gate = rendered
        .iter()
        .find(|o| {
            o.kind() == Kind::ValidatingAdmissionPolicy && o.name().ends_with("onboarding-gate")
        })
        .expect("the gate");
    let json = serde_json::to_value(gate).unwrap();
    let expression = json["spec"]["validations"][0]["expression"]
        .as_str()
        .unwrap();
    let suffix = &marker_value(NAMESPACE_UID, Some(BASELINE_UID))[NAMESPACE_UID.len()..];
    assert!(
        expression.contains(&format!(
            "== string(dyn(namespaceObject.metadata).uid) + '{suffix}'"
        )),
        "{expression}"
    );
    // Every selected namespace is gated, whenever it was created; "true" opens nothing.
    assert!(!expression.contains("creationTimestamp"), "{expression}");
    assert!(!expression.contains("'true'"), "{expression}");
}
