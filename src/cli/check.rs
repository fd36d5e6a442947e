//! `zerotrust-operator check`: a read-only compliance report with an exit code for pipelines.

use std::collections::BTreeSet;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use serde::Serialize;

use super::connection::ClusterArgs;
use crate::controller::{
    AdmissionIdentity, DEFAULT_BREAK_GLASS_GROUP, DEFAULT_OPERATOR_USER, Report, check,
};
use crate::engine::{
    Compliance, ControlResult, DEFAULT_OPERATOR_NAMESPACE, Drift, DriftReason, PermanentExemption,
    Tally, until,
};

/// The `apiVersion` of `check -o json|yaml`: a field is only ever added within it.
pub const CHECK_API_VERSION: &str = "zerotrust.dev/check/v1";

#[derive(Debug, Args)]
#[command(
    about = "Report drift and conflicts in the cluster; writes nothing",
    long_about = "Reads the cluster, runs the operator's engine over every namespace the \
SecurityBaselines select, and prints one row per difference: namespace, baseline, kind, name and \
reason. Writes nothing. Exits 0 when every selected namespace is compliant, 1 when there is drift, a \
conflict, an invalid baseline or no baseline of the name given with --baseline, and 2 when the \
cluster cannot be read (or has no SecurityBaseline CRD). With -o json or -o yaml it prints one \
document instead, a CheckReport (apiVersion zerotrust.dev/check/v1, described in the README), \
with the same exit codes."
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

    /// The operator's user name, which its admission policies let through, for a baseline whose
    /// status does not record the one the operator rendered them for (it records it, as `run`
    /// found it, on its first status write).
    #[arg(long, env = "ZT_OPERATOR_USER", default_value = DEFAULT_OPERATOR_USER)]
    pub operator_user: String,

    /// The break-glass group the operator's admission policies let through, for a baseline whose
    /// status does not record it.
    #[arg(long, env = "ZT_BREAK_GLASS_GROUP", default_value = DEFAULT_BREAK_GLASS_GROUP)]
    pub break_glass_group: String,

    /// Output: a table for people, or one CheckReport document for pipelines.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
    Yaml,
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
        match args.output {
            Output::Text => print_text(&report),
            Output::Json => println!(
                "{}",
                serde_json::to_string_pretty(&CheckReport::of(&report))
                    .expect("a CheckReport serializes")
            ),
            Output::Yaml => print!(
                "{}",
                serde_saphyr::to_string(&CheckReport::of(&report))
                    .expect("a CheckReport serializes")
            ),
        }
        if compliant(&report) {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    })
}

/// A baseline whose newest generation is invalid is checked at the generation the operator
/// recorded and enforces.
fn recorded_notice(generation: i64) -> String {
    format!(
        "checked at generation {generation}, the last valid one, which the operator enforces meanwhile"
    )
}

/// Nothing recorded the identity the operator rendered a baseline's policies for.
const IDENTITY_NOTICE: &str = "its status records no operator identity (the operator has not written it yet): admission policies checked as rendered for --operator-user";

/// A name a baseline trusts that no namespace holds: a warning, never a failure (a shipped
/// example names `monitoring`, which many clusters lack).
fn unclaimed_notice(t: &crate::engine::TrustedName) -> String {
    format!(
        "namespace {:?} ({}) does not exist: whoever creates it gets what the baseline grants it",
        t.namespace, t.trusted_by
    )
}

