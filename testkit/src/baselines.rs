//! SecurityBaseline manifests for tests, and applying, deleting and checking them on the test
//! control plane.

use std::process::{Command, Output};

use crate::cluster::{COMMAND_DEADLINE, control_plane, run_bounded, stderr};
use crate::operator::operator_binary;

/// The spec of a restricted baseline: every control the operator has.
pub const RESTRICTED: &str = r#"networkPolicy:
  defaultDeny: [Ingress, Egress]
  allowDNS: true
podSecurity: {enforce: restricted, warn: restricted}
rbac:
  roles:
    - name: viewer
      rules: [{apiGroups: [""], resources: [pods], verbs: [get, list, watch]}]
      subjects: [{kind: Group, name: "${namespace}-viewers"}]
resourceQuota:
  hard: {pods: "20", requests.cpu: "2"}
limitRange:
  limits: [{type: Container, default: {cpu: 500m}, defaultRequest: {cpu: 100m}}]
serviceAccounts: {automountDefaultToken: false}
"#;

/// A SecurityBaseline named `name` selecting namespaces labelled `zt-test=<selector>`, with the
/// further spec fields in `spec` (YAML at the indentation of `spec:`'s children, or flow style).
pub fn baseline(name: &str, selector: &str, spec: &str) -> String {
    let spec: String = spec.lines().map(|l| format!("  {l}\n")).collect();
    format!(
        "apiVersion: zerotrust.dev/v1alpha1\nkind: SecurityBaseline\nmetadata:\n  name: {name}\nspec:\n  namespaceSelector:\n    matchLabels: {{zt-test: {selector}}}\n{spec}"
    )
}

/// `kubectl apply -f -` of `yaml`; panics with kubectl's message if it fails.
pub fn apply(yaml: &str) {
    let out = control_plane().kubectl(&["apply", "-f", "-"], Some(yaml));
    assert!(out.status.success(), "kubectl apply: {}", stderr(&out));
}

/// Deletes a SecurityBaseline without waiting for its finalizers.
pub fn delete_baseline(name: &str) {
    control_plane().kubectl(
        &[
            "delete",
            "securitybaseline",
            name,
            "--ignore-not-found",
            "--wait=false",
        ],
        None,
    );
}

/// Deletes the named baselines when dropped, passed or failed, so a failed test leaves none
/// behind to act on the tests that follow.
pub struct Cleanup(pub Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for name in &self.0 {
            delete_baseline(name);
        }
    }
}

/// The user of the test control plane's admin credentials, which the test operators run as: the
/// identity their admission policies let through.
pub const ADMIN_USER: &str = "zerotrust-admin";

/// `zerotrust-operator check --baseline NAME` against the test control plane, for an operator
/// running as [`ADMIN_USER`].
pub fn check_baseline(name: &str) -> Output {
    let mut check = Command::new(operator_binary());
    check
        .args([
            "check",
            "--baseline",
            name,
            "--operator-user",
            ADMIN_USER,
            "--kubeconfig",
        ])
        .arg(&control_plane().kubeconfig);
    run_bounded(&mut check, None, COMMAND_DEADLINE)
}
