//! Fail-open paths, tried on the real control plane as an attacker would: an Audit baseline beside
//! an Enforce one, our labels or field manager taken off our objects, a tenant's allow-all policy
//! beside our default-deny (plain, or dressed up with our labels and field manager), a second
//! baseline's allow-all, an invalid edit, and a status flooded with drift (a write that fails
//! is in `in_process.rs`, where no operator process can do the writes first).
//! Each must leave the control in place, or say in the status that it is not.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use zerotrust_operator::api::SecurityBaselineStatus;
use zerotrust_testkit::*;

const WAIT: Duration = Duration::from_secs(30);
const ENFORCE_LABEL: &str = "pod-security.kubernetes.io/enforce";

fn compliant(s: &SecurityBaselineStatus, namespaces: i32) -> bool {
    s.compliant_namespaces == namespaces
        && condition(s, "Ready").is_some_and(|(status, _, _)| status == "True")
}

async fn labels(client: &Client, ns: &str) -> BTreeMap<String, String> {
    Api::<Namespace>::all(client.clone())
        .get(ns)
        .await
        .expect("namespace")
        .labels()
        .clone()
}

/// A pod Pod Security's `baseline` level refuses.
fn privileged_pod() -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "privileged"},
        "spec": {"containers": [{"name": "c", "image": "busybox",
                                 "securityContext": {"privileged": true}}]},
    }))
    .unwrap()
}

#[tokio::test]
async fn an_audit_baseline_beside_an_enforce_one_switches_nothing_off() {
    operator();
    let client = client().await;
    let tag = unique("mixed");
    let ns = namespace(&client, &tag, &[("zt-test", &tag)]).await;
    let (enforce, audit) = (format!("{tag}-a"), format!("{tag}-b"));
    let _cleanup = Cleanup(vec![enforce.clone(), audit.clone()]);
    // The Audit baseline first, seen by the operator before the Enforce one arrives: composing
    // the two by level alone used to let the Audit one win, so no level was written at all.
    apply(&baseline(
        &audit,
        &tag,
        "mode: Audit\npodSecurity: {enforce: restricted}\nserviceAccounts: {automountDefaultToken: false}",
    ));
    wait_status(
        &client,
        &audit,
        WAIT,
        "the Audit baseline reconciled",
        |s| s.drifted_namespaces == 1,
    )
    .await;
    apply(&baseline(
        &enforce,
        &tag,
        "podSecurity: {enforce: baseline}\nnetworkPolicy: {defaultDeny: [Ingress]}",
    ));

    // The Enforce baseline's level is written and it complies; the Audit baseline reports, on
    // its own, where the namespace falls short of it.
    wait_status(
        &client,
        &enforce,
        WAIT,
        "the Enforce baseline compliant",
        |s| compliant(s, 1),
    )
    .await;
    // The Audit baseline's status catches up with the label the Enforce one wrote (until its
    // namespace is reconciled again it may still say the label is missing).
    let s = wait_status(
        &client,
        &audit,
        WAIT,
        "the Audit baseline's own drift",
        |s| {
            s.drifted_namespaces == 1
                && s.drift.iter().any(|d| {
                    d.kind == "Namespace"
                        && d.name == ENFORCE_LABEL
                        && d.reason == "Weakened: baseline instead of restricted"
                })
        },
    )
    .await;
    assert_eq!(s.drift_count, 2, "{:?}", s.drift);
    assert!(s.drift.iter().any(|d| d.kind == "ServiceAccount"));
    assert_eq!(labels(&client, &ns.name).await[ENFORCE_LABEL], "baseline");
    // The control is really on: Pod Security refuses a privileged pod.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let refused = pods.create(&PostParams::default(), &privileged_pod()).await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(e)) if e.code == 403 && e.message.contains("baseline")),
        "{refused:?}"
    );
    // An Audit baseline never writes: the default ServiceAccount keeps its token setting.
    let sa = Api::<ServiceAccount>::namespaced(client.clone(), &ns.name)
        .get("default")
        .await
        .unwrap();
    assert_eq!(sa.automount_service_account_token, None);
    let out = check_baseline(&audit);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("baseline instead of restricted"),
        "{}",
        stdout(&out)
    );
    assert_eq!(check_baseline(&enforce).status.code(), Some(0));
}

