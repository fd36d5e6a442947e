//! Forged onboarding markers (issue 24, item 2). A user who may create and label namespaces (and
//! nothing more) creates a namespace carrying `onboarded.zerotrust.dev/<baseline>: "true"`
//! outside the selector, or before the baseline exists, and brings it under the baseline later.
//! The gate must open only for the marker the operator writes after the controls are in place
//! (the namespace's uid, which nobody knows before the namespace exists), however the namespace
//! came under the baseline. Its own binary, with its own operator process (paused by one test):
//! the tests take turns, so no other operator can open the gate behind a test's back.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tokio::sync::Mutex;
use zerotrust_operator::controller::DEFAULT_BREAK_GLASS_GROUP;
use zerotrust_testkit::*;

const WAIT: Duration = Duration::from_secs(30);

/// One test at a time: one of them pauses the operator both share.
static TURN: Mutex<()> = Mutex::const_new(());

fn marker(tag: &str) -> String {
    format!("onboarded.zerotrust.dev/{tag}")
}

/// The attacker (`creator`) creates `name` with the forged marker of baseline `tag` and `labels`.
/// Should an admission rule on the marker keys refuse that at creation, the attack stops there;
/// the gate must still hold on its own, so the namespace is then made in the break-glass group.
async fn forged(creator: &str, name: &str, tag: &str, labels: &[(&str, &str)]) {
    let mut labels: serde_json::Map<String, serde_json::Value> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    labels.insert(marker(tag), json!("true"));
    let namespace: Namespace =
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap();
    let attacker = client_as(creator, &[]).await;
    match Api::<Namespace>::all(attacker)
        .create(&PostParams::default(), &namespace)
        .await
    {
        Ok(_) => {}
        // Refused for the marker key: by its own name, or as any `onboarded.zerotrust.dev/*` key
        // (the ownership rule of any baseline, this one's or another's).
        Err(kube::Error::Api(e))
            if e.code == 403 && e.message.contains("onboarded.zerotrust.dev/") =>
        {
            Api::<Namespace>::all(client_as(creator, &[DEFAULT_BREAK_GLASS_GROUP]).await)
                .create(&PostParams::default(), &namespace)
                .await
                .expect("the break-glass group may set the marker");
        }
        Err(e) => panic!("a namespace creator may create namespaces: {e}"),
    }
}

/// Waits until a dry-run pod in `namespace` is refused by `tag`'s gate (the API server's view of
/// the namespace and the gate catching up), then checks that a real pod is refused as well.
async fn gate_refuses(pods: &Api<Pod>, namespace: &str, tag: &str) {
    let gate = format!("is being onboarded by SecurityBaseline {tag}");
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    eventually(WAIT, &format!("the gate to hold {namespace}"), || async {
        match pods.create(&dry_run, &restricted_pod("probe")).await {
            Err(kube::Error::Api(e)) if e.message.contains(&gate) => Some(()),
            _ => None,
        }
    })
    .await;
    let refused = pods
        .create(&PostParams::default(), &restricted_pod("p"))
        .await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(e)) if e.code == 403 && e.message.contains(&gate)),
        "{namespace}: {refused:?}"
    );
}

/// Waits until the operator has replaced the forged marker on `namespace` with its own: a value
/// that starts with the namespace's uid.
async fn marked_by_the_operator(client: &Client, namespace: &str, tag: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    eventually(
        WAIT,
        &format!("the operator's marker on {namespace}"),
        || async {
            let ns = namespaces.get(namespace).await.ok()?;
            let value = ns.labels().get(&marker(tag))?;
            value.starts_with(&ns.uid()?).then_some(())
        },
    )
    .await;
}

/// A baseline `tag` (restricted, default-deny) in force, with its gate installed.
async fn baseline_in_force(client: &Client, tag: &str) {
    apply(&baseline(
        tag,
        tag,
        "podSecurity: {enforce: restricted}\nnetworkPolicy: {defaultDeny: [Ingress, Egress], allowDNS: true}",
    ));
    wait_status(client, tag, WAIT, "admission policies installed", |s| {
        condition(s, "AdmissionPolicies").is_some_and(|(status, _, _)| status == "True")
    })
    .await;
    wait_mutation_in_force(client, tag).await;
}

/// Waits for the next whole second: creation times have whole seconds, so what is created after
/// this is strictly younger than what was created before.
async fn next_second(client: &Client, namespace: &str) {
    let created = Api::<Namespace>::all(client.clone())
        .get(namespace)
        .await
        .unwrap()
        .creation_timestamp()
        .expect("a creation time")
        .0
        .as_second();
    eventually(WAIT, "the next second", || async {
        (k8s_openapi::jiff::Timestamp::now().as_second() > created).then_some(())
    })
    .await;
}

