//! The operator: watches feed caches and a per-namespace work queue; each namespace is reconciled
//! by the engine; a status writer aggregates outcomes into each baseline's status.

mod apply;
mod check;
mod decode;
mod error;
mod http;
mod index;
mod metrics;
mod reconcile;
mod status;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, future};
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::controller::{Action as Requeue, Config as ControllerConfig, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::utils::ResetTimerBackoff;
use kube::runtime::watcher::ExponentialBackoff;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use kube_lease_manager::LeaseManagerBuilder;
use serde::de::DeserializeOwned;
use tracing::{debug, info, warn};

use apply::Written;
pub use check::{Report, check};
use decode::UndecodableBaselines;
pub use error::Error;
use http::Health;
use index::{NamespacedIndex, is_newer, strip_metadata};
pub use metrics::Metrics;
use metrics::{NamespaceStateLabels, ResultLabels};
pub use reconcile::RESYNC;
use status::{Outcomes, compute_status, status_patch};

use crate::api::SecurityBaseline;
use crate::engine::{
    FIELD_MANAGER, InvalidSpec, Kind, LiveState, MANAGED_SELECTOR, Object, Ownership,
    owned_label_keys, ownership, selects, validate,
};

/// How the operator runs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The operator's own namespace, never selected by any baseline.
    pub operator_namespace: String,
    /// Namespaces reconciled at once.
    pub concurrency: u16,
    /// How often baseline statuses are recomputed (and written, if changed).
    pub status_interval: Duration,
    /// Stop when standard input closes: lets a test harness own the process's lifetime.
    pub stop_on_stdin_close: bool,
    /// Where `/metrics`, `/healthz` and `/readyz` are served; `None` serves nothing.
    pub http_addr: Option<SocketAddr>,
    /// Leader election; `None` runs as the only instance.
    pub leader_election: Option<LeaderElection>,
}

/// Only the holder of a `coordination.k8s.io` Lease writes; the others wait to take over.
#[derive(Clone, Debug)]
pub struct LeaderElection {
    pub lease_name: String,
    pub lease_namespace: String,
    /// Unique per process: the pod name in a cluster.
    pub identity: String,
    /// Seconds a lease is valid after its last renewal.
    pub lease_duration: u64,
    /// Seconds before expiry at which the holder renews.
    pub renew_grace: u64,
}

async fn stdin_closed() {
    use tokio::io::AsyncReadExt;
    let mut stdin = tokio::io::stdin();
    let mut buffer = [0u8; 256];
    while matches!(stdin.read(&mut buffer).await, Ok(n) if n > 0) {}
}

/// Completes on SIGTERM, SIGINT, or (if asked) when standard input closes.
async fn stop_requested(stdin: bool) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => future::pending::<()>().await,
        }
    };
    let stdin = async {
        if stdin {
            stdin_closed().await
        } else {
            future::pending().await
        }
    };
    tokio::select! {
        _ = terminate => info!("SIGTERM: stopping"),
        _ = tokio::signal::ctrl_c() => info!("SIGINT: stopping"),
        _ = stdin => info!("standard input closed: stopping"),
    }
}

/// A future that completes once `stop` turns true.
fn on(
    stop: &tokio::sync::watch::Receiver<bool>,
) -> impl Future<Output = ()> + Send + Sync + 'static {
    let mut stop = stop.clone();
    async move {
        let _ = stop.wait_for(|stopped| *stopped).await;
    }
}

