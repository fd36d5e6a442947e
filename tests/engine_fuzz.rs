//! Fuzzing the engine through its public API with arbitrary, mostly invalid, input: baselines as
//! arbitrary JSON (wrong types, hostile strings, `${...}` templates, wildcards, huge and negative
//! quantities, odd selectors) and arbitrary namespaces. Whatever comes in: no panic, and whatever
//! validates renders objects that satisfy the API's own invariants and read back with no drift.
//!
//! The suite runs a short pass; `hack/fuzz.sh [SECONDS]` runs it for as long as asked (see
//! RELIABILITY.md).

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use proptest::prelude::*;
use serde_json::{Value, json};
use zerotrust_operator::api::{Mode, SecurityBaseline};
use zerotrust_operator::engine::{
    AdmissionSettings, BASELINE_LABEL, DriftReason, Environment, LiveState, MANAGED_BY_LABEL,
    MANAGED_BY_VALUE, Object, Quantity, Write, diff, plan, render, render_admission, validate, vet,
};

/// Strings a careless or hostile author might write.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        60 => "[a-z]([a-z0-9-]{0,10}[a-z0-9])?",
        1 => Just("*".to_string()),
        1 => Just(String::new()),
        1 => Just("${namespace}".to_string()),
        1 => Just("${namespace}-${namespace}".to_string()),
        1 => Just("${nope}".to_string()),
        1 => Just("${namespace".to_string()),
        1 => Just("$${namespace}".to_string()),
        1 => "[A-Za-z0-9 _./:${}*-]{0,20}",
        1 => "\\PC{0,8}",
        1 => "[a-z]{60,70}",
    ]
}

fn quantity() -> impl Strategy<Value = Value> {
    prop_oneof![
        300 => "[0-9]{1,4}(m|Ki|Mi|Gi|k|M|G)?".prop_map(Value::from),
        30 => (0..10_000i64).prop_map(Value::from),
        10 => Just(json!("-1")),
        10 => Just(json!("1e3")),
        10 => Just(json!("0.5")),
        10 => Just(json!("99999999999999999999999")),
        10 => Just(json!("lots")),
        1 => Just(json!(null)),
        1 => Just(json!([1])),
    ]
}

fn quantities() -> impl Strategy<Value = Value> {
    proptest::collection::btree_map(
        prop_oneof![
            Just("cpu".to_string()),
            Just("memory".to_string()),
            Just("pods".to_string()),
            Just("requests.cpu".to_string()),
            text(),
        ],
        quantity(),
        1..4,
    )
    .prop_map(|m| json!(m))
}

fn strings(n: usize) -> impl Strategy<Value = Value> {
    proptest::collection::vec(text(), 0..n).prop_map(|v| json!(v))
}

fn any_of<T: Strategy<Value = Value> + 'static>(s: T) -> BoxedStrategy<Value> {
    // Often the field is absent; now and then it has the wrong type.
    prop_oneof![
        60 => s,
        30 => Just(Value::Null),
        1 => prop_oneof![Just(json!(42)), Just(json!("text")), Just(json!({"unexpected": true}))],
    ]
    .boxed()
}

fn direction() -> impl Strategy<Value = Value> {
    prop_oneof![20 => Just(json!("Ingress")), 20 => Just(json!("Egress")), 1 => text().prop_map(Value::from)]
}

fn cidr() -> impl Strategy<Value = Value> {
    prop_oneof![
        10 => (0..=255u8, 8..=32u8).prop_map(|(o, bits)| json!(format!("10.{o}.0.0/{bits}"))),
        3 => Just(json!("fd00::/8")),
        1 => Just(json!("0.0.0.0/0")),
        1 => Just(json!("10.0.0.300/8")),
        1 => text().prop_map(Value::from),
    ]
}

fn peer() -> impl Strategy<Value = Value> {
    // Mostly one kind of peer, as a careful author writes them; now and then any mixture.
    prop_oneof![
        10 => text().prop_map(|n| json!({"namespace": n})),
        10 => (text(), selector()).prop_map(|(n, p)| json!({"namespace": n, "pods": p})),
        10 => selector().prop_map(|s| json!({"namespaceSelector": s})),
        10 => selector().prop_map(|p| json!({"pods": p})),
        10 => (cidr(), proptest::collection::vec(cidr(), 0..2)).prop_map(|(c, e)| json!({"cidr": c, "except": e})),
        5 => any_peer(),
    ]
}

