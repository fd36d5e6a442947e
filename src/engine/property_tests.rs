//! Properties of render, diff and plan over arbitrary valid baselines and namespaces: no drift in
//! what was rendered, determinism and order independence, and every single weakening edit found.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::NetworkPolicyIngressRule;
use k8s_openapi::api::rbac::v1::{PolicyRule, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use proptest::prelude::*;

use super::select::ALWAYS_EXCLUDED;
use super::test_support::{OPERATOR_NS, as_live, baseline_of as baseline, env, no_labels, none};
use super::*;
use crate::api::*;

/// Pod Security labels that satisfy every selecting baseline, Enforce or Audit.
fn compliant_labels(desired: &DesiredState) -> BTreeMap<String, String> {
    let mut labels = LiveState::complying(desired, &BTreeMap::new()).namespace_labels;
    labels.retain(|k, _| k.starts_with(PSA_LABEL_PREFIX));
    labels
}

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
        psa in proptest::option::of((proptest::option::of(level()), proptest::option::of(level()), proptest::option::of(level()), prop_oneof![Just("latest"), Just("v1.34"), Just("v1.36")])),
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

/// An edit of the live state, and the (kind, name) it touches.
type Edit = (Kind, String, Box<dyn Fn(&mut LiveState)>);

/// An edit of one live object, applied where the rendered object of that kind and name is.
type ObjectEdit = Box<dyn Fn(&mut Object)>;

/// Every single edit that makes `live` weaker or different, given what was rendered.
// The order is part of each generated case (`pick` indexes into it), so the helpers below keep
// the order these edits had when this was one function.
fn edits(desired: &DesiredState) -> Vec<Edit> {
    let mut edits: Vec<Edit> = Vec::new();
    for d in &desired.objects {
        let (kind, name) = (d.object.kind(), d.object.name().to_string());
        let n = name.clone();
        edits.push((
            kind,
            name.clone(),
            Box::new(move |live| {
                live.objects
                    .retain(|o| !(o.kind() == kind && o.name() == n))
            }),
        ));
        for f in object_edits(&d.object) {
            let n = name.clone();
            edits.push((
                kind,
                name.clone(),
                Box::new(move |live| f(find_object(live, kind, &n))),
            ));
        }
    }
    edits.extend(namespace_label_edits(desired));
    edits.extend(service_account_edits(desired));
    edits
}

fn find_object<'a>(live: &'a mut LiveState, kind: Kind, name: &str) -> &'a mut Object {
    live.objects
        .iter_mut()
        .find(|o| o.kind() == kind && o.name() == name)
        .unwrap()
}

/// The edits of one rendered object: its managed-by label removed, then those of its kind.
fn object_edits(object: &Object) -> Vec<ObjectEdit> {
    let mut edits: Vec<ObjectEdit> = vec![Box::new(|o| {
        o.meta_mut()
            .labels
            .as_mut()
            .unwrap()
            .remove(MANAGED_BY_LABEL);
    })];
    edits.extend(match object {
        Object::NetworkPolicy(_) => network_policy_edits(),
        Object::Role(_) => role_edits(),
        Object::RoleBinding(_) => role_binding_edits(),
        Object::ResourceQuota(_) => resource_quota_edits(),
        Object::LimitRange(_) => limit_range_edits(),
        // Namespaces render no admission policies.
        Object::ValidatingAdmissionPolicy(_)
        | Object::ValidatingAdmissionPolicyBinding(_)
        | Object::MutatingAdmissionPolicy(_)
        | Object::MutatingAdmissionPolicyBinding(_) => vec![],
    });
    edits
}

