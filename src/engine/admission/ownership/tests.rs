//! The ownership policy as the API server evaluates it: its rendered CEL run against requests of
//! a tenant, the operator and the break-glass group.

use std::collections::HashMap;

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use serde_json::{Value, json};

use super::super::{AdmissionSettings, vet};
use super::ownership_protection;
use crate::engine::Object;
use crate::engine::test_support::baseline;

fn settings() -> AdmissionSettings {
    AdmissionSettings {
        operator_user: "system:serviceaccount:zerotrust-system:zerotrust-operator".into(),
        break_glass_group: "zerotrust:break-glass".into(),
        operator_namespace: "zerotrust-system".into(),
        validating: true,
        mutating: true,
    }
}

fn rendered(mode: &str) -> (ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding) {
    let b = baseline(&format!("mode: {mode}"));
    let [policy, binding] = ownership_protection(&b, &settings());
    for object in [&policy, &binding] {
        vet(object, &settings()).unwrap();
    }
    match (policy, binding) {
        (Object::ValidatingAdmissionPolicy(p), Object::ValidatingAdmissionPolicyBinding(b)) => {
            (p, b)
        }
        other => panic!("{other:?}"),
    }
}

/// Whether the policy admits the request: its variables evaluated in order, then every
/// validation, as the API server does.
fn admitted(user: &str, groups: &[&str], old: Value, new: Value, namespace: Value) -> bool {
    let (policy, _) = rendered("Enforce");
    let spec = policy.spec.unwrap();
    let mut context = cel::Context::default();
    let request = json!({"userInfo": {"username": user, "groups": groups}, "name": "x",
                         "resource": {"resource": "networkpolicies"}});
    context.add_variable("request", request).unwrap();
    context.add_variable("oldObject", old).unwrap();
    context.add_variable("object", new).unwrap();
    context.add_variable("namespaceObject", namespace).unwrap();
    let mut variables: HashMap<String, cel::Value> = HashMap::new();
    for variable in spec.variables.unwrap() {
        let program = cel::Program::compile(&variable.expression)
            .unwrap_or_else(|e| panic!("{}: {e}", variable.expression));
        let value = program
            .execute(&context)
            .unwrap_or_else(|e| panic!("{}: {e}", variable.expression));
        variables.insert(variable.name, value);
        context.add_variable_from_value("variables", variables.clone());
    }
    spec.validations.unwrap().iter().all(|v| {
        let program = cel::Program::compile(&v.expression).unwrap();
        match program.execute(&context) {
            Ok(cel::Value::Bool(b)) => b,
            other => panic!("{}: {other:?}", v.expression),
        }
    })
}

const TENANT: &str = "tenant";
const MANAGED: (&str, &str) = ("app.kubernetes.io/managed-by", "zerotrust-operator");

fn object(labels: &[(&str, &str)]) -> Value {
    let labels: serde_json::Map<String, Value> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    json!({"metadata": {"name": "x", "labels": labels}})
}

fn live_namespace() -> Value {
    json!({"metadata": {"name": "team-a"}})
}

fn tenant(old: Value, new: Value) -> bool {
    admitted(
        TENANT,
        &["system:authenticated"],
        old,
        new,
        live_namespace(),
    )
}

#[test]
fn a_tenant_may_not_give_our_labels_whatever_the_baseline() {
    let forged: [&[(&str, &str)]; 5] = [
        &[MANAGED],
        &[("zerotrust.dev/baseline", "b")],
        &[("zerotrust.dev/baseline", "no-such-baseline")],
        &[MANAGED, ("zerotrust.dev/baseline", "other")],
        &[("onboarded.zerotrust.dev/b", "true")],
    ];
    for labels in forged {
        assert!(!tenant(Value::Null, object(labels)), "create {labels:?}");
        let plain = object(&[("team", "a")]);
        let mut labelled = labels.to_vec();
        labelled.push(("team", "a"));
        assert!(!tenant(plain, object(&labelled)), "label later {labels:?}");
    }
}

