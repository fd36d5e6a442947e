//! Validation's errors, each at the field it names, and the syntax rules for names and versions.

use super::syntax::is_label_key;
use super::*;
use crate::api::parse_baselines;

fn errors_of(spec_yaml: &str) -> Vec<String> {
    let text = format!(
        "apiVersion: zerotrust.dev/v1alpha1\nkind: SecurityBaseline\nmetadata: {{name: test}}\nspec:\n{spec_yaml}"
    );
    let baseline = parse_baselines(&text).expect("parses").remove(0);
    match validate(&baseline, crate::engine::test_support::VALIDATED_AT) {
        Ok(_) => vec![],
        Err(invalid) => invalid.errors.into_iter().map(|e| e.path).collect(),
    }
}

#[test]
fn a_full_baseline_is_valid() {
    let errors = errors_of(
        "  networkPolicy: {defaultDeny: [Ingress, Egress], allowDNS: true, allowSameNamespace: true}\n  podSecurity: {enforce: restricted, version: v1.35}\n  rbac:\n    roles:\n    - name: viewer\n      rules: [{apiGroups: [''], resources: [pods], verbs: [get, list]}]\n      subjects: [{kind: Group, name: 'team-${namespace}'}, {kind: ServiceAccount, name: ci, namespace: '${namespace}'}]\n  resourceQuota: {hard: {pods: '10', requests.cpu: 2}}\n  limitRange: {limits: [{type: Container, default: {cpu: 500m}, defaultRequest: {cpu: 100m}, max: {cpu: '1'}}]}\n",
    );
    assert!(errors.is_empty(), "{errors:?}");
}

/// Each (spec, path): validating the spec gives an error at the path.
fn assert_each_names_its_field(cases: &[(&str, &str)]) {
    for (spec, path) in cases {
        let errors = errors_of(spec);
        assert!(
            errors.iter().any(|e| e == path),
            "{spec}: expected {path}, got {errors:?}"
        );
    }
}

#[test]
fn each_network_policy_and_pod_security_problem_names_its_field() {
    assert_each_names_its_field(&[
        (
            "  networkPolicy: {defaultDeny: [Ingress], allowDNS: true}\n",
            "spec.networkPolicy.allowDNS",
        ),
        (
            "  networkPolicy: {allowSameNamespace: true}\n",
            "spec.networkPolicy.allowSameNamespace",
        ),
        (
            "  networkPolicy: {defaultDeny: [Egress, Egress]}\n",
            "spec.networkPolicy.defaultDeny",
        ),
        (
            "  podSecurity: {version: v2.0}\n",
            "spec.podSecurity.version",
        ),
    ]);
}

#[test]
fn each_namespace_selection_problem_names_its_field() {
    assert_each_names_its_field(&[
        (
            "  excludedNamespaces: [Bad_Name]\n",
            "spec.excludedNamespaces[0]",
        ),
        (
            "  namespaceSelector: {matchExpressions: [{key: team, operator: Has}]}\n",
            "spec.namespaceSelector.matchExpressions[0].operator",
        ),
        (
            "  namespaceSelector: {matchExpressions: [{key: team, operator: In}]}\n",
            "spec.namespaceSelector.matchExpressions[0].values",
        ),
        (
            "  namespaceSelector: {matchLabels: {'bad key!': x}}\n",
            "spec.namespaceSelector.matchLabels[\"bad key!\"]",
        ),
    ]);
}

#[test]
fn each_rbac_problem_names_its_field() {
    assert_each_names_its_field(&[
        (
            "  rbac: {roles: [{name: r, rules: [{apiGroups: [''], resources: [pods], verbs: ['*']}]}]}\n",
            "spec.rbac.roles[0].rules[0].verbs",
        ),
        (
            "  rbac: {roles: [{name: r, rules: [{apiGroups: ['*'], resources: [pods], verbs: [get]}]}]}\n",
            "spec.rbac.roles[0].rules[0].apiGroups",
        ),
        (
            "  rbac: {roles: [{name: r, rules: [{apiGroups: [''], resources: [roles], verbs: [escalate]}]}]}\n",
            "spec.rbac.roles[0].rules[0].verbs",
        ),
        (
            "  rbac: {roles: [{name: r, rules: [{apiGroups: [''], resources: [pods], verbs: []}]}]}\n",
            "spec.rbac.roles[0].rules[0].verbs",
        ),
        (
            "  rbac: {roles: [{name: r, rules: []}]}\n",
            "spec.rbac.roles[0].rules",
        ),
        (
            "  rbac: {roles: [{name: r, rules: [{apiGroups: [''], resources: [pods], verbs: [get]}], subjects: [{kind: Group, name: '${team}'}]}]}\n",
            "spec.rbac.roles[0].subjects[0].name",
        ),
        (
            "  rbac: {roles: [{name: r, rules: [{apiGroups: [''], resources: [pods], verbs: [get]}], subjects: [{kind: User, name: u, namespace: x}]}]}\n",
            "spec.rbac.roles[0].subjects[0].namespace",
        ),
        (
            "  rbac: {roles: [{name: r, rules: [{apiGroups: [''], resources: [pods], verbs: [get]}]}, {name: r, rules: [{apiGroups: [''], resources: [pods], verbs: [get]}]}]}\n",
            "spec.rbac.roles[1].name",
        ),
        (
            "  rbac: {roles: [{name: Bad, rules: [{apiGroups: [''], resources: [pods], verbs: [get]}]}]}\n",
            "spec.rbac.roles[0].name",
        ),
    ]);
}