/// Runs the operator until asked to stop: serves health and metrics, takes part in leader election
/// if configured, and reconciles while it leads. Losing the lease is an error (the process should
/// restart and stand by); a stop request drains in-flight reconciles and releases the lease.
pub async fn run(client: Client, settings: Settings) -> Result<(), Error> {
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let stdin = settings.stop_on_stdin_close;
    tokio::spawn(async move {
        stop_requested(stdin).await;
        let _ = stop_tx.send(true);
    });
    if let Some(addr) = settings.http_addr {
        let server = http::serve(addr, metrics.clone(), health.clone(), on(&stop));
        let listener = tokio::spawn(server);
        tokio::spawn(async move {
            if let Ok(Err(e)) = listener.await {
                warn!(error = %e, "the metrics and health server stopped");
            }
        });
    }
    let Some(election) = settings.leader_election.clone() else {
        health.set_leading(true);
        metrics.leader.set(1);
        return operate(client, settings, metrics, health, on(&stop)).await;
    };

    let manager = LeaseManagerBuilder::new(client.clone(), &election.lease_name)
        .with_namespace(&election.lease_namespace)
        .with_identity(&election.identity)
        .with_duration(election.lease_duration)
        .with_grace(election.renew_grace)
        .with_field_manager(format!("{FIELD_MANAGER}-lease"))
        .build()
        .await
        .map_err(|e| Error::Lease(e.to_string()))?;
    let (mut leading, lease_task) = manager.watch().await;
    info!(
        lease = election.lease_name,
        identity = election.identity,
        "waiting for the leader lease"
    );
    let mut stop_wait = stop.clone();
    let became_leader = tokio::select! {
        led = leading.wait_for(|l| *l) => led.is_ok(),
        _ = stop_wait.wait_for(|s| *s) => false,
    };
    let mut outcome = Ok(());
    if became_leader {
        info!(identity = election.identity, "leading");
        health.set_leading(true);
        metrics.leader.set(1);
        let mut lease_watch = leading.clone();
        let lost = async move {
            let _ = lease_watch.wait_for(|l| !*l).await;
        };
        let mut stop_wait = stop.clone();
        let stop_or_lost = async move {
            tokio::select! {
                _ = lost => {}
                _ = stop_wait.wait_for(|s| *s) => {}
            }
        };
        outcome = operate(
            client,
            settings,
            metrics.clone(),
            health.clone(),
            stop_or_lost,
        )
        .await;
        metrics.leader.set(0);
        health.set_leading(false);
        if outcome.is_ok() && !*stop.borrow() {
            outcome = Err(Error::LeadershipLost);
        }
    }
    // Closing the channel makes the lease task release the lease.
    drop(leading);
    if let Ok(Err(e)) = lease_task.await {
        warn!(error = %e, "releasing the leader lease");
    }
    outcome
}

/// The caches of generated objects, one shared watch per kind.
pub struct Caches {
    pub network_policies: Arc<NamespacedIndex<NetworkPolicy>>,
    pub roles: Arc<NamespacedIndex<Role>>,
    pub role_bindings: Arc<NamespacedIndex<RoleBinding>>,
    pub quotas: Arc<NamespacedIndex<ResourceQuota>>,
    pub limit_ranges: Arc<NamespacedIndex<LimitRange>>,
    pub service_accounts: Arc<NamespacedIndex<ServiceAccount>>,
    /// Namespaces as our label applies returned them, until the watch catches up.
    fresh_namespaces: Mutex<HashMap<String, Arc<Namespace>>>,
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub operator_namespace: String,
    pub namespaces: Store<Namespace>,
    pub baselines: Store<SecurityBaseline>,
    pub caches: Caches,
    /// Stored baselines that cannot be decoded: reported, never enforced.
    pub undecodable: Arc<UndecodableBaselines>,
    pub outcomes: Outcomes,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// The second this process started leading (creation timestamps have whole seconds):
    /// namespaces created since count toward onboarding latency.
    pub started_second: i64,
    failures: Mutex<HashMap<String, u32>>,
}

impl Caches {
    pub fn new() -> Self {
        Caches {
            network_policies: NamespacedIndex::new(),
            roles: NamespacedIndex::new(),
            role_bindings: NamespacedIndex::new(),
            quotas: NamespacedIndex::new(),
            limit_ranges: NamespacedIndex::new(),
            service_accounts: NamespacedIndex::new(),
            fresh_namespaces: Mutex::new(HashMap::new()),
        }
    }

    /// True once every watch has delivered its first full list.
    pub fn ready(&self) -> bool {
        self.network_policies.is_ready()
            && self.roles.is_ready()
            && self.role_bindings.is_ready()
            && self.quotas.is_ready()
            && self.limit_ranges.is_ready()
            && self.service_accounts.is_ready()
    }

