//! `zerotrust-operator run`: the operator itself.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::connection::{ClusterArgs, LogArgs};
use crate::controller::{Settings, run as run_operator};
use crate::engine::DEFAULT_OPERATOR_NAMESPACE;

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

    /// Stop when standard input closes (for test harnesses).
    #[arg(long, hide = true)]
    pub stop_on_stdin_close: bool,
}

pub fn run(args: RunArgs) -> ExitCode {
    args.log.init();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async {
        let client = match args.cluster.client().await {
            Ok(client) => client,
            Err(message) => {
                eprintln!("error: {message}");
                return ExitCode::FAILURE;
            }
        };
        let settings = Settings {
            operator_namespace: args.operator_namespace,
            concurrency: args.concurrency,
            status_interval: Duration::from_millis(args.status_interval_ms.max(100)),
            stop_on_stdin_close: args.stop_on_stdin_close,
        };
        match run_operator(client, settings).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
