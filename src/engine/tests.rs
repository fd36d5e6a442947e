//! Engine tests across render, diff and plan: examples first, then properties over arbitrary
//! valid baselines and namespaces.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::networking::v1::NetworkPolicyIngressRule;
use k8s_openapi::api::rbac::v1::{PolicyRule, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ManagedFieldsEntry};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use proptest::prelude::*;

use super::*;
use crate::api::*;

const OPERATOR_NS: &str = "zerotrust-system";

fn baseline(name: &str, spec: SecurityBaselineSpec) -> ValidBaseline {
    let mut b = SecurityBaseline::new(name, spec);
    b.metadata.generation = Some(1);
    validate(&b).unwrap_or_else(|e| panic!("{e}"))
}

/// A fixed moment (2026-01-01T00:00:00Z) so exemption expiries render the same every run.
const NOW: i64 = 1_767_225_600;

/// The operator's namespace, the API server at a Service address and a host address, at `NOW`.
fn env() -> Environment {
    Environment {
        operator_namespace: OPERATOR_NS.to_string(),
        api_server: vec![
            Endpoint {
                address: "10.96.0.1".into(),
                port: 443,
            },
            Endpoint {
                address: "192.0.2.10".into(),
                port: 6443,
            },
        ],
        now: NOW,
    }
}

fn none() -> std::collections::BTreeSet<String> {
    std::collections::BTreeSet::new()
}

fn no_labels() -> BTreeMap<String, String> {
    BTreeMap::new()
}

/// What the API server hands back for objects we applied: our managedFields entry, server-set
/// metadata, quantities respelled, and someone's harmless extra label and annotation.
fn as_live(desired: &DesiredState) -> LiveState {
    let labels = BTreeMap::from([(
        "kubernetes.io/metadata.name".to_string(),
        desired.namespace.clone(),
    )]);
    let mut live = LiveState::complying(desired, &labels);
    for object in &mut live.objects {
        let meta = object.meta_mut();
        meta.uid = Some(format!("uid-{}", meta.name.as_deref().unwrap_or_default()));
        meta.resource_version = Some("42".to_string());
        meta.labels
            .get_or_insert_with(BTreeMap::new)
            .insert("team".into(), "x".into());
        meta.annotations = Some(BTreeMap::from([("note".to_string(), "hi".to_string())]));
        respell_quantities(object);
    }
    live
}

/// Pod Security labels that satisfy every selecting baseline, Enforce or Audit.
fn compliant_labels(desired: &DesiredState) -> BTreeMap<String, String> {
    let mut labels = LiveState::complying(desired, &BTreeMap::new()).namespace_labels;
    labels.retain(|k, _| k.starts_with(PSA_LABEL_PREFIX));
    labels
}

/// The API server returns canonical quantities (`1000m` as `1`); ours prints them another way.
fn respell_quantities(object: &mut Object) {
    let respell = |map: &mut BTreeMap<String, K8sQuantity>| {
        for q in map.values_mut() {
            q.0 = Quantity::parse(&q.0).unwrap().to_string();
        }
    };
    match object {
        Object::ResourceQuota(q) => q
            .spec
            .iter_mut()
            .flat_map(|s| s.hard.as_mut())
            .for_each(respell),
        Object::LimitRange(l) => {
            for item in l.spec.iter_mut().flat_map(|s| s.limits.iter_mut()) {
                for map in [
                    &mut item.default,
                    &mut item.default_request,
                    &mut item.max,
                    &mut item.min,
                ] {
                    map.iter_mut().for_each(respell);
                }
            }
        }
        _ => {}
    }
}

fn restricted_spec() -> SecurityBaselineSpec {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/restricted-tenants.yaml"
    ))
    .unwrap();
    parse_baselines(&text).unwrap().remove(0).spec
}

fn tenant_labels() -> BTreeMap<String, String> {
    BTreeMap::from([("tenant".to_string(), "true".to_string())])
}

#[test]
fn every_example_renders() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let mut rendered = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for b in parse_baselines(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display())) {
            let valid = validate(&b).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let labels = BTreeMap::from([
                ("tenant".to_string(), "true".to_string()),
                ("zerotrust.dev/audit".to_string(), "true".to_string()),
            ]);
            let desired = render(&[valid], "team-a", &labels, &env());
            assert_eq!(
                desired.baselines.len(),
                1,
                "{} selects team-a",
                path.display()
            );
            assert!(
                !desired.manifests().is_empty(),
                "{} renders objects",
                path.display()
            );
            rendered += 1;
        }
    }
    assert!(rendered >= 3, "examples/ holds at least three baselines");
}

