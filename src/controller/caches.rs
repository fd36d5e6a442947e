//! What the operator knows of the cluster besides Namespaces and baselines: one index per
//! generated kind and one of `default` ServiceAccounts, filled by the watches and by our own
//! writes, read as a namespace's [`LiveState`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use parking_lot::Mutex;

use super::apply::Written;
use super::index::{NamespacedIndex, is_newer, strip_metadata};
use super::metrics::Metrics;
use crate::engine::{Kind, LiveState, Object, Ownership, owned_label_keys, ownership};

/// The caches a reconcile reads.
pub struct Caches {
    /// One index per kind in [`Kind::GENERATED`].
    generated: BTreeMap<Kind, Arc<NamespacedIndex>>,
    service_accounts: Arc<NamespacedIndex>,
    /// Namespaces as our label applies returned them, until the watch catches up.
    fresh_namespaces: Mutex<HashMap<String, Arc<Namespace>>>,
}

impl Caches {
    pub fn new(metrics: &Metrics) -> Self {
        let index = |kind: Kind| NamespacedIndex::new(kind.as_str(), metrics.cache_dropped(kind));
        Caches {
            generated: Kind::GENERATED.iter().map(|&k| (k, index(k))).collect(),
            service_accounts: index(Kind::ServiceAccount),
            fresh_namespaces: Mutex::new(HashMap::new()),
        }
    }

    /// The index of a generated `kind`.
    pub fn generated(&self, kind: Kind) -> &Arc<NamespacedIndex> {
        self.generated
            .get(&kind)
            .unwrap_or_else(|| panic!("{kind} is not in Kind::GENERATED"))
    }

    pub fn service_accounts(&self) -> &Arc<NamespacedIndex> {
        &self.service_accounts
    }

    /// True once every watch has delivered its first full list.
    pub fn ready(&self) -> bool {
        self.generated.values().all(|i| i.is_ready()) && self.service_accounts.is_ready()
    }

    /// How many cached objects belong to `baseline`.
    pub fn owned_by(&self, baseline: &str) -> usize {
        let ours = |meta: &ObjectMeta| ownership(meta) == Ownership::Baseline(baseline.to_string());
        self.generated.values().map(|i| i.count(ours)).sum()
    }

    /// What the caches hold for `namespace`.
    pub fn live_state(&self, namespace: &Namespace) -> LiveState {
        let name = namespace.name_any();
        let objects = self
            .generated
            .iter()
            .flat_map(|(&kind, index)| {
                index.in_namespace(&name, |json| Object::from_json(kind, json))
            })
            .collect();
        LiveState {
            namespace_labels: namespace.labels().clone(),
            default_service_account: self
                .service_accounts
                .in_namespace(&name, |json| serde_json::from_slice::<ServiceAccount>(json))
                .into_iter()
                .next(),
            objects,
            owned_namespace_labels: owned_label_keys(&namespace.metadata),
        }
    }

    /// Holds what we just wrote in `namespace`, so the next reconcile does not mistake cache lag
    /// for drift.
    pub fn write_through(&self, namespace: &str, written: Written) {
        match written {
            Written::Object(mut object) => {
                strip_metadata(object.meta_mut(), false);
                self.generated(object.kind()).write_through(&object);
            }
            Written::ServiceAccount(mut sa) => {
                strip_metadata(&mut sa.metadata, false);
                self.service_accounts.write_through(&sa);
            }
            Written::Deleted { kind, name } => self.generated(kind).forget(namespace, &name),
            Written::Namespace(mut ns) => {
                strip_metadata(&mut ns.metadata, true);
                self.fresh_namespaces
                    .lock()
                    .insert(namespace.to_string(), Arc::new(ns));
            }
        }
    }

    /// The newest Namespace we know: the watched one, or the one our last label apply returned.
    pub fn newest_namespace(&self, watched: Arc<Namespace>) -> Arc<Namespace> {
        let mut fresh = self.fresh_namespaces.lock();
        let name = watched.name_any();
        match fresh.get(&name) {
            Some(ours) if is_newer(&ours.metadata, &watched.metadata) => ours.clone(),
            _ => {
                fresh.remove(&name);
                watched
            }
        }
    }
}
