//! Tests of `check -o json|yaml`: the CheckReport document built from a sample check.

use super::*;
use crate::api::parse_baselines;
use crate::engine::{
    Environment, Kind, LiveState, admission_results, diff, render, results, validate,
};

/// A check of two namespaces under baseline `b`: `team-a` with nothing in place, `legacy`
/// compliant but for its exempt LimitRange; a conflict on the admission policies; and an
/// invalid baseline `bad`.
fn sample() -> Report {
    let text = "apiVersion: zerotrust.dev/v1alpha1\nkind: SecurityBaseline\nmetadata: {name: b}\nspec:\n  networkPolicy: {defaultDeny: [Ingress]}\n  limitRange: {limits: [{type: Container, default: {cpu: 500m}}]}\n  exemptions:\n    - {namespaces: [legacy], controls: [LimitRange], reason: migrating, expiresAt: '2027-01-01T12:00:00Z'}\n    - {namespaces: [vendor], controls: [NetworkPolicy], reason: appliance, permanent: true}\n";
    let valid = validate(
        &parse_baselines(text).unwrap()[0],
        crate::engine::test_support::VALIDATED_AT,
    )
    .unwrap();
    let env = Environment {
        now: 1_798_804_000,
        ..Environment::new("zerotrust-system")
    };
    let mut report = Report {
        baselines: 2,
        baseline_names: vec!["b".into(), "bad".into()],
        invalid: vec![crate::engine::InvalidSpec {
            baseline: "bad".into(),
            errors: vec![crate::engine::FieldError {
                path: "spec.namespaceSelector".into(),
                message: "unknown operator".into(),
            }],
        }],
        unavailable: vec![("b".into(), "mutating admission policies")],
        permanent: crate::engine::permanent_exemptions(&valid),
        ..Report::default()
    };
    for namespace in ["legacy", "team-a"] {
        let desired = render(
            std::slice::from_ref(&valid),
            namespace,
            &Default::default(),
            &env,
        );
        let live = if namespace == "legacy" {
            LiveState::complying(&desired, &Default::default())
        } else {
            LiveState::default()
        };
        let drift = diff(&desired, &live);
        report.namespaces += 1;
        report.exempt.extend(
            desired
                .exempt
                .iter()
                .map(|e| (namespace.to_string(), e.clone())),
        );
        report.controls.extend(
            results(&desired, &drift)
                .into_iter()
                .map(|r| (namespace.to_string(), r)),
        );
        report
            .drift
            .extend(drift.into_iter().map(|d| (namespace.to_string(), d)));
    }
    report.admission = vec![Drift {
        baseline: "b".into(),
        kind: Kind::ValidatingAdmissionPolicy,
        name: "zt-b-tamper".into(),
        reason: DriftReason::Conflict,
    }];
    report.admission_results = admission_results([], &report.admission);
    report
}

/// `report` as the document `check -o json` prints.
fn json_of(report: &Report) -> serde_json::Value {
    serde_json::to_value(CheckReport::of(report)).unwrap()
}

#[test]
fn the_json_document_carries_the_version_and_the_summary() {
    let report = sample();
    let json = json_of(&report);
    assert_eq!(json["apiVersion"], "zerotrust.dev/check/v1");
    assert_eq!(json["kind"], "CheckReport");
    assert_eq!(json["compliant"], false);
    let summary = &json["summary"];
    assert_eq!(summary["baselines"], 2);
    assert_eq!(summary["invalidBaselines"], 1);
    assert_eq!(summary["namespaces"], 2);
    assert_eq!(summary["compliantNamespaces"], 0);
    assert_eq!(summary["exemptNamespaces"], 1);
    assert_eq!(summary["driftedNamespaces"], 1);
    assert_eq!(summary["conflicts"], 1);
    assert_eq!(summary["drift"], report.drift.len());
    assert_eq!(summary["exempt"], 1);
    assert_eq!(
        summary["results"],
        serde_json::json!({"pass": 1, "fail": 3, "skip": 1})
    );
}