    /// How many cached objects belong to `baseline`.
    pub fn owned_by(&self, baseline: &str) -> usize {
        let ours = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
            ownership(meta) == Ownership::Baseline(baseline.to_string())
        };
        self.network_policies.count(|o| ours(&o.metadata))
            + self.roles.count(|o| ours(&o.metadata))
            + self.role_bindings.count(|o| ours(&o.metadata))
            + self.quotas.count(|o| ours(&o.metadata))
            + self.limit_ranges.count(|o| ours(&o.metadata))
    }

    /// What the caches hold for `namespace`.
    pub fn live_state(&self, namespace: &Namespace) -> LiveState {
        let name = namespace.name_any();
        let mut objects: Vec<Object> = Vec::new();
        objects.extend(
            self.network_policies
                .in_namespace(&name)
                .into_iter()
                .map(Object::NetworkPolicy),
        );
        objects.extend(self.roles.in_namespace(&name).into_iter().map(Object::Role));
        objects.extend(
            self.role_bindings
                .in_namespace(&name)
                .into_iter()
                .map(Object::RoleBinding),
        );
        objects.extend(
            self.quotas
                .in_namespace(&name)
                .into_iter()
                .map(Object::ResourceQuota),
        );
        objects.extend(
            self.limit_ranges
                .in_namespace(&name)
                .into_iter()
                .map(Object::LimitRange),
        );
        LiveState {
            namespace_labels: namespace.labels().clone(),
            default_service_account: self.service_accounts.in_namespace(&name).into_iter().next(),
            objects,
            owned_namespace_labels: owned_label_keys(&namespace.metadata),
        }
    }
}

impl Caches {
    /// Holds what we just wrote in `namespace`, so the next reconcile does not mistake cache lag
    /// for drift.
    pub fn write_through(&self, namespace: &str, written: Written) {
        let strip = |meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
            strip_metadata(meta, false)
        };
        match written {
            Written::Object(mut object) => {
                strip(object.meta_mut());
                match object {
                    Object::NetworkPolicy(o) => self.network_policies.write_through(o),
                    Object::Role(o) => self.roles.write_through(o),
                    Object::RoleBinding(o) => self.role_bindings.write_through(o),
                    Object::ResourceQuota(o) => self.quotas.write_through(o),
                    Object::LimitRange(o) => self.limit_ranges.write_through(o),
                }
            }
            Written::ServiceAccount(mut sa) => {
                strip(&mut sa.metadata);
                self.service_accounts.write_through(sa);
            }
            Written::Deleted { kind, name } => match kind {
                Kind::NetworkPolicy => self.network_policies.forget(namespace, &name),
                Kind::Role => self.roles.forget(namespace, &name),
                Kind::RoleBinding => self.role_bindings.forget(namespace, &name),
                Kind::ResourceQuota => self.quotas.forget(namespace, &name),
                Kind::LimitRange => self.limit_ranges.forget(namespace, &name),
                Kind::Namespace | Kind::ServiceAccount => {}
            },
            Written::Namespace(mut ns) => {
                strip_metadata(&mut ns.metadata, true);
                let mut fresh = self.fresh_namespaces.lock().expect("fresh namespaces lock");
                fresh.insert(namespace.to_string(), Arc::new(ns));
            }
        }
    }

    /// The newest Namespace we know: the watched one, or the one our last label apply returned.
    pub fn newest_namespace(&self, watched: Arc<Namespace>) -> Arc<Namespace> {
        let mut fresh = self.fresh_namespaces.lock().expect("fresh namespaces lock");
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

impl Default for Caches {
    fn default() -> Self {
        Caches::new()
    }
}

fn error_policy(namespace: Arc<Namespace>, error: &Error, ctx: Arc<Context>) -> Requeue {
    let name = namespace.name_any();
    let mut failures = ctx.failures.lock().expect("failures lock");
    let n = failures.entry(name.clone()).or_default();
    *n = n.saturating_add(1);
    // Exponential backoff per namespace, 250 ms up to 5 minutes.
    let delay = Duration::from_millis(250u64.saturating_mul(1 << (*n).min(10)))
        .min(Duration::from_secs(300));
    warn!(namespace = name, error = %error, retry_in = ?delay, "reconcile failed");
    Requeue::requeue(delay)
}

/// How a failed watch retries: from 250 ms, doubling to 4 s (up to twice that with jitter), back
/// to the start after 30 s without errors. kube's default grows to a minute and resets only after
/// two, so after an API server restart (connection errors, then a 410 on the first watch) the
/// operator would stay blind for minutes; a handful of lists every few seconds costs far less.
fn watch_backoff() -> ResetTimerBackoff<ExponentialBackoff> {
    let exponential = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(250))
        .with_max_delay(Duration::from_secs(4))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times();
    ResetTimerBackoff::new(exponential.into(), Duration::from_secs(30))
}

