//! The operator's process: stop signals, the health and metrics endpoints, leader election, and
//! reconciling while it leads.

use std::sync::Arc;

use kube::Client;
use tracing::warn;

use super::error::RunError;
use super::http::{self, Health};
use super::leader::lead;
use super::metrics::Metrics;
use super::operate::operate;
use super::settings::Settings;
use super::shutdown::{once_stopped, stop_requested};

/// Runs the operator until asked to stop: serves health and metrics, takes part in leader election
/// if configured, and reconciles while it leads. Losing the lease is an error (the process should
/// restart and stand by); a stop request drains in-flight reconciles and releases the lease.
pub async fn run(client: Client, settings: Settings) -> Result<(), RunError> {
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
        operate(client, &settings, metrics, health, once_stopped(&stop)).await?;
        return Ok(());
    };
    let operate_while_leading = |until| {
        operate(
            client.clone(),
            &settings,
            metrics.clone(),
            health.clone(),
            until,
        )
    };
    lead(
        client.clone(),
        &election,
        stop,
        &health,
        &metrics,
        operate_while_leading,
    )
    .await
}
