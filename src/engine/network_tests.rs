//! Examples of what makes a default-deny livable: DNS presets, allow rules, the API server allow,
//! exemptions (in render, diff, requirements and the admission policies' CEL alike), and the
//! validation of each with errors that name the field.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use proptest::prelude::*;
use serde_json::json;

use super::exemption::{exempt_cel, exempted};
use super::*;
use crate::api::Control;

/// 2026-06-01T00:00:00Z.
const NOW: i64 = 1_780_272_000;

use super::test_support::{baseline as valid, labels, try_baseline as try_valid};

fn env(api_server: &[(&str, i32)]) -> Environment {
    Environment {
        operator_namespace: DEFAULT_OPERATOR_NAMESPACE.to_string(),
        api_server: api_server
            .iter()
            .map(|(address, port)| Endpoint {
                address: address.to_string(),
                port: *port,
            })
            .collect(),
        now: NOW,
    }
}

fn policy(desired: &DesiredState, name: &str) -> NetworkPolicy {
    match &desired
        .object(Kind::NetworkPolicy, name)
        .unwrap_or_else(|| panic!("{name} rendered"))
        .object
    {
        Object::NetworkPolicy(p) => p.clone(),
        _ => unreachable!(),
    }
}

/// The (peers, ports) of a one-rule policy, as JSON for comparison.
fn only_rule(p: &NetworkPolicy) -> (serde_json::Value, serde_json::Value, Vec<String>) {
    let spec = p.spec.clone().unwrap();
    let types = spec.policy_types.clone().unwrap();
    let (peers, ports): (Vec<NetworkPolicyPeer>, Option<Vec<NetworkPolicyPort>>) =
        match (spec.ingress, spec.egress) {
            (Some(i), None) => {
                assert_eq!(i.len(), 1);
                (i[0].from.clone().unwrap(), i[0].ports.clone())
            }
            (None, Some(e)) => {
                assert_eq!(e.len(), 1);
                (e[0].to.clone().unwrap(), e[0].ports.clone())
            }
            other => panic!("one direction only: {other:?}"),
        };
    (json!(peers), json!(ports), types)
}

#[test]
fn dns_goes_where_each_distribution_runs_it() {
    let cases = [
        (
            "",
            json!([{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}]),
            53,
        ),
        (
            "dns: {provider: NodeLocalDNSCache}",
            json!([{"ipBlock": {"cidr": "169.254.20.10/32"}}]),
            53,
        ),
        (
            "dns: {provider: NodeLocalDNSCache, nodeLocalAddress: 'fd00::10'}",
            json!([{"ipBlock": {"cidr": "fd00::10/128"}}]),
            53,
        ),
        (
            "dns: {provider: OpenShift}",
            json!([{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "openshift-dns"}}, "podSelector": {"matchLabels": {"dns.operator.openshift.io/daemonset-dns": "default"}}}]),
            5353,
        ),
    ];
    for (dns, peers, port) in cases {
        let b = valid(&format!(
            "networkPolicy: {{defaultDeny: [Egress], allowDNS: true, {dns}}}"
        ));
        let desired = render(&[b], "team-a", &labels(&[]), &env(&[]));
        let (found_peers, ports, types) = only_rule(&policy(&desired, "zt-b-allow-dns"));
        assert_eq!(found_peers, peers, "{dns}");
        assert_eq!(
            ports,
            json!([{"port": port, "protocol": "UDP"}, {"port": port, "protocol": "TCP"}]),
            "{dns}"
        );
        assert_eq!(types, ["Egress"]);
    }
    // Custom: the peers and ports given, in full.
    let b = valid(
        "networkPolicy:\n  defaultDeny: [Egress]\n  allowDNS: true\n  dns:\n    provider: Custom\n    peers: [{cidr: 10.96.0.10/32}]\n    ports: [{protocol: UDP, port: 1053}]",
    );
    let desired = render(&[b], "team-a", &labels(&[]), &env(&[]));
    let (peers, ports, _) = only_rule(&policy(&desired, "zt-b-allow-dns"));
    assert_eq!(peers, json!([{"ipBlock": {"cidr": "10.96.0.10/32"}}]));
    assert_eq!(ports, json!([{"port": 1053, "protocol": "UDP"}]));
}