/// The table and summary `check` prints for people.
fn print_text(report: &Report) {
    for invalid in &report.invalid {
        println!("INVALID  {invalid}");
    }
    for (baseline, generation) in &report.enforcing_recorded {
        println!(
            "NOTICE   SecurityBaseline {baseline:?}: {}",
            recorded_notice(*generation)
        );
    }
    for baseline in &report.identity_unrecorded {
        println!("NOTICE   SecurityBaseline {baseline:?}: {IDENTITY_NOTICE}");
    }
    for (baseline, protection) in &report.unavailable {
        println!(
            "NOTICE   SecurityBaseline {baseline:?}: protection off, this API server does not serve what it needs: {protection}"
        );
    }
    for (baseline, t) in &report.unclaimed {
        println!(
            "WARNING  SecurityBaseline {baseline:?}: {}",
            unclaimed_notice(t)
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
    // Exempt on purpose: listed, never a failure; an exemption without end once more on its own.
    for (ns, e) in &report.exempt {
        println!("EXEMPT   {ns}  {}  {e}", e.baseline);
    }
    for permanent in &report.permanent {
        println!("PERMANENT  {permanent}");
    }
    for false_report in &report.false_reports {
        println!("REPORT   {false_report}");
    }
    let counts = NamespaceCounts::of(report);
    println!(
        "{} namespace(s) checked: {} compliant, {} exempt, {} with drift or conflicts.",
        report.namespaces, counts.compliant, counts.exempt, counts.drifted
    );
}

/// Namespaces by how they stand: drifted (any drift or conflict), exempt (a control exempt and
/// no drift), compliant (the rest).
struct NamespaceCounts {
    compliant: usize,
    exempt: usize,
    drifted: usize,
}

impl NamespaceCounts {
    fn of(report: &Report) -> NamespaceCounts {
        let drifted: BTreeSet<&str> = report.drift.iter().map(|(ns, _)| ns.as_str()).collect();
        let exempt: BTreeSet<&str> = report
            .exempt
            .iter()
            .map(|(ns, _)| ns.as_str())
            .filter(|ns| !drifted.contains(ns))
            .collect();
        NamespaceCounts {
            compliant: report.namespaces - drifted.len() - exempt.len(),
            exempt: exempt.len(),
            drifted: drifted.len(),
        }
    }
}

/// `check -o json|yaml`: one document, versioned by its apiVersion (README, "check -o json").
/// Every key is always present (null or empty where it does not apply), so pipelines can rely on
/// them; within v1 fields are only ever added.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckReport {
    /// [`CHECK_API_VERSION`].
    pub api_version: &'static str,
    /// `CheckReport`.
    pub kind: &'static str,
    /// What the exit code says: true exactly when it is 0.
    pub compliant: bool,
    pub summary: Summary,
    /// Every baseline checked, valid or not, in the order listed.
    pub baselines: Vec<BaselineEntry>,
    /// The baselines' cluster-scoped admission policies: one result per baseline, control
    /// `AdmissionPolicies`.
    pub admission: Vec<ResultEntry>,
    /// Every namespace a valid baseline selects, by name.
    pub namespaces: Vec<NamespaceEntry>,
    /// Namespaces whose report named `zerotrust-operator` shows other results than these.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub false_reports: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub baselines: usize,
    pub invalid_baselines: usize,
    /// Namespaces checked, then how they stand (the three add up to it).
    pub namespaces: usize,
    pub compliant_namespaces: usize,
    pub exempt_namespaces: usize,
    pub drifted_namespaces: usize,
    /// Findings, namespaced and admission, that are not conflicts.
    pub drift: usize,
    /// Findings whose reason is `Conflict`: an object of the name that is not ours.
    pub conflicts: usize,
    /// Controls exempt in a namespace (as many as the text output's EXEMPT rows).
    pub exempt: usize,
    /// Results (namespaced and admission) by outcome.
    pub results: Tally,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BaselineEntry {
    pub name: String,
    /// False when the engine refuses it; `errors` say why.
    pub valid: bool,
    pub errors: Vec<FieldError>,
    /// Protections it asks for that this API server cannot carry; the last valid generation
    /// checked in its stead; no operator identity recorded.
    pub notices: Vec<String>,
    /// Its exemptions without end (`permanent: true`): listed, never a failure.
    pub permanent_exemptions: Vec<PermanentExemption>,
}

#[derive(Debug, Serialize)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceEntry {
    pub namespace: String,
    /// `drifted` (a result fails), `exempt` (none fails, one is skipped) or `compliant`.
    pub status: &'static str,
    /// One per baseline selecting it and control, sorted by baseline, then control.
    pub results: Vec<ResultEntry>,
}

/// One control of one baseline: in a namespace, or the baseline's admission policies.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResultEntry {
    pub baseline: String,
    /// `NetworkPolicy`, `PodSecurity`, `Role/<name>`, `Roles`, `ResourceQuota`, `LimitRange`,
    /// `ServiceAccount` or `AdmissionPolicies`.
    pub control: String,
    /// `pass`, `fail` (it has findings) or `skip` (exempt, no findings).
    pub result: Compliance,
    /// One line for people, at most MAX_MESSAGE bytes.
    pub message: String,
    /// The exemption in force for it, if any (a control with findings fails all the same).
    pub exemption: Option<Exemption>,
    /// What is wrong, one per object or label; empty unless it fails.
    pub findings: Vec<Finding>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Exemption {
    pub reason: String,
    /// When it ends (RFC 3339); null when it is permanent.
    pub expires_at: Option<String>,
    /// True for an exemption without end.
    pub permanent: bool,
}

/// One row of the text output's table.
#[derive(Debug, Serialize)]
pub struct Finding {
    /// The object's kind (`Namespace` for a Pod Security label).
    pub kind: String,
    /// The object's name (the label key for a Pod Security label).
    pub name: String,
    /// One word: `Missing`, `Weakened`, `Modified`, `Conflict`, `Relabelled`, `Widened`,
    /// `Stale`, `Forbidden` or `WriteFailed`.
    pub reason: String,
    /// The reason in full, as the text output's REASON column says it.
    pub message: String,
}

impl ResultEntry {
    fn of(r: &ControlResult) -> ResultEntry {
        ResultEntry {
            baseline: r.baseline.clone(),
            control: r.control.clone(),
            result: r.result,
            message: r.message(),
            exemption: r.exemption.as_ref().map(|e| Exemption {
                reason: e.reason.clone(),
                expires_at: until(e),
                permanent: e.expires_at.is_none(),
            }),
            findings: r.drift.iter().map(Finding::of).collect(),
        }
    }
}

impl Finding {
    fn of(d: &Drift) -> Finding {
        Finding {
            kind: d.kind.to_string(),
            name: d.name.clone(),
            reason: d.reason.short().to_string(),
            message: d.reason.to_string(),
        }
    }
}

/// What the exit code is 0 for: no drift anywhere, no invalid baseline, and no PolicyReport at
/// our name that says anything else (a published view that lies fails like drift).
fn compliant(report: &Report) -> bool {
    report.admission.is_empty()
        && report.drift.is_empty()
        && report.invalid.is_empty()
        && report.false_reports.is_empty()
}

impl CheckReport {
    /// The document for `report`, from the same per-control results the PolicyReports hold.
    pub fn of(report: &Report) -> CheckReport {
        CheckReport {
            api_version: CHECK_API_VERSION,
            kind: "CheckReport",
            compliant: compliant(report),
            summary: Summary::of(report),
            baselines: BaselineEntry::all(report),
            admission: report
                .admission_results
                .iter()
                .map(ResultEntry::of)
                .collect(),
            namespaces: NamespaceEntry::all(report),
            false_reports: report.false_reports.iter().map(|r| r.to_string()).collect(),
        }
    }
}

impl Summary {
    fn of(report: &Report) -> Summary {
        let findings = report
            .admission
            .iter()
            .chain(report.drift.iter().map(|(_, d)| d));
        let conflicts = findings
            .clone()
            .filter(|d| d.reason == DriftReason::Conflict)
            .count();
        let counts = NamespaceCounts::of(report);
        Summary {
            baselines: report.baselines,
            invalid_baselines: report.invalid.len(),
            namespaces: report.namespaces,
            compliant_namespaces: counts.compliant,
            exempt_namespaces: counts.exempt,
            drifted_namespaces: counts.drifted,
            drift: findings.count() - conflicts,
            conflicts,
            exempt: report.exempt.len(),
            results: Tally::of(
                report
                    .admission_results
                    .iter()
                    .chain(report.controls.iter().map(|(_, r)| r)),
            ),
        }
    }
}

impl BaselineEntry {
    /// One entry per baseline checked, in the order listed.
    fn all(report: &Report) -> Vec<BaselineEntry> {
        report
            .baseline_names
            .iter()
            .map(|name| BaselineEntry::of(report, name))
            .collect()
    }

    fn of(report: &Report, name: &str) -> BaselineEntry {
        let invalid = report.invalid.iter().find(|i| i.baseline == name);
        BaselineEntry {
            name: name.to_string(),
            valid: invalid.is_none(),
            errors: invalid
                .into_iter()
                .flat_map(|i| &i.errors)
                .map(|e| FieldError {
                    path: e.path.clone(),
                    message: e.message.clone(),
                })
                .collect(),
            notices: report
                .unavailable
                .iter()
                .filter(|(baseline, _)| baseline == name)
                .map(|(_, protection)| {
                    format!(
                        "protection off, this API server does not serve what it needs: \
                         {protection}"
                    )
                })
                .chain(
                    (report.enforcing_recorded.iter())
                        .filter(|(baseline, _)| baseline == name)
                        .map(|(_, generation)| recorded_notice(*generation)),
                )
                .chain(
                    (report.identity_unrecorded.iter())
                        .filter(|baseline| *baseline == name)
                        .map(|_| IDENTITY_NOTICE.to_string()),
                )
                .chain(
                    report
                        .unclaimed
                        .iter()
                        .filter(|(baseline, _)| baseline == name)
                        .map(|(_, t)| unclaimed_notice(t)),
                )
                .collect(),
            permanent_exemptions: report
                .permanent
                .iter()
                .filter(|p| p.baseline == name)
                .cloned()
                .collect(),
        }
    }
}

impl NamespaceEntry {
    /// One entry per namespace with results, in the order `report` holds them (namespace order).
    fn all(report: &Report) -> Vec<NamespaceEntry> {
        let mut namespaces: Vec<NamespaceEntry> = Vec::new();
        for (namespace, r) in &report.controls {
            if namespaces.last().is_none_or(|n| &n.namespace != namespace) {
                namespaces.push(NamespaceEntry {
                    namespace: namespace.clone(),
                    status: "compliant",
                    results: Vec::new(),
                });
            }
            let entry = namespaces.last_mut().expect("just pushed");
            entry.results.push(ResultEntry::of(r));
        }
        for n in &mut namespaces {
            n.status = if n.results.iter().any(|r| r.result == Compliance::Fail) {
                "drifted"
            } else if n.results.iter().any(|r| r.exemption.is_some()) {
                "exempt"
            } else {
                "compliant"
            };
        }
        namespaces
    }
}

#[cfg(test)]
mod tests;