#[test]
fn restricted_example_renders_every_control() {
    let desired = render(
        &[baseline("tenants", restricted_spec())],
        "team-a",
        &tenant_labels(),
        &env(),
    );
    let names: Vec<(Kind, &str)> = desired
        .objects
        .iter()
        .map(|d| (d.object.kind(), d.object.name()))
        .collect();
    assert_eq!(
        names,
        vec![
            (Kind::NetworkPolicy, "zt-tenants-allow-dns"),
            (Kind::NetworkPolicy, "zt-tenants-allow-same-namespace"),
            (Kind::NetworkPolicy, "zt-tenants-default-deny"),
            (Kind::Role, "zt-tenants-editor"),
            (Kind::Role, "zt-tenants-viewer"),
            (Kind::RoleBinding, "zt-tenants-editor"),
            (Kind::RoleBinding, "zt-tenants-viewer"),
            (Kind::ResourceQuota, "zt-tenants-quota"),
            (Kind::LimitRange, "zt-tenants-limits"),
        ]
    );
    for d in &desired.objects {
        let labels = d.object.meta().labels.clone().unwrap();
        assert_eq!(labels[MANAGED_BY_LABEL], "zerotrust-operator");
        assert_eq!(labels[BASELINE_LABEL], "tenants");
        assert_eq!(d.object.meta().namespace.as_deref(), Some("team-a"));
    }
    let Object::RoleBinding(rb) = &desired
        .object(Kind::RoleBinding, "zt-tenants-viewer")
        .unwrap()
        .object
    else {
        panic!("a RoleBinding");
    };
    assert_eq!(
        rb.subjects.as_ref().unwrap()[0].name,
        "team-a-viewers",
        "${{namespace}} is expanded"
    );
    assert_eq!(
        desired.namespace_labels["pod-security.kubernetes.io/enforce"].value,
        "restricted"
    );
    assert_eq!(
        desired.namespace_labels["pod-security.kubernetes.io/enforce-version"].value,
        "latest"
    );
    assert_eq!(
        desired.disable_default_token_automount.as_deref(),
        Some("tenants")
    );
    // Not selected without the label.
    let unselected = render(
        &[baseline("tenants", restricted_spec())],
        "team-a",
        &no_labels(),
        &env(),
    );
    assert!(unselected.is_empty() && unselected.objects.is_empty());
}

#[test]
fn default_deny_is_the_canonical_object() {
    let spec = SecurityBaselineSpec {
        network_policy: Some(NetworkPolicySpec {
            default_deny: vec![PolicyType::Egress, PolicyType::Ingress],
            ..Default::default()
        }),
        ..Default::default()
    };
    let desired = render(&[baseline("b", spec)], "ns", &no_labels(), &env());
    let value = serde_json::to_value(&desired.objects[0].object).unwrap();
    assert_eq!(
        value["spec"],
        serde_json::json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})
    );
}

#[test]
fn pod_security_composes_to_the_most_restrictive() {
    let psa = |enforce, warn, version: &str| SecurityBaselineSpec {
        pod_security: Some(PodSecuritySpec {
            enforce: Some(enforce),
            warn,
            audit: None,
            version: Some(version.into()),
        }),
        ..Default::default()
    };
    let a = baseline(
        "a",
        psa(
            PodSecurityLevel::Baseline,
            Some(PodSecurityLevel::Restricted),
            "v1.30",
        ),
    );
    let b = baseline("b", psa(PodSecurityLevel::Restricted, None, "v1.33"));
    for order in [vec![a.clone(), b.clone()], vec![b.clone(), a.clone()]] {
        let desired = render(&order, "ns", &no_labels(), &env());
        let label =
            |k: &str| desired.namespace_labels[&format!("pod-security.kubernetes.io/{k}")].clone();
        assert_eq!(
            (label("enforce").value, label("enforce").baseline),
            ("restricted".into(), "b".into())
        );
        assert_eq!(label("enforce-version").value, "v1.33");
        assert_eq!(
            (label("warn").value, label("warn").baseline),
            ("restricted".into(), "a".into())
        );
        assert_eq!(label("warn-version").value, "v1.30");
        assert!(
            !desired
                .namespace_labels
                .contains_key("pod-security.kubernetes.io/audit")
        );
    }
}