#[test]
fn the_json_document_lists_every_baseline_and_the_admission_results() {
    let json = json_of(&sample());
    let baselines = json["baselines"].as_array().unwrap();
    assert_eq!(baselines[0]["name"], "b");
    assert_eq!(baselines[0]["valid"], true);
    assert_eq!(baselines[0]["errors"], serde_json::json!([]));
    assert_eq!(
        baselines[0]["permanentExemptions"],
        serde_json::json!([{"baseline": "b", "index": 1, "controls": ["NetworkPolicy"], "reason": "appliance"}])
    );
    assert!(
        baselines[0]["notices"][0]
            .as_str()
            .unwrap()
            .ends_with("mutating admission policies")
    );
    assert_eq!(baselines[1]["valid"], false);
    assert_eq!(
        baselines[1]["errors"][0],
        serde_json::json!({"path": "spec.namespaceSelector", "message": "unknown operator"})
    );

    let admission = &json["admission"][0];
    assert_eq!(admission["control"], "AdmissionPolicies");
    assert_eq!(admission["result"], "fail");
    assert_eq!(admission["findings"][0]["reason"], "Conflict");
}

#[test]
fn the_json_document_lists_each_namespace_with_its_results() {
    let json = json_of(&sample());
    let namespaces = json["namespaces"].as_array().unwrap();
    let names: Vec<&str> = namespaces
        .iter()
        .map(|n| n["namespace"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["legacy", "team-a"]);
    let legacy = &namespaces[0];
    assert_eq!(legacy["status"], "exempt");
    let limit_range = &legacy["results"][0];
    assert_eq!(
        limit_range,
        &serde_json::json!({
            "baseline": "b",
            "control": "LimitRange",
            "result": "skip",
            "message": "exempt until 2027-01-01T12:00:00Z: migrating",
            "exemption": {"reason": "migrating", "expiresAt": "2027-01-01T12:00:00Z", "permanent": false},
            "findings": [],
        })
    );
    assert_eq!(legacy["results"][1]["result"], "pass");
    assert_eq!(legacy["results"][1]["exemption"], serde_json::Value::Null);

    let team_a = &namespaces[1];
    assert_eq!(team_a["status"], "drifted");
    let network = team_a["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["control"] == "NetworkPolicy")
        .unwrap();
    assert_eq!(network["result"], "fail");
    assert_eq!(
        network["findings"][0],
        serde_json::json!({
            "kind": "NetworkPolicy",
            "name": "zt-b-default-deny",
            "reason": "Missing",
            "message": "Missing",
        })
    );
}

#[test]
fn the_yaml_document_is_the_json_document() {
    let report = sample();
    let document = CheckReport::of(&report);
    let yaml = serde_saphyr::to_string(&document).unwrap();
    let from_yaml: serde_json::Value = serde_saphyr::from_str(&yaml).unwrap();
    assert_eq!(from_yaml, serde_json::to_value(&document).unwrap());
    assert!(
        yaml.starts_with("apiVersion: zerotrust.dev/check/v1\n"),
        "{yaml}"
    );
}

#[test]
fn compliant_is_what_exit_code_0_means() {
    let mut report = sample();
    assert!(!CheckReport::of(&report).compliant);
    report.invalid.clear();
    report.admission.clear();
    report.drift.clear();
    assert!(CheckReport::of(&report).compliant);
}

#[test]
fn an_unclaimed_name_is_a_notice_of_its_baseline_not_a_failure() {
    let mut report = sample();
    let before = compliant(&report);
    report.unclaimed = vec![(
        "b".into(),
        crate::engine::TrustedName {
            namespace: "monitoring".into(),
            trusted_by: "networkPolicy.allow[monitoring]".into(),
        },
    )];
    assert_eq!(compliant(&report), before, "a warning, not a failure");
    let json = json_of(&report);
    let notices = json["baselines"][0]["notices"].as_array().unwrap();
    assert!(
        notices
            .iter()
            .any(|n| n.as_str().unwrap().contains(
                "namespace \"monitoring\" (networkPolicy.allow[monitoring]) does not exist"
            )),
        "{notices:?}"
    );
}