#[tokio::test]
async fn taking_our_labels_or_field_manager_off_our_policy_does_not_make_it_someone_elses() {
    operator();
    let client = client().await;
    let tag = unique("relabel");
    let ns = namespace(&client, &tag, &[("zt-test", &tag)]).await;
    let _cleanup = Cleanup(vec![tag.clone()]);
    apply(&baseline(
        &tag,
        &tag,
        "networkPolicy: {defaultDeny: [Ingress, Egress]}",
    ));
    wait_status(&client, &tag, WAIT, "compliant", |s| compliant(s, 1)).await;
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns.name);
    let deny = format!("zt-{tag}-default-deny");
    let uid = policies.get(&deny).await.unwrap().uid();
    let ours = |p: &NetworkPolicy| {
        p.labels()
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str)
            == Some("zerotrust-operator")
            && p.managed_fields()
                .iter()
                .any(|m| m.manager.as_deref() == Some("zerotrust-operator"))
            && p.spec.as_ref().is_some_and(|s| s.ingress.is_none())
    };

    // Label taken off, and the policy opened while it is "nobody's".
    let patch = json!({
        "metadata": {"labels": {"app.kubernetes.io/managed-by": null}},
        "spec": {"ingress": [{}]},
    });
    policies
        .patch(&deny, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let repaired = eventually(WAIT, "the unlabelled policy repaired", || async {
        let p = policies.get(&deny).await.ok()?;
        ours(&p).then_some(p)
    })
    .await;
    assert_eq!(repaired.uid(), uid, "repaired in place, not replaced");

    // Field manager taken off (a list with one empty entry clears managedFields).
    let clear = json!([{"op": "replace", "path": "/metadata/managedFields", "value": [{}]}]);
    let clear: json_patch::Patch = serde_json::from_value(clear).unwrap();
    policies
        .patch(&deny, &PatchParams::default(), &Patch::Json::<()>(clear))
        .await
        .unwrap();
    eventually(WAIT, "our field manager back", || async {
        ours(&policies.get(&deny).await.ok()?).then_some(())
    })
    .await;
    let s = wait_status(&client, &tag, WAIT, "both repairs counted", |s| {
        s.repairs >= 2
    })
    .await;
    assert!(compliant(&s, 1) || s.drifted_namespaces == 0);
    let repairs = events_for(&client, &ns.name, "DriftRepaired").await;
    assert!(
        repairs.iter().any(|m| m.contains("Relabelled")),
        "{repairs:?}"
    );
}

#[tokio::test]
async fn a_tenant_policy_that_opens_the_namespace_is_reported_in_status_check_and_events() {
    operator();
    let client = client().await;
    let tag = unique("widened");
    let ns = namespace(&client, &tag, &[("zt-test", &tag)]).await;
    let audit = format!("{tag}-audit");
    let _cleanup = Cleanup(vec![tag.clone(), audit.clone()]);
    apply(&baseline(
        &tag,
        &tag,
        "networkPolicy: {defaultDeny: [Ingress, Egress], allowDNS: true}",
    ));
    apply(&baseline(
        &audit,
        &tag,
        "mode: Audit\nnetworkPolicy: {defaultDeny: [Ingress]}",
    ));
    wait_status(&client, &tag, WAIT, "compliant", |s| compliant(s, 1)).await;

    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns.name);
    let allow_all: NetworkPolicy = serde_json::from_value(json!({
        "metadata": {"name": "allow-all"},
        "spec": {"podSelector": {}, "ingress": [{}], "egress": [{}],
                 "policyTypes": ["Ingress", "Egress"]},
    }))
    .unwrap();
    let created = policies
        .create(&PostParams::default(), &allow_all)
        .await
        .unwrap();
    let widened = |s: &SecurityBaselineStatus| {
        s.drifted_namespaces == 1
            && s.drift.iter().any(|d| {
                d.kind == "NetworkPolicy"
                    && d.name == "allow-all"
                    && d.reason.starts_with("Widened")
            })
    };
    // Both modes report it; neither touches it.
    wait_status(&client, &tag, WAIT, "Enforce reports the widening", widened).await;
    let s = wait_status(&client, &audit, WAIT, "Audit reports the widening", widened).await;
    assert!(condition(&s, "Ready").is_some_and(|(status, _, _)| status == "False"));
    let out = check_baseline(&tag);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("allow-all") && stdout(&out).contains("Widened"),
        "{}",
        stdout(&out)
    );
    let events = eventually(WAIT, "a Widened Event", || async {
        let e = events_for(&client, &ns.name, "Widened").await;
        (!e.is_empty()).then_some(e)
    })
    .await;
    assert!(events.iter().any(|m| m.contains("allow-all")), "{events:?}");
    let after = policies.get("allow-all").await.unwrap();
    assert_eq!(
        after.resource_version(),
        created.resource_version(),
        "never written"
    );

    // A policy within the namespace, or within what the baseline allows, is no finding.
    policies
        .delete("allow-all", &Default::default())
        .await
        .unwrap();
    let same_namespace: NetworkPolicy = serde_json::from_value(json!({
        "metadata": {"name": "same-namespace"},
        "spec": {"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]},
    }))
    .unwrap();
    policies
        .create(&PostParams::default(), &same_namespace)
        .await
        .unwrap();
    wait_status(&client, &tag, WAIT, "compliant again", |s| compliant(s, 1)).await;
}

