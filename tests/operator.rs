//! The operator end to end on the real control plane: the three user stories (applying a baseline,
//! onboarding new namespaces, drift shown and repaired), both modes, composition, conflicts,
//! deletion policy, selector changes, invalid specs and the `check` command.
//!
//! Every test uses its own label value, so its baselines select only its own namespaces.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    Event as CoreEvent, LimitRange, Namespace, ResourceQuota, ServiceAccount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use zerotrust_operator::api::{SecurityBaseline, SecurityBaselineStatus};
use zerotrust_testkit::*;

const WAIT: Duration = Duration::from_secs(30);

/// A restricted baseline in `mode` selecting namespaces labelled `zt-test=<selector>`, with
/// `extra` spec fields.
fn restricted(name: &str, selector: &str, mode: &str, extra: &str) -> String {
    baseline(
        name,
        selector,
        &format!("mode: {mode}\n{RESTRICTED}{extra}"),
    )
}

fn ready(s: &SecurityBaselineStatus) -> Option<&str> {
    s.conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.as_str())
}

/// The names of our generated objects in a namespace, as "Kind/name".
async fn generated(client: &Client, ns: &str) -> BTreeSet<String> {
    let lp = ListParams::default().labels("app.kubernetes.io/managed-by=zerotrust-operator");
    let mut found = BTreeSet::new();
    macro_rules! collect {
        ($kind:ty, $label:literal) => {
            for o in Api::<$kind>::namespaced(client.clone(), ns)
                .list(&lp)
                .await
                .expect("list")
                .items
            {
                found.insert(format!("{}/{}", $label, o.name_any()));
            }
        };
    }
    collect!(NetworkPolicy, "NetworkPolicy");
    collect!(Role, "Role");
    collect!(RoleBinding, "RoleBinding");
    collect!(ResourceQuota, "ResourceQuota");
    collect!(LimitRange, "LimitRange");
    found
}

fn expected_objects(baseline: &str) -> BTreeSet<String> {
    [
        format!("NetworkPolicy/zt-{baseline}-default-deny"),
        format!("NetworkPolicy/zt-{baseline}-allow-dns"),
        format!("Role/zt-{baseline}-viewer"),
        format!("RoleBinding/zt-{baseline}-viewer"),
        format!("ResourceQuota/zt-{baseline}-quota"),
        format!("LimitRange/zt-{baseline}-limits"),
    ]
    .into_iter()
    .collect()
}

async fn ns_labels(client: &Client, ns: &str) -> std::collections::BTreeMap<String, String> {
    Api::<Namespace>::all(client.clone())
        .get(ns)
        .await
        .expect("namespace")
        .labels()
        .clone()
}

/// Fully onboarded: every object, the PSA labels and the default ServiceAccount setting.
async fn onboarded(client: &Client, ns: &str, baseline: &str) -> bool {
    let labels = ns_labels(client, ns).await;
    let sa = Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .get_opt("default")
        .await
        .ok()
        .flatten();
    generated(client, ns).await == expected_objects(baseline)
        && labels
            .get("pod-security.kubernetes.io/enforce")
            .map(String::as_str)
            == Some("restricted")
        && sa.is_some_and(|sa| sa.automount_service_account_token == Some(false))
}

async fn wait_onboarded(client: &Client, ns: &str, baseline: &str) -> Duration {
    let start = Instant::now();
    eventually(WAIT, &format!("{ns} onboarded by {baseline}"), || async {
        onboarded(client, ns, baseline).await.then_some(())
    })
    .await;
    start.elapsed()
}

/// Events whose subject is the SecurityBaseline `baseline` (the API server keeps a cluster-scoped
/// object's Events in `default`, so every namespace is searched): (reason, message).
async fn baseline_events(client: &Client, baseline: &str) -> Vec<(String, String)> {
    let api: Api<CoreEvent> = Api::all(client.clone());
    let lp = ListParams::default().fields(&format!(
        "involvedObject.kind=SecurityBaseline,involvedObject.name={baseline}"
    ));
    api.list(&lp)
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
        .collect()
}

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
async fn applying_a_baseline_onboards_every_matching_namespace() {
    operator();
    let client = client().await;
    let tag = unique("apply");
    let mut namespaces = Vec::new();
    for i in 0..3 {
        namespaces.push(namespace(&client, &format!("{tag}-{i}"), &[("zt-test", &tag)]).await);
    }
    let other = namespace(&client, &format!("{tag}-other"), &[]).await;
    let name = tag.clone();
    let _cleanup = Cleanup(vec![name.clone()]);
    apply(&restricted(&name, &tag, "Enforce", ""));

    for ns in &namespaces {
        wait_onboarded(&client, &ns.name, &name).await;
    }
    // Ready also waits for the admission policies, written beside the namespaces.
    let s = wait_status(&client, &name, WAIT, "status counts, Ready", |s| {
        s.selected_namespaces == 3 && s.compliant_namespaces == 3 && ready(s) == Some("True")
    })
    .await;
    assert_eq!(s.drifted_namespaces, 0);
    assert!(
        generated(&client, &other.name).await.is_empty(),
        "an unselected namespace is untouched"
    );

    let out = control_plane().kubectl(&["get", "securitybaselines", &name, "--no-headers"], None);
    let row: Vec<String> = stdout(&out).split_whitespace().map(String::from).collect();
    assert_eq!(
        &row[..7],
        [name.as_str(), "Enforce", "3", "3", "0", "0", "True"],
        "kubectl get shows true numbers"
    );
}

