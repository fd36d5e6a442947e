//! Bad input, as a table: every invalid baseline is either rejected by the API server with a message
//! naming the field, or (where the schema cannot express the rule) stored and reported by the
//! operator as `Ready=False, reason InvalidSpec` naming the field, while no namespace is touched.

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use zerotrust_operator::api::SecurityBaseline;
use zerotrust_testkit::*;

/// Where the table expects a bad baseline to be stopped.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Stopped {
    /// By the API server (schema, CEL): nothing is stored.
    ApiServer,
    /// By the operator's engine: stored, `Ready=False/InvalidSpec`, nothing written.
    Operator,
}
use Stopped::*;

/// (what, spec lines after `spec:` or `SELECTOR` for the probe selector, where, field named).
/// Every spec also asks for a default-deny policy and a PSA label, so a baseline that slipped
/// through would visibly touch the probe namespace.
const CASES: &[(&str, &str, Stopped, &str)] = &[
    // enums
    (
        "mode not an enum value",
        "mode: Enforcee",
        ApiServer,
        "spec.mode",
    ),
    (
        "deletionPolicy not an enum value",
        "deletionPolicy: Remove",
        ApiServer,
        "spec.deletionPolicy",
    ),
    (
        "conflictPolicy not an enum value",
        "conflictPolicy: Overwrite",
        ApiServer,
        "spec.conflictPolicy",
    ),
    (
        "PSA level unknown",
        "podSecurity: {audit: strict}",
        ApiServer,
        "spec.podSecurity.audit",
    ),
    (
        "policy type unknown",
        "networkPolicy: {defaultDeny: [Sideways]}",
        ApiServer,
        "spec.networkPolicy.defaultDeny[0]",
    ),
    (
        "subject kind unknown",
        "rbac: {roles: [{name: r, rules: [{apiGroups: [''], resources: [pods], verbs: [get]}], subjects: [{kind: Robot, name: x}]}]}",
        ApiServer,
        "spec.rbac.roles[0].subjects[0].kind",
    ),
    (
        "limit type unknown",
        "limitRange: {limits: [{type: Node, max: {cpu: '1'}}]}",
        ApiServer,
        "spec.limitRange.limits[0].type",
    ),
    // types
    (
        "bool given a string",
        "networkPolicy: {defaultDeny: [Egress], allowDNS: maybe}",
        ApiServer,
        "spec.networkPolicy.allowDNS",
    ),
    (
        "list given a string",
        "excludedNamespaces: legacy",
        ApiServer,
        "spec.excludedNamespaces",
    ),
    (
        "quantity given a list",
        "resourceQuota: {hard: {pods: ['1']}}",
        ApiServer,
        "spec.resourceQuota.hard.pods",
    ),
    (
        "unknown field",
        "networkPolicy: {defaultDenyy: [Ingress]}",
        ApiServer,
        "spec.networkPolicy.defaultDenyy",
    ),
    (
        "unknown top-level spec field",
        "modes: Audit",
        ApiServer,
        "spec.modes",
    ),
    // quantities and versions
    (
        "quota quantity not a quantity",
        "resourceQuota: {hard: {requests.cpu: lots}}",
        ApiServer,
        "spec.resourceQuota.hard.requests.cpu",
    ),
    (
        "limit quantity not a quantity",
        "limitRange: {limits: [{type: Container, default: {memory: 1 GB}}]}",
        ApiServer,
        "spec.limitRange.limits[0].default.memory",
    ),
    (
        "PSA version not v1.NN",
        "podSecurity: {version: '1.30'}",
        ApiServer,
        "spec.podSecurity.version",
    ),
    (
        "PSA version older than the v1.34 floor (it lacked checks both levels have now)",
        "podSecurity: {enforce: restricted, version: v1.33}",
        ApiServer,
        "spec.podSecurity.version",
    ),
    // wildcards and privileged verbs
    (
        "wildcard verb",
        "rbac: {roles: [{name: r, rules: [{apiGroups: [''], resources: [pods], verbs: ['*']}]}]}",
        ApiServer,
        "spec.rbac.roles[0].rules",
    ),
    (
        "wildcard resource",
        "rbac: {roles: [{name: r, rules: [{apiGroups: [''], resources: ['*'], verbs: [get]}]}]}",
        ApiServer,
        "spec.rbac.roles[0].rules",
    ),
    (
        "wildcard API group",
        "rbac: {roles: [{name: r, rules: [{apiGroups: ['*'], resources: [pods], verbs: [get]}]}]}",
        ApiServer,
        "spec.rbac.roles[0].rules",
    ),
    (
        "escalate without opt-in",
        "rbac: {roles: [{name: r, rules: [{apiGroups: [rbac.authorization.k8s.io], resources: [roles], verbs: [escalate]}]}]}",
        ApiServer,
        "spec.rbac.roles[0].rules",
    ),
    // sizes and names
    (
        "too many excluded namespaces",
        "EXCLUDED_600",
        ApiServer,
        "spec.excludedNamespaces",
    ),
    (
        "defaultDeny longer than its two directions",
        "networkPolicy: {defaultDeny: [Ingress, Egress, Ingress]}",
        ApiServer,
        "spec.networkPolicy.defaultDeny",
    ),
    (
        "excluded namespace not a name",
        "excludedNamespaces: [Not_A_Name]",
        ApiServer,
        "spec.excludedNamespaces[0]",
    ),
    (
        "role name not a DNS label",
        "rbac: {roles: [{name: Viewer, rules: [{apiGroups: [''], resources: [pods], verbs: [get]}]}]}",
        ApiServer,
        "spec.rbac.roles[0].name",
    ),
    (
        "duplicate role names",
        "rbac: {roles: [{name: r, rules: [{apiGroups: [''], resources: [pods], verbs: [get]}]}, {name: r, rules: [{apiGroups: [''], resources: [pods], verbs: [list]}]}]}",
        ApiServer,
        "spec.rbac.roles[1]",
    ),
    // conflicting fields
    (
        "allowDNS without an egress deny",
        "networkPolicy: {defaultDeny: [Ingress], allowDNS: true}",
        ApiServer,
        "spec.networkPolicy.allowDNS",
    ),
    (
        "allowSameNamespace without a deny",
        "networkPolicy: {allowSameNamespace: true}",
        ApiServer,
        "spec.networkPolicy.allowSameNamespace",
    ),
    (
        "a role granting Secrets without allowSensitiveResources",
        "rbac: {roles: [{name: r, rules: [{apiGroups: [''], resources: [secrets], verbs: [get]}]}]}",
        ApiServer,
        "spec.rbac.roles[0].rules",
    ),
    (
        "a role granting pods/exec without allowSensitiveResources",
        "rbac: {roles: [{name: r, rules: [{apiGroups: [''], resources: [pods/exec], verbs: [create]}]}]}",
        ApiServer,
        "spec.rbac.roles[0].rules",
    ),
    (
        "namespace on a Group subject",
        "rbac: {roles: [{name: r, rules: [{apiGroups: [''], resources: [pods], verbs: [get]}], subjects: [{kind: Group, name: g, namespace: x}]}]}",
        ApiServer,
        "spec.rbac.roles[0].subjects[0].namespace",
    ),
    (
        "a ServiceAccount namespace templated other than exactly ${namespace} (squattable)",
        "rbac: {roles: [{name: r, rules: [{apiGroups: [''], resources: [pods], verbs: [get]}], subjects: [{kind: ServiceAccount, name: ci, namespace: '${namespace}-ci'}]}]}",
        ApiServer,
        "spec.rbac.roles[0].subjects[0].namespace",
    ),
    // what only the engine checks: label selectors, templates, LimitRange consistency
    // Each selector also has matchLabels for the probe namespace, and its expression would match
    // the probe if it were read leniently (an unknown operator as In, missing values ignored,
    // extra values ignored, the bad key's DoesNotExist holding): accepted by mistake, the
    // baseline would visibly write into the probe namespace.
    (
        "selector operator unknown",
        "SELECTOR matchLabels: {zt-bad-input: PROBE}, matchExpressions: [{key: zt-bad-input, operator: Near, values: [PROBE]}]",
        Operator,
        "spec.namespaceSelector.matchExpressions[0].operator",
    ),
    (
        "selector NotIn without values",
        "SELECTOR matchLabels: {zt-bad-input: PROBE}, matchExpressions: [{key: zt-bad-input, operator: NotIn}]",
        Operator,
        "spec.namespaceSelector.matchExpressions[0].values",
    ),
    (
        "selector Exists with values",
        "SELECTOR matchLabels: {zt-bad-input: PROBE}, matchExpressions: [{key: zt-bad-input, operator: Exists, values: [PROBE]}]",
        Operator,
        "spec.namespaceSelector.matchExpressions[0].values",
    ),
    (
        "selector label key invalid",
        "SELECTOR matchLabels: {zt-bad-input: PROBE}, matchExpressions: [{key: 'bad key!', operator: DoesNotExist}]",
        Operator,
        "spec.namespaceSelector.matchExpressions[0].key",
    ),
    (
        "template variable unknown",
        "rbac: {roles: [{name: r, rules: [{apiGroups: [''], resources: [pods], verbs: [get]}], subjects: [{kind: Group, name: '${team}-viewers'}]}]}",
        Operator,
        "spec.rbac.roles[0].subjects[0].name",
    ),
    (
        "template unterminated",
        "rbac: {roles: [{name: r, rules: [{apiGroups: [''], resources: [pods], verbs: [get]}], subjects: [{kind: Group, name: '${namespace-viewers'}]}]}",
        Operator,
        "spec.rbac.roles[0].subjects[0].name",
    ),
    (
        "ServiceAccount template makes no name",
        "rbac: {roles: [{name: r, rules: [{apiGroups: [''], resources: [pods], verbs: [get]}], subjects: [{kind: ServiceAccount, name: '${namespace}_bot'}]}]}",
        Operator,
        "spec.rbac.roles[0].subjects[0].name",
    ),
    (
        "template in a rule field (would be granted literally)",
        "rbac: {roles: [{name: r, rules: [{apiGroups: [''], resources: [configmaps], verbs: [get], resourceNames: ['${namespace}-config']}]}]}",
        Operator,
        "spec.rbac.roles[0].rules[0].resourceNames",
    ),
    (
        "default request above default limit",
        "limitRange: {limits: [{type: Container, default: {cpu: 100m}, defaultRequest: {cpu: '1'}}]}",
        Operator,
        "spec.limitRange.limits[0].defaultRequest",
    ),
    (
        "min above max",
        "limitRange: {limits: [{type: Container, min: {cpu: '2'}, max: {cpu: '1'}}]}",
        Operator,
        "spec.limitRange.limits[0].min",
    ),
    (
        "defaults on a Pod limit",
        "limitRange: {limits: [{type: Pod, default: {cpu: '1'}}]}",
        Operator,
        "spec.limitRange.limits[0]",
    ),
    (
        "negative quota",
        "resourceQuota: {hard: {pods: '-1'}}",
        Operator,
        "spec.resourceQuota.hard",
    ),
    // exemptions end, or say they never do (issue 24, item 7)
    (
        "exemption with neither expiresAt nor permanent",
        "exemptions: [{namespaces: [legacy], controls: [LimitRange], reason: r}]",
        ApiServer,
        "spec.exemptions[0].expiresAt",
    ),
    (
        "exemption with both expiresAt and permanent",
        "exemptions: [{namespaces: [legacy], controls: [LimitRange], reason: r, expiresAt: '2027-01-01T00:00:00Z', permanent: true}]",
        ApiServer,
        "spec.exemptions[0].expiresAt",
    ),
    (
        "exemption ending more than 365 days ahead",
        "exemptions: [{namespaces: [legacy], controls: [LimitRange], reason: r, expiresAt: '2999-01-01T00:00:00Z'}]",
        Operator,
        "spec.exemptions[0].expiresAt",
    ),
];

