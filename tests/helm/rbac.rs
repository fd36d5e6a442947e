//! A Helm install of the chart's RBAC runs the operator end to end, and refuses what it must.

use zerotrust_testkit::helm::{CHART, RELEASE, RELEASE_NAMESPACE, helm};
use zerotrust_testkit::shipped_rbac::{kubectl_ok, the_operator_runs_as_its_service_account};
use zerotrust_testkit::*;

use super::ONE_OPERATOR;

/// `helm upgrade --install` of the chart into the release namespace, with `sets`.
fn helm_install(sets: &[&str]) {
    let mut args = vec![
        "upgrade",
        "--install",
        RELEASE,
        CHART,
        "--namespace",
        RELEASE_NAMESPACE,
        "--reset-values",
        // The test control plane's CRD stays the test's; tests/rbac.rs may have installed the
        // same objects with kustomize: take them over as someone moving to Helm would.
        "--set",
        "crds.enabled=false",
        "--take-ownership",
        "--force-conflicts",
    ];
    for set in sets {
        args.extend(["--set", set]);
    }
    let out = helm(&args);
    assert!(
        out.status.success(),
        "helm {args:?}: {}{}",
        stdout(&out),
        stderr(&out)
    );
}

#[tokio::test]
async fn the_charts_rbac_suffices_and_refuses_what_it_must() {
    let _alone = ONE_OPERATOR.lock().await;
    kubectl_ok(&["apply", "-f", "config/rbac/namespace.yaml"]);
    helm_install(&[]);
    let status = stdout(&helm(&["status", RELEASE, "-n", RELEASE_NAMESPACE]));
    assert!(status.contains("STATUS: deployed"), "{status}");
    let account = kubectl_ok(&[
        "get",
        "serviceaccount",
        "zerotrust-operator",
        "-n",
        RELEASE_NAMESPACE,
        "-o",
        "jsonpath={.metadata.labels.app\\.kubernetes\\.io/managed-by}",
    ]);
    assert_eq!(account, "Helm", "the ServiceAccount is the chart's");
    the_operator_runs_as_its_service_account(|delegate| {
        helm_install(&[&format!("rbac.delegation.enabled={delegate}")]);
    })
    .await;
    let out = helm(&["uninstall", RELEASE, "-n", RELEASE_NAMESPACE]);
    assert!(out.status.success(), "{}", stderr(&out));
}
