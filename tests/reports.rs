//! PolicyReports (`run --policy-reports`) on the real control plane, with the CRDs their projects
//! ship (hack/report-crds.sh): one report per selected namespace that says exactly what
//! `check -o json` says, one result per control, never written over a same-named report of
//! someone else's, deleted with the namespace's last baseline, and no write while idle; without
//! the CRD the operator says so once and enforces as usual. A tenant who may write reports cannot
//! make ours lie: edits and deletes are undone within seconds, a squatter under our name is a
//! finding and our results are published beside it.
//!
//! The tests run one at a time (`SERIAL`): each installs or removes CRDs cluster-wide, and counts
//! the writes of the one operator it runs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::{Api, Client};
use serde_json::Value;
use zerotrust_testkit::cluster::{COMMAND_DEADLINE, repo};
use zerotrust_testkit::*;

const WAIT: Duration = Duration::from_secs(60);
/// How long the operator is watched for writes once everything is in place.
const IDLE: Duration = Duration::from_secs(10);

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const OPEN_REPORTS_CRD: &str = "reports.openreports.io";
const LEGACY_CRD: &str = "policyreports.wgpolicyk8s.io";

/// The cached CRD files, fetched by `hack/test.sh` (never from inside a test).
fn crd_file(crd: &str) -> PathBuf {
    let mut script = Command::new(repo().join("hack/report-crds.sh"));
    script.arg("dir");
    let out = run_bounded(&mut script, None, COMMAND_DEADLINE);
    assert!(
        out.status.success(),
        "{}\nFetch them once with `hack/report-crds.sh build`, or run `hack/test.sh`.",
        stderr(&out)
    );
    let dir = PathBuf::from(stdout(&out).trim());
    match crd {
        OPEN_REPORTS_CRD => dir.join("openreports/openreports.io_reports.yaml"),
        _ => dir.join("wgpolicyk8s/wgpolicyk8s.io_policyreports.yaml"),
    }
}

fn kubectl(args: &[&str]) {
    let out = control_plane().kubectl(args, None);
    assert!(out.status.success(), "kubectl {args:?}: {}", stderr(&out));
}

fn install(crd: &str) {
    let file = crd_file(crd);
    kubectl(&["apply", "--server-side", "-f", file.to_str().unwrap()]);
    kubectl(&[
        "wait",
        "--for=condition=Established",
        &format!("crd/{crd}"),
        "--timeout=60s",
    ]);
}

fn uninstall(crd: &str) {
    kubectl(&[
        "delete",
        "crd",
        crd,
        "--ignore-not-found",
        "--wait=true",
        "--timeout=120s",
    ]);
}

fn reports_api(client: &Client, namespace: &str, legacy: bool) -> Api<DynamicObject> {
    let (gvk, plural) = if legacy {
        (
            GroupVersionKind::gvk("wgpolicyk8s.io", "v1alpha2", "PolicyReport"),
            "policyreports",
        )
    } else {
        (
            GroupVersionKind::gvk("openreports.io", "v1alpha1", "Report"),
            "reports",
        )
    };
    Api::namespaced_with(
        client.clone(),
        namespace,
        &ApiResource::from_gvk_with_plural(&gvk, plural),
    )
}

/// (baseline, control, result, message) for each result, as sorted as both sides sort them.
type Rows = Vec<(String, String, String, String)>;

/// What `check -o json --baseline <baseline>` says of each namespace.
fn checked(baseline: &str) -> BTreeMap<String, Rows> {
    let mut check = Command::new(operator_binary());
    check
        .args(["check", "-o", "json", "--baseline", baseline])
        .args(["--operator-user", "zerotrust-operator", "--kubeconfig"])
        .arg(&control_plane().kubeconfig);
    let out = run_bounded(&mut check, None, COMMAND_DEADLINE);
    let report: Value = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("check -o json: {e}\n{}{}", stdout(&out), stderr(&out)));
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    report["namespaces"]
        .as_array()
        .expect("namespaces")
        .iter()
        .map(|ns| {
            let rows = ns["results"]
                .as_array()
                .expect("results")
                .iter()
                .map(|r| {
                    (
                        s(&r["baseline"]),
                        s(&r["control"]),
                        s(&r["result"]),
                        s(&r["message"]),
                    )
                })
                .collect();
            (s(&ns["namespace"]), rows)
        })
        .collect()
}