#[test]
fn several_baselines_keep_their_own_objects() {
    let deny = |types| SecurityBaselineSpec {
        network_policy: Some(NetworkPolicySpec {
            default_deny: types,
            ..Default::default()
        }),
        ..Default::default()
    };
    let desired = render(
        &[
            baseline("b", deny(vec![PolicyType::Egress])),
            baseline("a", deny(vec![PolicyType::Ingress])),
        ],
        "ns",
        &no_labels(),
        &env(),
    );
    let owners: Vec<(&str, &str)> = desired
        .objects
        .iter()
        .map(|d| (d.baseline.as_str(), d.object.name()))
        .collect();
    assert_eq!(
        owners,
        vec![("a", "zt-a-default-deny"), ("b", "zt-b-default-deny")]
    );
}

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
fn labels_of_a_leaving_delete_baseline_are_released_others_kept() {
    let psa = |level, policy| SecurityBaselineSpec {
        pod_security: Some(PodSecuritySpec {
            enforce: Some(level),
            ..Default::default()
        }),
        deletion_policy: policy,
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([("nothing".into(), "here".into())])),
            match_expressions: None,
        }),
        ..Default::default()
    };
    let leaving = baseline(
        "gone",
        psa(PodSecurityLevel::Restricted, DeletionPolicy::Delete),
    );
    let orphaned = baseline(
        "kept",
        psa(PodSecurityLevel::Restricted, DeletionPolicy::Orphan),
    );
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
    live.namespace_labels.insert(marker.clone(), "true".into());
    // A marker someone else set is no evidence either.
    assert_eq!(
        released_labels(&desired, std::slice::from_ref(&leaving), &live),
        none()
    );
    live.owned_namespace_labels.insert(marker.clone());
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
    let rendered = render(
        &[baseline(
            "gone",
            SecurityBaselineSpec {
                network_policy: Some(NetworkPolicySpec {
                    default_deny: vec![PolicyType::Ingress],
                    ..Default::default()
                }),
                ..Default::default()
            },
        )],
        "ns",
        &no_labels(),
        &env(),
    );
    by_object.objects = as_live(&rendered).objects;
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

// ---- properties ---------------------------------------------------------------------------

fn level() -> impl Strategy<Value = PodSecurityLevel> {
    prop_oneof![
        Just(PodSecurityLevel::Privileged),
        Just(PodSecurityLevel::Baseline),
        Just(PodSecurityLevel::Restricted)
    ]
}

fn role(index: usize) -> impl Strategy<Value = RoleSpec> {
    let rule = (
        proptest::sample::subsequence(vec!["", "apps", "batch"], 1..=3),
        proptest::sample::subsequence(vec!["pods", "services", "configmaps", "jobs"], 1..=4),
        proptest::sample::subsequence(vec!["get", "list", "watch", "create", "delete"], 1..=5),
        proptest::option::of(Just(vec!["only-this".to_string()])),
    )
        .prop_map(|(groups, resources, verbs, names)| RoleRule {
            api_groups: groups.into_iter().map(String::from).collect(),
            resources: resources.into_iter().map(String::from).collect(),
            verbs: verbs.into_iter().map(String::from).collect(),
            resource_names: names.unwrap_or_default(),
        });
    let subject = (0..3usize, "[a-z]{1,6}", any::<bool>()).prop_map(|(kind, name, templated)| {
        let name = if templated {
            format!("{name}-${{namespace}}")
        } else {
            name
        };
        match kind {
            0 => RoleSubject {
                kind: SubjectKind::User,
                name,
                namespace: None,
                api_group: None,
            },
            1 => RoleSubject {
                kind: SubjectKind::Group,
                name,
                namespace: None,
                api_group: None,
            },
            _ => RoleSubject {
                kind: SubjectKind::ServiceAccount,
                name,
                namespace: Some("${namespace}".into()),
                api_group: None,
            },
        }
    });
    (
        proptest::collection::vec(rule, 1..3),
        proptest::collection::vec(subject, 0..3),
    )
        .prop_map(move |(rules, subjects)| RoleSpec {
            name: format!("role{index}"),
            rules,
            subjects,
            allow_wildcards: false,
            allow_privileged_verbs: false,
            allow_sensitive_resources: false,
        })
}

fn dns() -> impl Strategy<Value = Option<DnsSpec>> {
    proptest::option::of(prop_oneof![
        Just(DnsSpec::default()),
        Just(DnsSpec {
            provider: DnsProvider::NodeLocalDNSCache,
            ..Default::default()
        }),
        Just(DnsSpec {
            provider: DnsProvider::OpenShift,
            ..Default::default()
        }),
        Just(DnsSpec {
            provider: DnsProvider::Custom,
            peers: vec![AllowPeer {
                cidr: Some("10.96.0.10/32".into()),
                ..Default::default()
            }],
            ports: vec![AllowPort {
                protocol: Protocol::UDP,
                port: Some(IntOrString::Int(53)),
                end_port: None,
            }],
            ..Default::default()
        }),
    ])
}

