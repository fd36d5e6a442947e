//! One namespace's results as a PolicyReport, in the Open Reports API or the legacy
//! `wgpolicyk8s.io` one that Policy Reporter read before 3.2: one result per baseline (policy) and
//! control (rule), with a summary and a hash of the content, so the operator writes it only when
//! it changes.

use std::hash::Hasher;

use serde_json::{Value, json};

use super::object::{FIELD_MANAGER, MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use super::results::{Compliance, ControlResult, Tally, until};

/// The name of the report in every namespace: one per namespace.
pub const REPORT_NAME: &str = "zerotrust-operator";
/// The annotation holding the hash of the rest of the report, read back at start-up so an
/// unchanged report is not written again.
pub const CONTENT_HASH_ANNOTATION: &str = "zerotrust.dev/content-hash";
/// What the report's results name as their source.
pub const REPORT_SOURCE: &str = FIELD_MANAGER;

/// Which PolicyReport API the operator writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportApi {
    /// `openreports.io/v1alpha1` `Report`, read by Policy Reporter 3.2 and later.
    OpenReports,
    /// `wgpolicyk8s.io/v1alpha2` `PolicyReport`, for Policy Reporter before 3.2.
    WgPolicy,
}

impl ReportApi {
    pub fn group(self) -> &'static str {
        match self {
            ReportApi::OpenReports => "openreports.io",
            ReportApi::WgPolicy => "wgpolicyk8s.io",
        }
    }

    pub fn version(self) -> &'static str {
        match self {
            ReportApi::OpenReports => "v1alpha1",
            ReportApi::WgPolicy => "v1alpha2",
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            ReportApi::OpenReports => "Report",
            ReportApi::WgPolicy => "PolicyReport",
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            ReportApi::OpenReports => "reports",
            ReportApi::WgPolicy => "policyreports",
        }
    }
}

/// A warning about a baseline rather than one of its controls, reported as a `warn` result: the
/// namespaces it trusts by name that do not exist (rule `UnclaimedNamespaces`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportWarning {
    pub baseline: String,
    pub rule: &'static str,
    /// At most [`super::results::MAX_MESSAGE`] bytes.
    pub message: String,
}

/// The report of `namespace` holding `results` (which must be non-empty: a namespace no baseline
/// selects has no report) and `warnings`, and the hash stored in its [`CONTENT_HASH_ANNOTATION`].
pub fn policy_report(
    api: ReportApi,
    namespace: &str,
    results: &[ControlResult],
    warnings: &[ReportWarning],
) -> (Value, u64) {
    let tally = Tally::of(results);
    let mut entries: Vec<Value> = results.iter().map(entry).collect();
    entries.extend(warnings.iter().map(warning_entry));
    let mut report = json!({
        "apiVersion": format!("{}/{}", api.group(), api.version()),
        "kind": api.kind(),
        "metadata": {
            "name": REPORT_NAME,
            "namespace": namespace,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE},
        },
        "scope": {"apiVersion": "v1", "kind": "Namespace", "name": namespace},
        "summary": {
            "pass": tally.pass,
            "fail": tally.fail,
            "skip": tally.skip,
            "warn": warnings.len(),
            "error": 0,
        },
        "results": entries,
    });
    if api == ReportApi::OpenReports {
        report["source"] = REPORT_SOURCE.into();
    }
    let hash = content_hash(&report);
    report["metadata"]["annotations"] = json!({CONTENT_HASH_ANNOTATION: hash.to_string()});
    (report, hash)
}

/// One result: the baseline is the policy, the control the rule. No timestamp, so an unchanged
/// result serializes the same on every pass.
fn entry(result: &ControlResult) -> Value {
    let mut properties = serde_json::Map::new();
    if result.result == Compliance::Fail {
        properties.insert("findings".into(), result.drift.len().to_string().into());
    }
    if let Some(t) = result.exemption.as_ref().and_then(until) {
        properties.insert("exemptUntil".into(), t.into());
    }
    let mut entry = json!({
        "source": REPORT_SOURCE,
        "policy": result.baseline,
        "rule": result.control,
        "result": result.result.as_str(),
        "message": result.message(),
        "scored": true,
    });
    if !properties.is_empty() {
        entry["properties"] = properties.into();
    }
    entry
}

