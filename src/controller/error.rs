//! What can go wrong in a reconcile.

/// A reconcile failure; the namespace is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("leader election: {0}")]
    Lease(String),
    #[error("lost the leader lease; restart to stand by")]
    LeadershipLost,
}

impl Error {
    /// A short label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(_)) => "api",
            Error::Kube(_) => "client",
            Error::Lease(_) | Error::LeadershipLost => "lease",
        }
    }
}
