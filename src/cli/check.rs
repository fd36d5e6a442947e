//! `zerotrust-operator check`: a read-only compliance report with an exit code for pipelines.

use std::collections::BTreeSet;
use std::process::ExitCode;

use clap::Args;

use super::connection::ClusterArgs;
use crate::controller::{
    AdmissionIdentity, DEFAULT_BREAK_GLASS_GROUP, DEFAULT_OPERATOR_USER, check,
};
use crate::engine::DEFAULT_OPERATOR_NAMESPACE;

#[derive(Debug, Args)]
#[command(
    about = "Report drift and conflicts in the cluster; writes nothing",
    long_about = "Reads the cluster, runs the operator's engine over every namespace the \
SecurityBaselines select, and prints one row per difference: namespace, baseline, kind, name and \
reason. Writes nothing. Exits 0 when every selected namespace is compliant, 1 when there is drift, a \
conflict, an invalid baseline or no baseline of the name given with --baseline, and 2 when the \
cluster cannot be read (or has no SecurityBaseline CRD)."
)]
pub struct CheckArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// Only this SecurityBaseline.
    #[arg(long, value_name = "NAME")]
    pub baseline: Option<String>,

    /// The operator's namespace, which no baseline ever selects.
    #[arg(long, env = "ZT_OPERATOR_NAMESPACE", default_value = DEFAULT_OPERATOR_NAMESPACE)]
    pub operator_namespace: String,

    /// The operator's user name, which its admission policies let through (as `run` found it).
    #[arg(long, env = "ZT_OPERATOR_USER", default_value = DEFAULT_OPERATOR_USER)]
    pub operator_user: String,

    /// The break-glass group the operator's admission policies let through.
    #[arg(long, env = "ZT_BREAK_GLASS_GROUP", default_value = DEFAULT_BREAK_GLASS_GROUP)]
    pub break_glass_group: String,
}

pub fn run(args: CheckArgs) -> ExitCode {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async {
        let client = match args.cluster.client().await {
            Ok(client) => client,
            Err(message) => {
                eprintln!("error: {message}");
                return ExitCode::from(2);
            }
        };
        let identity = AdmissionIdentity {
            operator_user: Some(args.operator_user.clone()),
            break_glass_group: args.break_glass_group.clone(),
        };
        let checked = check(
            &client,
            args.baseline.as_deref(),
            &args.operator_namespace,
            &identity,
        );
        let report = match checked.await {
            Ok(report) => report,
            Err(e) if e.kind == "SecurityBaseline" && e.status_code() == Some(404) => {
                eprintln!(
                    "error: the SecurityBaseline CRD is not installed in this cluster; install it \
                     with `zerotrust-operator crd | kubectl apply --server-side -f -` (or \
                     `kubectl apply -f crds/securitybaseline.yaml`)"
                );
                return ExitCode::from(2);
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
        if let Some(name) = &args.baseline
            && report.baselines == 0
        {
            // A typo must not turn a CI gate green.
            eprintln!("error: SecurityBaseline {name:?} not found");
            return ExitCode::FAILURE;
        }
        for invalid in &report.invalid {
            println!("INVALID  {invalid}");
        }
        for (baseline, protection) in &report.unavailable {
            println!(
                "NOTICE   SecurityBaseline {baseline:?}: protection off, this API server does not serve what it needs: {protection}"
            );
        }
        let cluster = report.admission.iter().map(|d| ("-".to_string(), d));
        let all: Vec<(String, &crate::engine::Drift)> = cluster
            .chain(report.drift.iter().map(|(ns, d)| (ns.clone(), d)))
            .collect();
        if !all.is_empty() {
            let rows: Vec<[String; 5]> = all
                .iter()
                .map(|(ns, d)| {
                    [
                        ns.clone(),
                        d.baseline.clone(),
                        d.kind.to_string(),
                        d.name.clone(),
                        d.reason.to_string(),
                    ]
                })
                .collect();
            let header = ["NAMESPACE", "BASELINE", "KIND", "NAME", "REASON"].map(String::from);
            let widths: Vec<usize> = (0..4)
                .map(|i| {
                    rows.iter()
                        .chain([&header])
                        .map(|r| r[i].len())
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            for row in [&header].into_iter().chain(rows.iter()) {
                let cells: Vec<String> = (0..4)
                    .map(|i| format!("{:width$}", row[i], width = widths[i]))
                    .collect();
                println!("{}  {}", cells.join("  "), row[4]);
            }
        }
        // Exempt on purpose: listed, never a failure.
        for (ns, e) in &report.exempt {
            println!("EXEMPT   {ns}  {}  {e}", e.baseline);
        }
        let drifted: BTreeSet<&str> = report.drift.iter().map(|(ns, _)| ns.as_str()).collect();
        let exempt: BTreeSet<&str> = report
            .exempt
            .iter()
            .map(|(ns, _)| ns.as_str())
            .filter(|ns| !drifted.contains(ns))
            .collect();
        println!(
            "{} namespace(s) checked: {} compliant, {} exempt, {} with drift or conflicts.",
            report.namespaces,
            report.namespaces - drifted.len() - exempt.len(),
            exempt.len(),
            drifted.len()
        );
        if all.is_empty() && report.invalid.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    })
}
