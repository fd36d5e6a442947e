//! Applying baselines: every matching namespace onboarded, new and relabelled ones by the watch,
//! several baselines composed on one namespace, and an invalid one reported without a write.

use std::time::Instant;

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use zerotrust_testkit::*;

use super::{WAIT, expected_objects, generated, ns_labels, ready, restricted, wait_onboarded};

#[tokio::test]
async fn applying_a_baseline_onboards_every_matching_namespace() {
    operator();
    let client = client().await;
    let tag = unique("apply");
    let mut namespaces = Vec::new();
    for i in 0..3 {
        namespaces.push(namespace(&client, &format!("{tag}-{i}"), &[("zt-test", &tag)]).await);
    }
    let other = namespace(&client, &format!("{tag}-other"), &[]).await;
    let name = tag.clone();
    let _cleanup = Cleanup(vec![name.clone()]);
    apply(&restricted(&name, &tag, "Enforce", ""));

    for ns in &namespaces {
        wait_onboarded(&client, &ns.name, &name).await;
    }
    // Ready also waits for the admission policies, written beside the namespaces.
    let s = wait_status(&client, &name, WAIT, "status counts, Ready", |s| {
        s.selected_namespaces == 3 && s.compliant_namespaces == 3 && ready(s) == Some("True")
    })
    .await;
    assert_eq!(s.drifted_namespaces, 0);
    assert!(
        generated(&client, &other.name).await.is_empty(),
        "an unselected namespace is untouched"
    );

    let out = control_plane().kubectl(&["get", "securitybaselines", &name, "--no-headers"], None);
    let row: Vec<String> = stdout(&out).split_whitespace().map(String::from).collect();
    assert_eq!(
        &row[..7],
        [name.as_str(), "Enforce", "3", "3", "0", "0", "True"],
        "kubectl get shows true numbers"
    );
}

#[tokio::test]
async fn new_and_relabelled_namespaces_are_onboarded_by_the_watch() {
    operator();
    let client = client().await;
    let tag = unique("onboard");
    let name = tag.clone();
    let _cleanup = Cleanup(vec![name.clone()]);
    apply(&restricted(&name, &tag, "Enforce", ""));
    wait_status(&client, &name, WAIT, "baseline observed", |s| {
        ready(s) == Some("True")
    })
    .await;

    let created = Instant::now();
    let fresh = namespace(&client, &format!("{tag}-new"), &[("zt-test", &tag)]).await;
    wait_onboarded(&client, &fresh.name, &name).await;
    // The safety-net resync is 10 minutes away: this can only have been the watch.
    eprintln!(
        "onboarding latency (creation -> compliant): {:?}",
        created.elapsed()
    );

    let later = namespace(&client, &format!("{tag}-later"), &[]).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let label = |value: Option<&str>| json!({"metadata": {"labels": {"zt-test": value}}});
    namespaces
        .patch(
            &later.name,
            &PatchParams::default(),
            &Patch::Merge(label(Some(&tag))),
        )
        .await
        .unwrap();
    wait_onboarded(&client, &later.name, &name).await;
    wait_status(&client, &name, WAIT, "two selected", |s| {
        s.selected_namespaces == 2 && s.compliant_namespaces == 2
    })
    .await;

    // Unselected under deletionPolicy Orphan: counted out, controls left in place.
    namespaces
        .patch(
            &later.name,
            &PatchParams::default(),
            &Patch::Merge(label(None)),
        )
        .await
        .unwrap();
    wait_status(&client, &name, WAIT, "one selected", |s| {
        s.selected_namespaces == 1
    })
    .await;
    assert_eq!(
        generated(&client, &later.name).await,
        expected_objects(&name),
        "Orphan keeps the controls"
    );
}

#[tokio::test]
async fn several_baselines_compose_on_one_namespace() {
    operator();
    let client = client().await;
    let tag = unique("compose");
    let ns = namespace(&client, &tag, &[("zt-test", &tag)]).await;
    let (a, b) = (format!("{tag}-a"), format!("{tag}-b"));
    let _cleanup = Cleanup(vec![a.clone(), b.clone()]);
    apply(&restricted(&a, &tag, "Enforce", ""));
    apply(&format!(
        "apiVersion: zerotrust.dev/v1alpha1\nkind: SecurityBaseline\nmetadata: {{name: {b}}}\nspec:\n  namespaceSelector: {{matchLabels: {{zt-test: {tag}}}}}\n  networkPolicy: {{defaultDeny: [Ingress]}}\n  podSecurity: {{enforce: baseline, audit: restricted}}\n"
    ));
    eventually(WAIT, "both baselines' objects", || async {
        let found = generated(&client, &ns.name).await;
        let labels = ns_labels(&client, &ns.name).await;
        (found.contains(&format!("NetworkPolicy/zt-{a}-default-deny"))
            && found.contains(&format!("NetworkPolicy/zt-{b}-default-deny"))
            && labels
                .get("pod-security.kubernetes.io/audit")
                .is_some_and(|v| v == "restricted"))
        .then_some(())
    })
    .await;
    let labels = ns_labels(&client, &ns.name).await;
    assert_eq!(
        labels["pod-security.kubernetes.io/enforce"], "restricted",
        "the most restrictive level wins"
    );
    for baseline in [&a, &b] {
        wait_status(&client, baseline, WAIT, "compliant", |s| {
            s.compliant_namespaces == 1
        })
        .await;
    }
}

#[tokio::test]
async fn a_semantically_invalid_baseline_is_reported_and_touches_nothing() {
    operator();
    let client = client().await;
    let tag = unique("invalid");
    let ns = namespace(&client, &tag, &[("zt-test", &tag)]).await;
    let name = tag.clone();
    let _cleanup = Cleanup(vec![name.clone()]);
    // Passes the schema (operators are free text there) but not the engine.
    apply(&format!(
        "apiVersion: zerotrust.dev/v1alpha1\nkind: SecurityBaseline\nmetadata: {{name: {name}}}\nspec:\n  namespaceSelector: {{matchExpressions: [{{key: zt-test, operator: Has, values: [{tag}]}}]}}\n  networkPolicy: {{defaultDeny: [Ingress]}}\n"
    ));
    let s = wait_status(&client, &name, WAIT, "InvalidSpec", |s| {
        ready(s) == Some("False")
    })
    .await;
    let condition = s.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(condition.reason, "InvalidSpec");
    assert!(
        condition
            .message
            .contains("spec.namespaceSelector.matchExpressions[0].operator"),
        "{}",
        condition.message
    );
    assert!(generated(&client, &ns.name).await.is_empty());
}