fn manifest(name: &str, probe: &str, spec: &str) -> String {
    let excluded: Vec<String> = (0..600).map(|i| format!("ns-{i}")).collect();
    let spec = spec.replace(
        "EXCLUDED_600",
        &format!("excludedNamespaces: [{}]", excluded.join(", ")),
    );
    let (selector, spec) = match spec.strip_prefix("SELECTOR ") {
        Some(selector) => (
            format!("{{{}}}", selector.replace("PROBE", probe)),
            String::new(),
        ),
        None => (format!("{{matchLabels: {{zt-bad-input: {probe}}}}}"), spec),
    };
    // The valid part that would visibly touch the probe namespace, unless the case sets those keys.
    let base = if spec.starts_with("networkPolicy") || spec.starts_with("podSecurity") {
        String::new()
    } else {
        "  networkPolicy: {defaultDeny: [Ingress]}\n  podSecurity: {enforce: restricted}\n"
            .to_string()
    };
    let spec = if spec.is_empty() {
        String::new()
    } else {
        format!("  {spec}\n")
    };
    format!(
        "apiVersion: zerotrust.dev/v1alpha1\nkind: SecurityBaseline\nmetadata: {{name: {name}}}\nspec:\n  namespaceSelector: {selector}\n{base}{spec}"
    )
}

