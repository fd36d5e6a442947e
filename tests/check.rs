//! `zerotrust-operator check` as a CI gate must not pass by mistake: each way it can fail has its
//! exit code and a message that says what is wrong (an unreadable cluster, a cluster without the
//! CRD, a baseline name that does not exist, an invalid baseline). Its passing and drift cases run
//! beside a live operator in tests/operator.rs.

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