/// One warning: the baseline is the policy; advisory, so not scored.
fn warning_entry(warning: &ReportWarning) -> Value {
    json!({
        "source": REPORT_SOURCE,
        "policy": warning.baseline,
        "rule": warning.rule,
        "result": "warn",
        "message": warning.message,
        "scored": false,
    })
}

/// The fields a reader of the report sees (Policy Reporter, `kubectl get`): what must say what
/// the operator found, whatever the metadata says.
const VISIBLE: [&str; 4] = ["scope", "summary", "results", "source"];

/// A hash of what `report` shows its readers, computed from the object as read: the
/// [`CONTENT_HASH_ANNOTATION`] is written by whoever writes the report, so it proves nothing.
pub fn visible_hash(report: &Value) -> u64 {
    let shown: serde_json::Map<String, Value> = VISIBLE
        .iter()
        .filter_map(|k| Some((k.to_string(), report.get(*k)?.clone())))
        .collect();
    content_hash(&Value::Object(shown))
}

/// Where a namespace's results go while a report we did not write holds [`REPORT_NAME`]: a name
/// of its own per squatter, so the true results are still published beside the false ones.
pub fn fallback_report_name(squatter_uid: &str) -> String {
    let mut hasher = siphasher::sip::SipHasher13::new_with_keys(0, 0);
    hasher.write(squatter_uid.as_bytes());
    format!("{REPORT_NAME}-{:08x}", hasher.finish() as u32)
}

