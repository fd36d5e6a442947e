//! Audit baselines at admission: warnings and nothing refused, alone or beside an Enforce baseline
//! on one namespace.

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use zerotrust_testkit::*;

use super::{ENFORCE_LABEL, WAIT, refused_as_ours, wait_in_force};

/// Applies `manifest` (one NetworkPolicy named `name`) in `namespace` as `user`, deleting and
/// re-applying until it is admitted with a warning that names `baseline`: a freshly installed
/// Audit policy warns only once the API server's own informer has it.
async fn apply_until_warned(
    namespace: &str,
    user: &str,
    name: &str,
    manifest: &str,
    baseline: &str,
) {
    let says = format!("SecurityBaseline {baseline}");
    eventually(WAIT, "a warning naming the baseline", || async {
        control_plane().kubectl(
            &[
                "delete",
                "networkpolicy",
                name,
                "-n",
                namespace,
                "--ignore-not-found",
            ],
            None,
        );
        let out = control_plane().kubectl(
            &[
                "apply",
                "-n",
                namespace,
                "--as",
                user,
                "--as-group",
                "system:authenticated",
                "-f",
                "-",
            ],
            Some(manifest),
        );
        let said = stderr(&out);
        (out.status.success() && said.contains("Warning") && said.contains(&says)).then_some(())
    })
    .await
}

#[tokio::test]
async fn audit_mode_warns_and_refuses_nothing() {
    operator();
    let client = client().await;
    let tag = unique("audit-warn");
    let ns = namespace(&client, &tag, &[("zt-test", &tag)]).await;
    let _cleanup = Cleanup(vec![tag.clone()]);
    apply(&baseline(
        &tag,
        &tag,
        "mode: Audit\nnetworkPolicy: {defaultDeny: [Ingress], refuseWidening: true}",
    ));
    eventually(WAIT, "the Audit policies in place", || async {
        let s = baseline_status(&client, &tag).await;
        s.conditions
            .iter()
            .any(|c| c.type_ == "AdmissionPolicies" && c.status == "True")
            .then_some(())
    })
    .await;
    let (user, _) = tenant_admin(&ns.name).await;
    let allow_all = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: allow-all}\nspec: {podSelector: {}, ingress: [{}]}\n";
    apply_until_warned(&ns.name, &user, "allow-all", allow_all, &tag).await;
    // Nothing was refused and nothing was written by us: the tenant's policy stands, unchanged.
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns.name);
    assert!(policies.get("allow-all").await.is_ok());
    let ours = policies
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=zerotrust-operator"))
        .await
        .unwrap();
    assert!(
        ours.items.is_empty(),
        "Audit writes nothing into the namespace"
    );
}

#[tokio::test]
async fn an_enforce_and_an_audit_baseline_on_one_namespace_each_do_their_part() {
    operator();
    let client = client().await;
    let tag = unique("two-modes");
    let ns = namespace(&client, &tag, &[("zt-test", &tag)]).await;
    let (enforce, audit) = (format!("{tag}-e"), format!("{tag}-a"));
    let _cleanup = Cleanup(vec![enforce.clone(), audit.clone()]);
    apply(&baseline(
        &enforce,
        &tag,
        "podSecurity: {enforce: baseline}\nnetworkPolicy: {defaultDeny: [Ingress]}",
    ));
    apply(&baseline(
        &audit,
        &tag,
        "mode: Audit\npodSecurity: {enforce: restricted}\nnetworkPolicy: {defaultDeny: [Ingress], refuseWidening: true}",
    ));
    wait_in_force(&client, &enforce, 1).await;
    let (user, tenant) = tenant_admin(&ns.name).await;
    // Enforce's object is protected...
    let deny = format!("zt-{enforce}-default-deny");
    wait_tamper_refused(&tenant, &ns.name, &deny).await;
    let deleted = Api::<NetworkPolicy>::namespaced(tenant, &ns.name)
        .delete(&deny, &Default::default())
        .await;
    assert!(
        refused_as_ours(&deleted, &format!("SecurityBaseline {enforce}")),
        "{deleted:?}"
    );
    // ...the Audit baseline's refusal only warns, and its stricter level is not written.
    let allow_all = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: allow-all}\nspec: {podSelector: {}, ingress: [{}]}\n";
    // The Audit baseline's policies reach the API server's admission informer on their own
    // schedule: repeat the tenant's apply until it is warned.
    apply_until_warned(&ns.name, &user, "allow-all", allow_all, &audit).await;
    let labels = Api::<Namespace>::all(client.clone())
        .get(&ns.name)
        .await
        .unwrap();
    assert_eq!(labels.labels()[ENFORCE_LABEL], "baseline");
}