/// Allow rules in the directions `deny` denies, each with one peer of every kind there is.
fn allow_rules(deny: Vec<PolicyType>) -> impl Strategy<Value = Vec<AllowRule>> {
    let peer = prop_oneof![
        "[a-z]{1,8}".prop_map(|n| AllowPeer {
            namespace: Some(n),
            ..Default::default()
        }),
        "[a-z]{1,8}".prop_map(|v| AllowPeer {
            namespace_selector: Some(selector("team", &v)),
            pods: Some(selector("app", "web")),
            ..Default::default()
        }),
        Just(AllowPeer {
            pods: Some(selector("app", "db")),
            ..Default::default()
        }),
        (0..=255u8).prop_map(|octet| AllowPeer {
            cidr: Some(format!("10.{octet}.0.0/16")),
            except: vec![format!("10.{octet}.1.0/24")],
            ..Default::default()
        }),
    ];
    let port = prop_oneof![
        (1..=65535i32).prop_map(|p| AllowPort {
            protocol: Protocol::TCP,
            port: Some(IntOrString::Int(p)),
            end_port: None,
        }),
        (1..=1000i32).prop_map(|p| AllowPort {
            protocol: Protocol::UDP,
            port: Some(IntOrString::Int(p)),
            end_port: Some(p + 100),
        }),
        Just(AllowPort {
            protocol: Protocol::TCP,
            port: Some(IntOrString::String("http".into())),
            end_port: None,
        }),
    ];
    let rule = (
        proptest::sample::select(if deny.is_empty() {
            vec![PolicyType::Ingress]
        } else {
            deny.clone()
        }),
        proptest::collection::vec(peer, 1..3),
        proptest::collection::vec(port, 0..3),
    );
    let count = if deny.is_empty() { 0..1 } else { 0..3usize };
    proptest::collection::vec(rule, count).prop_map(|rules| {
        rules
            .into_iter()
            .enumerate()
            .map(|(i, (direction, peers, ports))| AllowRule {
                name: format!("rule-{i}"),
                direction,
                peers,
                ports,
            })
            .collect()
    })
}

fn selector(key: &str, value: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(BTreeMap::from([(key.to_string(), value.to_string())])),
        ..Default::default()
    }
}

prop_compose! {
    fn spec()(
        dns in any::<bool>(),
        same in any::<bool>(),
        psa in proptest::option::of((proptest::option::of(level()), proptest::option::of(level()), proptest::option::of(level()), prop_oneof![Just("latest"), Just("v1.30"), Just("v1.33")])),
        roles in (0..3usize).prop_flat_map(|n| (0..n).map(role).collect::<Vec<_>>()),
        quota in proptest::option::of((1..500u32, 1..64u32)),
        limit in proptest::option::of((1..1000u32, 1..1000u32)),
        automount in proptest::option::of(any::<bool>()),
        audit in any::<bool>(),
        (deny, allow) in proptest::sample::subsequence(vec![PolicyType::Ingress, PolicyType::Egress], 0..=2).prop_flat_map(|deny| (Just(deny.clone()), allow_rules(deny))),
        dns_spec in dns(),
        api_server in any::<bool>(),
    ) -> SecurityBaselineSpec {
        let egress = deny.contains(&PolicyType::Egress);
        SecurityBaselineSpec {
            mode: if audit { Mode::Audit } else { Mode::Enforce },
            network_policy: Some(NetworkPolicySpec {
                refuse_widening: false,
                allow_dns: dns && egress,
                dns: dns_spec.filter(|_| dns && egress),
                allow_api_server: api_server && egress,
                allow,
                allow_same_namespace: same && !deny.is_empty(),
                default_deny: deny,
            }),
            pod_security: psa.map(|(enforce, audit, warn, version)| PodSecuritySpec { enforce, audit, warn, version: Some(version.to_string()) }),
            rbac: Some(RbacSpec { roles }),
            resource_quota: quota.map(|(pods, gib)| ResourceQuotaSpec { hard: BTreeMap::from([
                ("pods".to_string(), pods.to_string()),
                ("requests.memory".to_string(), format!("{}Mi", gib * 1024)),
                ("requests.cpu".to_string(), format!("{}m", pods * 1000)),
            ]) }),
            limit_range: limit.map(|(a, b)| LimitRangeSpec { limits: vec![LimitSpec {
                type_: LimitType::Container,
                default: BTreeMap::from([("cpu".to_string(), format!("{}m", a.max(b)))]),
                default_request: BTreeMap::from([("cpu".to_string(), format!("{}m", a.min(b)))]),
                max: BTreeMap::new(), min: BTreeMap::new(), max_limit_request_ratio: BTreeMap::new(),
            }] }),
            service_accounts: automount.map(|a| ServiceAccountsSpec { automount_default_token: Some(a) }),
            ..Default::default()
        }
    }
}