/// A hash of `report` that stays the same across processes and builds (SipHash with fixed keys
/// over the JSON text, whose object keys serde_json keeps sorted).
fn content_hash(report: &Value) -> u64 {
    let mut hasher = siphasher::sip::SipHasher13::new_with_keys(0, 0);
    hasher.write(report.to_string().as_bytes());
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Drift, DriftReason, ExemptControl, Kind};

    fn result(control: &str, result: Compliance) -> ControlResult {
        ControlResult {
            baseline: "restricted".into(),
            control: control.into(),
            result,
            drift: Vec::new(),
            exemption: None,
        }
    }

    #[test]
    fn one_result_per_control_with_its_summary() {
        let mut fail = result("NetworkPolicy", Compliance::Fail);
        fail.drift.push(Drift {
            baseline: "restricted".into(),
            kind: Kind::NetworkPolicy,
            name: "zt-restricted-default-deny".into(),
            reason: DriftReason::Missing,
        });
        let mut skip = result("ResourceQuota", Compliance::Skip);
        skip.exemption = Some(ExemptControl {
            baseline: "restricted".into(),
            control: "ResourceQuota".into(),
            reason: "migration".into(),
            expires_at: Some(1_798_804_800),
        });
        let results = [result("LimitRange", Compliance::Pass), fail, skip];
        let (report, hash) = policy_report(ReportApi::OpenReports, "team-a", &results, &[]);
        assert_eq!(report["apiVersion"], "openreports.io/v1alpha1");
        assert_eq!(report["kind"], "Report");
        assert_eq!(report["metadata"]["namespace"], "team-a");
        assert_eq!(report["scope"]["name"], "team-a");
        assert_eq!(report["source"], REPORT_SOURCE);
        assert_eq!(
            report["summary"],
            json!({"pass": 1, "fail": 1, "skip": 1, "warn": 0, "error": 0})
        );
        let rows: Vec<(&str, &str, &str)> = report["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["policy"].as_str().unwrap(),
                    r["rule"].as_str().unwrap(),
                    r["result"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("restricted", "LimitRange", "pass"),
                ("restricted", "NetworkPolicy", "fail"),
                ("restricted", "ResourceQuota", "skip"),
            ]
        );
        assert_eq!(report["results"][1]["properties"]["findings"], "1");
        assert_eq!(
            report["results"][2]["properties"]["exemptUntil"],
            "2027-01-01T12:00:00Z"
        );
        assert_eq!(
            report["metadata"]["annotations"][CONTENT_HASH_ANNOTATION],
            hash.to_string()
        );
    }

    #[test]
    fn the_legacy_api_has_no_report_level_source() {
        let (report, _) = policy_report(
            ReportApi::WgPolicy,
            "team-a",
            &[result("LimitRange", Compliance::Pass)],
            &[],
        );
        assert_eq!(report["apiVersion"], "wgpolicyk8s.io/v1alpha2");
        assert_eq!(report["kind"], "PolicyReport");
        assert!(report.get("source").is_none());
        assert_eq!(report["results"][0]["source"], REPORT_SOURCE);
    }

    #[test]
    fn the_hash_changes_with_the_results_and_only_with_them() {
        let pass = [result("LimitRange", Compliance::Pass)];
        let fail = [result("LimitRange", Compliance::Fail)];
        let (_, a) = policy_report(ReportApi::OpenReports, "team-a", &pass, &[]);
        let (_, again) = policy_report(ReportApi::OpenReports, "team-a", &pass, &[]);
        let (_, failed) = policy_report(ReportApi::OpenReports, "team-a", &fail, &[]);
        let (_, elsewhere) = policy_report(ReportApi::OpenReports, "team-b", &pass, &[]);
        assert_eq!(a, again);
        assert_ne!(a, failed);
        assert_ne!(a, elsewhere);
        // Fixed across processes and builds: a report read back at start-up is recognised as
        // unchanged (a change here makes every operator upgrade rewrite every report once).
        assert_eq!(a, 18_075_307_615_014_356_869);
    }

    #[test]
    fn a_warning_is_a_warn_result_counted_in_the_summary() {
        let warning = ReportWarning {
            baseline: "restricted".into(),
            rule: "UnclaimedNamespaces",
            message: "namespaces trusted by name that do not exist: monitoring".into(),
        };
        let pass = [result("LimitRange", Compliance::Pass)];
        let (report, hash) = policy_report(
            ReportApi::OpenReports,
            "team-a",
            &pass,
            std::slice::from_ref(&warning),
        );
        assert_eq!(report["summary"]["warn"], 1);
        assert_eq!(report["results"][1]["result"], "warn");
        assert_eq!(report["results"][1]["rule"], "UnclaimedNamespaces");
        let (_, without) = policy_report(ReportApi::OpenReports, "team-a", &pass, &[]);
        assert_ne!(hash, without, "the warning's going rewrites the report");
    }

    #[test]
    fn the_visible_hash_ignores_metadata_and_sees_every_shown_field() {
        let pass = [result("LimitRange", Compliance::Pass)];
        let fail = [result("LimitRange", Compliance::Fail)];
        let (ours, _) = policy_report(ReportApi::OpenReports, "team-a", &pass, &[]);
        let mut forged = ours.clone();
        forged["metadata"]["annotations"][CONTENT_HASH_ANNOTATION] = "1".into();
        forged["metadata"]["labels"]["x"] = "y".into();
        assert_eq!(visible_hash(&ours), visible_hash(&forged));
        let (failing, _) = policy_report(ReportApi::OpenReports, "team-a", &fail, &[]);
        // A fail edited to pass, the annotation kept: the hash sees it.
        let mut edited = failing.clone();
        edited["results"] = ours["results"].clone();
        assert_ne!(visible_hash(&edited), visible_hash(&failing));
        for field in VISIBLE {
            let mut changed = ours.clone();
            changed[field] = "x".into();
            assert_ne!(visible_hash(&changed), visible_hash(&ours), "{field}");
        }
    }

    #[test]
    fn a_fallback_name_is_ours_plus_a_fixed_suffix_per_squatter() {
        let a = fallback_report_name("uid-a");
        assert_eq!(a, fallback_report_name("uid-a"));
        assert_ne!(a, fallback_report_name("uid-b"));
        assert!(a.starts_with("zerotrust-operator-") && a.len() == REPORT_NAME.len() + 9);
    }
}