/// One shared, label-filtered watch of `K`, feeding `index`; yields each touched object.
fn watch_into<K>(
    client: &Client,
    index: &Arc<NamespacedIndex<K>>,
    config: watcher::Config,
    health: &Arc<Health>,
) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::Serialize
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let api: Api<K> = Api::all(client.clone());
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

fn namespace_of<K: Resource>(object: K) -> Option<ObjectRef<Namespace>> {
    object.meta().namespace.as_deref().map(ObjectRef::new)
}

/// How long a stop waits for in-flight reconciles (a few API requests each) to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Completes when a stop should no longer wait for the controller to drain: at once if the stop
/// came before the namespace cache was ready (kube-runtime holds its runner until that cache is
/// ready, and the stop ends the watch that would fill it, so nothing is in flight and the
/// controller would wait forever), otherwise `DRAIN_TIMEOUT` after the stop.
async fn drain_deadline(stop: impl Future<Output = ()>, namespaces: Store<Namespace>) {
    stop.await;
    if future::FutureExt::now_or_never(namespaces.wait_until_ready()).is_none() {
        return;
    }
    tokio::time::sleep(DRAIN_TIMEOUT).await;
}

/// Reconciles until `stop` completes, then drains in-flight reconciles.
async fn operate(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    stop: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), Error> {
    let stop = future::FutureExt::shared(stop);
    let (namespace_store, namespace_writer) = reflector::store::<Namespace>();
    let (baseline_store, baseline_writer) = reflector::store::<SecurityBaseline>();
    let caches = Caches::new();
    let managed = || watcher::Config::default().labels(MANAGED_SELECTOR);
    let triggers = (
        watch_into(&client, &caches.network_policies, managed(), &health),
        watch_into(&client, &caches.roles, managed(), &health),
        watch_into(&client, &caches.role_bindings, managed(), &health),
        watch_into(&client, &caches.quotas, managed(), &health),
        watch_into(&client, &caches.limit_ranges, managed(), &health),
        watch_into(
            &client,
            &caches.service_accounts,
            watcher::Config::default().fields("metadata.name=default"),
            &health,
        ),
    );

    let namespaces = watcher(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default(),
    )
    .backoff(watch_backoff())
    // Keep our own field set on Namespaces: it says which labels we own.
    .modify(|ns: &mut Namespace| strip_metadata(&mut ns.metadata, true))
    .reflect(namespace_writer)
    .inspect({
        let health = health.clone();
        move |event| health.set_api_failing(event.is_err())
    })
    .applied_objects()
    .filter_map(|namespace| future::ready(retried_here(namespace)));

    // A baseline change re-queues every namespace (it may now select or unselect any of them);
    // status writes do not, since they change neither generation nor deletion.
    let mut seen: HashMap<String, (Option<i64>, bool)> = HashMap::new();
    let undecodable = Arc::new(UndecodableBaselines::default());
    let decoder = undecodable.clone();
    let raw_baselines: Api<DynamicObject> =
        Api::all_with(client.clone(), &ApiResource::erase::<SecurityBaseline>(&()));
    let baseline_changes = watcher(raw_baselines, watcher::Config::default())
        .backoff(watch_backoff())
        .filter_map(move |event| {
            future::ready(match event {
                Ok(event) => decoder.decode(event).map(Ok),
                Err(e) => Some(Err(e)),
            })
        })
        .modify(|b: &mut SecurityBaseline| strip_metadata(&mut b.metadata, false))
        .reflect(baseline_writer)
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
            future::ready(changed.then_some(()))
        });

    let reporter = Reporter {
        controller: FIELD_MANAGER.to_string(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        client: client.clone(),
        operator_namespace: settings.operator_namespace.clone(),
        namespaces: namespace_store.clone(),
        baselines: baseline_store.clone(),
        caches,
        undecodable,
        outcomes: Outcomes::default(),
        metrics: metrics.clone(),
        started_second: k8s_openapi::jiff::Timestamp::now().as_second(),
        failures: Mutex::new(HashMap::new()),
    });

    let controller = Controller::for_stream(namespaces, namespace_store)
        .with_config(ControllerConfig::default().concurrency(settings.concurrency))
        .watches_stream(triggers.0, namespace_of)
        .watches_stream(triggers.1, namespace_of)
        .watches_stream(triggers.2, namespace_of)
        .watches_stream(triggers.3, namespace_of)
        .watches_stream(triggers.4, namespace_of)
        .watches_stream(triggers.5, namespace_of)
        .reconcile_all_on(baseline_changes)
        .graceful_shutdown_on(stop.clone())
        .run(
            |ns, ctx: Arc<Context>| {
                let name = ns.name_any();
                async move {
                    let start = std::time::Instant::now();
                    let result = reconcile::reconcile(ns, ctx.clone()).await;
                    ctx.metrics
                        .reconcile_duration
                        .observe(start.elapsed().as_secs_f64());
                    let label = match &result {
                        Ok(_) => "ok",
                        Err(e) => e.metric_label(),
                    };
                    ctx.metrics
                        .reconciles
                        .get_or_create(&ResultLabels {
                            result: label.to_string(),
                        })
                        .inc();
                    if result.is_ok() {
                        ctx.failures.lock().expect("failures lock").remove(&name);
                    }
                    result
                }
            },
            error_policy,
            ctx.clone(),
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                debug!(error = %e, "controller event");
            }
        });

    let status_writer = write_statuses(ctx.clone(), settings.status_interval, health.clone());
    let drain_deadline = drain_deadline(stop, ctx.namespaces.clone());
    info!(
        operator_namespace = settings.operator_namespace,
        "zerotrust-operator running"
    );
    tokio::select! {
        _ = controller => info!("controller stopped"),
        _ = status_writer => warn!("status writer stopped"),
        _ = drain_deadline => warn!("stopping without waiting longer for in-flight reconciles"),
    }
    Ok(())
}

