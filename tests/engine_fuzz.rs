//! Fuzzing the engine through its public API with arbitrary, mostly invalid, input: baselines as
//! arbitrary JSON (wrong types, hostile strings, `${...}` templates, wildcards, huge and negative
//! quantities, odd selectors) and arbitrary namespaces. Whatever comes in: no panic, and whatever
//! validates renders objects that satisfy the API's own invariants and read back with no drift.
//!
//! The suite runs a short pass; `hack/fuzz.sh [SECONDS]` runs it for as long as asked (see
//! RELIABILITY.md).

mod generate;

use generate::baseline;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use proptest::prelude::*;
use zerotrust_operator::api::{Mode, SecurityBaseline};
use zerotrust_operator::engine::{
    AdmissionSettings, BASELINE_LABEL, DriftReason, Environment, LiveState, MANAGED_BY_LABEL,
    MANAGED_BY_VALUE, Object, Quantity, Write, diff, plan, render, render_admission, validate, vet,
};

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
                .is_some_and(|b| {
                    validate(&b, k8s_openapi::jiff::Timestamp::now().as_second()).is_ok()
                })
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
        let Ok(valid) = validate(&baseline, k8s_openapi::jiff::Timestamp::now().as_second()) else {
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
