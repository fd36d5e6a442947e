//! Deletion: a namespace leaving Delete and Orphan baselines, and Orphan and Delete baselines
//! deleted, taking exactly what is theirs.

use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use zerotrust_operator::api::SecurityBaseline;
use zerotrust_testkit::*;

use super::{WAIT, expected_objects, generated, ns_labels, restricted, wait_onboarded};

/// The resourceVersion of every object of ours in `ns` and of the Namespace, as "Kind/name".
async fn versions(client: &Client, ns: &str) -> std::collections::BTreeMap<String, String> {
    let lp = ListParams::default().labels("app.kubernetes.io/managed-by=zerotrust-operator");
    let mut found = std::collections::BTreeMap::new();
    macro_rules! collect {
        ($kind:ty, $label:literal) => {
            for o in Api::<$kind>::namespaced(client.clone(), ns)
                .list(&lp)
                .await
                .expect("list")
                .items
            {
                found.insert(
                    format!("{}/{}", $label, o.name_any()),
                    o.resource_version().unwrap_or_default(),
                );
            }
        };
    }
    collect!(NetworkPolicy, "NetworkPolicy");
    collect!(Role, "Role");
    collect!(RoleBinding, "RoleBinding");
    collect!(ResourceQuota, "ResourceQuota");
    collect!(LimitRange, "LimitRange");
    let namespace = Api::<Namespace>::all(client.clone()).get(ns).await.unwrap();
    found.insert(
        format!("Namespace/{ns}"),
        namespace.resource_version().unwrap_or_default(),
    );
    found
}

