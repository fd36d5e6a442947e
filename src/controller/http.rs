//! The operator's HTTP endpoints: `/metrics` for Prometheus, `/healthz` (the process is alive) and
//! `/readyz` (it can do its job: caches synced and the API server answering, or waiting as a
//! standby for the leader lease).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

use super::metrics::Metrics;

/// What `/readyz` reports.
#[derive(Default)]
pub struct Health {
    leading: AtomicBool,
    caches_synced: AtomicBool,
    api_failing: AtomicBool,
}

impl Health {
    pub fn set_leading(&self, leading: bool) {
        self.leading.store(leading, Ordering::Relaxed);
    }

    pub fn set_caches_synced(&self, synced: bool) {
        self.caches_synced.store(synced, Ordering::Relaxed);
    }

    /// A watch failed (the API server is unreachable or refusing) or recovered.
    pub fn set_api_failing(&self, failing: bool) {
        self.api_failing.store(failing, Ordering::Relaxed);
    }

    /// A standby is ready while it waits; a leader once its caches are synced and the API answers.
    pub fn ready(&self) -> Result<(), &'static str> {
        if self.api_failing.load(Ordering::Relaxed) {
            return Err("the API server is not answering watches");
        }
        if self.leading.load(Ordering::Relaxed) && !self.caches_synced.load(Ordering::Relaxed) {
            return Err("caches are not synced yet");
        }
        Ok(())
    }
}

#[derive(Clone)]
struct Shared {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

async fn metrics(State(shared): State<Shared>) -> ([(&'static str, &'static str); 1], String) {
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.encode(),
    )
}

async fn readyz(State(shared): State<Shared>) -> (StatusCode, &'static str) {
    match shared.health.ready() {
        Ok(()) => (StatusCode::OK, "ok\n"),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
    }
}

/// Serves the endpoints on `addr` until `shutdown` completes.
pub async fn serve(
    addr: SocketAddr,
    metrics_registry: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(Shared {
            metrics: metrics_registry,
            health,
        });
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
