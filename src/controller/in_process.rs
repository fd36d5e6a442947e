//! The operator's watches, caches and reconcile without its work queue, driven by the caller: for
//! integration tests that call `reconcile` against a real API server and assert its writes and
//! the requeue it asks for.

use std::sync::Arc;
use std::time::Duration;

use super::held_namespace::HeldNamespace;
use kube::Client;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use tokio::task::JoinHandle;

use super::context::Context;
use super::discovery::{AdmissionIdentity, admission_settings};
use super::error::Error;
use super::http::Health;
use super::metrics::Metrics;
use super::reconcile;
use super::watches::drain;

/// An operator whose reconciles the caller runs, one namespace at a time.
pub struct InProcess {
    ctx: Arc<Context>,
    watches: Vec<JoinHandle<()>>,
}

impl InProcess {
    /// Starts the watches and waits (at most `timeout`) until every cache has its first list.
    /// The admission policies are rendered for `identity`.
    pub async fn start(
        client: Client,
        operator_namespace: &str,
        identity: &AdmissionIdentity,
        timeout: Duration,
    ) -> Result<InProcess, String> {
        let health = Arc::new(Health::default());
        let metrics = Arc::new(Metrics::new());
        let admission = admission_settings(&client, identity, operator_namespace)
            .await
            .map_err(|e| e.to_string())?;
        let (ctx, inputs) = Context::connect(client, admission, metrics, &health, None);
        let mut watches = vec![
            drain(inputs.namespaces),
            drain(inputs.service_accounts),
            drain(inputs.network_policies),
            drain(inputs.baseline_changes),
        ];
        watches.extend(inputs.generated.into_iter().map(|(_, s)| drain(s)));
        watches.extend(inputs.admission.into_iter().map(drain));
        let operator = InProcess { ctx, watches };
        let ready = async {
            let _ = operator.ctx.namespaces.wait_until_ready().await;
            let _ = operator.ctx.baselines.wait_until_ready().await;
            while !operator.ctx.caches.ready() || !operator.ctx.api_server.synced() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(timeout, ready)
            .await
            .map_err(|_| "the caches were not filled in time".to_string())?;
        Ok(operator)
    }

    /// True once the caches know the namespace.
    pub fn knows_namespace(&self, name: &str) -> bool {
        self.ctx.namespaces.get(&ObjectRef::new(name)).is_some()
    }

    /// The generation of the baseline the caches hold, if they hold it.
    pub fn baseline_generation(&self, name: &str) -> Option<i64> {
        self.ctx
            .baselines
            .get(&ObjectRef::new(name))
            .and_then(|b| b.metadata.generation)
    }

    /// Reconciles `namespace` once, as the work queue would: the requeue it asks for, or the
    /// error. `None` when the caches do not know the namespace yet.
    pub async fn reconcile(&self, namespace: &str) -> Option<Result<Action, Error>> {
        let found: Arc<HeldNamespace> = self.ctx.namespaces.get(&ObjectRef::new(namespace))?;
        Some(reconcile::reconcile(found, &self.ctx).await)
    }

    /// The drift left for `baseline` in `namespace` by the last reconcile, counted.
    pub fn drift_count(&self, baseline: &str, namespace: &str) -> Option<usize> {
        self.ctx
            .outcomes
            .previous(baseline, namespace)
            .map(|o| o.drift_count)
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        for watch in &self.watches {
            watch.abort();
        }
    }
}
