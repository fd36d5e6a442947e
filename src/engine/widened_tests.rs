//! Whose a NetworkPolicy is, for the Widened finding: judged by content (is it exactly one of a
//! selecting baseline's desired objects?), never by labels or field managers, which any client
//! writes; and another baseline's allows opening this one's default-deny is a finding on it.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use serde_json::json;

use super::test_support::{as_live, baseline, env, tenant_labels};
use super::validate::ValidBaseline;
use super::*;

/// The valid baseline `name` with the spec in YAML.
fn named(name: &str, spec: &str) -> ValidBaseline {
    let mut b = baseline(spec);
    b.baseline.metadata.name = Some(name.to_string());
    b
}

const DENY: &str = "networkPolicy: {defaultDeny: [Ingress, Egress], allowDNS: true}";

/// An allow-all NetworkPolicy in team-a, with `labels` and, if `ours_manager`, a managedFields
/// entry naming our field manager: everything a tenant can forge.
fn allow_all(name: &str, labels: &[(&str, &str)], ours_manager: bool) -> NetworkPolicy {
    let mut policy: NetworkPolicy = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "team-a"},
        "spec": {"podSelector": {}, "ingress": [{}], "egress": [{}],
                 "policyTypes": ["Ingress", "Egress"]},
    }))
    .unwrap();
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    policy.metadata.labels = Some(labels);
    if ours_manager {
        policy.metadata.managed_fields = Some(vec![ManagedFieldsEntry {
            manager: Some(FIELD_MANAGER.to_string()),
            operation: Some("Apply".to_string()),
            ..ManagedFieldsEntry::default()
        }]);
    }
    policy
}

fn widened_names(drift: &[Drift]) -> Vec<(&str, &str)> {
    drift
        .iter()
        .filter(|d| matches!(d.reason, DriftReason::Widened(_)))
        .map(|d| (d.baseline.as_str(), d.name.as_str()))
        .collect()
}

#[test]
fn forged_ownership_never_takes_a_policy_out_of_judgement() {
    let desired = render(
        &[named("tenants", DENY)],
        "team-a",
        &tenant_labels(),
        &env(),
    );
    for baseline_label in ["tenants", "nobody", "other"] {
        for manager in [false, true] {
            let forged = allow_all(
                "zt-nobody-allow",
                &[
                    (MANAGED_BY_LABEL, MANAGED_BY_VALUE),
                    (BASELINE_LABEL, baseline_label),
                ],
                manager,
            );
            let mut live = as_live(&desired);
            live.network_policies.push(summarize(&forged));
            live.objects.push(Object::NetworkPolicy(forged));
            let drift = diff(&desired, &live);
            assert_eq!(
                widened_names(&drift),
                vec![("tenants", "zt-nobody-allow")],
                "labels for {baseline_label}, our manager {manager}: {drift:?}"
            );
        }
    }
}

#[test]
fn the_baselines_own_desired_policies_are_not_judged_against_it() {
    let desired = render(
        &[named("tenants", DENY)],
        "team-a",
        &tenant_labels(),
        &env(),
    );
    let live = as_live(&desired);
    assert!(
        live.network_policies
            .iter()
            .any(|p| p.name == "zt-tenants-allow-dns")
    );
    assert_eq!(diff(&desired, &live), vec![]);
}

#[test]
fn a_second_baselines_allow_all_is_a_finding_on_the_first_naming_it() {
    let wide_open = [
        "{name: all, direction: Ingress, peers: [{namespaceSelector: {}}]}",
        "{name: all, direction: Egress, peers: [{cidr: 0.0.0.0/0}]}",
    ];
    for allow in wide_open {
        let second = named(
            "second",
            &format!("networkPolicy: {{defaultDeny: [Ingress, Egress], allow: [{allow}]}}"),
        );
        let first = named("first", "networkPolicy: {defaultDeny: [Ingress, Egress]}");
        let desired = render(&[first, second], "team-a", &tenant_labels(), &env());
        let live = as_live(&desired);
        let drift = diff(&desired, &live);
        let found: Vec<&Drift> = drift
            .iter()
            .filter(|d| matches!(d.reason, DriftReason::Widened(_)))
            .collect();
        assert_eq!(found.len(), 1, "{allow}: {drift:?}");
        assert_eq!(
            (found[0].baseline.as_str(), found[0].name.as_str()),
            ("first", "zt-second-allow-all")
        );
        let DriftReason::Widened(detail) = &found[0].reason else {
            unreachable!()
        };
        assert!(
            detail.starts_with("SecurityBaseline second's policy allows")
                && detail.contains("first's allows do not"),
            "{detail}"
        );
        // Never repaired: the second baseline's policy is its own to keep.
        assert!(!repairable(&desired, found[0]));
    }
}

#[test]
fn baselines_with_the_same_allows_do_not_widen_each_other() {
    let spec =
        "networkPolicy: {defaultDeny: [Ingress, Egress], allowDNS: true, allowSameNamespace: true}";
    let desired = render(
        &[named("one", spec), named("two", spec)],
        "team-a",
        &tenant_labels(),
        &env(),
    );
    assert_eq!(diff(&desired, &as_live(&desired)), vec![]);
}

#[test]
fn a_stricter_baseline_is_widened_by_a_looser_one_and_not_the_other_way() {
    let strict = named("strict", "networkPolicy: {defaultDeny: [Ingress, Egress]}");
    let loose = named(
        "loose",
        "networkPolicy: {defaultDeny: [Ingress, Egress], allowDNS: true}",
    );
    let desired = render(&[strict, loose], "team-a", &tenant_labels(), &env());
    let drift = diff(&desired, &as_live(&desired));
    assert_eq!(
        widened_names(&drift),
        vec![("strict", "zt-loose-allow-dns")],
        "{drift:?}"
    );
}
