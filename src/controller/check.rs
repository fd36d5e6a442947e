//! `check`: one read-only pass over the cluster with the operator's own engine, for CI pipelines
//! and people who want an answer without running the operator.

use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{ApiResource, DynamicObject, ListParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::apply::exists;
use super::decode::decode;
use super::index::{NamespacedIndex, strip_metadata};
use super::{Caches, Error};
use crate::api::SecurityBaseline;
use crate::engine::{Drift, DriftReason, InvalidSpec, Kind, MANAGED_SELECTOR, render, validate};

/// What `check` found.
#[derive(Debug, Default)]
pub struct Report {
    /// Drift per namespace, in namespace order.
    pub drift: Vec<(String, Drift)>,
    /// Namespaces checked (selected by at least one baseline).
    pub namespaces: usize,
    /// Baselines the API server accepted but the engine refuses.
    pub invalid: Vec<InvalidSpec>,
}

async fn list<K>(client: &Client, params: &ListParams) -> Result<Vec<K>, Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let mut items = Api::<K>::all(client.clone()).list(params).await?.items;
    for item in &mut items {
        strip_metadata(item.meta_mut(), false);
    }
    Ok(items)
}

async fn load<K>(
    client: &Client,
    index: &NamespacedIndex<K>,
    params: &ListParams,
) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::Serialize + DeserializeOwned + std::fmt::Debug,
{
    index.load(list::<K>(client, params).await?);
    Ok(())
}

/// Compares every selected namespace with its baselines (only `only`, if given). Writes nothing.
pub async fn check(
    client: &Client,
    only: Option<&str>,
    operator_namespace: &str,
) -> Result<Report, Error> {
    let managed = ListParams::default().labels(MANAGED_SELECTOR);
    let caches = Caches::new();
    load::<NetworkPolicy>(client, &caches.network_policies, &managed).await?;
    load::<Role>(client, &caches.roles, &managed).await?;
    load::<RoleBinding>(client, &caches.role_bindings, &managed).await?;
    load::<ResourceQuota>(client, &caches.quotas, &managed).await?;
    load::<LimitRange>(client, &caches.limit_ranges, &managed).await?;
    let defaults = ListParams::default().fields("metadata.name=default");
    load::<ServiceAccount>(client, &caches.service_accounts, &defaults).await?;

    let mut report = Report::default();
    let mut valid = Vec::new();
    // One by one, as the operator reads them: a baseline that does not decode is reported as
    // invalid rather than failing the whole check.
    let raw: Api<DynamicObject> =
        Api::all_with(client.clone(), &ApiResource::erase::<SecurityBaseline>(&()));
    for object in raw.list(&ListParams::default()).await?.items {
        if only.is_some_and(|name| object.name_any() != name) {
            continue;
        }
        match decode(&object)
            .map_err(|undecodable| undecodable.error)
            .and_then(|b| validate(&b))
        {
            Ok(v) => valid.push(v),
            Err(invalid) => report.invalid.push(invalid),
        }
    }
    let mut namespaces = list::<Namespace>(client, &ListParams::default()).await?;
    namespaces.sort_by_key(|ns| ns.name_any());
    for namespace in namespaces
        .iter()
        .filter(|ns| ns.metadata.deletion_timestamp.is_none())
    {
        let name = namespace.name_any();
        let desired = render(&valid, &name, namespace.labels(), operator_namespace);
        if desired.is_empty() {
            continue;
        }
        report.namespaces += 1;
        for mut d in crate::engine::diff(&desired, &caches.live_state(namespace)) {
            if d.reason == DriftReason::Missing
                && !matches!(d.kind, Kind::Namespace | Kind::ServiceAccount)
                && exists(client, &name, d.kind, &d.name).await?
            {
                d.reason = DriftReason::Conflict;
            }
            report.drift.push((name.clone(), d));
        }
    }
    Ok(report)
}