fn namespace_name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,10}[a-z0-9]".prop_filter("not a system namespace", |n| {
        !ALWAYS_EXCLUDED.contains(&n.as_str()) && n != OPERATOR_NS
    })
}

/// Every single edit that makes `live` weaker or different, given what was rendered.
/// An edit of the live state, and the (kind, name) it touches.
type Edit = (Kind, String, Box<dyn Fn(&mut LiveState)>);

fn edits(desired: &DesiredState) -> Vec<Edit> {
    let mut edits: Vec<Edit> = Vec::new();
    for d in &desired.objects {
        let (kind, name) = (d.object.kind(), d.object.name().to_string());
        let find = move |live: &mut LiveState, f: &dyn Fn(&mut Object)| {
            let name = name.clone();
            let o = live
                .objects
                .iter_mut()
                .find(|o| o.kind() == kind && o.name() == name)
                .unwrap();
            f(o)
        };
        let n = d.object.name().to_string();
        {
            let n = n.clone();
            edits.push((
                kind,
                n.clone(),
                Box::new(move |live| {
                    live.objects
                        .retain(|o| !(o.kind() == kind && o.name() == n))
                }),
            ));
        }
        let find = std::rc::Rc::new(find);
        let mut push = |f: Box<dyn Fn(&mut Object)>| {
            let find = find.clone();
            edits.push((kind, n.clone(), Box::new(move |live| find(live, &*f))));
        };
        push(Box::new(|o| {
            o.meta_mut()
                .labels
                .as_mut()
                .unwrap()
                .remove(MANAGED_BY_LABEL);
        }));
        match &d.object {
            Object::NetworkPolicy(_) => {
                push(Box::new(|o| {
                    if let Object::NetworkPolicy(np) = o {
                        np.spec
                            .as_mut()
                            .unwrap()
                            .ingress
                            .get_or_insert_with(Vec::new)
                            .push(NetworkPolicyIngressRule::default());
                    }
                }));
                push(Box::new(|o| {
                    if let Object::NetworkPolicy(np) = o {
                        np.spec.as_mut().unwrap().pod_selector = Some(LabelSelector {
                            match_labels: Some(BTreeMap::from([("app".into(), "x".into())])),
                            match_expressions: None,
                        });
                    }
                }));
                push(Box::new(|o| {
                    if let Object::NetworkPolicy(np) = o {
                        np.spec
                            .as_mut()
                            .unwrap()
                            .policy_types
                            .as_mut()
                            .unwrap()
                            .pop();
                    }
                }));
                push(Box::new(|o| {
                    if let Object::NetworkPolicy(np) = o {
                        np.spec
                            .as_mut()
                            .unwrap()
                            .egress
                            .get_or_insert_with(Vec::new)
                            .push(Default::default());
                    }
                }));
            }
            Object::Role(_) => {
                push(Box::new(|o| {
                    if let Object::Role(r) = o {
                        r.rules.get_or_insert_with(Vec::new).push(PolicyRule {
                            verbs: vec!["*".into()],
                            api_groups: Some(vec!["*".into()]),
                            resources: Some(vec!["*".into()]),
                            ..Default::default()
                        });
                    }
                }));
                push(Box::new(|o| {
                    if let Object::Role(r) = o {
                        r.rules.as_mut().unwrap()[0].verbs.push("escalate".into());
                    }
                }));
            }
            Object::RoleBinding(_) => {
                push(Box::new(|o| {
                    if let Object::RoleBinding(rb) = o {
                        rb.subjects.get_or_insert_with(Vec::new).push(Subject {
                            kind: "User".into(),
                            name: "mallory".into(),
                            api_group: Some("rbac.authorization.k8s.io".into()),
                            namespace: None,
                        });
                    }
                }));
                push(Box::new(|o| {
                    if let Object::RoleBinding(rb) = o {
                        rb.role_ref.name = "admin".into();
                    }
                }));
            }
            Object::ResourceQuota(_) => {
                push(Box::new(|o| {
                    if let Object::ResourceQuota(q) = o {
                        q.spec
                            .as_mut()
                            .unwrap()
                            .hard
                            .as_mut()
                            .unwrap()
                            .insert("pods".into(), K8sQuantity("100000".into()));
                    }
                }));
                push(Box::new(|o| {
                    if let Object::ResourceQuota(q) = o {
                        q.spec
                            .as_mut()
                            .unwrap()
                            .hard
                            .as_mut()
                            .unwrap()
                            .remove("requests.cpu");
                    }
                }));
                push(Box::new(|o| {
                    if let Object::ResourceQuota(q) = o {
                        q.spec
                            .as_mut()
                            .unwrap()
                            .hard
                            .as_mut()
                            .unwrap()
                            .insert("services".into(), K8sQuantity("1".into()));
                    }
                }));
            }
            Object::LimitRange(_) => {
                push(Box::new(|o| {
                    if let Object::LimitRange(l) = o {
                        l.spec.as_mut().unwrap().limits[0]
                            .default
                            .as_mut()
                            .unwrap()
                            .insert("cpu".into(), K8sQuantity("64".into()));
                    }
                }));
            }
            // Namespaces render no admission policies.
            Object::ValidatingAdmissionPolicy(_)
            | Object::ValidatingAdmissionPolicyBinding(_)
            | Object::MutatingAdmissionPolicy(_)
            | Object::MutatingAdmissionPolicyBinding(_) => {}
        }
    }
    for (key, value) in compliant_labels(desired) {
        let k = key.clone();
        if key.ends_with("-version") {
            // A version older than the floor, whatever the level.
            edits.push((
                Kind::Namespace,
                key.clone(),
                Box::new(move |live| {
                    live.namespace_labels.insert(k.clone(), "v1.0".into());
                }),
            ));
            continue;
        }
        edits.push((
            Kind::Namespace,
            key.clone(),
            Box::new(move |live| {
                live.namespace_labels.remove(&k);
            }),
        ));
        if value != "privileged" {
            let k = key.clone();
            edits.push((
                Kind::Namespace,
                key.clone(),
                Box::new(move |live| {
                    live.namespace_labels.insert(k.clone(), "privileged".into());
                }),
            ));
        }
    }
    if desired
        .requirements
        .iter()
        .any(|r| r.disable_token_automount)
    {
        edits.push((
            Kind::ServiceAccount,
            "default".into(),
            Box::new(|live| {
                live.default_service_account
                    .as_mut()
                    .unwrap()
                    .automount_service_account_token = Some(true);
            }),
        ));
    }
    edits
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn rendered_state_as_live_has_no_drift(specs in proptest::collection::vec(spec(), 1..3), ns in namespace_name()) {
        let baselines: Vec<ValidBaseline> = specs.into_iter().enumerate().map(|(i, s)| baseline(&format!("b{i}"), s)).collect();
        let desired = render(&baselines, &ns, &no_labels(), &env());
        let live = as_live(&desired);
        prop_assert_eq!(diff(&desired, &live), vec![]);
        prop_assert_eq!(plan(&desired, &live, &[], &none()), vec![]);
    }

    #[test]
    fn render_is_deterministic_and_order_free(specs in proptest::collection::vec(spec(), 1..4), ns in namespace_name()) {
        let baselines: Vec<ValidBaseline> = specs.into_iter().enumerate().map(|(i, s)| baseline(&format!("b{i}"), s)).collect();
        let mut reversed = baselines.clone();
        reversed.reverse();
        let a = render(&baselines, &ns, &no_labels(), &env());
        prop_assert_eq!(&a, &render(&reversed, &ns, &no_labels(), &env()));
        for d in &a.objects {
            let name = d.object.name();
            let prefix = format!("zt-{}-", d.baseline);
            prop_assert!(name.starts_with(&prefix), "{} starts with {}", name, prefix);
            prop_assert!(super::validate::is_dns_subdomain(name), "{} is a valid object name", name);
        }
    }

    #[test]
    fn any_single_weakening_edit_is_detected(spec in spec(), ns in namespace_name(), pick in any::<proptest::sample::Index>()) {
        let desired = render(&[baseline("b", spec)], &ns, &no_labels(), &env());
        let edits = edits(&desired);
        prop_assume!(!edits.is_empty());
        let (kind, name, edit) = &edits[pick.index(edits.len())];
        let mut live = as_live(&desired);
        edit(&mut live);
        let drift = diff(&desired, &live);
        prop_assert!(drift.iter().any(|d| d.kind == *kind && &d.name == name), "edit of {} {} not detected: {:?}", kind, name, drift);
        // Enforce repairs what it finds (a Conflict is only reported, unless adopted).
        if desired.baselines[0].mode == Mode::Enforce && drift.iter().any(|d| d.reason != DriftReason::Conflict) {
            prop_assert!(!plan(&desired, &live, &drift, &none()).is_empty());
        }
    }
}

