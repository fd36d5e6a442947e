//! `zerotrust-operator run`: the operator itself.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::connection::{ClusterArgs, LogArgs};
use crate::controller::{
    AdmissionIdentity, DEFAULT_BREAK_GLASS_GROUP, LeaderElection, Settings, run as run_operator,
};
use crate::engine::{DEFAULT_OPERATOR_NAMESPACE, ReportApi};

#[derive(Debug, Args)]
#[command(
    about = "Run the operator: onboard, enforce and repair, and report status",
    long_about = "Runs the controller against the cluster from --kubeconfig, $KUBECONFIG or the \
in-cluster service account. Every namespace selected by a SecurityBaseline gets its objects and \
labels by server-side apply; drift is repaired (Enforce) or reported (Audit) as soon as a watch sees \
it; each baseline's status shows the counts. Stops cleanly on SIGINT or SIGTERM."
)]
pub struct RunArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub log: LogArgs,

    /// The operator's own namespace, which no baseline ever selects.
    #[arg(long, env = "ZT_OPERATOR_NAMESPACE", default_value = DEFAULT_OPERATOR_NAMESPACE)]
    pub operator_namespace: String,

    /// How many namespaces are reconciled at once.
    #[arg(long, env = "ZT_CONCURRENCY", default_value_t = 16)]
    pub concurrency: u16,

    /// How often baseline statuses are recomputed, in milliseconds (written only when changed).
    #[arg(long, env = "ZT_STATUS_INTERVAL_MS", default_value_t = 1000)]
    pub status_interval_ms: u64,

    /// Address for /metrics, /healthz and /readyz, or "none".
    #[arg(long, env = "ZT_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: String,

    /// Take part in leader election: only the holder of the Lease reconciles and writes.
    #[arg(long, env = "ZT_LEADER_ELECT")]
    pub leader_elect: bool,

    /// Name of the leader election Lease.
    #[arg(long, env = "ZT_LEASE_NAME", default_value = "zerotrust-operator")]
    pub lease_name: String,

    /// Namespace of the Lease; default: the operator namespace.
    #[arg(long, env = "ZT_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// Seconds a lease stays valid after its last renewal; a standby takes over after that.
    #[arg(long, env = "ZT_LEASE_DURATION_SECONDS", default_value_t = 10)]
    pub lease_duration_seconds: u64,

    /// Seconds before expiry at which the leader renews.
    #[arg(long, env = "ZT_LEASE_RENEW_GRACE_SECONDS", default_value_t = 3)]
    pub lease_renew_grace_seconds: u64,

    /// This process's identity in the election; default: $POD_NAME, else host name and pid.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,

    /// The operator's user name as the API server knows it, which the admission policies let
    /// change what baselines own; default: asked of the API server (SelfSubjectReview).
    #[arg(long, env = "ZT_OPERATOR_USER")]
    pub operator_user: Option<String>,

    /// Members of this group may change what baselines own (break-glass); nobody is in it unless
    /// an administrator acts as it on purpose.
    #[arg(long, env = "ZT_BREAK_GLASS_GROUP", default_value = DEFAULT_BREAK_GLASS_GROUP)]
    pub break_glass_group: String,

    /// Write one PolicyReport per selected namespace: `openreports` (openreports.io/v1alpha1
    /// Report, Policy Reporter 3.2 and later) or `wgpolicyk8s` (wgpolicyk8s.io/v1alpha2
    /// PolicyReport, earlier versions). Its CRD must be installed; without it the operator says
    /// so once and writes none.
    #[arg(long, env = "ZT_POLICY_REPORTS", value_enum, default_value_t = PolicyReports::Off)]
    pub policy_reports: PolicyReports,

    /// Stop when standard input closes (for test harnesses).
    #[arg(long, hide = true)]
    pub stop_on_stdin_close: bool,
}

/// Which PolicyReports `run` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PolicyReports {
    Off,
    Openreports,
    Wgpolicyk8s,
}

impl PolicyReports {
    fn api(self) -> Option<ReportApi> {
        match self {
            PolicyReports::Off => None,
            PolicyReports::Openreports => Some(ReportApi::OpenReports),
            PolicyReports::Wgpolicyk8s => Some(ReportApi::WgPolicy),
        }
    }
}

pub fn run(args: RunArgs) -> ExitCode {
    args.log.init();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let code = runtime.block_on(async {
        let config = match args.cluster.config().await {
            Ok(config) => config,
            Err(message) => {
                eprintln!("error: {message}");
                return ExitCode::FAILURE;
            }
        };
        let http_addr = match args.http_addr.as_str() {
            "none" => None,
            addr => match addr.parse() {
                Ok(addr) => Some(addr),
                Err(e) => {
                    eprintln!("error: --http-addr {addr:?}: {e}");
                    return ExitCode::FAILURE;
                }
            },
        };
        let identity = args.identity.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            format!("{}-{}", host.trim(), std::process::id())
        });
        let leader_election = args.leader_elect.then(|| LeaderElection {
            lease_name: args.lease_name.clone(),
            lease_namespace: args
                .lease_namespace
                .clone()
                .unwrap_or_else(|| args.operator_namespace.clone()),
            identity,
            lease_duration: args.lease_duration_seconds.max(2),
            renew_grace: args
                .lease_renew_grace_seconds
                .clamp(1, args.lease_duration_seconds.max(2) - 1),
        });
        let settings = Settings {
            operator_namespace: args.operator_namespace,
            concurrency: args.concurrency,
            status_interval: Duration::from_millis(args.status_interval_ms.max(100)),
            stop_on_stdin_close: args.stop_on_stdin_close,
            http_addr,
            leader_election,
            admission: AdmissionIdentity {
                operator_user: args.operator_user.clone(),
                break_glass_group: args.break_glass_group.clone(),
            },
            policy_reports: args.policy_reports.api(),
        };
        match run_operator(config, settings).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    });
    // The operator has stopped (and drained, within its limit). Dropping the runtime would wait
    // for its blocking threads, and a read of standard input (--stop-on-stdin-close) cannot be
    // cancelled: a process that lost its lease would hang there instead of exiting.
    runtime.shutdown_timeout(Duration::from_millis(100));
    code
}