fn any_peer() -> impl Strategy<Value = Value> {
    (
        any_of(text().prop_map(Value::from)),
        any_of(selector()),
        any_of(selector()),
        any_of(cidr()),
        any_of(proptest::collection::vec(cidr(), 0..2).prop_map(Value::from)),
    )
        .prop_map(|(namespace, ns_selector, pods, cidr, except)| {
            let mut peer = json!({"namespace": namespace, "namespaceSelector": ns_selector, "pods": pods, "cidr": cidr, "except": except});
            peer.as_object_mut().expect("an object").retain(|_, v| !v.is_null());
            peer
        })
}

fn port() -> impl Strategy<Value = Value> {
    prop_oneof![
        10 => (1..=65535i32).prop_map(|p| json!({"port": p})),
        5 => "[a-z]{1,15}".prop_map(|p| json!({"port": p, "protocol": "TCP"})),
        5 => (1..=60_000i32, 0..1000i32).prop_map(|(p, n)| json!({"protocol": "UDP", "port": p, "endPort": p + n})),
        5 => any_port(),
    ]
}

fn any_port() -> impl Strategy<Value = Value> {
    (
        prop_oneof![10 => Just(json!("TCP")), 5 => Just(json!("UDP")), 1 => Just(json!("SCTP")), 1 => text().prop_map(Value::from)],
        any_of(prop_oneof![(-5..70_000i32).prop_map(Value::from), text().prop_map(Value::from)]),
        any_of((-5..70_000i32).prop_map(Value::from)),
    )
        .prop_map(|(protocol, port, end)| {
            let mut p = json!({"protocol": protocol, "port": port, "endPort": end});
            p.as_object_mut().expect("an object").retain(|_, v| !v.is_null());
            p
        })
}

fn allow_rule() -> impl Strategy<Value = Value> {
    (
        text(),
        direction(),
        proptest::collection::vec(peer(), 0..3),
        proptest::collection::vec(port(), 0..3),
    )
        .prop_map(|(name, direction, peers, ports)| {
            json!({"name": name, "direction": direction, "peers": peers, "ports": ports})
        })
}

fn dns() -> impl Strategy<Value = Value> {
    (
        prop_oneof![5 => Just("KubeDNS"), 5 => Just("NodeLocalDNSCache"), 5 => Just("OpenShift"), 5 => Just("Custom"), 1 => Just("Bind")],
        prop_oneof![4 => Just(Value::Null), 1 => prop_oneof![Just(json!("169.254.20.10")), Just(json!("fd00::10")), text().prop_map(Value::from)]],
        any_of(proptest::collection::vec(peer(), 0..2).prop_map(Value::from)),
        any_of(proptest::collection::vec(port(), 0..2).prop_map(Value::from)),
    )
        .prop_map(|(provider, address, peers, ports)| {
            let mut d = json!({"provider": provider, "nodeLocalAddress": address, "peers": peers, "ports": ports});
            d.as_object_mut().expect("an object").retain(|_, v| !v.is_null());
            d
        })
}

fn network_policy() -> impl Strategy<Value = Value> {
    (
        proptest::collection::vec(direction(), 0..3),
        proptest::bool::weighted(0.3),
        proptest::bool::weighted(0.3),
        prop_oneof![5 => Just(Value::Null), 1 => any_of(dns())],
        proptest::bool::weighted(0.1),
        prop_oneof![5 => Just(vec![]), 1 => proptest::collection::vec(allow_rule(), 1..3)],
    )
        .prop_map(|(deny, dns, same, dns_spec, api_server, allow)| {
            let mut np = json!({"defaultDeny": deny, "allowDNS": dns, "allowSameNamespace": same,
                "dns": dns_spec, "allowAPIServer": api_server, "allow": allow});
            np.as_object_mut()
                .expect("an object")
                .retain(|_, v| !v.is_null());
            np
        })
}

fn exemption() -> impl Strategy<Value = Value> {
    let control = prop_oneof![
        5 => Just(json!("NetworkPolicy")),
        5 => Just(json!("PodSecurity")),
        5 => Just(json!("Roles")),
        5 => Just(json!("ResourceQuota")),
        5 => Just(json!("LimitRange")),
        5 => Just(json!("ServiceAccount")),
        1 => text().prop_map(Value::from),
    ];
    (
        proptest::collection::vec(text(), 1..3).prop_map(Value::from),
        prop_oneof![3 => Just(Value::Null), 1 => selector()],
        proptest::collection::vec(control, 1..3),
        prop_oneof![5 => Just(json!([])), 1 => strings(2)],
        text(),
        any_of(prop_oneof![
            10 => Just(json!("2020-01-01T00:00:00Z")),
            10 => Just(json!("2999-01-01T00:00:00Z")),
            1 => Just(json!("tomorrow")),
        ]),
    )
        .prop_map(|(namespaces, sel, controls, roles, reason, expires)| {
            let mut e = json!({"namespaces": namespaces, "namespaceSelector": sel, "controls": controls,
                "roles": roles, "reason": reason, "expiresAt": expires});
            e.as_object_mut().expect("an object").retain(|_, v| !v.is_null());
            e
        })
}

