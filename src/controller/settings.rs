//! How the operator runs: the settings `zerotrust-operator run` passes in.

use std::net::SocketAddr;
use std::time::Duration;

pub use super::discovery::AdmissionIdentity;

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
    /// How the admission policies know the operator.
    pub admission: AdmissionIdentity,
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
