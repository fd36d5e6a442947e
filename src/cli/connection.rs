//! Flags shared by the commands that talk to a cluster: where it is, and how to log.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use kube::Client;
use kube::config::{Config, KubeConfigOptions, Kubeconfig};

#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Path to a kubeconfig; default: $KUBECONFIG, ~/.kube/config, then the in-cluster account.
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
}

impl ClusterArgs {
    pub async fn client(&self) -> Result<Client, String> {
        Client::try_from(self.config().await?).map_err(|e| format!("cluster client: {e}"))
    }

    /// Where the cluster is and how to authenticate, from the flags and the environment.
    pub async fn config(&self) -> Result<Config, String> {
        Ok(match &self.kubeconfig {
            Some(path) => {
                let kubeconfig =
                    Kubeconfig::read_from(path).map_err(|e| format!("{}: {e}", path.display()))?;
                Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                    .await
                    .map_err(|e| format!("{}: {e}", path.display()))?
            }
            None => Config::infer()
                .await
                .map_err(|e| format!("no cluster configuration: {e}"))?,
        })
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log filter, e.g. info or zerotrust_operator=debug,kube=warn.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub log_level: String,
    /// Log format.
    #[arg(long, env = "ZT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl LogArgs {
    pub fn init(&self) {
        let filter = tracing_subscriber::EnvFilter::try_new(&self.log_level)
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr);
        match self.log_format {
            LogFormat::Json => builder.json().init(),
            LogFormat::Text => builder.init(),
        }
    }
}
