//! Arbitrary SecurityBaselines as JSON, as a careless or hostile author might write them (wrong
//! types, hostile strings, `${...}` templates, wildcards, huge, negative and malformed quantities,
//! odd selectors): the generator shared by the engine fuzzer (tests/engine_fuzz.rs) and the server
//! round trip (tests/round_trip.rs).

use proptest::prelude::*;
use serde_json::{Value, json};

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
    // Mostly names a quota takes, now and then anything.
    named_quantities(prop_oneof![
        6 => Just("cpu".to_string()),
        6 => Just("memory".to_string()),
        3 => Just("pods".to_string()),
        3 => Just("requests.cpu".to_string()),
        1 => text(),
    ])
}

/// A LimitRange item's quantities: mostly cpu and memory (what every item type but a PVC's takes),
/// now and then a name only a quota takes, or anything.
fn limit_quantities() -> impl Strategy<Value = Value> {
    named_quantities(prop_oneof![
        20 => Just("cpu".to_string()),
        20 => Just("memory".to_string()),
        2 => Just("storage".to_string()),
        1 => Just("pods".to_string()),
        1 => text(),
    ])
}

fn named_quantities(name: impl Strategy<Value = String>) -> impl Strategy<Value = Value> {
    proptest::collection::btree_map(name, quantity(), 1..4).prop_map(|m| json!(m))
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
        // Mostly both directions, as a default-deny is written; now and then any list.
        prop_oneof![
            4 => Just(json!(["Ingress", "Egress"])),
            1 => proptest::collection::vec(direction(), 0..3).prop_map(Value::from),
        ],
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
        any_of(any::<bool>().prop_map(Value::from)),
    )
        .prop_map(|(namespaces, sel, controls, roles, reason, expires, permanent)| {
            let mut e = json!({"namespaces": namespaces, "namespaceSelector": sel, "controls": controls,
                "roles": roles, "reason": reason, "expiresAt": expires, "permanent": permanent});
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
        prop_oneof![30 => Just("Container"), 15 => Just("Pod"), 9 => Just("PersistentVolumeClaim"), 1 => Just("Node")],
        limit_quantities(),
        limit_quantities(),
        // Bounds are where consistency rules bite; keep them rarer so items also get through.
        prop_oneof![3 => Just(json!({})), 1 => limit_quantities()],
        prop_oneof![3 => Just(json!({})), 1 => limit_quantities()],
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

pub fn baseline() -> impl Strategy<Value = Value> {
    (
        // Mostly a valid name, so the rest of the baseline is what gets tested.
        prop_oneof![10 => "[a-z]([a-z0-9-]{0,10}[a-z0-9])?", 1 => text()],
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