#[test]
fn a_tenant_may_not_change_or_remove_our_labels_nor_delete_what_carries_them() {
    let ours = object(&[MANAGED, ("zerotrust.dev/baseline", "b")]);
    let changes = [
        object(&[MANAGED, ("zerotrust.dev/baseline", "c")]),
        object(&[MANAGED]),
        object(&[("zerotrust.dev/baseline", "b")]),
        object(&[
            ("app.kubernetes.io/managed-by", "helm"),
            ("zerotrust.dev/baseline", "b"),
        ]),
        object(&[]),
    ];
    for changed in changes {
        assert!(!tenant(ours.clone(), changed.clone()), "{changed}");
    }
    assert!(!tenant(ours.clone(), Value::Null), "delete");
    // The marker's value is ours as well.
    let marked = object(&[("onboarded.zerotrust.dev/b", "true")]);
    assert!(!tenant(
        marked.clone(),
        object(&[("onboarded.zerotrust.dev/b", "false")])
    ));
    assert!(!tenant(marked, object(&[])));
}

#[test]
fn a_tenant_keeps_its_own_objects_and_labels() {
    assert!(tenant(Value::Null, object(&[])));
    assert!(tenant(Value::Null, object(&[("team", "a")])));
    assert!(tenant(
        Value::Null,
        object(&[("app.kubernetes.io/managed-by", "helm")])
    ));
    assert!(tenant(object(&[("team", "a")]), object(&[("team", "b")])));
    assert!(
        tenant(object(&[("team", "a")]), Value::Null),
        "delete its own"
    );
    // Our labels untouched: other edits are for the tamper protection to judge.
    let ours = [MANAGED, ("zerotrust.dev/baseline", "b")];
    let mut more = ours.to_vec();
    more.push(("team", "a"));
    assert!(tenant(object(&ours), object(&more)));
}

#[test]
fn the_operator_and_break_glass_pass_and_so_does_a_namespace_being_deleted() {
    let ours = object(&[MANAGED, ("zerotrust.dev/baseline", "b")]);
    let operator = settings().operator_user;
    assert!(admitted(
        &operator,
        &[],
        Value::Null,
        ours.clone(),
        live_namespace()
    ));
    assert!(admitted(
        &operator,
        &[],
        ours.clone(),
        Value::Null,
        live_namespace()
    ));
    assert!(admitted(
        "admin",
        &["zerotrust:break-glass"],
        ours.clone(),
        Value::Null,
        live_namespace()
    ));
    let deleting =
        json!({"metadata": {"name": "team-a", "deletionTimestamp": "2026-01-01T00:00:00Z"}});
    assert!(admitted(
        "system:serviceaccount:kube-system:namespace-controller",
        &[],
        ours,
        Value::Null,
        deleting
    ));
}

#[test]
fn bound_to_every_namespace_and_always_denying() {
    for mode in ["Enforce", "Audit"] {
        let (policy, binding) = rendered(mode);
        let spec = binding.spec;
        assert_eq!(spec.validation_actions, vec!["Deny".to_string()]);
        let selector = spec.match_resources.unwrap().namespace_selector.unwrap();
        assert_eq!(selector.match_labels, None);
        let expressions = selector.match_expressions.unwrap();
        assert_eq!(
            expressions.len(),
            1,
            "only the cluster's and the operator's are left out"
        );
        let resources: Vec<String> = policy
            .spec
            .unwrap()
            .match_constraints
            .unwrap()
            .resource_rules
            .unwrap()
            .into_iter()
            .flat_map(|r| r.resources.unwrap_or_default())
            .collect();
        for kind in crate::engine::Kind::GENERATED {
            assert!(resources.contains(&kind.api_resource().plural), "{kind}");
        }
        assert!(resources.contains(&"namespaces".to_string()));
    }
}
