//! The chart is config/: what hack/chart.py generates, rendering config/ back with its default
//! values; `helm lint` passes and bad values fail with a clear message.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use zerotrust_testkit::cluster::repo;
use zerotrust_testkit::helm::{CHART, RELEASE, RELEASE_NAMESPACE, helm, helm_template, objects};
use zerotrust_testkit::shipped_rbac::kubectl_ok;
use zerotrust_testkit::*;

/// The labels the chart's helper adds to every object beside config/'s own, with their values;
/// the chart's appVersion is the operator's version.
fn helm_labels() -> [(&'static str, String); 4] {
    let chart: Value =
        objects(&std::fs::read_to_string(repo().join(CHART).join("Chart.yaml")).unwrap()).remove(0);
    assert_eq!(
        chart["appVersion"],
        env!("CARGO_PKG_VERSION"),
        "Chart.yaml appVersion"
    );
    [
        (
            "helm.sh/chart",
            format!("zerotrust-operator-{}", chart["version"].as_str().unwrap()),
        ),
        ("app.kubernetes.io/instance", RELEASE.to_string()),
        (
            "app.kubernetes.io/version",
            env!("CARGO_PKG_VERSION").to_string(),
        ),
        ("app.kubernetes.io/managed-by", "Helm".to_string()),
    ]
}

/// `kind namespace/name` of an object.
fn key(object: &Value) -> String {
    let meta = &object["metadata"];
    format!(
        "{} {}/{}",
        object["kind"].as_str().unwrap_or("?"),
        meta["namespace"].as_str().unwrap_or(""),
        meta["name"].as_str().unwrap_or("?")
    )
}

/// Removes `metadata.<field>` when it is an empty map (or null).
fn drop_if_empty(object: &mut Value, field: &str) {
    let meta = object["metadata"].as_object_mut().expect("metadata");
    if meta
        .get(field)
        .is_some_and(|m| m.is_null() || m.as_object().is_some_and(|m| m.is_empty()))
    {
        meta.remove(field);
    }
}

/// The chart's objects with what Helm adds taken off (after checking it is there): the helper's
/// labels everywhere, the CRD's keep annotation.
fn normalised_chart(yaml: &str) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for mut object in objects(yaml) {
        let key = key(&object);
        let labels = object["metadata"]["labels"]
            .as_object_mut()
            .unwrap_or_else(|| panic!("{key} has no labels"));
        for (label, value) in helm_labels() {
            assert_eq!(
                labels.remove(label),
                Some(Value::String(value)),
                "{key}: label {label}"
            );
        }
        drop_if_empty(&mut object, "labels");
        if object["kind"] == "CustomResourceDefinition" {
            let annotations = object["metadata"]["annotations"].as_object_mut();
            let keep = annotations.and_then(|a| a.remove("helm.sh/resource-policy"));
            assert_eq!(keep, Some(json!("keep")), "{key}: helm.sh/resource-policy");
            drop_if_empty(&mut object, "annotations");
        }
        assert!(out.insert(key.clone(), object).is_none(), "{key} twice");
    }
    out
}

/// `kubectl kustomize` of each of `dirs`, by key; the Namespace of config/rbac is set aside (the
/// chart installs into the release namespace, which Helm needs to exist before it installs).
fn kustomized(dirs: &[&str]) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for dir in dirs {
        for object in objects(&kubectl_ok(&["kustomize", dir])) {
            if object["kind"] == "Namespace" {
                assert_eq!(
                    object["metadata"]["name"], RELEASE_NAMESPACE,
                    "the only Namespace in config/ is the release namespace"
                );
                continue;
            }
            let key = key(&object);
            assert!(out.insert(key.clone(), object).is_none(), "{key} twice");
        }
    }
    out
}

fn assert_same_objects(chart: &BTreeMap<String, Value>, config: &BTreeMap<String, Value>) {
    let hint = "the chart is not config/: run `hack/chart.py generate` (README, Deploying it)";
    let chart_keys: BTreeSet<&String> = chart.keys().collect();
    let config_keys: BTreeSet<&String> = config.keys().collect();
    assert_eq!(chart_keys, config_keys, "{hint}");
    for (key, object) in config {
        assert!(
            &chart[key] == object,
            "{hint}: {key} differs\nchart:  {}\nconfig: {}",
            chart[key],
            object
        );
    }
}

#[test]
fn the_chart_renders_config_default_with_its_default_values() {
    let defaults = normalised_chart(&helm_template(&[]).unwrap());
    assert_same_objects(&defaults, &kustomized(&["config/default"]));
    assert!(defaults.len() >= 10, "{:?}", defaults.keys());

    let opt_ins = [
        "rbac.delegation.enabled=true",
        "serviceMonitor.enabled=true",
        "prometheusRule.enabled=true",
    ];
    let all = normalised_chart(&helm_template(&opt_ins).unwrap());
    assert_same_objects(
        &all,
        &kustomized(&[
            "config/default",
            "config/rbac-delegation",
            "config/prometheus",
        ]),
    );
}

#[test]
fn the_chart_is_what_hack_chart_py_generates() {
    let mut check = Command::new(repo().join("hack/chart.py"));
    check.arg("check").env("ZT_NO_BUILD", "1");
    let out = run_bounded(&mut check, None, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "{}\n(hand edits of generated files belong in config/ or hack/chart.py)",
        stderr(&out)
    );
}

#[test]
fn helm_lint_passes_and_bad_values_fail_with_a_clear_message() {
    let out = helm(&["lint", "--strict", CHART]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    for (sets, message) in [
        (
            &["replicaCount=two"][..],
            "at '/replicaCount': got string, want integer",
        ),
        (
            &["replicas=3"],
            "additional properties 'replicas' not allowed",
        ),
        (
            &["logFormat=xml"],
            "at '/logFormat': value must be one of 'json', 'text'",
        ),
        (&["image.pullPolicy=Sometimes"], "at '/image/pullPolicy'"),
        (
            &["serviceMonitor.interval=often"],
            "at '/serviceMonitor/interval'",
        ),
        (
            &["leaderElection.enabled=false"],
            "replicaCount is 2 but leaderElection.enabled is false",
        ),
    ] {
        let error = helm_template(sets).expect_err(&format!("{sets:?} must be refused"));
        assert!(error.contains(message), "{sets:?}: {error}");
    }
}
