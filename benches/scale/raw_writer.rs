//! The physical-limit baseline: a plain client that server-side-applies exactly what the engine
//! renders for each namespace, as fast as the API server takes it, with no watches, caches,
//! diffing or status. The operator can only be slower; the ratio says by how much.

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use zerotrust_operator::engine::{
    DEFAULT_OPERATOR_NAMESPACE, Environment, Object, ValidBaseline, render,
};

/// Its own field manager, so the operator never mistakes these objects for its own.
const RAW_MANAGER: &str = "zerotrust-bench-raw";

async fn apply<K>(api: Api<K>, object: &K) -> Result<(), kube::Error>
where
    K: Resource + Serialize + DeserializeOwned + Clone + std::fmt::Debug,
{
    let name = object.meta().name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply(RAW_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .map(|_| ())
}

fn namespaced<K>(client: &Client, namespace: &str) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
{
    Api::namespaced(client.clone(), namespace)
}

/// Everything `baseline` renders for `namespace`, one apply per object, in sequence.
async fn write_namespace(
    client: &Client,
    baseline: &ValidBaseline,
    namespace: &Namespace,
) -> Result<(), kube::Error> {
    let name = namespace.metadata.name.clone().unwrap_or_default();
    let labels = namespace.metadata.labels.clone().unwrap_or_default();
    let desired = render(
        std::slice::from_ref(baseline),
        &name,
        &labels,
        &Environment::new(DEFAULT_OPERATOR_NAMESPACE),
    );
    for d in &desired.objects {
        match &d.object {
            Object::NetworkPolicy(o) => apply(namespaced(client, &name), o).await?,
            Object::Role(o) => apply(namespaced(client, &name), o).await?,
            Object::RoleBinding(o) => apply(namespaced(client, &name), o).await?,
            Object::ResourceQuota(o) => apply(namespaced(client, &name), o).await?,
            Object::LimitRange(o) => apply(namespaced(client, &name), o).await?,
            // Cluster-scoped: never rendered for a namespace.
            Object::ValidatingAdmissionPolicy(_)
            | Object::ValidatingAdmissionPolicyBinding(_)
            | Object::MutatingAdmissionPolicy(_)
            | Object::MutatingAdmissionPolicyBinding(_) => {}
        }
    }
    let psa = desired
        .namespace_labels
        .iter()
        .map(|(k, v)| (k.clone(), v.value.clone()))
        .collect();
    apply(
        Api::<Namespace>::all(client.clone()),
        &desired.namespace_patch(psa),
    )
    .await?;
    if desired.disable_default_token_automount.is_some() {
        apply(
            namespaced::<ServiceAccount>(client, &name),
            &desired.service_account_patch(),
        )
        .await?;
    }
    Ok(())
}

/// Writes every namespace's objects with `concurrency` namespaces in flight; returns the time
/// from the first request to the last response.
pub async fn write_all(
    client: &Client,
    baseline: &ValidBaseline,
    namespaces: &[Namespace],
    concurrency: usize,
) -> Result<Duration, kube::Error> {
    let start = Instant::now();
    futures::stream::iter(namespaces)
        .map(|ns| write_namespace(client, baseline, ns))
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(start.elapsed())
}