/// The report's results as rows, and its summary.
fn report_rows(report: &DynamicObject) -> (Rows, Value) {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let rows = report.data["results"]
        .as_array()
        .map(|results| {
            results
                .iter()
                .map(|r| {
                    (
                        s(&r["policy"]),
                        s(&r["rule"]),
                        s(&r["result"]),
                        s(&r["message"]),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    (rows, report.data["summary"].clone())
}

/// Waits until the reports of `namespaces` hold what `check --baseline` says of them; returns
/// those rows per namespace.
async fn wait_matching(
    client: &Client,
    baseline: &str,
    namespaces: &[&str],
    legacy: bool,
) -> BTreeMap<String, Rows> {
    eventually(WAIT, "the reports say what check says", || async {
        let checked = checked(baseline);
        for ns in namespaces {
            let report = reports_api(client, ns, legacy)
                .get_opt("zerotrust-operator")
                .await
                .ok()??;
            if report_rows(&report).0 != *checked.get(*ns)? {
                return None;
            }
        }
        Some(checked)
    })
    .await
}

fn summary_of(rows: &Rows) -> Value {
    let count = |r: &str| rows.iter().filter(|row| row.2 == r).count();
    serde_json::json!({"pass": count("pass"), "fail": count("fail"), "skip": count("skip"), "warn": 0, "error": 0})
}

#[tokio::test]
async fn reports_match_check_stay_bounded_leave_others_alone_and_are_quiet_while_idle() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    let tag = unique("reports");
    let (enforce, audit) = (format!("{tag}-e"), format!("{tag}-a"));
    let _cleanup = Cleanup(vec![enforce.clone(), audit.clone()]);
    let kubeconfig = control_plane().operator_kubeconfig();
    let as_audited = ["--kubeconfig", kubeconfig.to_str().unwrap()];

    // Without the CRD: said once, and the baseline is enforced all the same.
    uninstall(OPEN_REPORTS_CRD);
    let compliant = namespace(&client, &format!("{tag}-ok"), &[("zt-test", &enforce)]).await;
    let exempt = namespace(&client, &format!("{tag}-ex"), &[("zt-test", &enforce)]).await;
    let foreign = namespace(&client, &format!("{tag}-fr"), &[("zt-test", &enforce)]).await;
    let drifted = namespace(&client, &format!("{tag}-dr"), &[("zt-test", &audit)]).await;
    apply(&baseline(
        &enforce,
        &enforce,
        &format!(
            "networkPolicy: {{defaultDeny: [Ingress, Egress], allowDNS: true}}\n\
             limitRange: {{limits: [{{type: Container, default: {{cpu: 500m}}}}]}}\n\
             resourceQuota: {{hard: {{pods: '20'}}}}\n\
             exemptions: [{{namespaces: [{}], controls: [ResourceQuota], reason: migration, permanent: true}}]",
            exempt.name
        ),
    ));
    apply(&baseline(
        &audit,
        &audit,
        "mode: Audit\nnetworkPolicy: {defaultDeny: [Ingress]}\n",
    ));
    let mut args = vec!["--policy-reports", "openreports"];
    args.extend(as_audited);
    let without = OperatorProcess::start("reports-without-crd", &args);
    let deny = format!("zt-{enforce}-default-deny");
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &compliant.name);
    eventually(WAIT, "onboarded without the CRD", || async {
        policies.get_opt(&deny).await.ok()?.map(|_| ())
    })
    .await;
    let said = without
        .log_text()
        .matches("does not serve this kind")
        .count();
    assert_eq!(said, 1, "said once: {}", without.log.display());
    drop(without);

    // With it: a report of someone else's is there first, under our name.
    install(OPEN_REPORTS_CRD);
    let theirs = serde_json::json!({
        "apiVersion": "openreports.io/v1alpha1", "kind": "Report",
        "metadata": {"name": "zerotrust-operator", "namespace": foreign.name,
                     "labels": {"app.kubernetes.io/managed-by": "zerotrust-operator"}},
        "summary": {"pass": 99},
    });
    let theirs: DynamicObject = serde_json::from_value(theirs).unwrap();
    reports_api(&client, &foreign.name, false)
        .create(&Default::default(), &theirs)
        .await
        .unwrap();
    let operator = OperatorProcess::start("reports", &args);
    let names = [compliant.name.as_str(), exempt.name.as_str()];
    let enforced = wait_matching(&client, &enforce, &names, false).await;
    let audited = wait_matching(&client, &audit, &[drifted.name.as_str()], false).await;

    // What they say, beyond matching check: every control of each baseline, one result each.
    let results = |ns: &str, rows: &BTreeMap<String, Rows>| -> Vec<(String, String)> {
        rows[ns]
            .iter()
            .map(|r| (r.1.clone(), r.2.clone()))
            .collect()
    };
    let pair = |c: &str, r: &str| (c.to_string(), r.to_string());
    assert_eq!(
        results(&compliant.name, &enforced),
        [
            pair("LimitRange", "pass"),
            pair("NetworkPolicy", "pass"),
            pair("ResourceQuota", "pass")
        ]
    );
    assert_eq!(
        results(&exempt.name, &enforced),
        [
            pair("LimitRange", "pass"),
            pair("NetworkPolicy", "pass"),
            pair("ResourceQuota", "skip")
        ]
    );
    assert_eq!(
        results(&drifted.name, &audited),
        [pair("NetworkPolicy", "fail")]
    );
    for (ns, rows) in [
        (&compliant.name, &enforced),
        (&exempt.name, &enforced),
        (&drifted.name, &audited),
    ] {
        let api = reports_api(&client, ns, false);
        let all = api.list(&ListParams::default()).await.unwrap().items;
        assert_eq!(all.len(), 1, "one report in {ns}");
        let (_, summary) = report_rows(&all[0]);
        assert_eq!(summary, summary_of(&rows[ns.as_str()]), "{ns}");
        assert_eq!(all[0].data["scope"]["name"], ns.as_str());
        assert_eq!(all[0].data["source"], "zerotrust-operator");
    }
    let left = reports_api(&client, &foreign.name, false)
        .get("zerotrust-operator")
        .await
        .unwrap();
    assert_eq!(
        left.data["summary"],
        serde_json::json!({"pass": 99}),
        "someone else's report is left as it was"
    );
    assert!(left.data.get("results").is_none());
    assert!(
        operator.log_text().contains("exists and is not ours"),
        "{}",
        operator.log.display()
    );

    // A pass whose results are unchanged writes no report: a label of no concern to any
    // baseline makes every selecting namespace's pass run again.
    let audit_log = control_plane().audit_log();
    let mark = audit_log.mark();
    let ok = "zerotrust_reconciles_total{result=\"ok\"}";
    let before = operator.metric(ok).expect("the reconcile counter");
    for ns in names {
        kubectl(&["label", "namespace", ns, "unrelated=1"]);
    }
    eventually(WAIT, "both namespaces reconciled again", || async {
        (operator.metric(ok)? >= before + 2.0).then_some(())
    })
    .await;
    let reports_written: Vec<String> = audit_log
        .writes_done_since(mark)
        .into_iter()
        .filter(|w| w.contains(" reports "))
        .collect();
    assert!(
        reports_written.is_empty(),
        "unchanged results were written: {reports_written:?}"
    );

    // Idle: nothing changes, so nothing is written (reports included).
    let mark = audit_log.mark();
    let quiet_until = Instant::now() + IDLE;
    while Instant::now() < quiet_until {
        let writes = audit_log.writes_done_since(mark);
        assert!(writes.is_empty(), "writes while idle: {writes:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The namespace's last baseline leaves it: so does its report.
    kubectl(&["label", "namespace", &drifted.name, "zt-test-"]);
    let drifted_reports = reports_api(&client, &drifted.name, false);
    eventually(
        WAIT,
        "the report deleted with the last baseline",
        || async {
            drifted_reports
                .get_opt("zerotrust-operator")
                .await
                .ok()?
                .is_none()
                .then_some(())
        },
    )
    .await;
    // A result that changes is written: the exemption ends when the baseline drops it.
    apply(&baseline(
        &enforce,
        &enforce,
        "networkPolicy: {defaultDeny: [Ingress, Egress], allowDNS: true}\n\
         limitRange: {limits: [{type: Container, default: {cpu: 500m}}]}\n\
         resourceQuota: {hard: {pods: '20'}}",
    ));
    let enforced = wait_matching(&client, &enforce, &names, false).await;
    assert_eq!(
        results(&exempt.name, &enforced),
        results(&compliant.name, &enforced)
    );

    // A restarted operator reads back what its reports hold, and writes none of them again.
    drop(operator);
    let mark = audit_log.mark();
    let restarted = OperatorProcess::start("reports-restarted", &args);
    // Every namespace the Enforce baseline selects: both reported ones compliant, the one whose
    // report at our name is someone else's a conflict (what readers find there is not ours).
    let count =
        |state: &str| format!("zerotrust_namespaces{{baseline=\"{enforce}\",state=\"{state}\"}}");
    eventually(
        WAIT,
        "the restarted operator passes all three namespaces",
        || async {
            (restarted.metric(&count("compliant"))? == 2.0
                && restarted.metric(&count("drifted"))? == 1.0)
                .then_some(())
        },
    )
    .await;
    let rewritten: Vec<String> = audit_log
        .writes_done_since(mark)
        .into_iter()
        .filter(|w| w.contains(" reports "))
        .collect();
    assert!(
        rewritten.is_empty(),
        "rewritten after a restart: {rewritten:?}"
    );
}

#[tokio::test]
async fn the_legacy_policy_report_holds_the_same_results() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    let tag = unique("legacy");
    let _cleanup = Cleanup(vec![tag.clone()]);
    install(LEGACY_CRD);
    let drifted = namespace(&client, &tag, &[("zt-test", &tag)]).await;
    apply(&baseline(
        &tag,
        &tag,
        "mode: Audit\nnetworkPolicy: {defaultDeny: [Ingress]}\nresourceQuota: {hard: {pods: '20'}}\n",
    ));
    let _operator = OperatorProcess::start("reports-legacy", &["--policy-reports", "wgpolicyk8s"]);
    let rows = wait_matching(&client, &tag, &[drifted.name.as_str()], true).await;
    assert_eq!(
        rows[&drifted.name]
            .iter()
            .map(|r| (r.1.as_str(), r.2.as_str()))
            .collect::<Vec<_>>(),
        [("NetworkPolicy", "fail"), ("ResourceQuota", "fail")]
    );
    let report = reports_api(&client, &drifted.name, true)
        .get("zerotrust-operator")
        .await
        .unwrap();
    assert_eq!(report.types.as_ref().unwrap().kind, "PolicyReport");
    assert_eq!(report_rows(&report).1, summary_of(&rows[&drifted.name]));
}

/// Names that can be squatted (issue 24, item 6): a baseline trusting a namespace by name that does
/// not exist gets a `warn` result in the report of each namespace it selects, until that
/// namespace exists (cleared at the selected namespace's next pass).
#[tokio::test]
async fn an_unclaimed_name_is_a_warn_result_until_the_namespace_exists() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    let tag = unique("unclaimed-report");
    let _cleanup = Cleanup(vec![tag.clone()]);
    install(OPEN_REPORTS_CRD);
    let selected = namespace(&client, &tag, &[("zt-test", &tag)]).await;
    let monitoring = format!("{tag}-mon");
    apply(&baseline(
        &tag,
        &tag,
        &format!(
            "networkPolicy:\n  defaultDeny: [Ingress]\n  allow:\n  - name: monitoring\n    direction: Ingress\n    peers: [{{namespace: {monitoring}}}]"
        ),
    ));
    let _operator =
        OperatorProcess::start("reports-unclaimed", &["--policy-reports", "openreports"]);
    let reports = reports_api(&client, &selected.name, false);
    let warned = |report: &DynamicObject| {
        report_rows(report)
            .0
            .iter()
            .any(|(policy, rule, result, message)| {
                policy == &tag
                    && rule == "UnclaimedNamespaces"
                    && result == "warn"
                    && message.contains(&monitoring)
            })
    };
    let report = eventually(WAIT, "the warn result", || async {
        let report = reports.get("zerotrust-operator").await.ok()?;
        warned(&report).then_some(report)
    })
    .await;
    assert_eq!(report_rows(&report).1["warn"], 1);

    let _claimed = namespace(&client, &monitoring, &[]).await;
    // The selected namespace's next pass (any change of it queues one) drops the warning.
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    namespaces
        .patch(
            &selected.name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"metadata": {"labels": {"touched": "1"}}})),
        )
        .await
        .unwrap();
    eventually(WAIT, "the warn result gone", || async {
        let report = reports.get("zerotrust-operator").await.ok()?;
        (!warned(&report) && report_rows(&report).1["warn"] == 0).then_some(())
    })
    .await;
}