/// An allow-all NetworkPolicy named `name`, carrying our labels for a baseline `nobody`.
fn forged_allow_all(name: &str) -> NetworkPolicy {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {
            "app.kubernetes.io/managed-by": "zerotrust-operator",
            "zerotrust.dev/baseline": "nobody"}},
        "spec": {"podSelector": {}, "ingress": [{}], "egress": [{}],
                 "policyTypes": ["Ingress", "Egress"]},
    }))
    .unwrap()
}

#[tokio::test]
async fn an_allow_all_policy_with_our_labels_and_field_manager_forged_is_still_widened() {
    operator();
    let client = client().await;
    let tag = unique("forged");
    let ns = namespace(&client, &tag, &[("zt-test", &tag)]).await;
    let _cleanup = Cleanup(vec![tag.clone()]);
    apply(&baseline(
        &tag,
        &tag,
        "networkPolicy: {defaultDeny: [Ingress, Egress], allowDNS: true}",
    ));
    wait_status(&client, &tag, WAIT, "compliant", |s| compliant(s, 1)).await;
    // Made as the break-glass group: it stands for one a tenant made before the ownership
    // protection existed (which now refuses the tenant exactly this).
    let break_glass = client_as(
        "zt-break-glass-user",
        &["system:masters", "zerotrust:break-glass"],
    )
    .await;
    let policies: Api<NetworkPolicy> = Api::namespaced(break_glass, &ns.name);
    let as_operator = PostParams {
        field_manager: Some("zerotrust-operator".to_string()),
        ..PostParams::default()
    };
    let forged = policies
        .create(&as_operator, &forged_allow_all("zt-nobody-allow"))
        .await
        .unwrap();
    let widened = |s: &SecurityBaselineStatus| {
        s.drift.iter().any(|d| {
            d.kind == "NetworkPolicy"
                && d.name == "zt-nobody-allow"
                && d.reason.starts_with("Widened")
        })
    };
    let s = wait_status(&client, &tag, WAIT, "the forged policy widens", widened).await;
    assert!(condition(&s, "Ready").is_some_and(|(status, _, _)| status == "False"));
    let out = check_baseline(&tag);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("zt-nobody-allow"), "{}", stdout(&out));
    let after = policies.get("zt-nobody-allow").await.unwrap();
    assert_eq!(
        after.resource_version(),
        forged.resource_version(),
        "someone else's: never written"
    );
}

#[tokio::test]
async fn a_second_baselines_allow_all_is_a_finding_on_the_first_naming_it() {
    operator();
    let client = client().await;
    let tag = unique("second");
    let _ns = namespace(&client, &tag, &[("zt-test", &tag)]).await;
    let (first, second) = (format!("{tag}-a"), format!("{tag}-b"));
    let _cleanup = Cleanup(vec![first.clone(), second.clone()]);
    apply(&baseline(
        &first,
        &tag,
        "networkPolicy: {defaultDeny: [Ingress, Egress], allowDNS: true}",
    ));
    wait_status(&client, &first, WAIT, "compliant", |s| compliant(s, 1)).await;
    // Someone who may write SecurityBaselines opens everything, by namespace selector and by
    // address block, for the same namespaces.
    apply(&baseline(
        &second,
        &tag,
        "networkPolicy:\n  defaultDeny: [Ingress, Egress]\n  allow:\n    - {name: everyone, direction: Ingress, peers: [{namespaceSelector: {}}]}\n    - {name: world, direction: Egress, peers: [{cidr: 0.0.0.0/0}]}",
    ));
    let names = [
        format!("zt-{second}-allow-everyone"),
        format!("zt-{second}-allow-world"),
    ];
    let by_second = format!("SecurityBaseline {second}'s policy");
    let s = wait_status(&client, &first, WAIT, "both allows reported", |s| {
        names.iter().all(|name| {
            s.drift.iter().any(|d| {
                &d.name == name && d.reason.starts_with("Widened") && d.reason.contains(&by_second)
            })
        })
    })
    .await;
    assert!(condition(&s, "Ready").is_some_and(|(status, _, _)| status == "False"));
    let out = check_baseline(&first);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains(&names[0]), "{}", stdout(&out));
    // On the first baseline (its Events are in `default`; in the namespace, Events of one reason
    // fold into one series, whichever baseline published first).
    let events = eventually(
        WAIT,
        "a Widened Event naming the second baseline",
        || async {
            let e = events_for(&client, "default", "Widened").await;
            e.iter()
                .any(|m| names.iter().any(|n| m.contains(n)))
                .then_some(e)
        },
    )
    .await;
    assert!(!events.is_empty());
    // Its own allows are never judged against the second baseline itself; the first one's DNS
    // allow, which the second does not grant, is a finding on the second naming the first.
    let dns = format!("zt-{first}-allow-dns");
    let by_first = format!("SecurityBaseline {first}'s policy");
    let s = wait_status(
        &client,
        &second,
        WAIT,
        "the first's allow on the second",
        |s| {
            s.drift
                .iter()
                .any(|d| d.name == dns && d.reason.contains(&by_first))
        },
    )
    .await;
    assert!(
        s.drift.iter().all(|d| !names.contains(&d.name)),
        "{:?}",
        s.drift
    );
}

