//! A baseline edited: its policy updated in place, its selector moved to other namespaces.

use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::{Api, ResourceExt};
use zerotrust_testkit::*;

use super::{WAIT, expected_objects, generated, restricted, wait_onboarded};

#[tokio::test]
async fn an_edit_of_the_baseline_converges_in_place_keeping_the_policys_uid() {
    operator();
    let client = client().await;
    let tag = unique("edit");
    let ns = namespace(&client, &tag, &[("zt-test", &tag)]).await;
    let name = tag.clone();
    let _cleanup = Cleanup(vec![name.clone()]);
    apply(&restricted(&name, &tag, "Enforce", ""));
    wait_onboarded(&client, &ns.name, &name).await;
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns.name);
    let deny = format!("zt-{name}-default-deny");
    let before = policies.get(&deny).await.unwrap();
    // The default-deny changes (ingress only; DNS allow dropped with it): updated, not replaced.
    apply(&baseline(
        &name,
        &tag,
        &RESTRICTED.replace(
            "defaultDeny: [Ingress, Egress]\n  allowDNS: true",
            "defaultDeny: [Ingress]",
        ),
    ));
    let after = eventually(WAIT, "the policy updated", || async {
        let now = policies.get(&deny).await.ok()?;
        (now.spec.as_ref()?.policy_types.as_deref() == Some(&["Ingress".to_string()][..]))
            .then_some(now)
    })
    .await;
    assert_eq!(
        after.uid(),
        before.uid(),
        "the same object, edited in place"
    );
}

#[tokio::test]
async fn a_selector_change_converges_in_place() {
    operator();
    let client = client().await;
    let tag = unique("selector");
    let (first, second) = (format!("{tag}-one"), format!("{tag}-two"));
    let one = namespace(&client, &first, &[("zt-test", &first)]).await;
    let two = namespace(&client, &second, &[("zt-test", &second)]).await;
    let name = tag.clone();
    let _cleanup = Cleanup(vec![name.clone()]);
    apply(&restricted(&name, &first, "Enforce", ""));
    wait_onboarded(&client, &one.name, &name).await;
    apply(&restricted(&name, &second, "Enforce", ""));
    wait_onboarded(&client, &two.name, &name).await;
    // The status of the new generation counts only the newly selected namespace.
    wait_status(&client, &name, WAIT, "new selection counted", |s| {
        s.observed_generation == Some(2)
            && s.selected_namespaces == 1
            && s.compliant_namespaces == 1
    })
    .await;
    assert_eq!(
        generated(&client, &one.name).await,
        expected_objects(&name),
        "Orphan keeps the old namespace's controls"
    );
}