/// Every `interval`, recomputes each baseline's status and writes it if it changed.
async fn write_statuses(ctx: Arc<Context>, interval: Duration, health: Arc<Health>) {
    let api: Api<SecurityBaseline> = Api::all(ctx.client.clone());
    // Status writes go through the untyped API, so a response for a baseline we cannot decode
    // does not fail the write.
    let raw: Api<DynamicObject> = Api::all_with(
        ctx.client.clone(),
        &ApiResource::erase::<SecurityBaseline>(&()),
    );
    if ctx.namespaces.wait_until_ready().await.is_err() {
        return;
    }
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut known: BTreeMap<String, Option<String>> = BTreeMap::new();
    loop {
        ticker.tick().await;
        // Until every cache is full, outcomes would undercount: write nothing.
        if !ctx.caches.ready() {
            continue;
        }
        health.set_caches_synced(true);
        let baselines = ctx.baselines.state();
        let namespaces = ctx.namespaces.state();
        let current: BTreeMap<String, Option<String>> =
            baselines.iter().map(|b| (b.name_any(), b.uid())).collect();
        for (gone, uid) in known.iter().filter(|(k, uid)| current.get(*k) != Some(uid)) {
            ctx.outcomes.forget_baseline(gone, uid.as_deref());
        }
        known = current;
        for baseline in baselines {
            if let Err(e) = manage_finalizer(&ctx, &api, &baseline).await {
                warn!(baseline = baseline.name_any(), error = %e, "finalizer update failed");
            }
            if baseline.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let selection = validate(&baseline).map(|valid| {
                namespaces
                    .iter()
                    .filter(|ns| ns.metadata.deletion_timestamp.is_none())
                    .filter(|ns| {
                        selects(&valid, &ns.name_any(), ns.labels(), &ctx.operator_namespace)
                    })
                    .map(|ns| ns.name_any())
                    .collect()
            });
            if let Err(e) = write_status(&ctx, &raw, &baseline, selection).await {
                warn!(baseline = baseline.name_any(), error = %e, "status write failed");
            }
        }
        for set_aside in ctx.undecodable.list() {
            let baseline = &set_aside.placeholder;
            if let Err(e) = write_status(&ctx, &raw, baseline, Err(set_aside.error)).await {
                warn!(baseline = baseline.name_any(), error = %e, "status write failed");
            }
        }
    }
}

