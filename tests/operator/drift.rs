//! Drift in Enforce mode: repaired and reported; a stricter Pod Security level someone set is
//! kept; a same-named object we did not create is reported, then adopted on request.

use std::time::Instant;

use k8s_openapi::api::core::v1::{Namespace, ResourceQuota};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use zerotrust_testkit::*;

use super::{WAIT, baseline_events, generated, ns_labels, restricted, wait_onboarded};

#[tokio::test]
async fn enforce_mode_repairs_drift_and_reports_it() {
    operator();
    let client = client().await;
    let tag = unique("repair");
    let ns = namespace(&client, &tag, &[("zt-test", &tag)]).await;
    let name = tag.clone();
    let _cleanup = Cleanup(vec![name.clone()]);
    apply(&restricted(&name, &tag, "Enforce", ""));
    wait_onboarded(&client, &ns.name, &name).await;
    wait_status(&client, &name, WAIT, "compliant", |s| {
        s.compliant_namespaces == 1
    })
    .await;

    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns.name);
    let deny = format!("zt-{name}-default-deny");
    // 1. The default-deny NetworkPolicy is deleted.
    let start = Instant::now();
    policies.delete(&deny, &Default::default()).await.unwrap();
    eventually(WAIT, "default-deny restored", || async {
        policies.get_opt(&deny).await.ok().flatten()
    })
    .await;
    eprintln!("repair latency (delete -> restored): {:?}", start.elapsed());

    // 2. An allow-all ingress rule is added to it.
    let allow_all = json!({"spec": {"ingress": [{}]}});
    policies
        .patch(&deny, &PatchParams::default(), &Patch::Merge(&allow_all))
        .await
        .unwrap();
    eventually(WAIT, "allow rule removed", || async {
        let np = policies.get(&deny).await.ok()?;
        np.spec?.ingress.is_none_or(|r| r.is_empty()).then_some(())
    })
    .await;

    // 3. The quota is raised.
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), &ns.name);
    let quota = format!("zt-{name}-quota");
    quotas
        .patch(
            &quota,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"hard": {"pods": "1000"}}})),
        )
        .await
        .unwrap();
    eventually(WAIT, "quota restored", || async {
        let q = quotas.get(&quota).await.ok()?;
        (q.spec?.hard?.get("pods")?.0 == "20").then_some(())
    })
    .await;

    // 4. Pod Security is weakened to privileged: the API server itself puts the level back in the
    // same request (the baseline's mutating admission policy), so there is nothing to repair.
    wait_mutation_in_force(&client, &tag).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let weaken =
        json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "privileged"}}});
    let patched = namespaces
        .patch(&ns.name, &PatchParams::default(), &Patch::Merge(&weaken))
        .await
        .unwrap();
    assert_eq!(
        patched.labels()["pod-security.kubernetes.io/enforce"],
        "restricted",
        "never weakened, not even for a moment"
    );

    let s = wait_status(&client, &name, WAIT, "three repairs counted", |s| {
        s.repairs >= 3 && s.compliant_namespaces == 1
    })
    .await;
    assert_eq!(s.drifted_namespaces, 0);
    let events = eventually(WAIT, "repair events in the namespace", || async {
        let e = events_for(&client, &ns.name, "DriftRepaired").await;
        (e.len() >= 2).then_some(e)
    })
    .await;
    assert!(
        events.iter().any(|m| m.contains(&deny)),
        "an event names the repaired policy: {events:?}"
    );
    // ...and the same repairs as Events on the baseline itself.
    eventually(WAIT, "repair events on the baseline", || async {
        baseline_events(&client, &name)
            .await
            .iter()
            .any(|(reason, message)| reason == "DriftRepaired" && message.contains(&deny))
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_stricter_pod_security_level_set_by_someone_else_is_kept() {
    operator();
    let client = client().await;
    let tag = unique("stricter");
    let ns = namespace(&client, &tag, &[("zt-test", &tag)]).await;
    let name = tag.clone();
    let _cleanup = Cleanup(vec![name.clone()]);
    apply(&baseline(
        &name,
        &tag,
        "networkPolicy: {defaultDeny: [Ingress]}\npodSecurity: {enforce: baseline}",
    ));
    let enforce = "pod-security.kubernetes.io/enforce";
    eventually(WAIT, "onboarded", || async {
        (ns_labels(&client, &ns.name).await.get(enforce)? == "baseline").then_some(())
    })
    .await;
    wait_mutation_in_force(&client, &tag).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let stricter = json!({"metadata": {"labels": {enforce: "restricted"}}});
    let patched = namespaces
        .patch(&ns.name, &PatchParams::default(), &Patch::Merge(&stricter))
        .await
        .unwrap();
    assert_eq!(
        patched.labels()[enforce],
        "restricted",
        "the API server's mutating policy raises, never lowers"
    );
    // A repair in the same namespace proves a pass ran after the label changed.
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns.name);
    let deny = format!("zt-{name}-default-deny");
    let old = policies.get(&deny).await.unwrap().uid();
    policies.delete(&deny, &Default::default()).await.unwrap();
    eventually(WAIT, "repaired", || async {
        let now = policies.get_opt(&deny).await.ok()??;
        (now.uid() != old).then_some(())
    })
    .await;
    let s = wait_status(
        &client,
        &name,
        WAIT,
        "compliant with the stricter label",
        |s| s.compliant_namespaces == 1 && s.repairs >= 1,
    )
    .await;
    assert_eq!(ns_labels(&client, &ns.name).await[enforce], "restricted");
    // Kept by the operator too, not only by the API server's mutating policy (which would put a
    // lowered label back): it never counted the stricter label as drift to repair.
    assert_eq!(s.repairs, 1, "only the deleted policy was repaired: {s:?}");
    let events = events_for(&client, &ns.name, "DriftRepaired").await;
    assert!(
        !events.iter().any(|m| m.contains("pod-security")),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_same_named_object_we_did_not_create_is_reported_then_adopted_on_request() {
    operator();
    let client = client().await;
    let tag = unique("conflict");
    let ns = namespace(&client, &tag, &[("zt-test", &tag)]).await;
    let name = tag.clone();
    let _cleanup = Cleanup(vec![name.clone()]);
    let theirs = serde_json::from_value::<NetworkPolicy>(json!({
        "metadata": {"name": format!("zt-{name}-default-deny"), "labels": {"owner": "someone-else"}},
        "spec": {"podSelector": {}, "ingress": [{}], "policyTypes": ["Ingress"]}
    }))
    .unwrap();
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns.name);
    let before = policies
        .create(&PostParams::default(), &theirs)
        .await
        .unwrap();
    apply(&restricted(&name, &tag, "Enforce", ""));

    let s = wait_status(&client, &name, WAIT, "conflict reported", |s| {
        s.drift.iter().any(|d| d.reason.starts_with("Conflict"))
    })
    .await;
    assert_eq!(s.drifted_namespaces, 1);
    eventually(WAIT, "the other objects applied", || async {
        (generated(&client, &ns.name).await.len() == 5).then_some(())
    })
    .await;
    let after = policies
        .get(&format!("zt-{name}-default-deny"))
        .await
        .unwrap();
    assert_eq!(
        after.metadata.resource_version, before.metadata.resource_version,
        "their object is untouched"
    );

    apply(&restricted(
        &name,
        &tag,
        "Enforce",
        "conflictPolicy: Adopt\n",
    ));
    wait_onboarded(&client, &ns.name, &name).await;
    let adopted = policies
        .get(&format!("zt-{name}-default-deny"))
        .await
        .unwrap();
    assert!(
        adopted.spec.unwrap().ingress.is_none_or(|r| r.is_empty()),
        "adopted and made to match"
    );
    wait_status(&client, &name, WAIT, "compliant after adoption", |s| {
        s.compliant_namespaces == 1
    })
    .await;
}