#[test]
fn container_limits_render_with_the_defaults_the_api_server_fills_in() {
    let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let item = |type_, default, default_request, max, min| LimitSpec {
        type_,
        default,
        default_request,
        max,
        min,
        max_limit_request_ratio: BTreeMap::new(),
    };
    let spec = SecurityBaselineSpec {
        limit_range: Some(LimitRangeSpec {
            limits: vec![
                // default limit from max, default request from the default limit
                item(
                    LimitType::Container,
                    map(&[]),
                    map(&[]),
                    map(&[("cpu", "2")]),
                    map(&[]),
                ),
                // default request from the default limit, not from min
                item(
                    LimitType::Container,
                    map(&[("memory", "1Gi")]),
                    map(&[]),
                    map(&[]),
                    map(&[("memory", "64Mi")]),
                ),
                // default request from min where there is no default limit
                item(
                    LimitType::Container,
                    map(&[]),
                    map(&[]),
                    map(&[]),
                    map(&[("cpu", "100m")]),
                ),
                // Pod items get no defaults
                item(
                    LimitType::Pod,
                    map(&[]),
                    map(&[]),
                    map(&[("cpu", "4")]),
                    map(&[]),
                ),
            ],
        }),
        ..Default::default()
    };
    let desired = render(&[baseline("limits", spec)], "team-a", &no_labels(), &env());
    let Some(Object::LimitRange(range)) = desired.objects.first().map(|d| d.object.clone()) else {
        panic!("a LimitRange is rendered");
    };
    let items = range.spec.expect("spec").limits;
    let q = |m: &Option<BTreeMap<String, K8sQuantity>>, k: &str| {
        m.as_ref().and_then(|m| m.get(k)).map(|q| q.0.clone())
    };
    assert_eq!(q(&items[0].default, "cpu").as_deref(), Some("2"));
    assert_eq!(q(&items[0].default_request, "cpu").as_deref(), Some("2"));
    assert_eq!(
        q(&items[1].default_request, "memory").as_deref(),
        Some("1Gi")
    );
    assert_eq!(q(&items[2].default_request, "cpu").as_deref(), Some("100m"));
    assert_eq!(q(&items[2].default, "cpu"), None);
    assert_eq!(
        (items[3].default.clone(), items[3].default_request.clone()),
        (None, None)
    );
}