/// Selected by a baseline created later: the namespace, older than the baseline, carries a forged
/// marker and a same-named policy where the default-deny should go (a conflict: the operator
/// never puts its default-deny in place). On main, a namespace older than its baseline was never
/// gated and a "true" marker opened the gate: pods ran with no default-deny.
#[tokio::test]
async fn a_forged_marker_opens_no_gate_for_a_baseline_created_later() {
    let _turn = TURN.lock().await;
    operator();
    let client = client().await;
    let tag = unique("forged-later");
    let _cleanup = Cleanup(vec![tag.clone()]);
    let creator = format!("{tag}-creator");
    namespace_labeller(&creator).await;
    let name = format!("{tag}-ns");
    forged(&creator, &name, &tag, &[("zt-test", &tag)]).await;
    let _ns = NamespaceGuard { name: name.clone() };
    let (_, tenant) = tenant_admin(&name).await;
    let squatter: NetworkPolicy = serde_json::from_value(json!({
        "metadata": {"name": format!("zt-{tag}-default-deny")},
        "spec": {"podSelector": {}, "ingress": [{}], "policyTypes": ["Ingress"]},
    }))
    .unwrap();
    Api::<NetworkPolicy>::namespaced(tenant.clone(), &name)
        .create(&PostParams::default(), &squatter)
        .await
        .expect("a tenant admin may create NetworkPolicies");
    next_second(&client, &name).await;

    baseline_in_force(&client, &tag).await;
    let pods: Api<Pod> = Api::namespaced(tenant, &name);
    gate_refuses(&pods, &name, &tag).await;
    // The operator questions the marker it did not write: removed, since the controls are not
    // in place (the default-deny is someone else's).
    let namespaces: Api<Namespace> = Api::all(client.clone());
    eventually(WAIT, "the forged marker removed", || async {
        let ns = namespaces.get(&name).await.ok()?;
        (!ns.labels().contains_key(&marker(&tag))).then_some(())
    })
    .await;
    gate_refuses(&pods, &name, &tag).await;
}

/// Labelled into the selector while the operator is down: a namespace created with a forged
/// marker outside the selector after the baseline, and one created so before the baseline. On
/// main the marker rule only compared old with new labels, so both gates were open at once.
#[tokio::test]
async fn a_forged_marker_labelled_into_the_selector_opens_no_gate_with_the_operator_down() {
    let _turn = TURN.lock().await;
    let operator = operator();
    let client = client().await;
    let tag = unique("forged-label");
    let _cleanup = Cleanup(vec![tag.clone()]);
    let creator = format!("{tag}-creator");
    let attacker = namespace_labeller(&creator).await;
    let older = format!("{tag}-older");
    forged(&creator, &older, &tag, &[]).await;
    let _older = NamespaceGuard {
        name: older.clone(),
    };
    next_second(&client, &older).await;
    baseline_in_force(&client, &tag).await;
    let outside = format!("{tag}-outside");
    forged(&creator, &outside, &tag, &[]).await;
    let _outside = NamespaceGuard {
        name: outside.clone(),
    };

    operator.signal("STOP");
    let paused = scopeguard(|| operator.signal("CONT"));
    let into_selector = json!({"metadata": {"labels": {"zt-test": tag}}});
    let mut tenants = Vec::new();
    for name in [&outside, &older] {
        Api::<Namespace>::all(attacker.clone())
            .patch(name, &PatchParams::default(), &Patch::Merge(&into_selector))
            .await
            .expect("a namespace creator may label namespaces");
        let (_, tenant) = tenant_admin(name).await;
        let pods: Api<Pod> = Api::namespaced(tenant, name);
        gate_refuses(&pods, name, &tag).await;
        tenants.push((name.clone(), pods));
    }

    // Back: the operator puts the controls in place, then writes its own marker; the gate opens.
    drop(paused);
    for (name, pods) in &tenants {
        marked_by_the_operator(&client, name, &tag).await;
        eventually(WAIT, "the gate open", || async {
            pods.create(&PostParams::default(), &restricted_pod("late"))
                .await
                .ok()
        })
        .await;
        let deny = Api::<NetworkPolicy>::namespaced(client.clone(), name)
            .get_opt(&format!("zt-{tag}-default-deny"))
            .await
            .unwrap();
        assert!(deny.is_some(), "{name}: open only with the default-deny");
    }
}
