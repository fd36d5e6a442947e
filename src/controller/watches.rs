//! The watches that feed the caches and the work queue: Namespaces (the work items), one
//! label-filtered watch per generated kind, the `default` ServiceAccounts, and SecurityBaselines
//! (decoded one by one). Each retries on its own short back-off.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt, future};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{ApiResource, DynamicObject};
use kube::core::{ObjectMeta, PartialObjectMeta};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::utils::ResetTimerBackoff;
use kube::runtime::watcher::ExponentialBackoff;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::Notify;
use tracing::warn;

use super::caches::{Caches, summary_event};
use super::decode::decode_event;
use super::held_namespace::HeldNamespace;
use super::held_object::strip_metadata;
use super::http::Health;
use super::index::NamespacedIndex;
use crate::api::SecurityBaseline;
use crate::engine::{Kind, MANAGED_SELECTOR};

/// A stream of one kind's touched objects, untyped.
type Touched = BoxStream<'static, Result<DynamicObject, watcher::Error>>;

/// Everything the watches deliver, for the controller (or an in-process test) to drive.
pub struct Inputs {
    /// Namespaces as they change: the work items.
    pub namespaces: BoxStream<'static, Result<HeldNamespace, watcher::Error>>,
    /// Each generated kind's touched objects, already held in the caches.
    pub generated: Vec<(Kind, Touched)>,
    /// The served admission kinds' touched objects, already held in the caches; each event also
    /// wakes the admission keeper.
    pub admission: Vec<Touched>,
    /// Touched `default` ServiceAccounts, already held in the caches.
    pub service_accounts: BoxStream<'static, Result<ServiceAccount, watcher::Error>>,
    /// Every touched NetworkPolicy; others' are held summarised in the caches.
    pub network_policies: BoxStream<'static, Result<NetworkPolicy, watcher::Error>>,
    /// One item per baseline change that may change any namespace's desired state.
    pub baseline_changes: BoxStream<'static, ()>,
}

/// Starts every watch; their streams fill `caches` and the two stores' writers as they are polled.
pub fn watch(
    client: &Client,
    caches: &Caches,
    health: &Arc<Health>,
    namespaces: reflector::store::Writer<HeldNamespace>,
    baselines: reflector::store::Writer<SecurityBaseline>,
    admission_changed: Arc<Notify>,
) -> Inputs {
    let labelled = |kind: Kind| {
        let api = Api::all_with(client.clone(), &kind.api_resource());
        let config = watcher::Config::default().labels(MANAGED_SELECTOR);
        into_index(api, config, caches.generated(kind), health)
    };
    let generated = Kind::GENERATED
        .iter()
        .map(|&kind| (kind, labelled(kind)))
        .collect();
    let admission = caches
        .kinds()
        .filter(|kind| kind.cluster_scoped())
        .map(|kind| {
            let wake = admission_changed.clone();
            labelled(kind).inspect(move |_| wake.notify_one()).boxed()
        })
        .collect();
    let service_accounts = into_index(
        Api::<ServiceAccount>::all(client.clone()),
        watcher::Config::default().fields("metadata.name=default"),
        caches.service_accounts(),
        health,
    );
    Inputs {
        namespaces: watch_namespaces(client, namespaces, health),
        generated,
        admission,
        service_accounts,
        network_policies: watch_network_policies(client, caches.network_policies(), health),
        baseline_changes: watch_baselines(client, baselines, admission_changed),
    }
}

/// How a failed watch retries: from 250 ms, doubling to 4 s (up to twice that with jitter), back
/// to the start after 30 s without errors. kube's default grows to a minute and resets only after
/// two, so after an API server restart (connection errors, then a 410 on the first watch) the
/// operator would stay blind for minutes; a handful of lists every few seconds costs far less.
pub fn watch_backoff() -> ResetTimerBackoff<ExponentialBackoff> {
    let exponential = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(250))
        .with_max_delay(Duration::from_secs(4))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times();
    ResetTimerBackoff::new(exponential.into(), Duration::from_secs(30))
}

/// One shared watch of `K`, feeding `index`; yields each touched object.
fn into_index<K>(
    api: Api<K>,
    config: watcher::Config,
    index: &Arc<NamespacedIndex>,
    health: &Arc<Health>,
) -> BoxStream<'static, Result<K, watcher::Error>>
where
    K: Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
    K: Send + Sync + 'static,
{
    let health = health.clone();
    index
        .feed(
            watcher(api, config)
                .backoff(watch_backoff())
                .modify(|o: &mut K| strip_metadata(o.meta_mut(), false)),
        )
        .inspect(move |event| health.set_api_failing(event.is_err()))
        .touched_objects()
        .filter_map(|object| future::ready(retried_here(object)))
        .boxed()
}

/// Every NetworkPolicy in the cluster, ours included, summarised into `index` for the Widened
/// finding (bounded, never held whole).
fn watch_network_policies(
    client: &Client,
    index: &Arc<NamespacedIndex>,
    health: &Arc<Health>,
) -> BoxStream<'static, Result<NetworkPolicy, watcher::Error>> {
    let health = health.clone();
    let index = index.clone();
    watcher(
        Api::<NetworkPolicy>::all(client.clone()),
        watcher::Config::default(),
    )
    .backoff(watch_backoff())
    .inspect(move |event| {
        health.set_api_failing(event.is_err());
        if let Ok(event) = event {
            index.apply(&summary_event(event));
        }
    })
    .touched_objects()
    .filter_map(|object| future::ready(retried_here(object)))
    .boxed()
}

