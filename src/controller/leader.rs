//! Leader election on a `coordination.k8s.io` Lease: wait for it, operate while holding it,
//! release it on stop.

use std::pin::Pin;
use std::sync::Arc;

use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::sync::watch;
use tracing::{info, warn};

use super::error::{Error, RunError};
use super::fence::WriteFence;
use super::http::Health;
use super::metrics::Metrics;
use super::settings::LeaderElection;

/// Completes when the leader should stop operating.
pub type StopLeading = Pin<Box<dyn Future<Output = ()> + Send + Sync>>;

/// This process's candidacy for the lease (created if missing); `watch` it to take part.
pub async fn lease_manager(
    client: Client,
    election: &LeaderElection,
) -> Result<LeaseManager, RunError> {
    LeaseManagerBuilder::new(client, &election.lease_name)
        .with_namespace(&election.lease_namespace)
        .with_identity(&election.identity)
        .with_duration(election.lease_duration)
        .with_grace(election.renew_grace)
        .with_field_manager(election.lease_field_manager())
        .build()
        .await
        .map_err(|e| RunError::Lease(e.to_string()))
}

/// Waits for the lease, then runs `operate` until a stop is asked or the lease is lost; `operate`
/// gets a future that completes on either. Losing the lease is an error (the process should
/// restart and stand by); a stop releases the lease.
pub async fn lead<F, Fut>(
    client: Client,
    election: &LeaderElection,
    fence: &Arc<WriteFence>,
    stop: watch::Receiver<bool>,
    health: &Health,
    metrics: &Metrics,
    operate: F,
) -> Result<(), RunError>
where
    F: FnOnce(StopLeading) -> Fut,
    Fut: Future<Output = Result<(), Error>>,
{
    let manager = lease_manager(client, election).await?;
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
        let mut stop_wait = stop.clone();
        let fence = fence.clone();
        let stop_or_lost = async move {
            tokio::select! {
                _ = lease_watch.wait_for(|l| !*l) => {}
                _ = stop_wait.wait_for(|s| *s) => {}
                // Paused past the write bound: no write passes any more; stop leading.
                _ = fence.tripped() => {}
            }
        };
        let operated = operate(Box::pin(stop_or_lost)).await;
        metrics.leader.set(0);
        health.set_leading(false);
        outcome = match operated {
            Err(error) => Err(RunError::Start(error)),
            Ok(()) if !*stop.borrow() => Err(RunError::LeadershipLost),
            Ok(()) => Ok(()),
        };
    }
    // Closing the channel makes the lease task release the lease.
    drop(leading);
    if let Ok(Err(e)) = lease_task.await {
        warn!(error = %e, "releasing the leader lease");
    }
    outcome
}