// --- Fail-open cases (issue: composition, ownership and error paths that switch a control off) ---

fn psa_spec(mode: Mode, level: PodSecurityLevel, version: Option<&str>) -> SecurityBaselineSpec {
    SecurityBaselineSpec {
        mode,
        pod_security: Some(PodSecuritySpec {
            enforce: Some(level),
            version: version.map(String::from),
            ..Default::default()
        }),
        ..Default::default()
    }
}

const ENFORCE_LABEL: &str = "pod-security.kubernetes.io/enforce";

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
fn a_pinned_version_cannot_beat_a_stricter_level_and_equal_levels_take_the_newest() {
    let pinned = baseline(
        "a",
        psa_spec(Mode::Enforce, PodSecurityLevel::Restricted, Some("v1.30")),
    );
    let latest = baseline(
        "b",
        psa_spec(Mode::Enforce, PodSecurityLevel::Baseline, None),
    );
    let desired = render(&[pinned.clone(), latest], "ns", &no_labels(), &env());
    assert_eq!(desired.namespace_labels[ENFORCE_LABEL].value, "restricted");
    assert_eq!(
        desired.namespace_labels["pod-security.kubernetes.io/enforce-version"].value,
        "v1.30"
    );

    let newest = baseline(
        "c",
        psa_spec(Mode::Enforce, PodSecurityLevel::Restricted, None),
    );
    let desired = render(&[pinned, newest], "ns", &no_labels(), &env());
    let version = &desired.namespace_labels["pod-security.kubernetes.io/enforce-version"];
    assert_eq!(
        (version.value.as_str(), version.baseline.as_str()),
        ("latest", "c")
    );
}