#[tokio::test]
async fn new_and_relabelled_namespaces_are_onboarded_by_the_watch() {
    operator();
    let client = client().await;
    let tag = unique("onboard");
    let name = tag.clone();
    let _cleanup = Cleanup(vec![name.clone()]);
    apply(&restricted(&name, &tag, "Enforce", ""));
    wait_status(&client, &name, WAIT, "baseline observed", |s| {
        ready(s) == Some("True")
    })
    .await;

    let created = Instant::now();
    let fresh = namespace(&client, &format!("{tag}-new"), &[("zt-test", &tag)]).await;
    wait_onboarded(&client, &fresh.name, &name).await;
    // The safety-net resync is 10 minutes away: this can only have been the watch.
    eprintln!(
        "onboarding latency (creation -> compliant): {:?}",
        created.elapsed()
    );

    let later = namespace(&client, &format!("{tag}-later"), &[]).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let label = |value: Option<&str>| json!({"metadata": {"labels": {"zt-test": value}}});
    namespaces
        .patch(
            &later.name,
            &PatchParams::default(),
            &Patch::Merge(label(Some(&tag))),
        )
        .await
        .unwrap();
    wait_onboarded(&client, &later.name, &name).await;
    wait_status(&client, &name, WAIT, "two selected", |s| {
        s.selected_namespaces == 2 && s.compliant_namespaces == 2
    })
    .await;

    // Unselected under deletionPolicy Orphan: counted out, controls left in place.
    namespaces
        .patch(
            &later.name,
            &PatchParams::default(),
            &Patch::Merge(label(None)),
        )
        .await
        .unwrap();
    wait_status(&client, &name, WAIT, "one selected", |s| {
        s.selected_namespaces == 1
    })
    .await;
    assert_eq!(
        generated(&client, &later.name).await,
        expected_objects(&name),
        "Orphan keeps the controls"
    );
}

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
async fn several_baselines_compose_on_one_namespace() {
    operator();
    let client = client().await;
    let tag = unique("compose");
    let ns = namespace(&client, &tag, &[("zt-test", &tag)]).await;
    let (a, b) = (format!("{tag}-a"), format!("{tag}-b"));
    let _cleanup = Cleanup(vec![a.clone(), b.clone()]);
    apply(&restricted(&a, &tag, "Enforce", ""));
    apply(&format!(
        "apiVersion: zerotrust.dev/v1alpha1\nkind: SecurityBaseline\nmetadata: {{name: {b}}}\nspec:\n  namespaceSelector: {{matchLabels: {{zt-test: {tag}}}}}\n  networkPolicy: {{defaultDeny: [Ingress]}}\n  podSecurity: {{enforce: baseline, audit: restricted}}\n"
    ));
    eventually(WAIT, "both baselines' objects", || async {
        let found = generated(&client, &ns.name).await;
        let labels = ns_labels(&client, &ns.name).await;
        (found.contains(&format!("NetworkPolicy/zt-{a}-default-deny"))
            && found.contains(&format!("NetworkPolicy/zt-{b}-default-deny"))
            && labels
                .get("pod-security.kubernetes.io/audit")
                .is_some_and(|v| v == "restricted"))
        .then_some(())
    })
    .await;
    let labels = ns_labels(&client, &ns.name).await;
    assert_eq!(
        labels["pod-security.kubernetes.io/enforce"], "restricted",
        "the most restrictive level wins"
    );
    for baseline in [&a, &b] {
        wait_status(&client, baseline, WAIT, "compliant", |s| {
            s.compliant_namespaces == 1
        })
        .await;
    }
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

#[tokio::test]
async fn a_semantically_invalid_baseline_is_reported_and_touches_nothing() {
    operator();
    let client = client().await;
    let tag = unique("invalid");
    let ns = namespace(&client, &tag, &[("zt-test", &tag)]).await;
    let name = tag.clone();
    let _cleanup = Cleanup(vec![name.clone()]);
    // Passes the schema (operators are free text there) but not the engine.
    apply(&format!(
        "apiVersion: zerotrust.dev/v1alpha1\nkind: SecurityBaseline\nmetadata: {{name: {name}}}\nspec:\n  namespaceSelector: {{matchExpressions: [{{key: zt-test, operator: Has, values: [{tag}]}}]}}\n  networkPolicy: {{defaultDeny: [Ingress]}}\n"
    ));
    let s = wait_status(&client, &name, WAIT, "InvalidSpec", |s| {
        ready(s) == Some("False")
    })
    .await;
    let condition = s.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(condition.reason, "InvalidSpec");
    assert!(
        condition
            .message
            .contains("spec.namespaceSelector.matchExpressions[0].operator"),
        "{}",
        condition.message
    );
    assert!(generated(&client, &ns.name).await.is_empty());
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
