//! Watches what the cluster holds and judges, with the operator's own engine, whether a namespace
//! is compliant: the benchmark's clock stops on what an observer of the API server sees.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;

use zerotrust_operator::engine::{
    DEFAULT_OPERATOR_NAMESPACE, Environment, Kind, LiveState, MANAGED_SELECTOR, Object,
    ValidBaseline, diff, owned_label_keys, render,
};

/// Reflector stores of everything a baseline writes. They keep `managedFields`: ownership (which
/// field manager applied an object) is part of compliance.
pub struct Tracker {
    namespaces: Store<Namespace>,
    network_policies: Store<NetworkPolicy>,
    roles: Store<Role>,
    role_bindings: Store<RoleBinding>,
    quotas: Store<ResourceQuota>,
    limit_ranges: Store<LimitRange>,
    service_accounts: Store<ServiceAccount>,
    tasks: Vec<JoinHandle<()>>,
}

fn reflect<K>(client: &Client, config: watcher::Config, tasks: &mut Vec<JoinHandle<()>>) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync,
    K: 'static,
{
    let (store, writer) = reflector::store();
    let stream = watcher(Api::<K>::all(client.clone()), config)
        .default_backoff()
        .reflect(writer)
        .for_each(|_| futures::future::ready(()));
    tasks.push(tokio::spawn(stream));
    store
}

impl Tracker {
    /// Starts the watches; namespaces are those matching `namespace_labels`.
    pub async fn start(client: &Client, namespace_labels: &str) -> Tracker {
        let mut tasks = Vec::new();
        let managed = || watcher::Config::default().labels(MANAGED_SELECTOR);
        let tracker = Tracker {
            namespaces: reflect(
                client,
                watcher::Config::default().labels(namespace_labels),
                &mut tasks,
            ),
            network_policies: reflect(client, managed(), &mut tasks),
            roles: reflect(client, managed(), &mut tasks),
            role_bindings: reflect(client, managed(), &mut tasks),
            quotas: reflect(client, managed(), &mut tasks),
            limit_ranges: reflect(client, managed(), &mut tasks),
            service_accounts: reflect(
                client,
                watcher::Config::default().fields("metadata.name=default"),
                &mut tasks,
            ),
            tasks,
        };
        for ready in [
            tracker.namespaces.wait_until_ready().await.is_ok(),
            tracker.network_policies.wait_until_ready().await.is_ok(),
            tracker.roles.wait_until_ready().await.is_ok(),
            tracker.role_bindings.wait_until_ready().await.is_ok(),
            tracker.quotas.wait_until_ready().await.is_ok(),
            tracker.limit_ranges.wait_until_ready().await.is_ok(),
            tracker.service_accounts.wait_until_ready().await.is_ok(),
        ] {
            assert!(ready, "a tracker watch stopped before its first list");
        }
        tracker
    }

    /// The watched namespace, if the watch has delivered it.
    pub fn namespace(&self, name: &str) -> Option<Arc<Namespace>> {
        self.namespaces.get(&ObjectRef::new(name))
    }

    /// Whether `namespace` has its default ServiceAccount yet (the controller-manager makes it).
    pub fn has_default_service_account(&self, namespace: &str) -> bool {
        self.service_accounts
            .get(&ObjectRef::new("default").within(namespace))
            .is_some()
    }

    /// The live object of `kind` named `name` in `namespace`.
    pub fn object(&self, kind: Kind, namespace: &str, name: &str) -> Option<Object> {
        fn get<K: Resource<DynamicType = ()> + Clone>(
            store: &Store<K>,
            namespace: &str,
            name: &str,
        ) -> Option<K> {
            store
                .get(&ObjectRef::new(name).within(namespace))
                .map(|o| (*o).clone())
        }
        Some(match kind {
            Kind::NetworkPolicy => {
                Object::NetworkPolicy(get(&self.network_policies, namespace, name)?)
            }
            Kind::Role => Object::Role(get(&self.roles, namespace, name)?),
            Kind::RoleBinding => Object::RoleBinding(get(&self.role_bindings, namespace, name)?),
            Kind::ResourceQuota => Object::ResourceQuota(get(&self.quotas, namespace, name)?),
            Kind::LimitRange => Object::LimitRange(get(&self.limit_ranges, namespace, name)?),
            Kind::Namespace
            | Kind::ServiceAccount
            | Kind::ValidatingAdmissionPolicy
            | Kind::ValidatingAdmissionPolicyBinding
            | Kind::MutatingAdmissionPolicy
            | Kind::MutatingAdmissionPolicyBinding => return None,
        })
    }

    /// True when the engine finds no drift between `baseline`'s rendering for `namespace` and what
    /// the watches show, and the namespace is selected at all.
    pub fn compliant(&self, baseline: &ValidBaseline, namespace: &str) -> bool {
        let Some(ns) = self.namespace(namespace) else {
            return false;
        };
        let labels: BTreeMap<String, String> = ns.labels().clone();
        let desired = render(
            std::slice::from_ref(baseline),
            namespace,
            &labels,
            &Environment::new(DEFAULT_OPERATOR_NAMESPACE),
        );
        if desired.is_empty() {
            return false;
        }
        let live = LiveState {
            namespace_labels: labels,
            default_service_account: self
                .service_accounts
                .get(&ObjectRef::new("default").within(namespace))
                .map(|sa| (*sa).clone()),
            objects: desired
                .objects
                .iter()
                .filter_map(|d| self.object(d.object.kind(), namespace, d.object.name()))
                .collect(),
            owned_namespace_labels: owned_label_keys(&ns.metadata),
            ..LiveState::default()
        };
        diff(&desired, &live).is_empty()
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