fn level() -> impl Strategy<Value = Value> {
    prop_oneof![
        10 => Just(json!("privileged")),
        10 => Just(json!("baseline")),
        10 => Just(json!("restricted")),
        1 => text().prop_map(Value::from),
    ]
}

fn pod_security() -> impl Strategy<Value = Value> {
    (
        level(),
        level(),
        level(),
        prop_oneof![
            5 => Just(json!("latest")),
            5 => "v1\\.[0-9]{1,3}".prop_map(Value::from),
            1 => text().prop_map(Value::from)
        ],
    )
        .prop_map(|(e, a, w, v)| json!({"enforce": e, "audit": a, "warn": w, "version": v}))
}

fn role() -> impl Strategy<Value = Value> {
    let some = |n| proptest::collection::vec(text(), 1..n).prop_map(|v| json!(v));
    let rule = (some(3), some(3), some(4), strings(2)).prop_map(
        |(g, r, v, n)| json!({"apiGroups": g, "resources": r, "verbs": v, "resourceNames": n}),
    );
    let subject = (
        prop_oneof![
            10 => Just("User"),
            10 => Just("Group"),
            10 => Just("ServiceAccount"),
            1 => Just("Robot")
        ],
        text(),
        proptest::option::weighted(0.1, text()),
        proptest::option::weighted(
            0.05,
            prop_oneof![Just("rbac.authorization.k8s.io".to_string()), Just(String::new()), text()],
        ),
    )
        .prop_map(|(kind, name, ns, group)| json!({"kind": kind, "name": name, "namespace": ns, "apiGroup": group}));
    (
        text(),
        proptest::collection::vec(rule, 1..3),
        proptest::collection::vec(subject, 0..3),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(name, rules, subjects, wild, privileged)| {
            json!({"name": name, "rules": rules, "subjects": subjects,
                   "allowWildcards": wild, "allowPrivilegedVerbs": privileged})
        })
}

fn limit() -> impl Strategy<Value = Value> {
    (
        prop_oneof![10 => Just("Container"), 5 => Just("Pod"), 3 => Just("PersistentVolumeClaim"), 1 => Just("Node")],
        quantities(),
        quantities(),
        // Bounds are where consistency rules bite; keep them rarer so items also get through.
        prop_oneof![3 => Just(json!({})), 1 => quantities()],
        prop_oneof![3 => Just(json!({})), 1 => quantities()],
    )
        .prop_map(|(t, d, dr, max, min)| json!({"type": t, "default": d, "defaultRequest": dr, "max": max, "min": min}))
}

fn selector() -> impl Strategy<Value = Value> {
    let expression = (
        text(),
        prop_oneof![
            10 => Just("In"),
            10 => Just("NotIn"),
            10 => Just("Exists"),
            10 => Just("DoesNotExist"),
            1 => Just("Near")
        ],
        proptest::collection::vec(text(), 1..3),
        proptest::sample::Index::arbitrary(),
    )
        .prop_map(|(key, op, values, odd)| {
            // Values belong with In and NotIn only; now and then the other way round.
            let wanted = matches!(op, "In" | "NotIn") != (odd.index(20) == 0);
            json!({"key": key, "operator": op, "values": if wanted { json!(values) } else { json!(null) }})
        });
    (
        proptest::collection::btree_map(text(), text(), 0..3),
        proptest::collection::vec(expression, 0..3),
    )
        .prop_map(
            |(labels, expressions)| json!({"matchLabels": labels, "matchExpressions": expressions}),
        )
}

