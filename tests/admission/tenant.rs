//! A tenant bound to the built-in `admin` role in its namespace: it cannot touch what the baseline
//! owns, and its allow-all NetworkPolicy is refused when the baseline asks and reported when not.

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use zerotrust_testkit::*;

use super::{WAIT, refused, refused_as_ours, wait_in_force};

fn network_policy(name: &str, spec: serde_json::Value) -> NetworkPolicy {
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

#[tokio::test]
async fn a_tenant_admin_cannot_touch_what_the_baseline_owns() {
    operator();
    let client = client().await;
    let tag = unique("tamper");
    let ns = namespace(&client, &tag, &[("zt-test", &tag)]).await;
    let _cleanup = Cleanup(vec![tag.clone()]);
    apply(&baseline(
        &tag,
        &tag,
        "podSecurity: {enforce: restricted}\nnetworkPolicy: {defaultDeny: [Ingress, Egress], allowDNS: true}\nserviceAccounts: {automountDefaultToken: false}",
    ));
    wait_in_force(&client, &tag, 1).await;
    let (_, tenant) = tenant_admin(&ns.name).await;
    let policies: Api<NetworkPolicy> = Api::namespaced(tenant.clone(), &ns.name);
    let deny = format!("zt-{tag}-default-deny");
    let owned = format!("belongs to SecurityBaseline {tag}");
    wait_tamper_refused(&tenant, &ns.name, &deny).await;

    // The tenant's role allows all of these; the API server refuses them.
    // A delete or label change is refused by the tamper protection and by the ownership one,
    // whichever the API server evaluates first.
    let deleted = policies.delete(&deny, &Default::default()).await;
    assert!(refused_as_ours(&deleted, &owned), "delete: {deleted:?}");
    let opened = policies
        .patch(
            &deny,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"ingress": [{}]}})),
        )
        .await;
    assert!(refused(&opened, &owned), "edit: {opened:?}");
    let unlabelled = json!({"metadata": {"labels": {"app.kubernetes.io/managed-by": null}}});
    let unlabelled = policies
        .patch(&deny, &PatchParams::default(), &Patch::Merge(unlabelled))
        .await;
    assert!(
        refused_as_ours(&unlabelled, &owned),
        "unlabel: {unlabelled:?}"
    );
    // Nor can it dress its own object up as ours.
    let mut forged = network_policy("zt-forged", json!({"podSelector": {}, "ingress": [{}]}));
    forged.metadata.labels = Some(
        [
            (
                "app.kubernetes.io/managed-by".to_string(),
                "zerotrust-operator".to_string(),
            ),
            ("zerotrust.dev/baseline".to_string(), tag.clone()),
        ]
        .into(),
    );
    let forged = policies.create(&PostParams::default(), &forged).await;
    assert!(refused_as_ours(&forged, &owned), "forge: {forged:?}");
    // Nor turn the token back on.
    let accounts: Api<ServiceAccount> = Api::namespaced(tenant.clone(), &ns.name);
    let token = json!({"automountServiceAccountToken": true});
    let token = accounts
        .patch("default", &PatchParams::default(), &Patch::Merge(token))
        .await;
    assert!(refused(&token, "automounting its token"), "{token:?}");
    // What is the tenant's own stays the tenant's.
    let own = network_policy(
        "mine",
        json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}),
    );
    policies.create(&PostParams::default(), &own).await.unwrap();
    policies.delete("mine", &Default::default()).await.unwrap();
    // The control is there, untouched.
    let admin: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns.name);
    assert!(
        admin
            .get(&deny)
            .await
            .unwrap()
            .spec
            .unwrap()
            .ingress
            .is_none()
    );
}

#[tokio::test]
async fn a_tenants_allow_all_policy_is_refused_when_the_baseline_asks_and_reported_when_not() {
    operator();
    let client = client().await;
    let tag = unique("refuse");
    let strict = namespace(
        &client,
        &format!("{tag}-strict"),
        &[("zt-test", &format!("{tag}-strict"))],
    )
    .await;
    let lenient = namespace(
        &client,
        &format!("{tag}-lenient"),
        &[("zt-test", &format!("{tag}-lenient"))],
    )
    .await;
    let (s, l) = (format!("{tag}-s"), format!("{tag}-l"));
    let _cleanup = Cleanup(vec![s.clone(), l.clone()]);
    apply(&baseline(
        &s,
        &strict.name,
        "networkPolicy: {defaultDeny: [Ingress, Egress], allowDNS: true, refuseWidening: true}",
    ));
    apply(&baseline(
        &l,
        &lenient.name,
        "networkPolicy: {defaultDeny: [Ingress, Egress], allowDNS: true}",
    ));
    wait_in_force(&client, &s, 1).await;
    wait_in_force(&client, &l, 1).await;

    let allow_all = network_policy(
        "allow-all",
        json!({"podSelector": {}, "ingress": [{}], "egress": [{}], "policyTypes": ["Ingress", "Egress"]}),
    );
    let (_, tenant) = tenant_admin(&strict.name).await;
    wait_tamper_refused(&tenant, &strict.name, &format!("zt-{s}-default-deny")).await;
    wait_widening_refused(&tenant, &strict.name, &allow_all).await;
    let strict_policies: Api<NetworkPolicy> = Api::namespaced(tenant, &strict.name);
    let created = strict_policies
        .create(&PostParams::default(), &allow_all)
        .await;
    assert!(
        refused(&created, "traffic through that SecurityBaseline"),
        "{created:?}"
    );
    for (name, spec) in [
        (
            "to-the-world",
            json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]}),
        ),
        (
            "from-another-team",
            json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "b"}}}]}]}),
        ),
        (
            "dns-all-ports",
            json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}]}]}),
        ),
    ] {
        let result = strict_policies
            .create(&PostParams::default(), &network_policy(name, spec))
            .await;
        assert!(refused(&result, "traffic through"), "{name}: {result:?}");
    }
    // Within the namespace, or within what the baseline allows itself, is the tenant's business.
    for (name, spec) in [
        (
            "same-namespace",
            json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}),
        ),
        (
            "self-by-name",
            json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": strict.name}}}]}]}),
        ),
        (
            "dns",
            json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}], "ports": [{"protocol": "UDP", "port": 53}]}]}),
        ),
    ] {
        strict_policies
            .create(&PostParams::default(), &network_policy(name, spec))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // Without the option: admitted, and reported.
    let (_, tenant) = tenant_admin(&lenient.name).await;
    Api::<NetworkPolicy>::namespaced(tenant, &lenient.name)
        .create(&PostParams::default(), &allow_all)
        .await
        .expect("admitted without refuseWidening");
    eventually(WAIT, "the widening reported", || async {
        let st = baseline_status(&client, &l).await;
        st.drift
            .iter()
            .any(|d| d.name == "allow-all" && d.reason.starts_with("Widened"))
            .then_some(())
    })
    .await;
}