#[test]
fn each_quota_and_limit_range_problem_names_its_field() {
    assert_each_names_its_field(&[
        (
            "  limitRange: {limits: [{type: Container, default: {cpu: 1}}, {type: Container, max: {cpu: 2}}]}\n",
            "spec.limitRange.limits[1].type",
        ),
        (
            "  resourceQuota: {hard: {cpu: lots}}\n",
            "spec.resourceQuota.hard[\"cpu\"]",
        ),
        (
            "  resourceQuota: {hard: {pods: '-1'}}\n",
            "spec.resourceQuota.hard[\"pods\"]",
        ),
        ("  resourceQuota: {hard: {}}\n", "spec.resourceQuota.hard"),
        // What the API server refuses in the objects we would render (found by
        // tests/round_trip.rs): resource names, whole numbers, a PVC item without storage.
        (
            "  resourceQuota: {hard: {v11-31: '1'}}\n",
            "spec.resourceQuota.hard[\"v11-31\"]",
        ),
        (
            "  resourceQuota: {hard: {pods: 500m}}\n",
            "spec.resourceQuota.hard[\"pods\"]",
        ),
        (
            "  resourceQuota: {hard: {pods: '99999999999999999999999'}}\n",
            "spec.resourceQuota.hard[\"pods\"]",
        ),
        (
            "  limitRange: {limits: [{type: Container, default: {pods: '1'}}]}\n",
            "spec.limitRange.limits[0].default[\"pods\"]",
        ),
        (
            "  limitRange: {limits: [{type: PersistentVolumeClaim, default: {storage: 1Gi}}]}\n",
            "spec.limitRange.limits[0]",
        ),
        (
            "  limitRange: {limits: [{type: Container, default: {cpu: 100m}, defaultRequest: {cpu: 200m}}]}\n",
            "spec.limitRange.limits[0].defaultRequest[\"cpu\"]",
        ),
        (
            "  limitRange: {limits: [{type: Pod, default: {cpu: 1}}]}\n",
            "spec.limitRange.limits[0]",
        ),
        (
            "  limitRange: {limits: [{type: Container, min: {cpu: 2}, max: {cpu: 1}}]}\n",
            "spec.limitRange.limits[0].min[\"cpu\"]",
        ),
    ]);
}

#[test]
fn wildcards_and_privileged_verbs_can_be_opted_into() {
    let errors = errors_of(
        "  rbac: {roles: [{name: admin, allowWildcards: true, allowPrivilegedVerbs: true, rules: [{apiGroups: ['*'], resources: ['*'], verbs: ['*', bind]}]}]}\n",
    );
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn name_rules() {
    assert!(is_dns_label("team-a"));
    assert!(!is_dns_label("-a"));
    assert!(!is_dns_label("A"));
    assert!(is_dns_subdomain("a.b-c"));
    assert!(is_label_key("pod-security.kubernetes.io/enforce"));
    assert!(is_label_key("requests.cpu"));
    assert!(!is_label_key("/x"));
}

#[test]
fn a_subject_namespace_template_is_exactly_namespace_or_nothing() {
    let role = |namespace: &str| {
        let text = format!(
            "apiVersion: zerotrust.dev/v1alpha1\nkind: SecurityBaseline\nmetadata: {{name: b}}\nspec:\n  rbac:\n    roles:\n    - name: ci\n      rules: [{{apiGroups: [''], resources: [pods], verbs: [get]}}]\n      subjects: [{{kind: ServiceAccount, name: deployer, namespace: '{namespace}'}}]\n"
        );
        validate(
            &crate::api::parse_baselines(&text).unwrap()[0],
            crate::engine::test_support::VALIDATED_AT,
        )
    };
    assert!(role("${namespace}").is_ok());
    assert!(role("ci-tools").is_ok());
    let squatted = role("${namespace}-ci").unwrap_err();
    assert_eq!(
        squatted.errors[0].path,
        "spec.rbac.roles[0].subjects[0].namespace"
    );
}

/// An exemption ends within a year of being written, or says it is permanent; never both, never
/// neither. Only the end is measured against the clock (2026-06-01 here).
#[test]
fn each_exemption_end_problem_names_its_field() {
    let exemption = |end: &str| {
        format!(
            "  exemptions: [{{namespaces: [legacy], controls: [LimitRange], reason: r{end}}}]\n"
        )
    };
    assert_each_names_its_field(&[
        (&exemption(""), "spec.exemptions[0].expiresAt"),
        (
            &exemption(", expiresAt: '2027-06-01T00:00:01Z'"),
            "spec.exemptions[0].expiresAt",
        ),
        (
            &exemption(", expiresAt: '2027-01-01T00:00:00Z', permanent: true"),
            "spec.exemptions[0].permanent",
        ),
    ]);
    for fine in [
        ", expiresAt: '2027-06-01T00:00:00Z'",
        ", expiresAt: '2020-01-01T00:00:00Z'",
        ", permanent: true",
    ] {
        assert_eq!(errors_of(&exemption(fine)), Vec::<String>::new(), "{fine}");
    }
}