fn watch_namespaces(
    client: &Client,
    writer: reflector::store::Writer<HeldNamespace>,
    health: &Arc<Health>,
) -> BoxStream<'static, Result<HeldNamespace, watcher::Error>> {
    let health = health.clone();
    watcher(
        Api::<HeldNamespace>::all(client.clone()),
        watcher::Config::default(),
    )
    .backoff(watch_backoff())
    .reflect(writer)
    .inspect(move |event| health.set_api_failing(event.is_err()))
    .applied_objects()
    .filter_map(|namespace| future::ready(retried_here(namespace)))
    .boxed()
}

/// Baselines, decoded one by one into the store. Yields on a change that may change what any
/// namespace must hold (generation or deletion); status writes change neither, so the operator's
/// own status writes do not re-queue every namespace.
fn watch_baselines(
    client: &Client,
    writer: reflector::store::Writer<SecurityBaseline>,
    admission_changed: Arc<Notify>,
) -> BoxStream<'static, ()> {
    let mut seen: HashMap<String, (Option<i64>, bool)> = HashMap::new();
    let raw: Api<DynamicObject> =
        Api::all_with(client.clone(), &ApiResource::erase::<SecurityBaseline>(&()));
    watcher(raw, watcher::Config::default())
        .backoff(watch_backoff())
        .map(|event| event.map(decode_event))
        .modify(|b: &mut SecurityBaseline| strip_metadata(&mut b.metadata, false))
        .reflect(writer)
        .filter_map(move |event| {
            let changed = match &event {
                Ok(watcher::Event::Apply(b)) | Ok(watcher::Event::InitApply(b)) => {
                    let key = (
                        b.metadata.generation,
                        b.metadata.deletion_timestamp.is_some(),
                    );
                    seen.insert(b.name_any(), key) != Some(key)
                }
                Ok(watcher::Event::Delete(b)) => {
                    seen.remove(&b.name_any());
                    true
                }
                Ok(watcher::Event::InitDone) => true,
                _ => false,
            };
            if changed {
                admission_changed.notify_one();
            }
            future::ready(changed.then_some(()))
        })
        .boxed()
}

/// Every report's metadata (never a report itself: a tenant decides how large one is), yielding
/// those `touched` says concern what we published, as objects naming only their namespace and
/// name: an edit or delete of our report is put right within a second, as for every object we own.
pub fn watch_reports(
    client: &Client,
    resource: &ApiResource,
    touched: impl Fn(&ObjectMeta, bool) -> bool + Send + 'static,
) -> Touched {
    let api = Api::<PartialObjectMeta<DynamicObject>>::all_with(client.clone(), resource);
    watcher(api, watcher::Config::default())
        .backoff(watch_backoff())
        .filter_map(move |event| {
            let report = match event {
                Ok(watcher::Event::Apply(m) | watcher::Event::InitApply(m)) => {
                    touched(&m.metadata, false).then_some(m)
                }
                Ok(watcher::Event::Delete(m)) => touched(&m.metadata, true).then_some(m),
                Ok(_) => None,
                Err(e) => {
                    warn!(error = %e, "report watch failed; retrying");
                    None
                }
            };
            future::ready(report.map(|m| {
                Ok(DynamicObject {
                    types: None,
                    metadata: m.metadata,
                    data: serde_json::Value::Null,
                })
            }))
        })
        .boxed()
}

/// Passes on what a watch delivered; its errors stop here. Each watch retries on its own
/// [`watch_backoff`]; an error that reached the Controller would also trip kube's trigger
/// backoff, which pauses every watch feeding the queue for up to a minute.
fn retried_here<K>(event: Result<K, watcher::Error>) -> Option<Result<K, watcher::Error>> {
    match event {
        Ok(object) => Some(Ok(object)),
        Err(e) => {
            warn!(error = %e, "watch failed; retrying");
            None
        }
    }
}

/// The work item an object's event re-queues: its namespace.
pub fn namespace_of<K: Resource>(object: K) -> Option<ObjectRef<HeldNamespace>> {
    object.meta().namespace.as_deref().map(ObjectRef::new)
}

/// Drains a stream in the background (for an in-process operator, which has no work queue).
pub fn drain<S: Stream + Send + 'static>(stream: S) -> tokio::task::JoinHandle<()> {
    tokio::spawn(stream.for_each(|_| future::ready(())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_watch_retries_within_seconds() {
        let delays: Vec<Duration> = watch_backoff().take(10).collect();
        assert_eq!(delays.len(), 10, "retries forever");
        // Jitter adds up to the delay itself.
        assert!(delays[0] >= Duration::from_millis(250) && delays[0] <= Duration::from_millis(500));
        assert!(delays[5] >= Duration::from_secs(4), "{delays:?}");
        assert!(
            delays.iter().all(|d| *d <= Duration::from_secs(8)),
            "{delays:?}"
        );
    }
}
