//! The shipped RBAC end to end, whichever way it was installed (kustomize's config/ or the Helm
//! chart): the operator runs with nothing but its ServiceAccount's permissions (impersonated),
//! onboards a namespace, is refused what it must not do, and spec.rbac.roles works only with the
//! opt-in delegation.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicy;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::Role;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::Value;

use crate::cluster::{client, control_plane, stderr, stdout, unique};
use crate::namespaces::namespace;
use crate::operator::OperatorProcess;
use crate::poll::eventually;

const WAIT: Duration = Duration::from_secs(30);
/// The operator's ServiceAccount as config/ and the chart (installed into zerotrust-system) name it.
pub const OPERATOR_SA: &str = "system:serviceaccount:zerotrust-system:zerotrust-operator";

/// A kubeconfig that acts as the operator's ServiceAccount, groups included.
pub fn impersonating_kubeconfig() -> PathBuf {
    let plane = control_plane();
    let admin = std::fs::read_to_string(&plane.kubeconfig).unwrap();
    let impersonating = admin.replace(
        "    client-key:",
        &format!(
            "    as: {OPERATOR_SA}\n    as-groups: [system:serviceaccounts, system:serviceaccounts:zerotrust-system, system:authenticated]\n    client-key:"
        ),
    );
    assert_ne!(
        admin, impersonating,
        "the kubeconfig has a user to impersonate with"
    );
    let path = std::env::temp_dir().join(format!(
        "zerotrust-impersonating-{}.kubeconfig",
        std::process::id()
    ));
    std::fs::write(&path, impersonating).unwrap();
    path
}

/// kubectl against the test cluster; panics with its message unless it succeeds. Its output.
pub fn kubectl_ok(args: &[&str]) -> String {
    let out = control_plane().kubectl(args, None);
    assert!(out.status.success(), "kubectl {args:?}: {}", stderr(&out));
    stdout(&out)
}

/// Whether the operator's ServiceAccount may do `args` (`kubectl auth can-i`).
pub fn can_i(args: &[&str]) -> bool {
    let mut all = vec!["auth", "can-i", "--as", OPERATOR_SA];
    all.extend_from_slice(args);
    stdout(&control_plane().kubectl(&all, None)).trim() == "yes"
}

/// Waits until the API server's authorizer says the ServiceAccount may (or may not) `escalate`
/// Roles: whether the opt-in RBAC delegation is in force.
async fn delegated(granted: bool) {
    let what = format!("RBAC delegation in force: {granted}");
    eventually(WAIT, &what, || async {
        (can_i(&["escalate", "roles.rbac.authorization.k8s.io"]) == granted).then_some(())
    })
    .await;
}

/// A baseline's status, read as JSON.
async fn status(baselines: &Api<DynamicObject>, name: &str) -> Option<Value> {
    baselines.get(name).await.ok()?.data.get("status").cloned()
}

fn compliant(status: &Value) -> u64 {
    status["compliantNamespaces"].as_u64().unwrap_or(0)
}