/// Takes the grant back when dropped, so no other test runs with it.
struct ReportWriteGrant;

impl Drop for ReportWriteGrant {
    fn drop(&mut self) {
        let _ = control_plane().kubectl(
            &[
                "delete",
                "clusterrole",
                "zt-test-reports-admin",
                "--ignore-not-found",
            ],
            None,
        );
    }
}

/// Grants the built-in `admin` role write on `openreports.io` reports the way Kyverno's chart
/// does for its report kinds: an aggregated ClusterRole.
fn grant_tenants_report_write() -> ReportWriteGrant {
    apply(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\n\
         metadata: {name: zt-test-reports-admin, labels: {rbac.authorization.k8s.io/aggregate-to-admin: 'true'}}\n\
         rules: [{apiGroups: [openreports.io], resources: [reports], verbs: [get, list, watch, create, update, patch, delete]}]\n",
    );
    ReportWriteGrant
}

/// `check -o json` over every baseline: its exit code and the namespaces of its false reports.
fn false_reports_in_check() -> (Option<i32>, Vec<String>) {
    let mut check = Command::new(operator_binary());
    check
        .args(["check", "-o", "json"])
        .args(["--operator-user", "zerotrust-operator", "--kubeconfig"])
        .arg(&control_plane().kubeconfig);
    let out = run_bounded(&mut check, None, COMMAND_DEADLINE);
    let report: Value = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("check -o json: {e}\n{}{}", stdout(&out), stderr(&out)));
    let found = report["falseReports"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    (out.status.code(), found)
}

