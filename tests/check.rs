//! `zerotrust-operator check` as a CI gate must not pass by mistake: each way it can fail has its
//! exit code and a message that says what is wrong (an unreadable cluster, a cluster without the
//! CRD, a baseline name that does not exist, an invalid baseline). Its passing and drift cases run
//! beside a live operator in tests/operator/audit.rs.

use std::process::{Command, Output};
use std::time::Duration;

use zerotrust_testkit::cluster::COMMAND_DEADLINE;
use zerotrust_testkit::*;

/// `check ARGS --kubeconfig KUBECONFIG`.
fn check(kubeconfig: &std::path::Path, args: &[&str]) -> Output {
    let mut check = Command::new(operator_binary());
    check
        .arg("check")
        .args(args)
        .args(["--operator-user", ADMIN_USER, "--kubeconfig"])
        .arg(kubeconfig);
    run_bounded(&mut check, None, COMMAND_DEADLINE)
}

#[test]
fn a_baseline_name_that_does_not_exist_fails_the_gate() {
    let plane = control_plane();
    let name = unique("no-such-baseline");
    let out = check(&plane.kubeconfig, &["--baseline", &name]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains(&format!("SecurityBaseline \"{name}\" not found")),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_invalid_baseline_fails_the_gate_naming_the_field() {
    let plane = control_plane();
    let name = unique("check-invalid");
    let _cleanup = Cleanup(vec![name.clone()]);
    // Stored (the schema cannot express selector operators), invalid for the engine.
    apply(&format!(
        "apiVersion: zerotrust.dev/v1alpha1\nkind: SecurityBaseline\nmetadata: {{name: {name}}}\nspec:\n  namespaceSelector: {{matchExpressions: [{{key: zt-test, operator: Near, values: [x]}}]}}\n  networkPolicy: {{defaultDeny: [Ingress]}}\n"
    ));
    let out = check(&plane.kubeconfig, &["--baseline", &name]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    assert!(
        text.lines().any(|l| l.starts_with("INVALID")
            && l.contains(&name)
            && l.contains("spec.namespaceSelector.matchExpressions[0].operator")),
        "{text}"
    );
}

#[test]
fn an_unreachable_cluster_exits_2() {
    // The admin kubeconfig pointed at a port nothing listens on.
    let plane = control_plane();
    let kubeconfig = std::fs::read_to_string(&plane.kubeconfig).unwrap();
    let port = zerotrust_testkit::operator::free_port();
    let server = kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .expect("a server line")
        .to_string();
    let unreachable = kubeconfig.replace(&server, &format!("https://127.0.0.1:{port}"));
    let path = std::env::temp_dir().join(format!("zt-unreachable-{}.kubeconfig", port));
    std::fs::write(&path, unreachable).unwrap();
    let started = std::time::Instant::now();
    let out = check(&path, &[]);
    std::fs::remove_file(&path).ok();
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(stderr(&out).starts_with("error:"), "{}", stderr(&out));
    assert!(
        stdout(&out).is_empty(),
        "no report from a cluster it could not read"
    );
    assert!(started.elapsed() < Duration::from_secs(120));
}

#[test]
fn a_cluster_without_the_crd_says_how_to_install_it() {
    let plane = SeparateControlPlane::up("nocrd", "");
    let out = check(&plane.kubeconfig, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{}{err}", stdout(&out));
    assert!(
        err.contains("the SecurityBaseline CRD is not installed") && err.contains("kubectl apply"),
        "{err}"
    );
    assert!(!err.contains("404 page not found"), "{err}");
}

#[tokio::test]
async fn check_o_json_reports_each_control_with_its_version_and_exit_code() {
    let plane = control_plane();
    let client = client().await;
    let tag = unique("check-json");
    let ns = namespace(&client, &tag, &[("zt-test", &tag)]).await;
    let name = tag.clone();
    let _cleanup = Cleanup(vec![name.clone()]);
    // Audit: nothing is created for it, by this test or any operator running beside it, so the
    // namespace's NetworkPolicy stays missing.
    apply(&baseline(
        &name,
        &tag,
        "mode: Audit\nnetworkPolicy: {defaultDeny: [Ingress]}\n",
    ));

    let out = check(&plane.kubeconfig, &["--baseline", &name, "-o", "json"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let report: serde_json::Value = serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("stdout is one JSON document: {e}\n{}", stdout(&out)));
    assert_eq!(report["apiVersion"], "zerotrust.dev/check/v1", "{report:#}");
    assert_eq!(report["kind"], "CheckReport");
    assert_eq!(report["compliant"], false);
    assert_eq!(report["summary"]["baselines"], 1);
    assert_eq!(report["summary"]["invalidBaselines"], 0);
    assert_eq!(report["summary"]["namespaces"], 1);
    assert_eq!(report["summary"]["driftedNamespaces"], 1);
    assert_eq!(report["baselines"][0]["name"], name.as_str());
    assert_eq!(report["baselines"][0]["valid"], true);
    let namespaces = report["namespaces"].as_array().expect("namespaces");
    assert_eq!(namespaces.len(), 1, "{report:#}");
    assert_eq!(namespaces[0]["namespace"], ns.name.as_str());
    assert_eq!(namespaces[0]["status"], "drifted");
    let network = namespaces[0]["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|r| r["control"] == "NetworkPolicy")
        .unwrap_or_else(|| panic!("a NetworkPolicy result: {report:#}"));
    assert_eq!(network["baseline"], name.as_str());
    assert_eq!(network["result"], "fail");
    assert_eq!(network["exemption"], serde_json::Value::Null);
    let findings = network["findings"].as_array().expect("findings");
    assert!(
        findings.iter().any(|f| f["kind"] == "NetworkPolicy"
            && f["name"] == format!("zt-{name}-default-deny").as_str()
            && f["reason"] == "Missing"),
        "{report:#}"
    );

    // YAML: the same document, the same exit code.
    let out = check(&plane.kubeconfig, &["--baseline", &name, "-o", "yaml"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let yaml: serde_json::Value = serde_saphyr::from_str(&stdout(&out))
        .unwrap_or_else(|e| panic!("stdout is one YAML document: {e}\n{}", stdout(&out)));
    assert_eq!(yaml["apiVersion"], "zerotrust.dev/check/v1");
    assert_eq!(yaml["namespaces"][0]["namespace"], ns.name.as_str());

    // A name that does not exist: exit 1, the error on stderr, no document on stdout.
    let missing = unique("no-such-baseline");
    let out = check(&plane.kubeconfig, &["--baseline", &missing, "-o", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
}
