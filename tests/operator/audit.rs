//! Audit mode and `check`: drift reported and nothing written, a weakened namespace left weakened,
//! and `check`'s exit code.

use k8s_openapi::api::core::v1::{ResourceQuota, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use zerotrust_testkit::*;

use super::{WAIT, baseline_events, generated, ns_labels, ready, restricted, wait_onboarded};

#[tokio::test]
async fn audit_mode_reports_drift_and_never_writes() {
    operator();
    let client = client().await;
    let tag = unique("audit");
    let ns = namespace(&client, &tag, &[("zt-test", &tag)]).await;
    let name = tag.clone();
    let _cleanup = Cleanup(vec![name.clone()]);
    // The default ServiceAccount exists before the baseline (the controller-manager makes it).
    let accounts = Api::<ServiceAccount>::namespaced(client.clone(), &ns.name);
    let account = eventually(WAIT, "the default ServiceAccount", || async {
        accounts.get_opt("default").await.ok().flatten()
    })
    .await;
    apply(&restricted(&name, &tag, "Audit", ""));
    let s = wait_status(&client, &name, WAIT, "drift reported", |s| {
        s.drifted_namespaces == 1
    })
    .await;
    assert_eq!(
        (s.selected_namespaces, s.compliant_namespaces, ready(&s)),
        (1, 0, Some("False"))
    );
    assert!(!s.drift.is_empty() && s.drift.len() <= 20);
    assert!(
        s.drift
            .iter()
            .any(|d| d.kind == "NetworkPolicy" && d.reason == "Missing" && d.namespace == ns.name),
        "{:?}",
        s.drift
    );
    assert!(
        s.drift
            .iter()
            .any(|d| d.kind == "ServiceAccount" && d.namespace == ns.name),
        "the token automount is reported: {:?}",
        s.drift
    );
    assert!(s.drift_count as usize >= s.drift.len());

    // Nothing was written in the pass that reported it (a pass writes before it records): no
    // objects, no labels, the default ServiceAccount as the controller-manager left it.
    assert!(generated(&client, &ns.name).await.is_empty());
    assert!(
        !ns_labels(&client, &ns.name)
            .await
            .keys()
            .any(|k| k.starts_with("pod-security") || k.starts_with("onboarded"))
    );
    let after = accounts.get("default").await.unwrap();
    assert_eq!(
        (
            after.resource_version(),
            after.automount_service_account_token
        ),
        (account.resource_version(), None),
        "the default ServiceAccount is untouched"
    );
    let events = eventually(WAIT, "drift event", || async {
        let e = events_for(&client, &ns.name, "DriftDetected").await;
        (!e.is_empty()).then_some(e)
    })
    .await;
    assert!(events[0].contains("Missing"), "{events:?}");

    // Fixed by hand -> compliant.
    let deny = serde_json::from_value::<NetworkPolicy>(json!({
        "metadata": {"name": format!("zt-{name}-default-deny")},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    }))
    .unwrap();
    Api::<NetworkPolicy>::namespaced(client.clone(), &ns.name)
        .create(&PostParams::default(), &deny)
        .await
        .unwrap();
    let s = wait_status(
        &client,
        &name,
        WAIT,
        "conflict reported for a hand-made object",
        |s| s.drift.iter().any(|d| d.reason.starts_with("Conflict")),
    )
    .await;
    let conflict = s
        .conditions
        .iter()
        .find(|c| c.type_ == "Conflict" && c.status == "True")
        .expect("a Conflict condition")
        .clone();
    // The Conflict is a Warning Event too, in the namespace and on the baseline.
    let events = eventually(WAIT, "a Conflict event", || async {
        let e = events_for(&client, &ns.name, "Conflict").await;
        (!e.is_empty()).then_some(e)
    })
    .await;
    assert!(
        events
            .iter()
            .any(|m| m.contains(&format!("zt-{name}-default-deny"))),
        "{events:?}"
    );
    eventually(WAIT, "a Conflict event on the baseline", || async {
        baseline_events(&client, &name)
            .await
            .iter()
            .any(|(reason, _)| reason == "Conflict")
            .then_some(())
    })
    .await;

    // More drift while the conflict stays: the status changes, the Conflict condition's
    // lastTransitionTime does not (it moves only when the condition flips). The change comes at
    // least a second later, so a time set anew would differ (they are kept to the second).
    let since = conflict.last_transition_time.0.as_second();
    eventually(WAIT, "a second past the transition", || async {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs() as i64;
        (now > since).then_some(())
    })
    .await;
    Api::<ResourceQuota>::namespaced(client.clone(), &ns.name)
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": format!("zt-{name}-quota")},
                "spec": {"hard": {"pods": "1"}}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let later = wait_status(&client, &name, WAIT, "a second conflict counted", |s| {
        s.drift
            .iter()
            .filter(|d| d.reason.starts_with("Conflict"))
            .count()
            == 2
    })
    .await;
    let still = later
        .conditions
        .iter()
        .find(|c| c.type_ == "Conflict")
        .expect("the Conflict condition stays");
    assert_eq!(
        (still.status.as_str(), &still.last_transition_time),
        ("True", &conflict.last_transition_time),
        "the condition did not flip, so its transition time stays"
    );
}

#[tokio::test]
async fn audit_mode_leaves_a_weakened_compliant_namespace_weakened_and_reports_it() {
    operator();
    let client = client().await;
    let tag = unique("audit-weak");
    let ns = namespace(&client, &tag, &[("zt-test", &tag)]).await;
    let name = tag.clone();
    let _cleanup = Cleanup(vec![name.clone()]);
    // Compliant first (Enforce puts everything in place), then switched to Audit.
    apply(&restricted(&name, &tag, "Enforce", ""));
    wait_onboarded(&client, &ns.name, &name).await;
    apply(&restricted(&name, &tag, "Audit", ""));
    wait_status(&client, &name, WAIT, "compliant under Audit", |s| {
        s.observed_generation == Some(2) && s.compliant_namespaces == 1
    })
    .await;

    // Weakened: the default-deny deleted, the quota raised (Audit's admission policy only warns).
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns.name);
    let deny = format!("zt-{name}-default-deny");
    policies.delete(&deny, &Default::default()).await.unwrap();
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), &ns.name);
    let quota = format!("zt-{name}-quota");
    let raised = quotas
        .patch(
            &quota,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"hard": {"pods": "1000"}}})),
        )
        .await
        .unwrap();
    let s = wait_status(&client, &name, WAIT, "the weakening reported", |s| {
        s.drifted_namespaces == 1
            && s.drift
                .iter()
                .any(|d| d.name == deny && d.reason == "Missing")
            && s.drift.iter().any(|d| d.name == quota)
    })
    .await;
    assert_eq!(s.repairs, 0, "{s:?}");
    // The pass that reported it would have repaired first: it stays weakened.
    assert!(policies.get_opt(&deny).await.unwrap().is_none());
    // (Its resourceVersion moves: the quota controller writes the status.)
    let now = quotas.get(&quota).await.unwrap();
    assert_eq!(now.spec, raised.spec, "the raised quota stays raised");
    eventually(WAIT, "reported as an Event", || async {
        let e = events_for(&client, &ns.name, "DriftDetected").await;
        e.iter().any(|m| m.contains(&deny)).then_some(())
    })
    .await;
    let out = check_baseline(&name);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(policies.get_opt(&deny).await.unwrap().is_none());
}