#[tokio::test]
async fn every_invalid_baseline_is_refused_naming_the_field_and_touches_nothing() {
    // The counts RELIABILITY.md publishes.
    let by_api_server = CASES.iter().filter(|c| c.2 == ApiServer).count();
    assert_eq!(
        (CASES.len(), by_api_server),
        (46, 33),
        "RELIABILITY.md's table counts"
    );
    let plane = control_plane();
    let client = client().await;
    let _operator = operator();
    let probe = unique("bad");
    let _ns = namespace(&client, &probe, &[("zt-bad-input", &probe)]).await;
    let control = format!("{probe}-control");
    let _cleanup = Cleanup(
        (0..CASES.len())
            .map(|i| format!("{probe}-{i}"))
            .chain([control.clone()])
            .collect(),
    );
    let mut stored = Vec::new();
    let mut failures = Vec::new();
    for (i, (what, spec, stopped, field)) in CASES.iter().enumerate() {
        let name = format!("{probe}-{i}");
        let out = plane.kubectl(&["apply", "-f", "-"], Some(&manifest(&name, &probe, spec)));
        let actual = if out.status.success() {
            Operator
        } else {
            ApiServer
        };
        if actual != *stopped {
            failures.push(format!(
                "{what}: expected {stopped:?}, got {actual:?}: {}",
                stderr(&out)
            ));
            continue;
        }
        if actual == ApiServer && !stderr(&out).contains(field) {
            failures.push(format!(
                "{what}: the error should name {field}: {}",
                stderr(&out)
            ));
        }
        if actual == Operator {
            stored.push((what, name, field));
        }
    }
    // A valid baseline applied after all of them: once the probe namespace has its policy, the
    // operator has reconciled it with every invalid baseline in its cache.
    let out = plane.kubectl(
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: zerotrust.dev/v1alpha1\nkind: SecurityBaseline\nmetadata: {{name: {control}}}\nspec:\n  namespaceSelector: {{matchLabels: {{zt-bad-input: {probe}}}}}\n  networkPolicy: {{defaultDeny: [Egress]}}\n"
        )),
    );
    assert!(
        out.status.success(),
        "the control baseline applies: {}",
        stderr(&out)
    );
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &probe);
    let names = eventually(
        Duration::from_secs(30),
        "the control baseline's policy",
        || async {
            let list = policies.list(&ListParams::default()).await.ok()?;
            let names: Vec<String> = list.items.iter().map(|p| p.name_any()).collect();
            names.iter().any(|n| n.contains("control")).then_some(names)
        },
    )
    .await;
    assert_eq!(
        names,
        vec![format!("zt-{control}-default-deny")],
        "only the control baseline wrote a policy"
    );
    let ns = Api::<Namespace>::all(client.clone())
        .get(&probe)
        .await
        .expect("probe namespace");
    let psa: Vec<&String> = ns
        .labels()
        .keys()
        .filter(|k| k.starts_with("pod-security"))
        .collect();
    assert!(
        psa.is_empty(),
        "no invalid baseline set a PSA label: {psa:?}"
    );

    // Each stored one is reported, naming the field.
    let api: Api<SecurityBaseline> = Api::all(client.clone());
    for (what, name, field) in &stored {
        let message = eventually(
            Duration::from_secs(30),
            "an InvalidSpec condition",
            || async {
                let baseline = api.get(name).await.ok()?;
                let ready = baseline
                    .status?
                    .conditions
                    .into_iter()
                    .find(|c| c.type_ == "Ready")?;
                (ready.status == "False" && ready.reason == "InvalidSpec").then_some(ready.message)
            },
        )
        .await;
        if !message.contains(*field) {
            failures.push(format!(
                "{what}: the InvalidSpec message should name {field}: {message}"
            ));
        }
    }

    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}