/// Two allow rules, one each way, that between them use every kind of peer and port.
fn two_allow_rules() -> DesiredState {
    let b = valid(
        r#"networkPolicy:
  defaultDeny: [Ingress, Egress]
  allow:
    - name: ingress
      direction: Ingress
      peers:
        - namespace: ingress-nginx
          pods: {matchLabels: {app: controller}}
        - namespaceSelector: {matchLabels: {team: platform}}
        - pods: {matchLabels: {role: frontend}}
      ports: [{port: 8080}, {port: http}, {protocol: UDP, port: 9000, endPort: 9100}]
    - name: databases
      direction: Egress
      peers: [{cidr: 10.20.0.0/16, except: [10.20.5.0/24]}]"#,
    );
    render(&[b], "team-a", &labels(&[]), &env(&[]))
}

#[test]
fn each_allow_rule_is_its_own_policy_with_every_kind_of_peer_and_port() {
    let desired = two_allow_rules();
    let (peers, ports, types) = only_rule(&policy(&desired, "zt-b-allow-ingress"));
    assert_eq!(types, ["Ingress"]);
    assert_eq!(
        peers,
        json!([
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}, "podSelector": {"matchLabels": {"app": "controller"}}},
            {"namespaceSelector": {"matchLabels": {"team": "platform"}}},
            {"podSelector": {"matchLabels": {"role": "frontend"}}},
        ])
    );
    assert_eq!(
        ports,
        json!([
            {"port": 8080, "protocol": "TCP"},
            {"port": "http", "protocol": "TCP"},
            {"port": 9000, "endPort": 9100, "protocol": "UDP"},
        ])
    );
    let (peers, ports, types) = only_rule(&policy(&desired, "zt-b-allow-databases"));
    assert_eq!(types, ["Egress"]);
    assert_eq!(
        peers,
        json!([{"ipBlock": {"cidr": "10.20.0.0/16", "except": ["10.20.5.0/24"]}}])
    );
    assert_eq!(ports, json!(null), "no ports listed: every port");
}

