//! What the operator knows of the cluster besides Namespaces and baselines: one index per
//! generated kind and one of `default` ServiceAccounts, filled by the watches and by our own
//! writes, read as a namespace's [`LiveState`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::runtime::watcher;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::apply::Written;
use super::held_namespace::HeldNamespace;
use super::held_object::{Cacheable, Held, strip_metadata};
use super::index::{NamespacedIndex, is_newer};
use super::metrics::Metrics;
use crate::engine::{
    DriftReason, Kind, LiveState, Object, Ownership, PolicySummary, applied_by_us, ownership,
    summarize,
};

/// The caches a reconcile reads.
pub struct Caches {
    /// One index per kind in [`Kind::GENERATED`], and per admission kind the API server serves
    /// (cluster-scoped: held under the namespace "").
    generated: BTreeMap<Kind, Arc<NamespacedIndex>>,
    service_accounts: Arc<NamespacedIndex>,
    /// Every NetworkPolicy, ours included, summarised ([`CachedSummary`]): the engine judges
    /// whose it is by content, never by labels.
    network_policies: Arc<NamespacedIndex>,
    /// Namespaces as our label applies returned them, until the watch catches up.
    fresh_namespaces: Mutex<HashMap<String, Arc<HeldNamespace>>>,
}

impl Caches {
    /// Caches for the generated kinds and the admission kinds in `admission`.
    pub fn new(metrics: &Metrics, admission: &[Kind]) -> Self {
        let index = |kind: Kind, held| {
            NamespacedIndex::new(kind.as_str(), held, metrics.cache(kind, kind.as_str()))
        };
        Caches {
            generated: Kind::GENERATED
                .iter()
                .chain(admission)
                .map(|&k| (k, index(k, Held::Generated)))
                .collect(),
            service_accounts: index(Kind::ServiceAccount, Held::ServiceAccount),
            network_policies: NamespacedIndex::new(
                "NetworkPolicy summary",
                Held::AsIs,
                metrics.cache(Kind::NetworkPolicy, "NetworkPolicySummary"),
            ),
            fresh_namespaces: Mutex::new(HashMap::new()),
        }
    }

    /// The index of a generated `kind`.
    pub fn generated(&self, kind: Kind) -> &Arc<NamespacedIndex> {
        self.generated
            .get(&kind)
            .unwrap_or_else(|| panic!("{kind} is not cached"))
    }