#[tokio::test]
async fn check_reports_drift_with_its_exit_code() {
    operator();
    let client = client().await;
    let tag = unique("check");
    let ns = namespace(&client, &tag, &[("zt-test", &tag)]).await;
    let name = tag.clone();
    let _cleanup = Cleanup(vec![name.clone()]);
    apply(&restricted(&name, &tag, "Enforce", ""));
    wait_onboarded(&client, &ns.name, &name).await;
    let check = || check_baseline(&name);
    let out = eventually(WAIT, "check passes", || async {
        let out = check();
        out.status.success().then_some(out)
    })
    .await;
    assert!(
        stdout(&out).contains("1 namespace(s) checked: 1 compliant"),
        "{}",
        stdout(&out)
    );

    apply(&restricted(&name, &tag, "Audit", ""));
    wait_status(&client, &name, WAIT, "audit mode observed", |s| {
        s.observed_generation == Some(2)
    })
    .await;
    Api::<NetworkPolicy>::namespaced(client.clone(), &ns.name)
        .delete(&format!("zt-{name}-default-deny"), &Default::default())
        .await
        .unwrap();
    let out = eventually(WAIT, "check fails", || async {
        let out = check();
        (out.status.code() == Some(1)).then_some(out)
    })
    .await;
    let table = stdout(&out);
    assert!(
        table.contains("NAMESPACE")
            && table.contains(&format!("zt-{name}-default-deny"))
            && table.contains("Missing"),
        "{table}"
    );
}
