//! The command line: one subcommand per user task.

mod check;
mod connection;
mod crd;
mod render;
mod run;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// zerotrust-operator makes zero trust the default in every namespace: default-deny
/// NetworkPolicies, Pod Security labels, least-privilege RBAC, a ResourceQuota and a LimitRange,
/// kept in place by a controller that repairs or reports drift.
#[derive(Debug, Parser)]
#[command(name = "zerotrust-operator", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Preview, without a cluster, the objects a namespace would get from one or more baselines.
    Render(render::RenderArgs),
    /// Print the SecurityBaseline CustomResourceDefinition (the same YAML as crds/).
    Crd,
    /// Run the operator.
    Run(run::RunArgs),
    /// Report drift and conflicts in the cluster without changing anything.
    Check(check::CheckArgs),
}

impl Cli {
    pub fn run(self) -> ExitCode {
        match self.command {
            Command::Render(args) => render::run(args),
            Command::Crd => crd::run(),
            Command::Run(args) => run::run(args),
            Command::Check(args) => check::run(args),
        }
    }
}