    /// The kinds cached, namespaced and cluster-scoped.
    pub fn kinds(&self) -> impl Iterator<Item = Kind> + '_ {
        self.generated.keys().copied()
    }

    /// Every cached admission policy and binding that carries our labels.
    pub fn admission_objects(&self) -> Vec<Object> {
        self.generated
            .iter()
            .filter(|(kind, _)| kind.cluster_scoped())
            .flat_map(|(&kind, index)| index.in_namespace("", |json| Object::from_json(kind, json)))
            .collect()
    }

    pub fn service_accounts(&self) -> &Arc<NamespacedIndex> {
        &self.service_accounts
    }

    pub fn network_policies(&self) -> &Arc<NamespacedIndex> {
        &self.network_policies
    }

    /// True once every watch has delivered its first full list.
    pub fn ready(&self) -> bool {
        self.generated.values().all(|i| i.is_ready())
            && self.service_accounts.is_ready()
            && self.network_policies.is_ready()
    }

    /// True when `found`, a same-named object our watch does not show, is ours all the same:
    /// it has the uid one of ours had when it left the watch (its labels were taken off), or
    /// our field manager's entry.
    pub fn recognise(&self, namespace: &str, found: &Object) -> bool {
        let departed = self
            .generated(found.kind())
            .departed_uid(namespace, found.name());
        (departed.is_some() && departed == found.meta().uid) || applied_by_us(found.meta())
    }

    /// What a same-named object our watch does not show is: ours relabelled ([`Self::recognise`]),
    /// or someone else's, a conflict. The one place that decides it, for the operator and `check`.
    pub fn found_reason(&self, namespace: &str, found: &Object) -> DriftReason {
        if self.recognise(namespace, found) {
            DriftReason::Relabelled
        } else {
            DriftReason::Conflict
        }
    }

    /// How many cached objects belong to `baseline`.
    pub fn owned_by(&self, baseline: &str) -> usize {
        let ours = |meta: &ObjectMeta| ownership(meta) == Ownership::Baseline(baseline.to_string());
        self.generated.values().map(|i| i.count(ours)).sum()
    }

    /// What the caches hold for `namespace`.
    pub fn live_state(&self, namespace: &HeldNamespace) -> LiveState {
        let name = namespace.name_any();
        let objects = self
            .generated
            .iter()
            .filter(|(kind, _)| !kind.cluster_scoped())
            .flat_map(|(&kind, index)| {
                index.in_namespace(&name, |json| Object::from_json(kind, json))
            })
            .collect();
        let relabelled = self
            .generated
            .iter()
            .flat_map(|(&kind, index)| index.relabelled(&name).into_iter().map(move |n| (kind, n)))
            .collect();
        let network_policies = self
            .network_policies
            .in_namespace(&name, |json| serde_json::from_slice::<CachedSummary>(json))
            .into_iter()
            .map(|s| s.policy)
            .collect();
        LiveState {
            namespace_labels: namespace.labels().clone(),
            namespace_uid: namespace.metadata.uid.clone(),
            default_service_account: self
                .service_accounts
                .in_namespace(&name, |json| serde_json::from_slice::<ServiceAccount>(json))
                .into_iter()
                .next(),
            objects,
            owned_namespace_labels: namespace.owned_label_keys(),
            relabelled,
            network_policies,
        }
    }

    /// Holds what we just wrote in `namespace`, so the next reconcile does not mistake cache lag
    /// for drift.
    pub fn write_through(&self, namespace: &str, written: Written) {
        match written {
            Written::Object(mut object) => {
                if let Object::NetworkPolicy(policy) = &*object {
                    self.network_policies
                        .write_through(&CachedSummary::of(policy));
                }
                strip_metadata(object.meta_mut(), false);
                self.generated(object.kind()).write_through(&*object);
            }
            Written::ServiceAccount(mut sa) => {
                strip_metadata(&mut sa.metadata, false);
                self.service_accounts.write_through(&sa);
            }
            Written::Deleted { kind, name } => {
                if kind == Kind::NetworkPolicy {
                    self.network_policies.forget(namespace, &name);
                }
                self.generated(kind).forget(namespace, &name)
            }
            Written::Namespace(ns) => {
                self.fresh_namespaces
                    .lock()
                    .insert(namespace.to_string(), Arc::new(HeldNamespace::from(ns)));
            }
        }
    }

    /// The newest Namespace we know: the watched one, or the one our last label apply returned.
    /// `watched` must come from the watch's store: once the store holds our write, the copy of
    /// it is let go. (Given our own copy back, it would be let go while the store still held an
    /// older version, and the next pass would read that: a namespace just onboarded would look
    /// unlabelled, and be "repaired".)
    pub fn newest_namespace(&self, watched: Arc<HeldNamespace>) -> Arc<HeldNamespace> {
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

    /// The newest Namespace we know, `known` or the one our last label apply returned, keeping
    /// the latter either way: for a pass that reads the namespace again after its own writes.
    pub fn latest_namespace(&self, known: Arc<HeldNamespace>) -> Arc<HeldNamespace> {
        match self.fresh_namespaces.lock().get(&known.name_any()) {
            Some(ours) if is_newer(&ours.metadata, &known.metadata) => ours.clone(),
            _ => known,
        }
    }
}

/// What the NetworkPolicy summary cache holds of a policy: identity and the bounded summary the
/// Widened finding needs, never the policy itself (a tenant cannot inflate it).
#[derive(Serialize, Deserialize)]
pub struct CachedSummary {
    metadata: ObjectMeta,
    policy: PolicySummary,
}

impl Cacheable for CachedSummary {
    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }
}

