//! The admission policies themselves: nothing of theirs blocks a namespace's deletion or outlives
//! its baseline, and every one passes the API server's type checking.

use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicy;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{ListParams, PostParams};
use kube::{Api, ResourceExt};
use zerotrust_testkit::*;

use super::{WAIT, pod, wait_in_force};

#[tokio::test]
async fn namespace_deletion_completes_and_a_deleted_baseline_leaves_nothing_blocking() {
    operator();
    let client = client().await;
    let tag = unique("lifecycle");
    let doomed = namespace(&client, &format!("{tag}-doomed"), &[("zt-test", &tag)]).await;
    let _cleanup = Cleanup(vec![tag.clone()]);
    apply(&baseline(
        &tag,
        &tag,
        "podSecurity: {enforce: restricted}\nnetworkPolicy: {defaultDeny: [Ingress]}\nresourceQuota: {hard: {pods: '5'}}\nserviceAccounts: {automountDefaultToken: false}",
    ));
    wait_in_force(&client, &tag, 1).await;

    // The namespace controller deletes our objects in a namespace being deleted.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .delete(&doomed.name, &Default::default())
        .await
        .unwrap();
    eventually(Duration::from_secs(90), "the namespace gone", || async {
        matches!(namespaces.get_opt(&doomed.name).await, Ok(None)).then_some(())
    })
    .await;

    // The baseline's policies go with it, so nothing keeps refusing.
    let kept = namespace(&client, &format!("{tag}-kept"), &[("zt-test", &tag)]).await;
    eventually(WAIT, "onboarded", || async {
        let ns = namespaces.get(&kept.name).await.ok()?;
        ns.labels()
            .contains_key(&format!("onboarded.zerotrust.dev/{tag}"))
            .then_some(())
    })
    .await;
    delete_baseline(&tag);
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
    eventually(WAIT, "the baseline's admission policies gone", || async {
        let list = policies
            .list(&ListParams::default().labels(&format!("zerotrust.dev/baseline={tag}")))
            .await
            .ok()?;
        list.items.is_empty().then_some(())
    })
    .await;
    let later = namespace(&client, &format!("{tag}-later"), &[("zt-test", &tag)]).await;
    let (_, tenant) = tenant_admin(&kept.name).await;
    let deny = format!("zt-{tag}-default-deny");
    eventually(WAIT, "the orphaned policy the tenant's again", || async {
        Api::<NetworkPolicy>::namespaced(tenant.clone(), &kept.name)
            .delete(&deny, &Default::default())
            .await
            .ok()
    })
    .await;
    // No gate any more (a restricted pod: a namespace created while the API server still held
    // the mutating policy may have got Pod Security labels, which under Orphan stay).
    eventually(
        WAIT,
        "a pod admitted in a namespace created after",
        || async {
            Api::<Pod>::namespaced(client.clone(), &later.name)
                .create(&PostParams::default(), &pod("p", false))
                .await
                .ok()
        },
    )
    .await;
}

#[tokio::test]
async fn every_policy_passes_the_api_servers_type_checking() {
    operator();
    let client = client().await;
    let tag = unique("typed");
    let _cleanup = Cleanup(vec![tag.clone()]);
    apply(&baseline(
        &tag,
        &tag,
        "podSecurity: {enforce: restricted, audit: restricted, warn: baseline, version: v1.35}\nnetworkPolicy: {defaultDeny: [Ingress, Egress], allowDNS: true, allowSameNamespace: true, refuseWidening: true}\nserviceAccounts: {automountDefaultToken: false}",
    ));
    wait_in_force(&client, &tag, 0).await;
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
    let list = policies
        .list(&ListParams::default().labels(&format!("zerotrust.dev/baseline={tag}")))
        .await
        .unwrap();
    assert_eq!(
        list.items.len(),
        4,
        "gate, tamper, ownership, network policies"
    );
    for policy in list.items {
        let name = policy.name_any();
        let warnings = policy
            .status
            .and_then(|s| s.type_checking)
            .and_then(|t| t.expression_warnings)
            .unwrap_or_default();
        assert!(warnings.is_empty(), "{name}: {warnings:?}");
    }
}