/// The tenant's edit: every result passes, the summary says so, the hash annotation is kept.
async fn edit_to_pass(reports: &Api<DynamicObject>) {
    let report = reports.get("zerotrust-operator").await.unwrap();
    let mut results = report.data["results"].clone();
    for r in results.as_array_mut().unwrap() {
        r["result"] = "pass".into();
    }
    let n = results.as_array().unwrap().len();
    let patch = serde_json::json!({"results": results, "summary": {"pass": n, "fail": 0}});
    reports
        .patch(
            "zerotrust-operator",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .expect("the tenant may edit reports");
}

/// Waits until our report in `namespace` says what check says again.
async fn true_again(
    client: &Client,
    namespace: &str,
    baseline: &str,
    within: Duration,
    what: &str,
) {
    let reports = reports_api(client, namespace, false);
    let name = "zerotrust-operator";
    eventually(within, what, || async {
        let report = reports.get_opt(name).await.ok()??;
        let checked = checked(baseline);
        (report_rows(&report).0 == *checked.get(namespace)?).then_some(())
    })
    .await;
}

/// How soon a report someone else edited or deleted says the truth again (issue 31).
const RESTORED: Duration = Duration::from_secs(10);

#[tokio::test]
async fn reports_tenants_edit_delete_or_squat_are_put_right_and_found() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    let tag = unique("lies");
    let _cleanup = Cleanup(vec![tag.clone()]);
    install(OPEN_REPORTS_CRD);
    let _grant = grant_tenants_report_write();
    let edited = namespace(&client, &format!("{tag}-ed"), &[("zt-test", &tag)]).await;
    let squatted = namespace(&client, &format!("{tag}-sq"), &[]).await;
    let (_, tenant_a) = tenant_admin(&edited.name).await;
    let (_, tenant_b) = tenant_admin(&squatted.name).await;
    let theirs_a = reports_api(&tenant_a, &edited.name, false);
    let theirs_b = reports_api(&tenant_b, &squatted.name, false);

    // Before its namespace is selected, a tenant puts an all-pass report under our name, with
    // our label (aggregation makes the grant effective within moments).
    let squat: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "openreports.io/v1alpha1", "kind": "Report",
        "metadata": {"name": "zerotrust-operator", "namespace": squatted.name,
                     "labels": {"app.kubernetes.io/managed-by": "zerotrust-operator"}},
        "summary": {"pass": 1},
        "results": [{"policy": tag, "rule": "NetworkPolicy", "result": "pass", "source": "zerotrust-operator"}],
    }))
    .unwrap();
    eventually(WAIT, "the tenant may create reports", || async {
        theirs_b.create(&Default::default(), &squat).await.ok()
    })
    .await;

    apply(&baseline(
        &tag,
        &tag,
        "mode: Audit\nnetworkPolicy: {defaultDeny: [Ingress]}\n",
    ));
    let args = ["--policy-reports", "openreports"];
    let operator = OperatorProcess::start("reports-lies", &args);
    wait_matching(&client, &tag, &[edited.name.as_str()], false).await;

    // Edited from fail to pass (hash annotation kept): true again within seconds.
    edit_to_pass(&theirs_a).await;
    true_again(&client, &edited.name, &tag, RESTORED, "the edit undone").await;
    let edits = "zerotrust_policy_report_findings_total{reason=\"ReportEdited\"}";
    assert!(operator.metric(edits).unwrap_or(0.0) >= 1.0, "{edits}");

    // Deleted: back within seconds, without any result changing.
    theirs_a
        .delete("zerotrust-operator", &Default::default())
        .await
        .expect("the tenant may delete reports");
    true_again(&client, &edited.name, &tag, RESTORED, "the report back").await;
    let deletes = "zerotrust_policy_report_findings_total{reason=\"ReportDeleted\"}";
    assert!(operator.metric(deletes).unwrap_or(0.0) >= 1.0, "{deletes}");

    // The squatted namespace selected: the squatter is left as it was, our results go under
    // another name within seconds, and check fails on the report that lies.
    kubectl(&[
        "label",
        "namespace",
        &squatted.name,
        &format!("zt-test={tag}"),
    ]);
    let ours_b = reports_api(&client, &squatted.name, false);
    let fallback = eventually(RESTORED, "our results under another name", || async {
        let all = ours_b.list(&ListParams::default()).await.ok()?.items;
        let other = all
            .iter()
            .find(|r| r.metadata.name.as_deref() != Some("zerotrust-operator"))?;
        let checked = checked(&tag);
        (report_rows(other).0 == *checked.get(&squatted.name)?)
            .then(|| other.metadata.name.clone().unwrap())
    })
    .await;
    assert!(fallback.starts_with("zerotrust-operator-"), "{fallback}");
    let left = ours_b.get("zerotrust-operator").await.unwrap();
    assert_eq!(
        left.data["summary"],
        serde_json::json!({"pass": 1}),
        "left alone"
    );
    let squats = "zerotrust_policy_report_findings_total{reason=\"ReportSquatted\"}";
    assert!(operator.metric(squats).unwrap_or(0.0) >= 1.0, "{squats}");
    // In the baseline's status, as a conflict, and as an Event on the baseline (kept, as for
    // every cluster-scoped object, in `default`, out of the tenant's reach).
    let status = wait_status(&client, &tag, WAIT, "the squatter in status", |s| {
        s.drift.iter().any(|d| {
            d.namespace == squatted.name && d.kind == "Report" && d.name == "zerotrust-operator"
        })
    })
    .await;
    assert_eq!(condition(&status, "Conflict").map(|c| c.0), Some("True"));
    let on_baseline = events_for(&client, "default", "ReportSquatted").await;
    assert!(
        on_baseline.iter().any(|e| e.starts_with(&squatted.name)),
        "{on_baseline:?}"
    );
    let (code, found) = false_reports_in_check();
    assert_eq!(code, Some(1), "check fails on a report that lies");
    assert!(
        found
            .iter()
            .any(|f| f.starts_with(&format!("{}:", squatted.name))),
        "{found:?}"
    );
    assert!(
        !found
            .iter()
            .any(|f| f.starts_with(&format!("{}:", edited.name))),
        "{found:?}"
    );

    // Edited while the operator is down: a restarted operator reads what the report shows,
    // not its hash annotation, and puts it right.
    drop(operator);
    edit_to_pass(&theirs_a).await;
    let (code, found) = false_reports_in_check();
    assert_eq!(code, Some(1));
    assert!(
        found
            .iter()
            .any(|f| f.starts_with(&format!("{}:", edited.name))),
        "{found:?}"
    );
    let _restarted = OperatorProcess::start("reports-lies-restarted", &args);
    // Within WAIT: a restarted operator first takes the lease and syncs its caches.
    true_again(
        &client,
        &edited.name,
        &tag,
        WAIT,
        "the edit undone after a restart",
    )
    .await;
}