#[tokio::test]
async fn an_invalid_edit_keeps_the_last_valid_generation_enforced() {
    operator();
    let client = client().await;
    let tag = unique("invalid-edit");
    let ns = namespace(&client, &tag, &[("zt-test", &tag)]).await;
    let _cleanup = Cleanup(vec![tag.clone()]);
    let valid = baseline(&tag, &tag, "networkPolicy: {defaultDeny: [Ingress]}");
    apply(&valid);
    wait_status(&client, &tag, WAIT, "compliant", |s| compliant(s, 1)).await;

    // An edit the engine refuses (the API server cannot express it), by someone who can write
    // baselines: the controls must stay.
    apply(&baseline(
        &tag,
        &tag,
        "networkPolicy: {defaultDeny: [Ingress]}\nexcludedNamespaces: []\nrbac: {roles: [{name: r, rules: [{apiGroups: [''], resources: [pods], verbs: [get]}], subjects: [{kind: Group, name: '${team}'}]}]}",
    ));
    let s = wait_status(&client, &tag, WAIT, "InvalidSpec, still enforcing", |s| {
        condition(s, "Ready").is_some_and(|(_, reason, _)| reason == "InvalidSpec")
    })
    .await;
    let (_, _, message) = condition(&s, "Ready").unwrap();
    assert!(
        message.contains("spec.rbac.roles[0].subjects[0].name"),
        "{message}"
    );
    assert!(message.ends_with("enforcing generation 1"), "{message}");
    assert_eq!(s.compliant_namespaces, 1);

    // Drift is still repaired, and a new namespace still onboarded.
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns.name);
    let deny = format!("zt-{tag}-default-deny");
    policies.delete(&deny, &Default::default()).await.unwrap();
    eventually(WAIT, "the deleted default-deny repaired", || async {
        policies.get_opt(&deny).await.ok().flatten()
    })
    .await;
    let late = namespace(&client, &format!("{tag}-late"), &[("zt-test", &tag)]).await;
    let late_policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &late.name);
    eventually(WAIT, "a new namespace onboarded", || async {
        late_policies.get_opt(&deny).await.ok().flatten()
    })
    .await;
    let out = check_baseline(&tag);
    assert_eq!(out.status.code(), Some(1), "check reports the invalid edit");

    apply(&valid);
    wait_status(&client, &tag, WAIT, "valid again", |s| {
        compliant(s, 2) && condition(s, "InvalidSpec").is_none()
    })
    .await;
}

#[tokio::test]
async fn a_status_flooded_with_drift_still_shows_the_conflict_and_every_namespace_fairly() {
    operator();
    let client = client().await;
    let tag = unique("flood");
    let name = tag.clone();
    let _cleanup = Cleanup(vec![name.clone()]);
    // 25 namespaces named to sort first, each missing three objects (Audit writes nothing)...
    let flood = namespaces(&client, &format!("0-{tag}"), 25, ("zt-test", &tag)).await;
    // ...and one, named to sort last, holding a same-named policy of someone else's.
    let last = namespace(&client, &format!("zz-{tag}"), &[("zt-test", &tag)]).await;
    let squatter: NetworkPolicy = serde_json::from_value(json!({
        "metadata": {"name": format!("zt-{name}-default-deny")},
        "spec": {"podSelector": {}},
    }))
    .unwrap();
    Api::<NetworkPolicy>::namespaced(client.clone(), &last.name)
        .create(&PostParams::default(), &squatter)
        .await
        .unwrap();
    apply(&baseline(
        &name,
        &tag,
        "mode: Audit\nnetworkPolicy: {defaultDeny: [Ingress, Egress], allowDNS: true}\nresourceQuota: {hard: {pods: '1'}}",
    ));
    let s = wait_status(&client, &name, WAIT, "every namespace reconciled", |s| {
        s.drifted_namespaces == 26
    })
    .await;
    assert_eq!(s.drift.len(), 20);
    assert_eq!(s.drift_count, 26 * 3);
    assert!(
        condition(&s, "Conflict").is_some_and(|(status, _, _)| status == "True"),
        "the conflict shows though it sorts last: {:?}",
        s.conditions
    );
    let listed: std::collections::BTreeSet<&str> =
        s.drift.iter().map(|d| d.namespace.as_str()).collect();
    assert_eq!(
        listed.len(),
        20,
        "one record per namespace before any second one"
    );
    drop(flood);
}
