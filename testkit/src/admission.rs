//! Waiting for a baseline's admission policies to be in force: the API server picks policies up
//! through its own informer, a moment after they exist, so tests probe with dry runs (which change
//! nothing) until the API server answers as the policy says.

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};

use crate::poll::eventually;

const WAIT: Duration = Duration::from_secs(30);

/// Waits until a namespace created with the label `zt-test=<selector>` comes back from the API
/// server with Pod Security labels (the mutating policy in force).
pub async fn wait_mutation_in_force(client: &Client, selector: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let probe = Namespace {
        metadata: ObjectMeta {
            name: Some(format!("{selector}-probe")),
            labels: Some([("zt-test".to_string(), selector.to_string())].into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    eventually(WAIT, "the Pod Security mutation in force", || async {
        let created = namespaces.create(&dry_run, &probe).await.ok()?;
        created
            .labels()
            .contains_key("pod-security.kubernetes.io/enforce")
            .then_some(())
    })
    .await;
}

/// Waits until the API server refuses `as_client` annotating the NetworkPolicy `name` in
/// `namespace` (the tamper protection in force). An edit that leaves our labels alone: a delete
/// would be refused by the ownership protection as well, which the API server may pick up first.
pub async fn wait_tamper_refused(as_client: &Client, namespace: &str, name: &str) {
    let policies: Api<NetworkPolicy> = Api::namespaced(as_client.clone(), namespace);
    let dry_run = PatchParams {
        dry_run: true,
        ..Default::default()
    };
    let annotated = Patch::Merge(serde_json::json!({
        "metadata": {"annotations": {"zerotrust.dev/probe": "x"}}
    }));
    wait_refused("the tamper protection in force", || {
        policies.patch(name, &dry_run, &annotated)
    })
    .await;
}

/// Waits until the API server refuses `as_client` creating `policy` in `namespace` (the
/// widening refusal in force: its own policy and binding, picked up apart from the tamper one).
pub async fn wait_widening_refused(as_client: &Client, namespace: &str, policy: &NetworkPolicy) {
    let policies: Api<NetworkPolicy> = Api::namespaced(as_client.clone(), namespace);
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    wait_refused("the widening refusal in force", || {
        policies.create(&dry_run, policy)
    })
    .await;
}

/// Waits until `dry_run`, a request that changes nothing, is refused by the API server (an
/// answer it gave, not a connection that failed).
async fn wait_refused<T, F, Fut>(what: &str, dry_run: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    eventually(WAIT, what, || async {
        matches!(dry_run().await, Err(kube::Error::Api(_))).then_some(())
    })
    .await;
}
