//! The operator end to end on the real control plane: the three user stories (applying a baseline,
//! onboarding new namespaces, drift shown and repaired), both modes, composition, conflicts,
//! deletion policy, selector changes, invalid specs and the `check` command.
//!
//! Every test uses its own label value, so its baselines select only its own namespaces.
//!
//! One test binary (`cargo test --test operator`), a module per story: `onboarding`, `drift`,
//! `audit` (and `check`), `edits` and `deletion`. The helpers they share are here.

mod audit;
mod deletion;
mod drift;
mod edits;
mod onboarding;
mod unclaimed;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    Event as CoreEvent, LimitRange, Namespace, ResourceQuota, ServiceAccount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use zerotrust_operator::api::SecurityBaselineStatus;
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