#[test]
fn allow_rule_policies_read_back_comply_and_each_widening_is_drift() {
    let desired = two_allow_rules();
    // Rendered state read back is compliant; an added peer, a widened block and a changed port
    // are each drift.
    let live = LiveState::complying(&desired, &labels(&[]));
    assert!(diff(&desired, &live).is_empty());
    type Edit = (&'static str, fn(&mut NetworkPolicy));
    let edits: [Edit; 3] = [
        ("zt-b-allow-ingress", |p| {
            let rules = p.spec.as_mut().unwrap().ingress.as_mut().unwrap();
            rules[0].from.as_mut().unwrap().push(NetworkPolicyPeer {
                namespace_selector: Some(LabelSelector::default()),
                ..Default::default()
            });
        }),
        ("zt-b-allow-databases", |p| {
            let rules = p.spec.as_mut().unwrap().egress.as_mut().unwrap();
            let block = rules[0].to.as_mut().unwrap()[0].ip_block.as_mut().unwrap();
            block.cidr = "10.0.0.0/8".to_string();
        }),
        ("zt-b-allow-ingress", |p| {
            let rules = p.spec.as_mut().unwrap().ingress.as_mut().unwrap();
            rules[0].ports.as_mut().unwrap()[0].port = Some(IntOrString::Int(22));
        }),
    ];
    for (name, edit) in edits {
        let mut damaged = live.clone();
        for object in &mut damaged.objects {
            if let Object::NetworkPolicy(p) = object
                && p.metadata.name.as_deref() == Some(name)
            {
                edit(p);
            }
        }
        let drift = diff(&desired, &damaged);
        assert!(
            drift
                .iter()
                .any(|d| d.name == name && matches!(d.reason, DriftReason::Weakened(_))),
            "{name}: {drift:?}"
        );
    }
}

/// Found by the server round trip: an empty selector written with empty lists came back from the
/// API server without them, so the policy read as modified on every pass.
#[test]
fn selectors_render_as_the_api_server_stores_them() {
    let b = valid(
        r#"networkPolicy:
  defaultDeny: [Ingress, Egress]
  allow:
    - name: out
      direction: Egress
      peers:
        - namespaceSelector: {matchLabels: {}, matchExpressions: []}
        - pods: {matchExpressions: [{key: app, operator: Exists, values: []}]}"#,
    );
    let desired = render(&[b], "team-a", &labels(&[]), &env(&[]));
    let (peers, _, _) = only_rule(&policy(&desired, "zt-b-allow-out"));
    assert_eq!(
        peers,
        json!([
            {"namespaceSelector": {}},
            {"podSelector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]}},
        ])
    );
}

#[test]
fn the_api_server_allow_follows_its_addresses_and_is_absent_while_they_are_unknown() {
    let b = valid("networkPolicy: {defaultDeny: [Egress], allowAPIServer: true}");
    let unknown = render(std::slice::from_ref(&b), "team-a", &labels(&[]), &env(&[]));
    assert!(
        unknown
            .object(Kind::NetworkPolicy, "zt-b-allow-api-server")
            .is_none()
    );
    let at = |endpoints: &[(&str, i32)]| {
        let desired = render(
            std::slice::from_ref(&b),
            "team-a",
            &labels(&[]),
            &env(endpoints),
        );
        policy(&desired, "zt-b-allow-api-server")
    };
    let first = at(&[("10.96.0.1", 443), ("192.0.2.10", 6443), ("10.96.0.1", 443)]);
    let egress = json!(first.spec.as_ref().unwrap().egress);
    assert_eq!(
        egress,
        json!([
            {"to": [{"ipBlock": {"cidr": "10.96.0.1/32"}}], "ports": [{"port": 443, "protocol": "TCP"}]},
            {"to": [{"ipBlock": {"cidr": "192.0.2.10/32"}}], "ports": [{"port": 6443, "protocol": "TCP"}]},
        ])
    );
    // The API server moved: the policy read back from before is now drift.
    let moved = render(
        std::slice::from_ref(&b),
        "team-a",
        &labels(&[]),
        &env(&[("10.96.0.1", 443), ("192.0.2.11", 6443)]),
    );
    let before = render(
        std::slice::from_ref(&b),
        "team-a",
        &labels(&[]),
        &env(&[("10.96.0.1", 443), ("192.0.2.10", 6443)]),
    );
    let live = LiveState::complying(&before, &labels(&[]));
    assert!(
        diff(&moved, &live)
            .iter()
            .any(|d| d.name == "zt-b-allow-api-server")
    );
}

const EXEMPT: &str = r#"networkPolicy: {defaultDeny: [Ingress]}
podSecurity: {enforce: restricted}
rbac:
  roles:
    - {name: viewer, rules: [{apiGroups: [""], resources: [pods], verbs: [get]}]}
    - {name: editor, rules: [{apiGroups: [""], resources: [pods], verbs: [create]}]}
resourceQuota: {hard: {pods: "10"}}
serviceAccounts: {automountDefaultToken: false}
exemptions:
  - namespaces: [legacy]
    controls: [NetworkPolicy, PodSecurity, ServiceAccount]
    reason: migrating
    expiresAt: "2026-06-01T00:00:10Z"
  - namespaceSelector: {matchLabels: {lab: "true"}}
    roles: [editor]
    reason: experiments
    permanent: true"#;

#[test]
fn exempt_controls_are_left_out_and_listed_until_their_expiry_to_the_second() {
    let b = valid(EXEMPT);
    let render_at = |ns: &str, l: &[(&str, &str)], now: i64| {
        let env = Environment { now, ..env(&[]) };
        render(std::slice::from_ref(&b), ns, &labels(l), &env)
    };
    let legacy = render_at("legacy", &[], NOW);
    assert!(
        legacy
            .objects
            .iter()
            .all(|d| d.object.kind() != Kind::NetworkPolicy)
    );
    assert!(legacy.namespace_labels.is_empty(), "no Pod Security labels");
    assert!(legacy.disable_default_token_automount.is_none());
    assert!(legacy.requirements[0].pod_security.is_empty());
    assert!(legacy.object(Kind::ResourceQuota, "zt-b-quota").is_some());
    let exempt: Vec<(&str, &str, Option<i64>)> = legacy
        .exempt
        .iter()
        .map(|e| (e.control.as_str(), e.reason.as_str(), e.expires_at))
        .collect();
    let end = Some(NOW + 10);
    assert_eq!(
        exempt,
        [
            ("NetworkPolicy", "migrating", end),
            ("PodSecurity", "migrating", end),
            ("ServiceAccount", "migrating", end)
        ]
    );
    // What the exemption left in place before it began is ours and no longer asked for: it goes.
    let full = render_at("legacy", &[], NOW + 10);
    assert!(full.exempt.is_empty(), "expired at its second");
    let live = LiveState::complying(&full, &labels(&[]));
    let drift = diff(&legacy, &live);
    assert!(
        drift
            .iter()
            .any(|d| d.name == "zt-b-default-deny" && d.reason == DriftReason::Stale),
        "{drift:?}"
    );
    // And at expiry everything is asked for again.
    let live = LiveState::complying(&legacy, &labels(&[]));
    let drift = diff(&full, &live);
    assert!(
        drift
            .iter()
            .any(|d| d.name == "zt-b-default-deny" && d.reason == DriftReason::Missing)
    );
    assert!(drift.iter().any(|d| d.kind == Kind::Namespace));
    // By labels, one role only.
    let lab = render_at("team-a", &[("lab", "true")], NOW);
    assert!(lab.object(Kind::Role, "zt-b-editor").is_none());
    assert!(lab.object(Kind::Role, "zt-b-viewer").is_some());
    assert_eq!(lab.exempt[0].control, "Role/editor");
    let other = render_at("team-a", &[], NOW);
    assert!(other.exempt.is_empty() && other.object(Kind::Role, "zt-b-editor").is_some());
    assert_eq!(next_expiry(&b, NOW), Some(NOW + 10));
}

#[test]
fn the_admission_policies_honour_the_same_exemptions_and_drop_them_at_expiry() {
    let b = valid(&format!(
        "{EXEMPT}\n  - namespaces: [lab]\n    controls: [NetworkPolicy]\n    reason: r\n    permanent: true"
    ));
    let mut b = b;
    b.baseline
        .spec
        .network_policy
        .as_mut()
        .unwrap()
        .refuse_widening = true;
    let settings = AdmissionSettings {
        operator_user: "op".into(),
        break_glass_group: "bg".into(),
        operator_namespace: DEFAULT_OPERATOR_NAMESPACE.into(),
        validating: true,
        mutating: true,
    };
    let text = |now| serde_json::to_string(&render_admission(&b, &settings, now)).unwrap();
    let during = text(NOW);
    assert!(during.contains("['legacy']"), "PSA and network exemptions");
    assert!(during.contains("not-exempt"));
    let after = text(NOW + 10);
    assert!(!after.contains("['legacy']"), "expired, gone");
    assert!(after.contains("['lab']"), "no expiry, kept");
}

/// Each (spec, field): the spec is refused, with an error that names the field.
fn assert_each_refused_naming(cases: &[(&str, &str)]) {
    for (spec, field) in cases {
        let error = try_valid(spec).expect_err(spec);
        assert!(error.contains(field), "{spec}: {error}");
    }
}

#[test]
fn bad_allow_rules_are_refused_naming_the_field() {
    assert_each_refused_naming(&[
        (
            "networkPolicy: {defaultDeny: [Ingress], allow: [{name: x, direction: Egress, peers: [{pods: {}}]}]}",
            "spec.networkPolicy.allow[0].direction",
        ),
        (
            "networkPolicy: {defaultDeny: [Ingress], allow: [{name: dns, direction: Ingress, peers: [{pods: {}}]}]}",
            "spec.networkPolicy.allow[0].name",
        ),
        (
            "networkPolicy: {defaultDeny: [Ingress], allow: [{name: a, direction: Ingress, peers: [{pods: {}}]}, {name: a, direction: Ingress, peers: [{pods: {}}]}]}",
            "spec.networkPolicy.allow[1].name",
        ),
        (
            "networkPolicy: {defaultDeny: [Ingress], allow: [{name: x, direction: Ingress, peers: []}]}",
            "spec.networkPolicy.allow[0].peers",
        ),
        (
            "networkPolicy: {defaultDeny: [Ingress], allow: [{name: x, direction: Ingress, peers: [{cidr: 10.0.0.0/33}]}]}",
            "spec.networkPolicy.allow[0].peers[0].cidr",
        ),
        (
            "networkPolicy: {defaultDeny: [Ingress], allow: [{name: x, direction: Ingress, peers: [{cidr: 10.0.0.0/16, except: [10.1.0.0/24]}]}]}",
            "spec.networkPolicy.allow[0].peers[0].except[0]",
        ),
        (
            "networkPolicy: {defaultDeny: [Ingress], allow: [{name: x, direction: Ingress, peers: [{namespace: a, namespaceSelector: {}}]}]}",
            "spec.networkPolicy.allow[0].peers[0].namespaceSelector",
        ),
        (
            "networkPolicy: {defaultDeny: [Ingress], allow: [{name: x, direction: Ingress, peers: [{cidr: 10.0.0.0/8, pods: {}}]}]}",
            "spec.networkPolicy.allow[0].peers[0].cidr",
        ),
        (
            "networkPolicy: {defaultDeny: [Ingress], allow: [{name: x, direction: Ingress, peers: [{pods: {}}], ports: [{port: HTTP}]}]}",
            "spec.networkPolicy.allow[0].ports[0].port",
        ),
        (
            "networkPolicy: {defaultDeny: [Ingress], allow: [{name: x, direction: Ingress, peers: [{pods: {}}], ports: [{port: 90, endPort: 80}]}]}",
            "spec.networkPolicy.allow[0].ports[0].endPort",
        ),
    ]);
}

#[test]
fn bad_dns_and_api_server_allows_are_refused_naming_the_field() {
    assert_each_refused_naming(&[
        (
            "networkPolicy: {defaultDeny: [Ingress], allowAPIServer: true}",
            "spec.networkPolicy.allowAPIServer",
        ),
        (
            "networkPolicy: {defaultDeny: [Egress], allowDNS: true, dns: {provider: Custom}}",
            "spec.networkPolicy.dns.peers",
        ),
        (
            "networkPolicy: {defaultDeny: [Egress], allowDNS: true, dns: {provider: NodeLocalDNSCache, nodeLocalAddress: here}}",
            "spec.networkPolicy.dns.nodeLocalAddress",
        ),
        (
            "networkPolicy: {defaultDeny: [Egress], allowDNS: true, dns: {provider: KubeDNS, nodeLocalAddress: 169.254.20.10}}",
            "spec.networkPolicy.dns.nodeLocalAddress",
        ),
    ]);
}

#[test]
fn bad_exemptions_are_refused_naming_the_field() {
    assert_each_refused_naming(&[
        (
            "exemptions: [{namespaces: [a], controls: [Roles], reason: ' '}]",
            "spec.exemptions[0].reason",
        ),
        (
            "exemptions: [{namespaces: [A_B], controls: [Roles], reason: r}]",
            "spec.exemptions[0].namespaces[0]",
        ),
        (
            "exemptions: [{namespaces: [a], roles: [nope], reason: r}]",
            "spec.exemptions[0].roles[0]",
        ),
        (
            "exemptions: [{namespaceSelector: {matchExpressions: [{key: a, operator: In}]}, controls: [Roles], reason: r}]",
            "spec.exemptions[0].namespaceSelector.matchExpressions[0].values",
        ),
    ]);
}

#[test]
fn a_subject_api_group_that_does_not_fit_its_kind_is_refused_naming_the_field() {
    assert_each_refused_naming(&[
        (
            "rbac: {roles: [{name: r, rules: [{apiGroups: [''], resources: [pods], verbs: [get]}], subjects: [{kind: Group, name: g, apiGroup: ''}]}]}",
            "spec.rbac.roles[0].subjects[0].apiGroup",
        ),
        (
            "rbac: {roles: [{name: r, rules: [{apiGroups: [''], resources: [pods], verbs: [get]}], subjects: [{kind: ServiceAccount, name: s, apiGroup: rbac.authorization.k8s.io}]}]}",
            "spec.rbac.roles[0].subjects[0].apiGroup",
        ),
    ]);
    // The standard Subject shape, copied from a RoleBinding, is accepted as it is.
    try_valid("rbac: {roles: [{name: r, rules: [{apiGroups: [''], resources: [pods], verbs: [get]}], subjects: [{kind: Group, name: g, apiGroup: rbac.authorization.k8s.io}, {kind: ServiceAccount, name: s, namespace: x, apiGroup: ''}]}]}").unwrap();
}

/// Evaluates `expression` (CEL) with `name` and `labels` bound.
fn evaluate(expression: &str, name: &str, labels: &BTreeMap<String, String>) -> bool {
    let program = cel::Program::compile(expression).unwrap_or_else(|e| panic!("{expression}: {e}"));
    let mut context = cel::Context::default();
    context.add_variable("name", name).unwrap();
    let labels: std::collections::HashMap<String, String> = labels.clone().into_iter().collect();
    context.add_variable("labels", labels).unwrap();
    match program.execute(&context) {
        Ok(cel::Value::Bool(b)) => b,
        other => panic!("{expression}: {other:?}"),
    }
}

fn selector_yaml() -> impl Strategy<Value = String> {
    let key = prop_oneof![Just("team"), Just("tier"), Just("lab")];
    let value = prop_oneof![Just("a"), Just("b")];
    let expression = (
        key.clone(),
        prop_oneof![
            Just("In"),
            Just("NotIn"),
            Just("Exists"),
            Just("DoesNotExist")
        ],
        proptest::collection::vec(value.clone(), 1..3),
    )
        .prop_map(|(k, op, values)| match op {
            "In" | "NotIn" => format!(
                "{{key: {k}, operator: {op}, values: [{}]}}",
                values.join(", ")
            ),
            _ => format!("{{key: {k}, operator: {op}}}"),
        });
    (
        proptest::collection::btree_map(key, value, 0..2),
        proptest::collection::vec(expression, 0..3),
    )
        .prop_map(|(labels, expressions)| {
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            format!(
                "{{matchLabels: {{{}}}, matchExpressions: [{}]}}",
                labels.join(", "),
                expressions.join(", ")
            )
        })
}

proptest! {
    /// One decision: the CEL the admission policies carry says "exempt" exactly where the
    /// engine's `exempted` does, for names, selectors and expiries.
    #[test]
    fn the_admission_cel_and_the_engine_agree_on_every_exemption(
        selector in selector_yaml(),
        by_name in any::<bool>(),
        expires in prop_oneof![Just(None), (-5..5i64).prop_map(Some)],
        name in prop_oneof![Just("legacy"), Just("team-a")],
        namespace_labels in proptest::collection::btree_map(
            prop_oneof![Just("team".to_string()), Just("tier".to_string()), Just("lab".to_string())],
            prop_oneof![Just("a".to_string()), Just("b".to_string())],
            0..3,
        ),
    ) {
        let expiry = expires
            .map(|d| {
                let t = k8s_openapi::jiff::Timestamp::from_second(NOW + d).unwrap();
                format!(", expiresAt: '{t}'")
            })
            .unwrap_or_else(|| ", permanent: true".to_string());
        let names = if by_name { "namespaces: [legacy], " } else { "" };
        let b = valid(&format!(
            "networkPolicy: {{defaultDeny: [Ingress]}}\nexemptions: [{{{names}namespaceSelector: {selector}, controls: [NetworkPolicy], reason: r{expiry}}}]"
        ));
        let engine = exempted(&b, name, &namespace_labels, NOW).control(Control::NetworkPolicy);
        let cel = exempt_cel(&b, Control::NetworkPolicy, NOW, "name", "labels")
            .is_some_and(|e| evaluate(&e, name, &namespace_labels));
        prop_assert_eq!(engine, cel, "{} {:?}", selector, namespace_labels);
    }
}