impl CachedSummary {
    pub fn of(policy: &NetworkPolicy) -> CachedSummary {
        let meta = &policy.metadata;
        CachedSummary {
            metadata: ObjectMeta {
                name: meta.name.clone(),
                namespace: meta.namespace.clone(),
                uid: meta.uid.clone(),
                resource_version: meta.resource_version.clone(),
                ..ObjectMeta::default()
            },
            policy: summarize(policy),
        }
    }
}

/// A watch event of all NetworkPolicies as the summary cache takes it: every policy, ours too, so
/// that labels (which anyone can write) never take a policy out of the Widened judgement.
pub fn summary_event(event: &watcher::Event<NetworkPolicy>) -> watcher::Event<CachedSummary> {
    match event {
        watcher::Event::Apply(p) => watcher::Event::Apply(CachedSummary::of(p)),
        watcher::Event::Delete(p) => watcher::Event::Delete(CachedSummary::of(p)),
        watcher::Event::InitApply(p) => watcher::Event::InitApply(CachedSummary::of(p)),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Namespace;
    use serde_json::json;

    use super::*;

    fn namespace(version: &str, labels: serde_json::Value) -> Namespace {
        serde_json::from_value(json!({
            "metadata": {"name": "team-a", "uid": "u-1", "resourceVersion": version, "labels": labels}
        }))
        .unwrap()
    }

    #[test]
    fn every_network_policy_is_summarised_whatever_its_labels_and_managers_say() {
        let forged: NetworkPolicy = serde_json::from_value(json!({
            "metadata": {"name": "zt-nobody-allow", "namespace": "team-a", "uid": "u-2",
                "labels": {"app.kubernetes.io/managed-by": "zerotrust-operator",
                           "zerotrust.dev/baseline": "nobody"},
                "managedFields": [{"manager": "zerotrust-operator", "operation": "Apply"}]},
            "spec": {"podSelector": {}, "ingress": [{}], "policyTypes": ["Ingress"]},
        }))
        .unwrap();
        assert_eq!(
            ownership(&forged.metadata),
            Ownership::Baseline("nobody".into())
        );
        let caches = Caches::new(&Metrics::new(), &[]);
        caches
            .network_policies()
            .apply(&summary_event(&watcher::Event::Apply(forged.clone())));
        let held = HeldNamespace::from(namespace("1", json!({})));
        let live = caches.live_state(&held);
        assert_eq!(live.network_policies.len(), 1);
        assert_eq!(live.network_policies[0].name, "zt-nobody-allow");
        assert!(
            !live.network_policies[0].ingress.is_empty(),
            "held as opening"
        );
        caches
            .network_policies()
            .apply(&summary_event(&watcher::Event::Delete(forged)));
        assert!(caches.live_state(&held).network_policies.is_empty());
    }

    #[test]
    fn our_label_write_is_read_until_the_store_holds_it() {
        let caches = Caches::new(&Metrics::new(), &[]);
        let stale = Arc::new(HeldNamespace::from(namespace("5", json!({}))));
        caches.write_through(
            "team-a",
            Written::Namespace(namespace("7", json!({"onboarded.zerotrust.dev/b": "true"}))),
        );
        let ours = caches.newest_namespace(stale.clone());
        assert_eq!(ours.resource_version().as_deref(), Some("7"));
        // The pass reads its namespace again after its writes: our copy stays...
        let again = caches.latest_namespace(ours.clone());
        assert_eq!(again.resource_version().as_deref(), Some("7"));
        // ...so the next pass, handed the store's older version, still reads our write.
        let next = caches.newest_namespace(stale.clone());
        assert_eq!(next.resource_version().as_deref(), Some("7"));
        // Once the store holds it, the copy goes; a stale version is then all there is.
        let caught_up = Arc::new(HeldNamespace::from(namespace("7", json!({}))));
        assert_eq!(
            caches
                .newest_namespace(caught_up)
                .resource_version()
                .as_deref(),
            Some("7")
        );
        assert_eq!(
            caches.newest_namespace(stale).resource_version().as_deref(),
            Some("5")
        );
    }
}