fn network_policy_edits() -> Vec<ObjectEdit> {
    vec![
        Box::new(|o| {
            if let Object::NetworkPolicy(np) = o {
                np.spec
                    .as_mut()
                    .unwrap()
                    .ingress
                    .get_or_insert_with(Vec::new)
                    .push(NetworkPolicyIngressRule::default());
            }
        }),
        Box::new(|o| {
            if let Object::NetworkPolicy(np) = o {
                np.spec.as_mut().unwrap().pod_selector = Some(LabelSelector {
                    match_labels: Some(BTreeMap::from([("app".into(), "x".into())])),
                    match_expressions: None,
                });
            }
        }),
        Box::new(|o| {
            if let Object::NetworkPolicy(np) = o {
                np.spec
                    .as_mut()
                    .unwrap()
                    .policy_types
                    .as_mut()
                    .unwrap()
                    .pop();
            }
        }),
        Box::new(|o| {
            if let Object::NetworkPolicy(np) = o {
                np.spec
                    .as_mut()
                    .unwrap()
                    .egress
                    .get_or_insert_with(Vec::new)
                    .push(Default::default());
            }
        }),
    ]
}

fn role_edits() -> Vec<ObjectEdit> {
    vec![
        Box::new(|o| {
            if let Object::Role(r) = o {
                r.rules.get_or_insert_with(Vec::new).push(PolicyRule {
                    verbs: vec!["*".into()],
                    api_groups: Some(vec!["*".into()]),
                    resources: Some(vec!["*".into()]),
                    ..Default::default()
                });
            }
        }),
        Box::new(|o| {
            if let Object::Role(r) = o {
                r.rules.as_mut().unwrap()[0].verbs.push("escalate".into());
            }
        }),
    ]
}

fn role_binding_edits() -> Vec<ObjectEdit> {
    vec![
        Box::new(|o| {
            if let Object::RoleBinding(rb) = o {
                rb.subjects.get_or_insert_with(Vec::new).push(Subject {
                    kind: "User".into(),
                    name: "mallory".into(),
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    namespace: None,
                });
            }
        }),
        Box::new(|o| {
            if let Object::RoleBinding(rb) = o {
                rb.role_ref.name = "admin".into();
            }
        }),
    ]
}

fn resource_quota_edits() -> Vec<ObjectEdit> {
    vec![
        Box::new(|o| {
            if let Object::ResourceQuota(q) = o {
                q.spec
                    .as_mut()
                    .unwrap()
                    .hard
                    .as_mut()
                    .unwrap()
                    .insert("pods".into(), K8sQuantity("100000".into()));
            }
        }),
        Box::new(|o| {
            if let Object::ResourceQuota(q) = o {
                q.spec
                    .as_mut()
                    .unwrap()
                    .hard
                    .as_mut()
                    .unwrap()
                    .remove("requests.cpu");
            }
        }),
        Box::new(|o| {
            if let Object::ResourceQuota(q) = o {
                q.spec
                    .as_mut()
                    .unwrap()
                    .hard
                    .as_mut()
                    .unwrap()
                    .insert("services".into(), K8sQuantity("1".into()));
            }
        }),
    ]
}

fn limit_range_edits() -> Vec<ObjectEdit> {
    vec![Box::new(|o| {
        if let Object::LimitRange(l) = o {
            l.spec.as_mut().unwrap().limits[0]
                .default
                .as_mut()
                .unwrap()
                .insert("cpu".into(), K8sQuantity("64".into()));
        }
    })]
}

/// The edits of the Pod Security labels: an old version, a level removed or made privileged.
fn namespace_label_edits(desired: &DesiredState) -> Vec<Edit> {
    let mut edits: Vec<Edit> = Vec::new();
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
    edits
}

/// The default ServiceAccount's token mounted again, where a baseline disables it.
fn service_account_edits(desired: &DesiredState) -> Vec<Edit> {
    let mut edits: Vec<Edit> = Vec::new();
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
        // Only the composition finding: one baseline's allows opening another's default-deny,
        // naming the other baseline.
        let drift = diff(&desired, &live);
        for d in &drift {
            let composed = matches!(&d.reason, DriftReason::Widened(w) if w.starts_with("SecurityBaseline b") && !w.starts_with(&format!("SecurityBaseline {}'s", d.baseline)));
            prop_assert!(composed, "{:?}", d);
        }
        if desired.baselines.len() == 1 {
            prop_assert_eq!(drift, vec![]);
        }
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