#[tokio::test]
async fn deletion_policy_delete_removes_exactly_our_objects_orphan_keeps_them() {
    operator();
    let client = client().await;
    let tag = unique("deletion");
    let ns = namespace(&client, &tag, &[("zt-test", &tag)]).await;
    let (keep, remove) = (format!("{tag}-keep"), format!("{tag}-del"));
    let _cleanup = Cleanup(vec![keep.clone(), remove.clone()]);
    apply(&restricted(&keep, &tag, "Enforce", ""));
    apply(&restricted(
        &remove,
        &tag,
        "Enforce",
        "deletionPolicy: Delete\n",
    ));
    // A user's own policy in the namespace, which nothing may touch.
    let mine = serde_json::from_value::<NetworkPolicy>(json!({
        "metadata": {"name": "users-own"}, "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}
    }))
    .unwrap();
    Api::<NetworkPolicy>::namespaced(client.clone(), &ns.name)
        .create(&PostParams::default(), &mine)
        .await
        .unwrap();
    eventually(WAIT, "both onboarded", || async {
        (generated(&client, &ns.name).await.len() == 12).then_some(())
    })
    .await;

    // The namespace stops matching both baselines.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .patch(
            &ns.name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"zt-test": null}}})),
        )
        .await
        .unwrap();
    eventually(WAIT, "Delete baseline's objects removed", || async {
        (generated(&client, &ns.name).await == expected_objects(&keep)).then_some(())
    })
    .await;
    assert!(
        Api::<NetworkPolicy>::namespaced(client.clone(), &ns.name)
            .get_opt("users-own")
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn deleting_an_orphan_baseline_that_still_selects_a_namespace_changes_nothing() {
    operator();
    let client = client().await;
    let tag = unique("orphan");
    let ns = namespace(&client, &tag, &[("zt-test", &tag)]).await;
    let (keep, next, elsewhere) = (
        format!("{tag}-keep"),
        format!("{tag}-next"),
        format!("{tag}-elsewhere"),
    );
    let _cleanup = Cleanup(vec![keep.clone(), next.clone(), elsewhere.clone()]);
    // A Delete baseline with the same Pod Security levels that selects another namespace: it
    // never was in force here, so it must not release what `keep` leaves behind.
    apply(&restricted(
        &elsewhere,
        &format!("{tag}-other"),
        "Enforce",
        "deletionPolicy: Delete\n",
    ));
    apply(&restricted(&keep, &tag, "Enforce", ""));
    let mine = serde_json::from_value::<NetworkPolicy>(json!({
        "metadata": {"name": "users-own"}, "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}
    }))
    .unwrap();
    let policies = Api::<NetworkPolicy>::namespaced(client.clone(), &ns.name);
    let users = policies
        .create(&PostParams::default(), &mine)
        .await
        .unwrap();
    wait_onboarded(&client, &ns.name, &keep).await;
    wait_status(&client, &keep, WAIT, "compliant", |s| {
        s.compliant_namespaces == 1
    })
    .await;
    let before = versions(&client, &ns.name).await;

    // Deleted while it still selects the namespace.
    delete_baseline(&keep);
    let api: Api<SecurityBaseline> = Api::all(client.clone());
    eventually(WAIT, "baseline gone", || async {
        api.get_opt(&keep).await.ok()?.is_none().then_some(())
    })
    .await;
    // The deletion has been processed once the operator has onboarded the namespace for a
    // baseline applied after it: the baseline watch delivers events in order.
    apply(&baseline(
        &next,
        &tag,
        "networkPolicy: {defaultDeny: [Ingress]}",
    ));
    eventually(WAIT, "the next baseline's policy", || async {
        policies
            .get_opt(&format!("zt-{next}-default-deny"))
            .await
            .ok()?
            .map(|_| ())
    })
    .await;
    let mut after = versions(&client, &ns.name).await;
    after.remove(&format!("NetworkPolicy/zt-{next}-default-deny"));
    // The Namespace itself changes (the next baseline marks it onboarded); our objects do not.
    let namespace_key = format!("Namespace/{}", ns.name);
    let (mut before, mut after) = (before, after);
    before.remove(&namespace_key);
    after.remove(&namespace_key);
    assert_eq!(after, before, "every control kept, none rewritten");
    assert_eq!(
        policies.get("users-own").await.unwrap().resource_version(),
        users.resource_version(),
        "the user's policy untouched"
    );
    let namespace = Api::<Namespace>::all(client.clone())
        .get(&ns.name)
        .await
        .unwrap();
    assert_eq!(
        namespace
            .labels()
            .get("pod-security.kubernetes.io/enforce")
            .map(String::as_str),
        Some("restricted"),
        "the Pod Security labels kept: {:?}",
        namespace.metadata.managed_fields
    );
}

#[tokio::test]
async fn deleting_a_delete_policy_baseline_removes_its_objects_and_its_labels() {
    operator();
    let client = client().await;
    let tag = unique("finalize");
    let ns = namespace(&client, &tag, &[("zt-test", &tag)]).await;
    let name = tag.clone();
    let _cleanup = Cleanup(vec![name.clone()]);
    apply(&format!(
        "apiVersion: zerotrust.dev/v1alpha1\nkind: SecurityBaseline\nmetadata: {{name: {name}}}\nspec:\n  namespaceSelector: {{matchLabels: {{zt-test: {tag}}}}}\n  deletionPolicy: Delete\n  networkPolicy: {{defaultDeny: [Ingress]}}\n  podSecurity: {{enforce: baseline, warn: baseline}}\n"
    ));
    eventually(WAIT, "onboarded", || async {
        let labels = ns_labels(&client, &ns.name).await;
        (labels
            .get("pod-security.kubernetes.io/warn")
            .is_some_and(|v| v == "baseline")
            && generated(&client, &ns.name).await.len() == 1)
            .then_some(())
    })
    .await;
    let api: Api<SecurityBaseline> = Api::all(client.clone());
    eventually(WAIT, "cleanup finalizer added", || async {
        let b = api.get(&name).await.ok()?;
        b.finalizers()
            .iter()
            .any(|f| f == "zerotrust.dev/cleanup")
            .then_some(())
    })
    .await;
    // Someone makes one label stricter (not drift): that value is theirs and survives the cleanup.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let theirs = json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": ns.name, "labels": {"pod-security.kubernetes.io/warn": "restricted"}}
    });
    namespaces
        .patch(
            &ns.name,
            &PatchParams::apply("someone-else").force(),
            &Patch::Apply(theirs),
        )
        .await
        .unwrap();

    delete_baseline(&name);
    eventually(WAIT, "baseline gone after cleanup", || async {
        api.get_opt(&name).await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(
        generated(&client, &ns.name).await.is_empty(),
        "every object it created is gone"
    );
    let labels = ns_labels(&client, &ns.name).await;
    assert!(
        !labels.contains_key("pod-security.kubernetes.io/enforce"),
        "our label is removed: {labels:?}"
    );
    assert_eq!(
        labels
            .get("pod-security.kubernetes.io/warn")
            .map(String::as_str),
        Some("restricted"),
        "theirs stays"
    );
    assert_eq!(
        labels.get("zt-test"),
        Some(&tag),
        "other labels are untouched"
    );
}
