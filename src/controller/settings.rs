//! How the operator runs: the settings `zerotrust-operator run` passes in.

use std::net::SocketAddr;
use std::time::Duration;

pub use super::discovery::AdmissionIdentity;
use crate::engine::{FIELD_MANAGER, ReportApi};

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
    /// Write a PolicyReport per selected namespace, in this API; `None` writes none.
    pub policy_reports: Option<ReportApi>,
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

/// The API server's limit on a field manager's name.
const FIELD_MANAGER_MAX: usize = 128;

impl LeaderElection {
    /// The field manager this process takes the lease with: one per identity. The lease crate
    /// takes a free lease by server-side apply without force and relies on the API server to
    /// refuse the second of two racing candidates as a conflict; with one shared manager both
    /// applies succeed and both candidates lead.
    pub fn lease_field_manager(&self) -> String {
        let mut manager = format!("{FIELD_MANAGER}-lease-{}", self.identity);
        // Pod names stay far below the limit; a longer --identity is cut at a character boundary.
        while manager.len() > FIELD_MANAGER_MAX {
            manager.pop();
        }
        manager
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn election(identity: &str) -> LeaderElection {
        LeaderElection {
            lease_name: "zerotrust-operator".into(),
            lease_namespace: "zerotrust-system".into(),
            identity: identity.into(),
            lease_duration: 15,
            renew_grace: 5,
        }
    }

    #[test]
    fn each_identity_takes_the_lease_as_its_own_field_manager() {
        assert_ne!(
            election("zerotrust-operator-7d9f-a").lease_field_manager(),
            election("zerotrust-operator-7d9f-b").lease_field_manager()
        );
    }

    #[test]
    fn a_long_identity_still_gives_a_field_manager_the_api_server_accepts() {
        let manager = election(&"é".repeat(200)).lease_field_manager();
        assert!(manager.len() <= FIELD_MANAGER_MAX, "{}", manager.len());
        assert!(manager.starts_with(FIELD_MANAGER));
    }
}
