//! An API server that does not serve MutatingAdmissionPolicy, as none did before Kubernetes 1.36
//! (a control plane of its own, with the resource and its admission plugin switched off): the
//! operator keeps enforcing everything else, installs the protections it can, and says in the
//! status and in `check` which protection is off, instead of failing.

use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicy;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use zerotrust_operator::api::SecurityBaseline;
use zerotrust_testkit::crd::install_crd;
use zerotrust_testkit::*;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn without_mutating_policies_the_rest_is_enforced_and_the_status_says_what_is_off() {
    let plane = SeparateControlPlane::up(
        "older",
        "--runtime-config=admissionregistration.k8s.io/v1/mutatingadmissionpolicies=false,admissionregistration.k8s.io/v1/mutatingadmissionpolicybindings=false --disable-admission-plugins=MutatingAdmissionPolicy",
    );
    let client = connect(&plane.kubeconfig).await;
    install_crd(&client, false).await;
    let log = std::env::temp_dir().join(format!("zerotrust-older-{}.log", std::process::id()));
    let kubeconfig = plane.kubeconfig.to_str().unwrap().to_string();
    let operator = OperatorProcess::spawn(
        &["--kubeconfig", &kubeconfig, "--status-interval-ms", "200"],
        &log,
        "info,kube=warn",
    );
    operator.wait_ready(Duration::from_secs(120));

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "tenant-a", "labels": {"tenant": "true"}},
    }))
    .unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let out = plane.kubectl(
        &["apply", "-f", "-"],
        Some(
            &baseline(
                "older",
                "x",
                "podSecurity: {enforce: restricted}\nnetworkPolicy: {defaultDeny: [Ingress]}",
            )
            .replace("zt-test: x", "tenant: 'true'"),
        ),
    );
    assert!(out.status.success(), "{}", stderr(&out));

    let baselines: Api<SecurityBaseline> = Api::all(client.clone());
    let status = eventually(
        WAIT,
        "compliant, with the mutation reported off",
        || async {
            let s = baselines.get("older").await.ok()?.status?;
            let off = s
                .conditions
                .iter()
                .find(|c| c.type_ == "AdmissionPolicies")?;
            let ready = s.conditions.iter().find(|c| c.type_ == "Ready")?;
            (off.status == "False" && ready.status == "True" && s.compliant_namespaces == 1)
                .then(|| (off.reason.clone(), off.message.clone()))
        },
    )
    .await;
    assert_eq!(status.0, "NotServed");
    assert!(
        status.1.contains("pod-security-at-creation"),
        "{}",
        status.1
    );
    // Pod Security still comes, from the operator's own write after creation.
    let labels = namespaces.get("tenant-a").await.unwrap().labels().clone();
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted");
    // The validating protections are installed as usual.
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
    for name in ["zt-older-tamper", "zt-older-onboarding-gate"] {
        assert!(policies.get_opt(name).await.unwrap().is_some(), "{name}");
    }
    // `check` says so too, and does not fail for it.
    let mut command = std::process::Command::new(operator_binary());
    command.args([
        "check",
        "--kubeconfig",
        &kubeconfig,
        "--operator-user",
        ADMIN_USER,
    ]);
    let out = run_bounded(&mut command, None, Duration::from_secs(60));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("protection off")
            && stdout(&out).contains("pod-security-at-creation"),
        "{}",
        stdout(&out)
    );
    drop(operator);
}
