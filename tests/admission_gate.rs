//! The onboarding gate, with the operator paused: a namespace created meanwhile has its Pod
//! Security labels at once (the API server sets them) but admits no pod, since its other controls
//! are not in place; a namespace onboarded before is unaffected; once the operator is back, the
//! gate opens by itself. Its own binary, with its own operator process, so no other operator can
//! open the gate behind the test's back.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use serde_json::json;
use zerotrust_operator::api::SecurityBaseline;
use zerotrust_testkit::*;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_new_namespace_admits_no_pod_until_onboarded_even_with_the_operator_down() {
    let client = client().await;
    let operator = OperatorProcess::start("gate", &[]);
    operator.wait_ready(Duration::from_secs(120));
    let tag = unique("gate");
    let _cleanup = scopeguard({
        let tag = tag.clone();
        move || delete_baseline(&tag)
    });
    let old = namespace(&client, &format!("{tag}-old"), &[("zt-test", &tag)]).await;
    apply(&baseline(
        &tag,
        &tag,
        "podSecurity: {enforce: restricted}\nnetworkPolicy: {defaultDeny: [Ingress, Egress], allowDNS: true}",
    ));
    let baselines: Api<SecurityBaseline> = Api::all(client.clone());
    eventually(WAIT, "in force", || async {
        let s = baselines.get(&tag).await.ok()?.status?;
        let installed = s
            .conditions
            .iter()
            .any(|c| c.type_ == "AdmissionPolicies" && c.status == "True");
        (installed && s.compliant_namespaces == 1).then_some(())
    })
    .await;

    wait_mutation_in_force(&client, &tag).await;
    // The operator stops answering (SIGSTOP: it holds its connections and its lease, and does
    // nothing), as during a crash loop or a long hand-over.
    operator.signal("STOP");
    let paused = scopeguard(|| operator.signal("CONT"));
    // The gate in force at the API server (it loads policies through its own informer, a moment
    // after they exist): a dry-run pod in a probe namespace created meanwhile is refused.
    let probe = namespace(&client, &format!("{tag}-probe"), &[("zt-test", &tag)]).await;
    let probe_pods: Api<Pod> = Api::namespaced(client.clone(), &probe.name);
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    eventually(WAIT, "the gate in force", || async {
        probe_pods
            .create(&dry_run, &restricted_pod("probe"))
            .await
            .is_err()
            .then_some(())
    })
    .await;
    let fresh = namespace(&client, &format!("{tag}-new"), &[("zt-test", &tag)]).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let labels = namespaces.get(&fresh.name).await.unwrap().labels().clone();
    assert_eq!(
        labels
            .get("pod-security.kubernetes.io/enforce")
            .map(String::as_str),
        Some("restricted"),
        "Pod Security comes from the API server, not the operator"
    );
    // A tenant of the new namespace, with the built-in admin role there, tries to run pods.
    let (_, tenant) = tenant_admin(&fresh.name).await;
    let pods: Api<Pod> = Api::namespaced(tenant, &fresh.name);
    for i in 0..5 {
        let refused = pods
            .create(&PostParams::default(), &restricted_pod(&format!("p{i}")))
            .await;
        assert!(
            matches!(&refused, Err(kube::Error::Api(e)) if e.code == 403
                && e.message.contains(&format!("is being onboarded by SecurityBaseline {tag}"))
                && e.message.contains("retry")),
            "{refused:?}"
        );
    }
    // Someone with cluster rights narrows the tamper protection away while the operator is down:
    // `check` reports it.
    let bindings: Api<
        k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicyBinding,
    > = Api::all(client.clone());
    let tamper = format!("zt-{tag}-tamper");
    let narrowed = json!({"spec": {"matchResources": {"namespaceSelector": {"matchLabels": {"nobody": "here"}}}}});
    bindings
        .patch(
            &tamper,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(narrowed),
        )
        .await
        .unwrap();
    let out = check_baseline(&tag);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out)
            .lines()
            .any(|l| l.contains("ValidatingAdmissionPolicyBinding")
                && l.contains(&tamper)
                && l.contains("Weakened")),
        "{}",
        stdout(&out)
    );
    // A namespace onboarded before is not affected.
    Api::<Pod>::namespaced(client.clone(), &old.name)
        .create(&PostParams::default(), &restricted_pod("p"))
        .await
        .expect("the old namespace admits pods");

    // Back: the gate opens by itself, once the controls are in place.
    drop(paused);
    let resumed = Instant::now();
    eventually(WAIT, "the gate open", || async {
        pods.create(&PostParams::default(), &restricted_pod("late"))
            .await
            .ok()
    })
    .await;
    eprintln!(
        "gate opened {:?} after the operator resumed",
        resumed.elapsed()
    );
    let policies: Api<k8s_openapi::api::networking::v1::NetworkPolicy> =
        Api::namespaced(client.clone(), &fresh.name);
    assert!(
        policies
            .get_opt(&format!("zt-{tag}-default-deny"))
            .await
            .unwrap()
            .is_some(),
        "open only with the default-deny in place"
    );
    // The narrowed binding is put back as rendered.
    eventually(WAIT, "the tamper binding repaired", || async {
        let binding = bindings.get(&tamper).await.ok()?;
        let selector = binding.spec.match_resources?.namespace_selector?;
        (selector
            .match_labels
            .as_ref()
            .is_some_and(|l| l.get("zt-test") == Some(&tag)))
        .then_some(())
    })
    .await;
    eventually(WAIT, "check clean again", || async {
        (check_baseline(&tag).status.code() == Some(0)).then_some(())
    })
    .await;
    delete_baseline(&tag);
}
