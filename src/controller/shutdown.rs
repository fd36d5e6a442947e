//! Stopping: what asks the operator to stop, and how long a stop waits for work in flight.

use std::time::Duration;

use super::held_namespace::HeldNamespace;
use futures::future;
use kube::runtime::reflector::Store;
use tokio::sync::watch;
use tracing::info;

async fn stdin_closed() {
    use tokio::io::AsyncReadExt;
    let mut stdin = tokio::io::stdin();
    let mut buffer = [0u8; 256];
    while matches!(stdin.read(&mut buffer).await, Ok(n) if n > 0) {}
}

/// Completes on SIGTERM, SIGINT, or (if asked) when standard input closes.
pub async fn stop_requested(stdin: bool) {
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

/// A future that completes once `stop` turns true (or its sender is gone).
pub fn once_stopped(
    stop: &watch::Receiver<bool>,
) -> impl Future<Output = ()> + Send + Sync + 'static {
    let mut stop = stop.clone();
    async move {
        let _ = stop.wait_for(|stopped| *stopped).await;
    }
}

/// How long a stop waits for in-flight reconciles (a few API requests each) to finish.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Completes when a stop should no longer wait for the controller to drain: at once if the stop
/// came before the namespace cache was ready (kube-runtime holds its runner until that cache is
/// ready, and the stop ends the watch that would fill it, so nothing is in flight and the
/// controller would wait forever), otherwise `DRAIN_TIMEOUT` after the stop.
pub async fn drain_deadline(stop: impl Future<Output = ()>, namespaces: Store<HeldNamespace>) {
    stop.await;
    if future::FutureExt::now_or_never(namespaces.wait_until_ready()).is_none() {
        return;
    }
    tokio::time::sleep(DRAIN_TIMEOUT).await;
}
