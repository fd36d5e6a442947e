//! The shipped manifests on the real control plane: `config/default` installs, the operator runs end
//! to end with nothing but its own ServiceAccount's permissions (impersonated), it is refused what it
//! must not do, and spec.rbac.roles works only with the opt-in delegation. Also: the Dockerfile's
//! final stage is non-root with no shell.

use std::time::Duration;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::Role;
use kube::Api;
use zerotrust_operator::api::SecurityBaseline;
use zerotrust_testkit::*;

const WAIT: Duration = Duration::from_secs(30);
const OPERATOR_SA: &str = "system:serviceaccount:zerotrust-system:zerotrust-operator";

/// A kubeconfig that acts as the operator's ServiceAccount, groups included.
fn impersonating_kubeconfig() -> std::path::PathBuf {
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

fn kubectl_ok(args: &[&str]) -> String {
    let out = control_plane().kubectl(args, None);
    assert!(out.status.success(), "kubectl {args:?}: {}", stderr(&out));
    stdout(&out)
}

fn can_i(args: &[&str]) -> bool {
    let mut all = vec!["auth", "can-i", "--as", OPERATOR_SA];
    all.extend_from_slice(args);
    stdout(&control_plane().kubectl(&all, None)).trim() == "yes"
}

#[tokio::test]
async fn the_shipped_rbac_suffices_and_refuses_what_it_must() {
    kubectl_ok(&["apply", "-k", "config/default"]);
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
    let baselines: Api<SecurityBaseline> = Api::all(client.clone());
    eventually(WAIT, "compliant as the ServiceAccount", || async {
        let s = baselines.get(&name).await.ok()?.status?;
        (s.compliant_namespaces == 1).then_some(())
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
    // Its admission policies, written as its own ServiceAccount, in force for this identity.
    let policies_api: Api<k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicy> =
        Api::all(client.clone());
    let tamper = eventually(WAIT, "the tamper policy written", || async {
        policies_api
            .get_opt(&format!("zt-{name}-tamper"))
            .await
            .ok()?
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
    // The restraint shipped with it: even with RBAC allowing it, the API server refuses this
    // identity anything but our own objects, and anything in the cluster's own namespaces.
    for (namespace, policy) in [
        (ns.name.as_str(), "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: not-ours}\nspec: {podSelector: {}}\n".to_string()),
        ("kube-system", format!("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: zt-{name}-x, labels: {{app.kubernetes.io/managed-by: zerotrust-operator, zerotrust.dev/baseline: {name}}}}}\nspec: {{podSelector: {{}}}}\n")),
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
        let s = baselines.get(&name).await.ok()?.status?;
        s.drift
            .iter()
            .any(|d| d.kind == "Role" && d.reason.starts_with("Forbidden"))
            .then_some(())
    })
    .await;

    // With the opt-in delegation the Role and RoleBinding are created.
    kubectl_ok(&["apply", "-k", "config/rbac-delegation"]);
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
        let s = baselines.get(&name).await.ok()?.status?;
        (s.compliant_namespaces == 1).then_some(())
    })
    .await;
    kubectl_ok(&["delete", "-k", "config/rbac-delegation"]);
    kubectl_ok(&["delete", "securitybaseline", &name, "--wait=false"]);
}

#[test]
fn the_dockerfile_runs_as_non_root_with_no_shell() {
    let dockerfile =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile")).unwrap();
    let stages: Vec<&str> = dockerfile.split("\nFROM ").collect();
    assert!(
        stages.len() >= 3,
        "multi-stage: a build stage and a runtime stage"
    );
    assert!(
        stages[1].contains("cargo build --release --locked"),
        "the build stage builds what CI builds"
    );
    let runtime = stages.last().unwrap();
    let image = runtime.lines().next().unwrap();
    assert!(
        image.contains("distroless") && image.contains(":nonroot"),
        "a distroless non-root base: {image}"
    );
    let instructions: Vec<&str> = runtime
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert!(
        !instructions.iter().any(|l| l.starts_with("RUN ")),
        "no RUN in the runtime stage: it has no shell"
    );
    let user = instructions
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER line");
    let uid: u32 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("a numeric uid");
    assert_ne!(uid, 0, "not root");
    assert!(
        instructions.iter().any(|l| l.starts_with("ENTRYPOINT [")),
        "exec-form entrypoint (no shell)"
    );
}
