//! What `render` makes of baselines: every example, each control's objects, Pod Security labels
//! composed across baselines, and LimitRange defaults as the API server fills them in.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;

use super::test_support::{
    baseline_of as baseline, env, no_labels, psa_spec, restricted_spec, tenant_labels,
};
use super::*;
use crate::api::*;

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
            let valid = validate(&b, crate::engine::test_support::VALIDATED_AT)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
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
            "v1.35",
        ),
    );
    let b = baseline("b", psa(PodSecurityLevel::Restricted, None, "v1.34"));
    for order in [vec![a.clone(), b.clone()], vec![b.clone(), a.clone()]] {
        let desired = render(&order, "ns", &no_labels(), &env());
        let label =
            |k: &str| desired.namespace_labels[&format!("pod-security.kubernetes.io/{k}")].clone();
        assert_eq!(
            (label("enforce").value, label("enforce").baseline),
            ("restricted".into(), "b".into())
        );
        assert_eq!(
            (
                label("enforce-version").value,
                label("enforce-version").baseline
            ),
            ("v1.35".into(), "a".into()),
            "the level of one baseline, the newer version of the other"
        );
        assert_eq!(
            (label("warn").value, label("warn").baseline),
            ("restricted".into(), "a".into())
        );
        assert_eq!(label("warn-version").value, "v1.35");
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

/// `restricted` pinned to an old version lacks checks `baseline` at `latest` has: neither meets the
/// other, so the namespace gets both, the stricter level at the newer version.
#[test]
fn a_pinned_stricter_level_composes_with_a_newer_version_into_both() {
    let pinned = baseline(
        "a",
        psa_spec(Mode::Enforce, PodSecurityLevel::Restricted, Some("v1.34")),
    );
    let latest = baseline(
        "b",
        psa_spec(Mode::Enforce, PodSecurityLevel::Baseline, None),
    );
    for order in [[pinned.clone(), latest.clone()], [latest, pinned.clone()]] {
        let desired = render(&order, "ns", &no_labels(), &env());
        let label = |k: &str| {
            let v = &desired.namespace_labels[&format!("pod-security.kubernetes.io/{k}")];
            (v.value.clone(), v.baseline.clone())
        };
        assert_eq!(label("enforce"), ("restricted".into(), "a".into()));
        assert_eq!(label("enforce-version"), ("latest".into(), "b".into()));
    }

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
    // The API server takes one item per type: each Container case is a baseline of its own.
    let rendered = |limits: Vec<LimitSpec>| {
        let spec = SecurityBaselineSpec {
            limit_range: Some(LimitRangeSpec { limits }),
            ..Default::default()
        };
        let desired = render(&[baseline("limits", spec)], "team-a", &no_labels(), &env());
        let Some(Object::LimitRange(range)) = desired.objects.first().map(|d| d.object.clone())
        else {
            panic!("a LimitRange is rendered");
        };
        range.spec.expect("spec").limits
    };
    let container = |default, max, min| item(LimitType::Container, default, map(&[]), max, min);
    let q = |m: &Option<BTreeMap<String, K8sQuantity>>, k: &str| {
        m.as_ref().and_then(|m| m.get(k)).map(|q| q.0.clone())
    };
    // default limit from max, default request from the default limit; Pod items get no defaults
    let items = rendered(vec![
        container(map(&[]), map(&[("cpu", "2")]), map(&[])),
        item(
            LimitType::Pod,
            map(&[]),
            map(&[]),
            map(&[("cpu", "4")]),
            map(&[]),
        ),
    ]);
    assert_eq!(q(&items[0].default, "cpu").as_deref(), Some("2"));
    assert_eq!(q(&items[0].default_request, "cpu").as_deref(), Some("2"));
    assert_eq!(
        (items[1].default.clone(), items[1].default_request.clone()),
        (None, None)
    );
    // default request from the default limit, not from min
    let items = rendered(vec![container(
        map(&[("memory", "1Gi")]),
        map(&[]),
        map(&[("memory", "64Mi")]),
    )]);
    assert_eq!(
        q(&items[0].default_request, "memory").as_deref(),
        Some("1Gi")
    );
    // default request from min where there is no default limit
    let items = rendered(vec![container(map(&[]), map(&[]), map(&[("cpu", "100m")]))]);
    assert_eq!(q(&items[0].default_request, "cpu").as_deref(), Some("100m"));
    assert_eq!(q(&items[0].default, "cpu"), None);
}
