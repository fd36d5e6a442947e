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
    Compliance, ControlResult, DEFAULT_OPERATOR_NAMESPACE, Drift, DriftReason, Tally, until,
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

    /// The operator's user name, which its admission policies let through (as `run` found it).
    #[arg(long, env = "ZT_OPERATOR_USER", default_value = DEFAULT_OPERATOR_USER)]
    pub operator_user: String,

    /// The break-glass group the operator's admission policies let through.
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

/// The table and summary `check` prints for people.
fn print_text(report: &Report) {
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
    /// Protections it asks for that this API server cannot carry.
    pub notices: Vec<String>,
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
    /// When it ends (RFC 3339); null when it does not.
    pub expires_at: Option<String>,
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

/// What the exit code is 0 for: no drift anywhere and no invalid baseline.
fn compliant(report: &Report) -> bool {
    report.admission.is_empty() && report.drift.is_empty() && report.invalid.is_empty()
}

impl CheckReport {
    /// The document for `report`, from the same per-control results the PolicyReports hold.
    pub fn of(report: &Report) -> CheckReport {
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
        let findings = report
            .admission
            .iter()
            .chain(report.drift.iter().map(|(_, d)| d));
        let conflicts = findings
            .clone()
            .filter(|d| d.reason == DriftReason::Conflict)
            .count();
        let counts = NamespaceCounts::of(report);
        let summary = Summary {
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
        };
        let baselines = report
            .baseline_names
            .iter()
            .map(|name| {
                let invalid = report.invalid.iter().find(|i| &i.baseline == name);
                BaselineEntry {
                    name: name.clone(),
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
                        .collect(),
                }
            })
            .collect();
        CheckReport {
            api_version: CHECK_API_VERSION,
            kind: "CheckReport",
            compliant: compliant(report),
            summary,
            baselines,
            admission: report
                .admission_results
                .iter()
                .map(ResultEntry::of)
                .collect(),
            namespaces,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::parse_baselines;
    use crate::engine::{
        Environment, Kind, LiveState, admission_results, diff, render, results, validate,
    };

    /// A check of two namespaces under baseline `b`: `team-a` with nothing in place, `legacy`
    /// compliant but for its exempt LimitRange; a conflict on the admission policies; and an
    /// invalid baseline `bad`.
    fn sample() -> Report {
        let text = "apiVersion: zerotrust.dev/v1alpha1\nkind: SecurityBaseline\nmetadata: {name: b}\nspec:\n  networkPolicy: {defaultDeny: [Ingress]}\n  limitRange: {limits: [{type: Container, default: {cpu: 500m}}]}\n  exemptions:\n    - {namespaces: [legacy], controls: [LimitRange], reason: migrating, expiresAt: '2027-01-01T12:00:00Z'}\n";
        let valid = validate(&parse_baselines(text).unwrap()[0]).unwrap();
        let env = Environment {
            now: 1_798_804_000,
            ..Environment::new("zerotrust-system")
        };
        let mut report = Report {
            baselines: 2,
            baseline_names: vec!["b".into(), "bad".into()],
            invalid: vec![crate::engine::InvalidSpec {
                baseline: "bad".into(),
                errors: vec![crate::engine::FieldError {
                    path: "spec.namespaceSelector".into(),
                    message: "unknown operator".into(),
                }],
            }],
            unavailable: vec![("b".into(), "mutating admission policies")],
            ..Report::default()
        };
        for namespace in ["legacy", "team-a"] {
            let desired = render(
                std::slice::from_ref(&valid),
                namespace,
                &Default::default(),
                &env,
            );
            let live = if namespace == "legacy" {
                LiveState::complying(&desired, &Default::default())
            } else {
                LiveState::default()
            };
            let drift = diff(&desired, &live);
            report.namespaces += 1;
            report.exempt.extend(
                desired
                    .exempt
                    .iter()
                    .map(|e| (namespace.to_string(), e.clone())),
            );
            report.controls.extend(
                results(&desired, &drift)
                    .into_iter()
                    .map(|r| (namespace.to_string(), r)),
            );
            report
                .drift
                .extend(drift.into_iter().map(|d| (namespace.to_string(), d)));
        }
        report.admission = vec![Drift {
            baseline: "b".into(),
            kind: Kind::ValidatingAdmissionPolicy,
            name: "zt-b-tamper".into(),
            reason: DriftReason::Conflict,
        }];
        report.admission_results = admission_results([], &report.admission);
        report
    }

    #[test]
    fn the_json_document_carries_the_version_and_the_documented_fields() {
        let report = sample();
        let json = serde_json::to_value(CheckReport::of(&report)).unwrap();
        assert_eq!(json["apiVersion"], "zerotrust.dev/check/v1");
        assert_eq!(json["kind"], "CheckReport");
        assert_eq!(json["compliant"], false);
        let summary = &json["summary"];
        assert_eq!(summary["baselines"], 2);
        assert_eq!(summary["invalidBaselines"], 1);
        assert_eq!(summary["namespaces"], 2);
        assert_eq!(summary["compliantNamespaces"], 0);
        assert_eq!(summary["exemptNamespaces"], 1);
        assert_eq!(summary["driftedNamespaces"], 1);
        assert_eq!(summary["conflicts"], 1);
        assert_eq!(summary["drift"], report.drift.len());
        assert_eq!(summary["exempt"], 1);
        assert_eq!(
            summary["results"],
            serde_json::json!({"pass": 1, "fail": 3, "skip": 1})
        );

        let baselines = json["baselines"].as_array().unwrap();
        assert_eq!(baselines[0]["name"], "b");
        assert_eq!(baselines[0]["valid"], true);
        assert_eq!(baselines[0]["errors"], serde_json::json!([]));
        assert!(
            baselines[0]["notices"][0]
                .as_str()
                .unwrap()
                .ends_with("mutating admission policies")
        );
        assert_eq!(baselines[1]["valid"], false);
        assert_eq!(
            baselines[1]["errors"][0],
            serde_json::json!({"path": "spec.namespaceSelector", "message": "unknown operator"})
        );

        let admission = &json["admission"][0];
        assert_eq!(admission["control"], "AdmissionPolicies");
        assert_eq!(admission["result"], "fail");
        assert_eq!(admission["findings"][0]["reason"], "Conflict");

        let namespaces = json["namespaces"].as_array().unwrap();
        let names: Vec<&str> = namespaces
            .iter()
            .map(|n| n["namespace"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["legacy", "team-a"]);
        let legacy = &namespaces[0];
        assert_eq!(legacy["status"], "exempt");
        let limit_range = &legacy["results"][0];
        assert_eq!(
            limit_range,
            &serde_json::json!({
                "baseline": "b",
                "control": "LimitRange",
                "result": "skip",
                "message": "exempt until 2027-01-01T12:00:00Z: migrating",
                "exemption": {"reason": "migrating", "expiresAt": "2027-01-01T12:00:00Z"},
                "findings": [],
            })
        );
        assert_eq!(legacy["results"][1]["result"], "pass");
        assert_eq!(legacy["results"][1]["exemption"], serde_json::Value::Null);

        let team_a = &namespaces[1];
        assert_eq!(team_a["status"], "drifted");
        let network = team_a["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["control"] == "NetworkPolicy")
            .unwrap();
        assert_eq!(network["result"], "fail");
        assert_eq!(
            network["findings"][0],
            serde_json::json!({
                "kind": "NetworkPolicy",
                "name": "zt-b-default-deny",
                "reason": "Missing",
                "message": "Missing",
            })
        );
    }

    #[test]
    fn the_yaml_document_is_the_json_document() {
        let report = sample();
        let document = CheckReport::of(&report);
        let yaml = serde_saphyr::to_string(&document).unwrap();
        let from_yaml: serde_json::Value = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(from_yaml, serde_json::to_value(&document).unwrap());
        assert!(
            yaml.starts_with("apiVersion: zerotrust.dev/check/v1\n"),
            "{yaml}"
        );
    }

    #[test]
    fn compliant_is_what_exit_code_0_means() {
        let mut report = sample();
        assert!(!CheckReport::of(&report).compliant);
        report.invalid.clear();
        report.admission.clear();
        report.drift.clear();
        assert!(CheckReport::of(&report).compliant);
    }
}
