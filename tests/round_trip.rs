//! What the engine renders, put through the real API server: for a sample of the engine fuzzer's
//! generated baselines that validate, the baseline is stored, read back and rendered as the
//! operator would render it; every object, the Namespace labels and the default ServiceAccount are
//! written by server-side apply with the operator's field manager, and so are the baseline's
//! admission policies and bindings; all of it is read back as the API server returns it (defaults
//! filled in, quantities normalised, fields pruned), and `diff` must find no drift. The fuzzer's
//! own "no drift" property compares against a plain copy; this one compares against the server.
//!
//! No operator runs in this binary, so nothing but the test writes these objects.

mod generate;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use proptest::strategy::{Strategy, ValueTree};
use serde_json::json;
use zerotrust_operator::api::SecurityBaseline;
use zerotrust_operator::engine::{
    AdmissionSettings, DEFAULT_OPERATOR_NAMESPACE, DesiredObject, Endpoint, Environment,
    FIELD_MANAGER, LiveState, Object, PSA_LABEL_PREFIX, diff, diff_admission, owned_label_keys,
    render, render_admission, validate,
};
use zerotrust_testkit::*;

/// How many generated baselines go through the API server: 60, or `ZT_ROUND_TRIP_SAMPLE`.
fn sample_size() -> usize {
    std::env::var("ZT_ROUND_TRIP_SAMPLE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60)
}

/// Server-side applies `object` as the operator's field manager; returns it as the server stored
/// it, or why the server refused it.
async fn apply_object(client: &Client, object: &Object) -> Result<Object, String> {
    let kind = object.kind();
    let resource = kind.api_resource();
    let api: Api<DynamicObject> = match &object.meta().namespace {
        Some(ns) if !kind.cluster_scoped() => Api::namespaced_with(client.clone(), ns, &resource),
        _ => Api::all_with(client.clone(), &resource),
    };
    let mut body = serde_json::to_value(object).expect("serializes");
    body["apiVersion"] = json!(resource.api_version);
    body["kind"] = json!(resource.kind);
    let stored = api
        .patch(
            object.name(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .map_err(|e| format!("{} {}: {e}\n{body}", kind.as_str(), object.name()))?;
    let json = serde_json::to_vec(&stored).expect("serializes");
    Object::from_json(kind, &json)
        .map_err(|e| format!("{} {} read back: {e}", kind.as_str(), object.name()))
}

/// Valid generated baselines, each made to select exactly the namespace `<tag>-<i>`.
fn sample(tag: &str) -> Vec<SecurityBaseline> {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut found = Vec::new();
    let mut tried = 0;
    while found.len() < sample_size() * 2 {
        tried += 1;
        assert!(tried < 100_000, "too few generated baselines validate");
        let raw = generate::baseline()
            .new_tree(&mut runner)
            .expect("a value")
            .current();
        let Ok(mut baseline) = serde_json::from_value::<SecurityBaseline>(raw) else {
            continue;
        };
        let name = format!("{tag}-{}", found.len());
        baseline.metadata = kube::api::ObjectMeta {
            name: Some(name.clone()),
            ..Default::default()
        };
        baseline.spec.namespace_selector =
            Some(serde_json::from_value(json!({"matchLabels": {"zt-round-trip": name}})).unwrap());
        baseline.spec.excluded_namespaces = Vec::new();
        if validate(&baseline, k8s_openapi::jiff::Timestamp::now().as_second()).is_ok() {
            found.push(baseline);
        }
    }
    found
}

#[tokio::test]
async fn what_the_engine_renders_reads_back_from_the_api_server_with_no_drift() {
    let client = client().await;
    let tag = unique("rt");
    let baselines: Api<SecurityBaseline> = Api::all(client.clone());
    let settings = AdmissionSettings {
        operator_user: ADMIN_USER.to_string(),
        break_glass_group: "zerotrust:break-glass".to_string(),
        operator_namespace: DEFAULT_OPERATOR_NAMESPACE.to_string(),
        validating: true,
        mutating: true,
    };
    // An API server address of the cluster's kind, so `allowAPIServer` renders its egress rule.
    let environment = Environment {
        api_server: vec![Endpoint {
            address: "10.0.0.1".to_string(),
            port: 6443,
        }],
        ..Environment::new(DEFAULT_OPERATOR_NAMESPACE)
    };
    let mut checked = 0;
    let mut refused = Vec::new();
    let mut failures = Vec::new();
    let mut guards = Vec::new();
    for baseline in sample(&tag) {
        if checked == sample_size() {
            break;
        }
        let name = baseline.name_any();
        // Stored as the API server takes it (its schema and CEL rules refuse some baselines the
        // engine alone would accept; those are counted, not checked).
        let mut manifest = serde_json::to_value(&baseline).expect("serializes");
        manifest["apiVersion"] = json!("zerotrust.dev/v1alpha1");
        manifest["kind"] = json!("SecurityBaseline");
        if let Err(e) = baselines
            .patch(
                &name,
                &PatchParams::apply("zerotrust-test").force(),
                &Patch::Apply(&manifest),
            )
            .await
        {
            refused.push(format!("{name}: {e}"));
            continue;
        }
        // Deleted (and by garbage collection its admission policies) at the end of the iteration.
        let _cleanup = Cleanup(vec![name.clone()]);
        let stored = baselines.get(&name).await.expect("read back");
        let valid = validate(&stored, k8s_openapi::jiff::Timestamp::now().as_second())
            .unwrap_or_else(|e| panic!("{name} read back: {e}"));
        let ns = namespace(&client, &name, &[("zt-round-trip", &name)]).await;
        let labels: BTreeMap<String, String> = [("zt-round-trip".to_string(), name.clone())]
            .into_iter()
            .collect();
        let desired = render(
            std::slice::from_ref(&valid),
            &ns.name,
            &labels,
            &environment,
        );

        // Written as a complying namespace holds it (the operator's writes; for an Audit baseline,
        // the Pod Security labels and token setting someone else would have made): labels,
        // objects, the ServiceAccount, then the admission policies.
        let complying = LiveState::complying(&desired, &labels);
        let psa: BTreeMap<String, String> = complying
            .namespace_labels
            .iter()
            .filter(|(k, _)| k.starts_with(PSA_LABEL_PREFIX))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut patch = serde_json::to_value(desired.namespace_patch(psa)).unwrap();
        patch["apiVersion"] = json!("v1");
        patch["kind"] = json!("Namespace");
        Api::<Namespace>::all(client.clone())
            .patch(
                &ns.name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
            .unwrap_or_else(|e| panic!("{name}: namespace labels: {e}"));
        let mut objects = Vec::new();
        let mut refused_writes = Vec::new();
        for d in &desired.objects {
            match apply_object(&client, &d.object).await {
                Ok(object) => objects.push(object),
                Err(e) => refused_writes.push(e),
            }
        }
        let accounts = Api::<ServiceAccount>::namespaced(client.clone(), &ns.name);
        let token_off = complying
            .default_service_account
            .is_some_and(|sa| sa.automount_service_account_token == Some(false));
        if token_off {
            let mut patch = serde_json::to_value(desired.service_account_patch()).unwrap();
            patch["apiVersion"] = json!("v1");
            patch["kind"] = json!("ServiceAccount");
            accounts
                .patch(
                    "default",
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&patch),
                )
                .await
                .unwrap_or_else(|e| panic!("{name}: ServiceAccount: {e}"));
        }
        let admission = render_admission(&valid, &settings, environment.now);
        let mut live_admission = Vec::new();
        for object in &admission {
            match apply_object(&client, object).await {
                Ok(object) => live_admission.push(object),
                Err(e) => refused_writes.push(e),
            }
        }
        checked += 1;
        guards.push(ns);
        if !refused_writes.is_empty() {
            failures.push(format!(
                "{name}: the API server refused what the engine rendered: {refused_writes:#?}"
            ));
            continue;
        }
        let ns = guards.last().expect("pushed above");

        // Read back (objects as the applies returned them; the rest fresh) and compared.
        let live_ns = Api::<Namespace>::all(client.clone())
            .get(&ns.name)
            .await
            .unwrap();
        let live = LiveState {
            namespace_labels: live_ns.labels().clone(),
            default_service_account: accounts.get_opt("default").await.unwrap(),
            objects,
            owned_namespace_labels: owned_label_keys(&live_ns.metadata),
            ..LiveState::default()
        };
        let drift = diff(&desired, &live);
        let desired_admission: Vec<DesiredObject> = admission
            .into_iter()
            .map(|object| DesiredObject {
                baseline: name.clone(),
                object,
            })
            .collect();
        let admission_drift = diff_admission(&desired_admission, &live_admission);
        if !drift.is_empty() || !admission_drift.is_empty() {
            failures.push(format!(
                "{name}: {drift:?} {admission_drift:?}\nspec: {}",
                serde_json::to_string(&stored.spec).unwrap()
            ));
        }
    }
    eprintln!(
        "{checked} baselines round-tripped; {} refused by the API server",
        refused.len()
    );
    assert_eq!(checked, sample_size(), "refused: {refused:#?}");
    assert!(
        failures.is_empty(),
        "{} of {checked} read back with drift:\n{}",
        failures.len(),
        failures.join("\n")
    );
    drop(guards);
}