#[test]
fn a_live_version_older_than_the_floor_is_drift_whatever_the_level() {
    let desired = render(
        &[baseline(
            "a",
            psa_spec(Mode::Enforce, PodSecurityLevel::Baseline, None),
        )],
        "ns",
        &no_labels(),
        &env(),
    );
    let mut live = as_live(&desired);
    live.namespace_labels
        .insert(ENFORCE_LABEL.into(), "restricted".into());
    live.namespace_labels.insert(
        "pod-security.kubernetes.io/enforce-version".into(),
        "v1.0".into(),
    );
    let drift = diff(&desired, &live);
    assert_eq!(drift.len(), 1, "{drift:?}");
    assert_eq!(drift[0].name, "pod-security.kubernetes.io/enforce-version");
    // The repair keeps the stricter level, at a version that counts.
    let [Write::ApplyNamespaceLabels(labels)] = &plan(&desired, &live, &drift, &none())[..] else {
        panic!()
    };
    assert_eq!(labels[ENFORCE_LABEL], "restricted");
    assert_eq!(
        labels["pod-security.kubernetes.io/enforce-version"],
        "latest"
    );
    // A malformed level is drift too (admission would fall back to the cluster default).
    live.namespace_labels
        .insert(ENFORCE_LABEL.into(), "strict".into());
    assert!(
        diff(&desired, &live)
            .iter()
            .any(|d| d.name == ENFORCE_LABEL)
    );
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
    live.foreign_policies.push(summarize(&allow_all));
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

#[test]
fn a_subject_namespace_template_is_exactly_namespace_or_nothing() {
    let role = |namespace: &str| {
        let text = format!(
            "apiVersion: zerotrust.dev/v1alpha1\nkind: SecurityBaseline\nmetadata: {{name: b}}\nspec:\n  rbac:\n    roles:\n    - name: ci\n      rules: [{{apiGroups: [''], resources: [pods], verbs: [get]}}]\n      subjects: [{{kind: ServiceAccount, name: deployer, namespace: '{namespace}'}}]\n"
        );
        validate(&crate::api::parse_baselines(&text).unwrap()[0])
    };
    assert!(role("${namespace}").is_ok());
    assert!(role("ci-tools").is_ok());
    let squatted = role("${namespace}-ci").unwrap_err();
    assert_eq!(
        squatted.errors[0].path,
        "spec.rbac.roles[0].subjects[0].namespace"
    );
}

#[test]
fn labels_wait_for_the_marker_only_where_that_opens_nothing_early() {
    let desired = render(
        &[baseline("tenants", restricted_spec())],
        "team-a",
        &tenant_labels(),
        &env(),
    );
    let mut live = LiveState::default();
    let marker = onboarded_label("tenants");
    let labels = namespace_labels(&desired, &live, &none());
    assert!(labels.keys().any(|k| k.starts_with(PSA_LABEL_PREFIX)));
    let older = |_: &str| false;
    let gated = |_: &str| true;
    let waits = |live: &LiveState, remaining: &[&Drift], gated: &dyn Fn(&str) -> bool| {
        labels_wait_for_markers(&desired, live, remaining, &labels, gated)
    };
    // Onboarding a namespace older than the baseline (no gate): the label write waits.
    assert!(waits(&live, &[], &older));
    // One the gate holds: raising Pod Security in the write that opens the gate could let a pod
    // pass PodSecurity on the old labels and the gate on the new marker. Labels first.
    assert!(!waits(&live, &[], &gated));
    // Unless the mutating policy already set them at creation: the write then raises nothing.
    let mut created_labelled = live.clone();
    created_labelled.namespace_labels = labels.clone();
    assert!(waits(&created_labelled, &[], &gated));
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
    assert!(!waits(&live, &[&conflict], &older));
    // A missing Role does not keep the marker back.
    let roles: Vec<&Drift> = drift.iter().filter(|d| d.kind == Kind::Role).collect();
    assert!(!roles.is_empty());
    assert!(waits(&live, &roles, &older));
    // Onboarded: a repair writes its labels at once.
    live.namespace_labels.insert(marker.clone(), "true".into());
    assert!(!waits(&live, &[], &older));
    // A marker with another value is not the operator's "true": still onboarding.
    live.namespace_labels.insert(marker, "false".into());
    assert!(waits(&live, &[], &older));
    // Audit baselines set no marker and write nothing: nothing waits.
    let mut spec = restricted_spec();
    spec.mode = Mode::Audit;
    let audit = render(
        &[baseline("audit", spec)],
        "team-a",
        &tenant_labels(),
        &env(),
    );
    let none_live = LiveState::default();
    assert!(!labels_wait_for_markers(
        &audit,
        &none_live,
        &[],
        &labels,
        older
    ));
}

#[test]
fn the_gate_holds_namespaces_created_with_or_after_the_baseline() {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    let at = |s: &str| Time(s.parse().unwrap());
    let baseline = at("2026-12-07T10:00:00Z");
    assert!(!gates_namespace(
        Some(&baseline),
        Some(&at("2026-12-07T09:59:59Z"))
    ));
    assert!(gates_namespace(Some(&baseline), Some(&baseline)));
    assert!(gates_namespace(
        Some(&baseline),
        Some(&at("2026-12-07T10:00:01Z"))
    ));
    // Unknown times: gated, as the gate's CEL is without the baseline's time.
    assert!(gates_namespace(None, Some(&baseline)));
    assert!(gates_namespace(Some(&baseline), None));
}
