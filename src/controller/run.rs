//! The operator's process: stop signals, the health and metrics endpoints, leader election, and
//! reconciling while it leads.

use std::sync::Arc;

use std::time::Duration;

use kube::Config;
use kube::client::ClientBuilder;
use tracing::warn;

use super::error::RunError;
use super::fence::WriteFence;
use super::http::{self, Health};
use super::leader::lead;
use super::metrics::Metrics;
use super::operate::operate;
use super::settings::Settings;
use super::shutdown::{once_stopped, stop_requested};

/// Runs the operator until asked to stop: serves health and metrics, takes part in leader election
/// if configured, and reconciles while it leads. Losing the lease is an error (the process should
/// restart and stand by); a stop request drains in-flight reconciles and releases the lease.
pub async fn run(config: Config, settings: Settings) -> Result<(), RunError> {
    let client = |layer: Option<&Arc<WriteFence>>| {
        let builder =
            ClientBuilder::try_from(config.clone()).map_err(|e| RunError::Client(e.to_string()))?;
        Ok::<_, RunError>(match layer {
            Some(fence) => builder.with_layer(&fence.layer()).build(),
            None => builder.build(),
        })
    };
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let stdin = settings.stop_on_stdin_close;
    tokio::spawn(async move {
        stop_requested(stdin).await;
        let _ = stop_tx.send(true);
    });
    if let Some(addr) = settings.http_addr {
        let server = http::serve(addr, metrics.clone(), health.clone(), once_stopped(&stop));
        tokio::spawn(async move {
            if let Err(e) = server.await {
                warn!(error = %e, "the metrics and health server stopped");
            }
        });
    }
    let Some(election) = settings.leader_election.clone() else {
        health.set_leading(true);
        metrics.leader.set(1);
        operate(
            client(None)?,
            &settings,
            metrics,
            health,
            once_stopped(&stop),
        )
        .await?;
        return Ok(());
    };
    // Writes stop once the process was paused for half its lease: by then its lease may be near
    // its end, and another process may lead before this one's lease task notices.
    let fence = WriteFence::start(Duration::from_secs(election.lease_duration) / 2);
    let fenced = client(Some(&fence))?;
    let operate_while_leading = |until| {
        operate(
            fenced.clone(),
            &settings,
            metrics.clone(),
            health.clone(),
            until,
        )
    };
    // The lease task keeps an unfenced client: it must be able to learn, and say, that it lost.
    lead(
        client(None)?,
        &election,
        &fence,
        stop,
        &health,
        &metrics,
        operate_while_leading,
    )
    .await
}