fn baseline() -> impl Strategy<Value = Value> {
    (
        text(),
        any_of(prop_oneof![10 => Just(json!("Enforce")), 10 => Just(json!("Audit")), 1 => text().prop_map(Value::from)]),
        any_of(selector()),
        any_of(strings(4)),
        any_of(network_policy()),
        any_of(pod_security()),
        any_of(proptest::collection::vec(role(), 0..3).prop_map(|r| json!({"roles": r}))),
        any_of(quantities().prop_map(|q| json!({"hard": q}))),
        any_of(proptest::collection::vec(limit(), 1..3).prop_map(|l| json!({"limits": l}))),
        any_of(any::<bool>().prop_map(|a| json!({"automountDefaultToken": a}))),
        prop_oneof![3 => Just(Value::Null), 1 => proptest::collection::vec(exemption(), 1..3).prop_map(Value::from)],
    )
        .prop_map(|(name, mode, sel, excluded, np, psa, rbac, quota, limits, sa, exemptions)| {
            let mut spec = json!({"mode": mode, "namespaceSelector": sel, "excludedNamespaces": excluded,
                "networkPolicy": np, "podSecurity": psa, "rbac": rbac, "resourceQuota": quota,
                "limitRange": limits, "serviceAccounts": sa, "exemptions": exemptions});
            // A null field stands for an absent one.
            spec.as_object_mut().expect("an object").retain(|_, v| !v.is_null());
            json!({
                "apiVersion": "zerotrust.dev/v1alpha1", "kind": "SecurityBaseline",
                "metadata": {"name": name, "generation": 1},
                "spec": spec,
            })
        })
}

fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

/// What the API server itself would refuse, or what would break our promises, in one object.
fn check_invariants(
    object: &Object,
    baseline: &SecurityBaseline,
    namespace: &str,
) -> Result<(), String> {
    let meta = object.meta();
    let name = object.name();
    let labels = meta.labels.clone().unwrap_or_default();
    let fail = |what: &str| Err(format!("{} {name}: {what}", object.kind()));
    if !is_dns_subdomain(name) {
        return fail("name is not a DNS subdomain");
    }
    if meta.namespace.as_deref() != Some(namespace) {
        return fail("not in the namespace it was rendered for");
    }
    if labels.get(MANAGED_BY_LABEL).map(String::as_str) != Some(MANAGED_BY_VALUE)
        || labels.get(BASELINE_LABEL) != baseline.metadata.name.as_ref()
    {
        return fail("missing our labels");
    }
    let json = serde_json::to_string(object).map_err(|e| e.to_string())?;
    if json.contains("${") {
        return fail("an unexpanded template");
    }
    match object {
        Object::Role(role) => {
            let allowed = baseline
                .spec
                .rbac
                .iter()
                .flat_map(|r| &r.roles)
                .any(|r| r.allow_wildcards);
            for rule in role.rules.iter().flatten() {
                let lists = [
                    &rule.verbs,
                    rule.resources.as_ref().unwrap_or(&vec![]),
                    rule.api_groups.as_ref().unwrap_or(&vec![]),
                ]
                .map(|l| l.iter().any(|v| v == "*"));
                if lists.contains(&true) && !allowed {
                    return fail("a wildcard that was not allowed");
                }
            }
        }
        Object::RoleBinding(binding) => {
            for subject in binding.subjects.iter().flatten() {
                if subject.name.is_empty() {
                    return fail("a subject without a name");
                }
            }
        }
        Object::ResourceQuota(quota) => {
            for (resource, q) in quota.spec.iter().flat_map(|s| s.hard.iter().flatten()) {
                if Quantity::parse(&q.0)
                    .map(|q| q.is_negative())
                    .unwrap_or(true)
                {
                    return fail(&format!("quota {resource} is not a non-negative quantity"));
                }
            }
        }
        Object::NetworkPolicy(policy) => {
            let spec = policy.spec.as_ref().ok_or("no spec")?;
            let rules = spec.ingress.iter().flatten().map(|r| (&r.from, &r.ports));
            let rules = rules.chain(spec.egress.iter().flatten().map(|r| (&r.to, &r.ports)));
            for (peers, ports) in rules {
                for block in peers.iter().flatten().filter_map(|p| p.ip_block.as_ref()) {
                    if !is_cidr(&block.cidr) || !block.except.iter().flatten().all(|e| is_cidr(e)) {
                        return fail(&format!("{:?} is not an address block", block));
                    }
                }
                for port in ports.iter().flatten() {
                    if !matches!(
                        port.protocol.as_deref(),
                        None | Some("TCP" | "UDP" | "SCTP")
                    ) {
                        return fail("an unknown protocol");
                    }
                    match (&port.port, port.end_port) {
                        (Some(IntOrString::Int(p)), end) => {
                            if !(1..=65535).contains(p) || end.is_some_and(|e| e < *p || e > 65535)
                            {
                                return fail(&format!("port {p}..{end:?} out of range"));
                            }
                        }
                        (Some(IntOrString::String(name)), None) => {
                            let ok = (1..=15).contains(&name.len())
                                && name.bytes().all(|b| {
                                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'
                                })
                                && name.bytes().any(|b| b.is_ascii_lowercase());
                            if !ok {
                                return fail(&format!("{name:?} is not a port name"));
                            }
                        }
                        (None, None) => {}
                        _ => return fail("endPort without a numeric port"),
                    }
                }
            }
        }
        Object::LimitRange(_) => {}
        Object::ValidatingAdmissionPolicy(_)
        | Object::ValidatingAdmissionPolicyBinding(_)
        | Object::MutatingAdmissionPolicy(_)
        | Object::MutatingAdmissionPolicyBinding(_) => {
            vet(object, &settings()).map_err(|why| format!("{why}: {json}"))?;
        }
    }
    Ok(())
}