/// Held by `deletionPolicy: Delete` baselines, so their objects are removed before they go.
pub const CLEANUP_FINALIZER: &str = "zerotrust.dev/cleanup";

/// Adds our finalizer to Delete baselines, and removes it when the policy changes or, during
/// deletion, once no object of the baseline is left.
async fn manage_finalizer(
    ctx: &Context,
    api: &Api<SecurityBaseline>,
    baseline: &SecurityBaseline,
) -> Result<(), kube::Error> {
    let name = baseline.name_any();
    let wants = baseline.spec.deletion_policy == crate::api::DeletionPolicy::Delete;
    let has = baseline.finalizers().iter().any(|f| f == CLEANUP_FINALIZER);
    let keep = match (baseline.metadata.deletion_timestamp.is_some(), wants, has) {
        (false, true, false) => true,
        (false, false, true) => false,
        (true, _, true) if ctx.caches.owned_by(&name) == 0 => false,
        _ => return Ok(()),
    };
    // Server-side apply of our one list entry: other controllers' finalizers are untouched.
    let finalizers: Vec<&str> = if keep {
        vec![CLEANUP_FINALIZER]
    } else {
        vec![]
    };
    let patch = serde_json::json!({
        "apiVersion": "zerotrust.dev/v1alpha1",
        "kind": "SecurityBaseline",
        "metadata": {"name": name, "finalizers": finalizers},
    });
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(patch),
    )
    .await?;
    info!(
        baseline = name,
        finalizer = keep,
        "cleanup finalizer updated"
    );
    Ok(())
}

/// Writes `baseline`'s status, given the namespaces it selects or why it is invalid, if it changed.
async fn write_status(
    ctx: &Context,
    api: &Api<DynamicObject>,
    baseline: &SecurityBaseline,
    selection: Result<Vec<String>, InvalidSpec>,
) -> Result<(), kube::Error> {
    let name = baseline.name_any();
    let (selected, invalid) = match selection {
        Ok(selected) => (selected, None),
        Err(invalid) => (Vec::new(), Some(invalid)),
    };
    let (status, repairs) = compute_status(baseline, &selected, &ctx.outcomes, invalid.as_ref());
    let pending =
        status.selected_namespaces - status.compliant_namespaces - status.drifted_namespaces;
    for (state, count) in [
        ("compliant", status.compliant_namespaces),
        ("drifted", status.drifted_namespaces),
        ("pending", pending),
    ] {
        let labels = NamespaceStateLabels {
            baseline: name.clone(),
            state: state.to_string(),
        };
        ctx.metrics
            .namespaces
            .get_or_create(&labels)
            .set(i64::from(count));
    }
    if ctx.outcomes.current_status(baseline) == status {
        return Ok(());
    }
    // A server-side apply needs the stored object to match the schema; one that does not (we
    // could not decode it) gets its status merged in instead, by the same field manager.
    let decodable = !ctx.undecodable.contains(&name);
    let patch = status_patch(&status);
    let (params, patch) = if decodable {
        (
            PatchParams::apply(FIELD_MANAGER).force(),
            Patch::Apply(patch),
        )
    } else {
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PatchParams::default()
        };
        (params, Patch::Merge(patch))
    };
    api.patch_status(&name, &params, &patch).await?;
    ctx.outcomes.status_written(baseline, status, repairs);
    ctx.metrics.status_writes.inc();
    debug!(baseline = name, "status written");
    Ok(())
}