/// With the operator's RBAC installed (and its delegation off), runs the operator as its
/// ServiceAccount through a scenario; `set_delegation(true)` must install the opt-in RBAC
/// delegation and `set_delegation(false)` remove it again.
pub async fn the_operator_runs_as_its_service_account(set_delegation: impl Fn(bool)) {
    // The authorizer's caches may still hold a delegation an earlier run left behind.
    delegated(false).await;
    let kubeconfig = impersonating_kubeconfig();
    let operator = OperatorProcess::start(
        "impersonated",
        &[
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--leader-elect",
            "--lease-name",
            &unique("rbac"),
        ],
    );
    let client = client().await;
    let tag = unique("rbac");
    let ns = namespace(&client, &tag, &[("zt-test", &tag)]).await;
    let name = tag.clone();
    let manifest = format!(
        "apiVersion: zerotrust.dev/v1alpha1\nkind: SecurityBaseline\nmetadata: {{name: {name}}}\nspec:\n  namespaceSelector: {{matchLabels: {{zt-test: {tag}}}}}\n  networkPolicy: {{defaultDeny: [Ingress, Egress], allowDNS: true}}\n  podSecurity: {{enforce: restricted}}\n  resourceQuota: {{hard: {{pods: '10'}}}}\n  limitRange: {{limits: [{{type: Container, default: {{cpu: 500m}}}}]}}\n  serviceAccounts: {{automountDefaultToken: false}}\n  deletionPolicy: Delete\n"
    );
    let out = control_plane().kubectl(&["apply", "-f", "-"], Some(&manifest));
    assert!(out.status.success(), "{}", stderr(&out));

    // End to end as its own ServiceAccount: onboarded, status written, leader lease held.
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "zerotrust.dev",
        "v1alpha1",
        "SecurityBaseline",
    ));
    let baselines: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    eventually(WAIT, "compliant as the ServiceAccount", || async {
        (compliant(&status(&baselines, &name).await?) == 1).then_some(())
    })
    .await;
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns.name);
    assert!(
        policies
            .get_opt(&format!("zt-{name}-default-deny"))
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(operator.metric("zerotrust_leader"), Some(1.0));
    // Its admission policies, written as its own ServiceAccount, let that identity through.
    let admission: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
    let tamper = eventually(WAIT, "the tamper policy written", || async {
        admission.get_opt(&format!("zt-{name}-tamper")).await.ok()?
    })
    .await;
    let expressions = serde_json::to_string(&tamper.spec).unwrap();
    assert!(
        expressions.contains(OPERATOR_SA),
        "the policy lets through the identity the operator found itself to be"
    );

    // Refused what it must not do.
    assert!(
        !can_i(&["create", "validatingwebhookconfigurations"]),
        "no webhooks"
    );
    assert!(!can_i(&["update", "clusterroles"]), "no ClusterRoles");
    // The restraint shipped with it: whatever RBAC allows, the API server refuses this identity
    // anything but our own objects, and anything in the cluster's own namespaces. A policy just
    // (re)installed is in force once the API server has loaded it: wait for that with a dry run.
    let probe = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: not-ours-probe}\nspec: {podSelector: {}}\n";
    eventually(WAIT, "the restraint in force", || async {
        let out = control_plane().kubectl(
            &[
                "apply",
                "--dry-run=server",
                "-n",
                &ns.name,
                "--as",
                OPERATOR_SA,
                "-f",
                "-",
            ],
            Some(probe),
        );
        (!out.status.success() && stderr(&out).contains("zerotrust-operator-restraint"))
            .then_some(())
    })
    .await;
    for (namespace, policy) in [
        (
            ns.name.as_str(),
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: not-ours}\nspec: {podSelector: {}}\n".to_string(),
        ),
        (
            "kube-system",
            format!("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: zt-{name}-x, labels: {{app.kubernetes.io/managed-by: zerotrust-operator, zerotrust.dev/baseline: {name}}}}}\nspec: {{podSelector: {{}}}}\n"),
        ),
    ] {
        let out = control_plane().kubectl(
            &["apply", "-n", namespace, "--as", OPERATOR_SA, "-f", "-"],
            Some(&policy),
        );
        assert!(!out.status.success(), "{namespace}: {}", stdout(&out));
        assert!(
            stderr(&out).contains("zerotrust-operator-restraint"),
            "{}",
            stderr(&out)
        );
    }
    let out = control_plane().kubectl(
        &[
            "label",
            "namespace",
            &ns.name,
            "team=other",
            "--as",
            OPERATOR_SA,
        ],
        None,
    );
    assert!(
        stderr(&out).contains("only its own labels on Namespaces"),
        "{}",
        stderr(&out)
    );
    assert!(!can_i(&["get", "secrets", "-A"]), "no access to Secrets");
    assert!(!can_i(&["list", "secrets", "-n", &ns.name]));
    assert!(
        !can_i(&["delete", "namespaces"]),
        "never deletes namespaces"
    );
    assert!(
        !can_i(&["escalate", "roles.rbac.authorization.k8s.io"]),
        "no escalate without the opt-in"
    );
    let binding = format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: sneaky, namespace: {}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}}\nsubjects: [{{kind: ServiceAccount, name: zerotrust-operator, namespace: zerotrust-system}}]\n",
        ns.name
    );
    let out = control_plane().kubectl(&["apply", "--as", OPERATOR_SA, "-f", "-"], Some(&binding));
    assert!(
        !out.status.success(),
        "binding cluster-admin must be refused"
    );
    assert!(stderr(&out).contains("forbidden"), "{}", stderr(&out));

    // spec.rbac.roles without the delegation: reported as Forbidden drift, nothing else breaks.
    let with_roles = format!(
        "{manifest}  rbac:\n    roles:\n      - name: viewer\n        rules: [{{apiGroups: [''], resources: [pods], verbs: [get, list]}}]\n        subjects: [{{kind: Group, name: viewers}}]\n"
    );
    let out = control_plane().kubectl(&["apply", "-f", "-"], Some(&with_roles));
    assert!(out.status.success(), "{}", stderr(&out));
    eventually(WAIT, "Forbidden reported", || async {
        let status = status(&baselines, &name).await?;
        status["drift"]
            .as_array()?
            .iter()
            .any(|d| {
                d["kind"] == "Role"
                    && d["reason"]
                        .as_str()
                        .is_some_and(|r| r.starts_with("Forbidden"))
            })
            .then_some(())
    })
    .await;

    // With the opt-in delegation the Role and RoleBinding are created.
    set_delegation(true);
    delegated(true).await;
    let roles: Api<Role> = Api::namespaced(client.clone(), &ns.name);
    eventually(WAIT, "Role created with delegation", || async {
        roles
            .get_opt(&format!("zt-{name}-viewer"))
            .await
            .ok()?
            .map(|_| ())
    })
    .await;
    eventually(WAIT, "compliant with delegation", || async {
        (compliant(&status(&baselines, &name).await?) == 1).then_some(())
    })
    .await;
    set_delegation(false);
    delegated(false).await;
    kubectl_ok(&["delete", "securitybaseline", &name, "--wait=false"]);
}