fn is_cidr(text: &str) -> bool {
    let Some((address, prefix)) = text.split_once('/') else {
        return false;
    };
    let width = match address.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => 32,
        Ok(std::net::IpAddr::V6(_)) => 128,
        Err(_) => return false,
    };
    prefix.parse::<u8>().is_ok_and(|p| p <= width)
}

fn settings() -> AdmissionSettings {
    AdmissionSettings {
        operator_user: "system:serviceaccount:zerotrust-system:zerotrust-operator".to_string(),
        break_glass_group: "zerotrust:break-glass".to_string(),
        operator_namespace: "zerotrust-system".to_string(),
        validating: true,
        mutating: true,
    }
}

/// Guards the fuzzer's usefulness: enough of what it generates must get past decoding and
/// validation to exercise render and diff.
#[test]
fn a_good_share_of_generated_baselines_reaches_the_renderer() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let generated = 2000;
    let rendered = (0..generated)
        .filter(|_| {
            let raw = baseline().new_tree(&mut runner).expect("a value").current();
            serde_json::from_value::<SecurityBaseline>(raw)
                .ok()
                .is_some_and(|b| validate(&b).is_ok())
        })
        .count();
    eprintln!("{rendered} of {generated} generated baselines validate");
    assert!(
        rendered * 20 >= generated,
        "only {rendered} of {generated} reach render"
    );
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn arbitrary_baselines_never_panic_and_what_validates_renders_valid_objects(
        raw in baseline(),
        namespace in "[a-z][a-z0-9-]{0,20}[a-z0-9]",
        labels in proptest::collection::btree_map("[a-z]{1,5}", "[a-z]{0,5}", 0..3),
        cut in any::<proptest::sample::Index>(),
    ) {
        let Ok(baseline) = serde_json::from_value::<SecurityBaseline>(raw) else {
            return Ok(()); // the API server would have refused it: nothing reaches the engine
        };
        let Ok(valid) = validate(&baseline) else {
            return Ok(()); // reported as InvalidSpec
        };
        let desired = render(std::slice::from_ref(&valid), &namespace, &labels, &Environment::new("zerotrust-system"));
        for d in &desired.objects {
            let checked = check_invariants(&d.object, &baseline, &namespace);
            prop_assert!(checked.is_ok(), "{:?}", checked);
        }
        // Every admission object it renders passes the operator's own vetting before a write.
        for object in render_admission(&valid, &settings(), 1_767_225_600) {
            let vetted = vet(&object, &settings());
            prop_assert!(vetted.is_ok(), "{:?}", vetted);
        }
        for (key, value) in &desired.namespace_labels {
            prop_assert!(key.starts_with("pod-security.kubernetes.io/"), "{}", key);
            prop_assert!(!value.value.is_empty() && value.value.len() <= 63, "{}={}", key, value.value);
        }
        let live = LiveState::complying(&desired, &labels);
        prop_assert_eq!(diff(&desired, &live), vec![]);
        // A damaged live state: one object gone. No panic, the loss is found, and Enforce plans
        // to create exactly it again (Audit plans nothing).
        if !live.objects.is_empty() {
            let mut damaged = live.clone();
            let lost = damaged.objects.remove(cut.index(damaged.objects.len()));
            let drift = diff(&desired, &damaged);
            prop_assert!(drift.iter().any(|d| d.kind == lost.kind() && d.name == lost.name() && d.reason == DriftReason::Missing));
            let writes = plan(&desired, &damaged, &drift, &Default::default());
            if desired.baselines[0].mode == Mode::Enforce {
                prop_assert_eq!(writes, vec![Write::Apply(desired.object(lost.kind(), lost.name()).unwrap().object.clone())]);
            } else {
                prop_assert_eq!(writes, vec![]);
            }
        }
    }
}
