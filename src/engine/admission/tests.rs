//! The protections table: what renders and what is reported missing come from the same rows.

use super::{AdmissionApi, AdmissionSettings, PROTECTIONS, render_admission, unavailable, vet};
use crate::engine::Object;
use crate::engine::test_support::baseline;

fn settings(validating: bool, mutating: bool) -> AdmissionSettings {
    AdmissionSettings {
        operator_user: "op".into(),
        break_glass_group: "bg".into(),
        operator_namespace: "zerotrust-system".into(),
        validating,
        mutating,
    }
}

/// A baseline that asks for every protection.
const EVERYTHING: &str = "mode: Enforce
podSecurity: {enforce: restricted}
networkPolicy: {defaultDeny: [Ingress, Egress], refuseWidening: true}
serviceAccounts: {automountDefaultToken: false}";

fn names(objects: &[Object]) -> Vec<String> {
    objects
        .iter()
        .map(|o| o.meta().name.clone().unwrap_or_default())
        .collect()
}

#[test]
fn each_protection_renders_where_served_and_is_reported_missing_where_not() {
    let b = baseline(EVERYTHING);
    let all: Vec<&str> = PROTECTIONS.iter().map(|p| p.name).collect();
    assert_eq!(
        all,
        [
            "pod-security-at-creation",
            "onboarding-gate",
            "tamper-protection",
            "ownership-protection",
            "network-policy-refusal"
        ]
    );
    for (validating, mutating) in [(true, true), (true, false), (false, true), (false, false)] {
        let s = settings(validating, mutating);
        let served = |api| match api {
            AdmissionApi::Validating => validating,
            AdmissionApi::Mutating => mutating,
        };
        let missing: Vec<&str> = PROTECTIONS
            .iter()
            .filter(|p| !served(p.api))
            .map(|p| p.name)
            .collect();
        assert_eq!(unavailable(&b, &s), missing, "{validating} {mutating}");
        let rendered = render_admission(&b, &s, 0);
        let carried = PROTECTIONS.iter().filter(|p| served(p.api)).count();
        assert_eq!(rendered.len(), 2 * carried, "a policy and its binding each");
        for object in &rendered {
            vet(object, &s).unwrap();
        }
    }
}

#[test]
fn a_protection_not_asked_for_is_neither_rendered_nor_missing() {
    let audit = baseline("mode: Audit\npodSecurity: {enforce: restricted}");
    let none = settings(false, false);
    assert_eq!(
        unavailable(&audit, &none),
        ["tamper-protection", "ownership-protection"]
    );
    let rendered = render_admission(&audit, &settings(true, true), 0);
    assert_eq!(
        names(&rendered),
        [
            "zt-b-tamper",
            "zt-b-tamper",
            "zt-b-ownership",
            "zt-b-ownership"
        ],
        "Audit: tamper protection (as Warn) and ownership, no gate, no labels at creation"
    );
}

#[test]
fn each_protection_has_its_own_policy_name() {
    let rendered = render_admission(&baseline(EVERYTHING), &settings(true, true), 0);
    let mut policies: Vec<String> = names(&rendered).into_iter().step_by(2).collect();
    let count = policies.len();
    policies.sort();
    policies.dedup();
    assert_eq!(policies.len(), count, "{policies:?}");
    assert_eq!(count, PROTECTIONS.len());
}
