//! What every reconcile shares (client, stores, caches, outcomes, Events, metrics), how it is
//! wired to the watches, and what happens after a failed reconcile.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::held_namespace::HeldNamespace;
use kube::Client;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use parking_lot::Mutex;
use tokio::sync::Notify;
use tracing::warn;

use futures::{FutureExt, StreamExt};

use super::api_server::{self, ApiServerAddresses};
use super::caches::Caches;
use super::enforced::LastValid;
use super::error::Error;
use super::http::Health;
use super::metrics::Metrics;
use super::reports::Reports;
use super::status::Outcomes;
use super::watches::{Inputs, watch};
use crate::api::SecurityBaseline;
use crate::engine::{AdmissionSettings, Environment, FIELD_MANAGER, Kind};

/// What every reconcile shares.
pub struct Context {
    pub(super) client: Client,
    pub(super) operator_namespace: String,
    pub(super) namespaces: Store<HeldNamespace>,
    pub(super) baselines: Store<SecurityBaseline>,
    pub(super) caches: Caches,
    pub(super) outcomes: Outcomes,
    /// The PolicyReports, when asked for.
    pub(super) reports: Option<Reports>,
    /// Each baseline's last valid generation, enforced while a newer edit is invalid or unreadable.
    pub(super) last_valid: LastValid,
    pub(super) recorder: Recorder,
    pub(super) metrics: Arc<Metrics>,
    /// Who the admission policies let through, and what the API server serves.
    pub(super) admission: AdmissionSettings,
    /// Where the API server answers, for `allowAPIServer`.
    pub(super) api_server: Arc<ApiServerAddresses>,
    /// Woken when a baseline or one of our admission objects changes.
    pub(super) admission_changed: Arc<Notify>,
    /// The second this process started leading (creation timestamps have whole seconds):
    /// namespaces created since count toward onboarding latency.
    pub(super) started_second: i64,
    /// Consecutive failed reconciles per namespace, for the back-off.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    /// A context whose stores and caches fill as the returned watches are polled.
    pub(super) fn connect(
        client: Client,
        admission: AdmissionSettings,
        metrics: Arc<Metrics>,
        health: &Arc<Health>,
        reports: Option<Reports>,
    ) -> (Arc<Context>, Inputs) {
        let (namespaces, namespace_writer) = reflector::store::<HeldNamespace>();
        let (baselines, baseline_writer) = reflector::store::<SecurityBaseline>();
        let served: Vec<Kind> = Kind::ADMISSION
            .into_iter()
            .filter(|kind| match kind {
                Kind::MutatingAdmissionPolicy | Kind::MutatingAdmissionPolicyBinding => {
                    admission.mutating
                }
                _ => admission.validating,
            })
            .collect();
        let caches = Caches::new(&metrics, &served);
        let admission_changed = Arc::new(Notify::new());
        let api_server = Arc::new(ApiServerAddresses::default());
        let mut inputs = watch(
            &client,
            &caches,
            health,
            namespace_writer,
            baseline_writer,
            admission_changed.clone(),
        );
        // New API server addresses change what every allowAPIServer namespace must hold.
        inputs.baseline_changes = futures::stream::select(
            inputs.baseline_changes,
            api_server::watch(&client, api_server.clone()),
        )
        .boxed();
        let reporter = Reporter {
            controller: FIELD_MANAGER.to_string(),
            instance: std::env::var("POD_NAME").ok(),
        };
        let ctx = Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            operator_namespace: admission.operator_namespace.clone(),
            admission,
            admission_changed,
            api_server,
            namespaces,
            baselines,
            caches,
            outcomes: Outcomes::default(),
            reports,
            last_valid: LastValid::default(),
            metrics,
            started_second: k8s_openapi::jiff::Timestamp::now().as_second(),
            failures: Mutex::new(HashMap::new()),
        };
        (Arc::new(ctx), inputs)
    }

    /// Counts a failed reconcile of `namespace`; returns how long to wait before the next try.
    pub(super) fn failed(&self, namespace: &str) -> Duration {
        let mut failures = self.failures.lock();
        let n = failures.entry(namespace.to_string()).or_default();
        *n = n.saturating_add(1);
        retry_delay(*n)
    }

    /// What a rendering depends on now: the operator's namespace, the API server's addresses,
    /// the time.
    pub(super) fn environment(&self) -> Environment {
        Environment {
            api_server: self.api_server.get(),
            ..Environment::new(&self.operator_namespace)
        }
    }

    /// True once the baselines and every cache of objects have had their first full list.
    pub(super) fn synced(&self) -> bool {
        self.baselines.wait_until_ready().now_or_never().is_some() && self.caches.ready()
    }

    /// Resets the back-off of `namespace` after a successful reconcile (or its deletion).
    pub(super) fn succeeded(&self, namespace: &str) {
        self.failures.lock().remove(namespace);
    }
}

/// The wait until just after `second` (seconds since the epoch): an exemption ending then is over
/// when the wait is, so the pass that follows enforces the control again.
pub fn until(second: i64) -> Duration {
    let now = k8s_openapi::jiff::Timestamp::now().as_millisecond();
    let millis = second.saturating_mul(1000).saturating_sub(now).max(0);
    Duration::from_millis(millis as u64) + Duration::from_millis(20)
}

/// The wait before retrying after `failures` consecutive failures: 500 ms, doubling, at most
/// 256 s (about four minutes).
pub fn retry_delay(failures: u32) -> Duration {
    Duration::from_millis(250 << failures.clamp(1, 10))
}

/// After a failed reconcile: retry the namespace with back-off.
pub(super) fn error_policy(
    namespace: Arc<HeldNamespace>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    let name = namespace.name_any();
    let delay = ctx.failed(&name);
    warn!(namespace = name, error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// A context over `client` for unit tests against a mocked API server: the caller fills the
/// stores (through their writers) and the caches (`NamespacedIndex::load`); no watch runs.
#[cfg(test)]
impl Context {
    pub(super) fn over(
        client: Client,
        admission: AdmissionSettings,
        namespaces: Store<HeldNamespace>,
        baselines: Store<SecurityBaseline>,
    ) -> Context {
        let metrics = Arc::new(Metrics::new());
        let reporter = Reporter {
            controller: FIELD_MANAGER.to_string(),
            instance: None,
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            operator_namespace: admission.operator_namespace.clone(),
            caches: Caches::new(&metrics, &Kind::ADMISSION),
            admission,
            admission_changed: Arc::new(Notify::new()),
            api_server: Arc::new(ApiServerAddresses::default()),
            namespaces,
            baselines,
            outcomes: Outcomes::default(),
            reports: None,
            last_valid: LastValid::default(),
            metrics,
            started_second: k8s_openapi::jiff::Timestamp::now().as_second(),
            failures: Mutex::new(HashMap::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_back_off_doubles_to_about_four_minutes() {
        let delays: Vec<u64> = (1..=12)
            .map(|n| retry_delay(n).as_millis() as u64)
            .collect();
        assert_eq!(&delays[..4], &[500, 1_000, 2_000, 4_000]);
        assert_eq!(delays[9], 256_000);
        assert_eq!(delays[11], 256_000);
        assert_eq!(retry_delay(u32::MAX), Duration::from_secs(256));
    }
}
