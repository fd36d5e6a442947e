//! Proof that the test control plane is real and that our API works on it: the CRD is served with
//! its printer columns, the API server itself rejects invalid baselines naming the field, Pod
//! Security admission rejects a privileged pod, and the controller-manager finalizes namespace
//! deletion.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, ServiceAccount};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde_json::json;
use zerotrust_testkit::*;

#[tokio::test]
async fn crd_is_established_and_kubectl_shows_the_printer_columns() {
    let plane = control_plane();
    let out = plane.kubectl(
        &[
            "get",
            "crd",
            "securitybaselines.zerotrust.dev",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Established\")].status}",
        ],
        None,
    );
    assert_eq!(stdout(&out), "True", "{}", stderr(&out));

    let name = unique("columns");
    let manifest = format!(
        "apiVersion: zerotrust.dev/v1alpha1\nkind: SecurityBaseline\nmetadata: {{name: {name}}}\nspec:\n  mode: Audit\n  namespaceSelector: {{matchLabels: {{nothing: here}}}}\n"
    );
    let out = plane.kubectl(&["apply", "-f", "-"], Some(&manifest));
    assert!(out.status.success(), "{}", stderr(&out));
    let out = plane.kubectl(&["get", "securitybaselines", &name], None);
    let table = stdout(&out);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "MODE",
            "SELECTED",
            "COMPLIANT",
            "DRIFTED",
            "EXEMPT",
            "READY",
            "AGE"
        ],
        "{table}"
    );
    assert!(
        table
            .lines()
            .nth(1)
            .is_some_and(|row| row.contains(&name) && row.contains("Audit")),
        "{table}"
    );
    let out = plane.kubectl(&["explain", "securitybaseline.spec.networkPolicy"], None);
    assert!(
        stdout(&out).contains("defaultDeny"),
        "kubectl explain documents the fields: {}",
        stdout(&out)
    );
    plane.kubectl(&["delete", "securitybaseline", &name], None);
}

#[tokio::test]
async fn the_api_server_rejects_invalid_baselines_naming_the_field() {
    let plane = control_plane();
    let cases = [
        ("bad enum", "spec:\n  mode: Enforcee\n", "spec.mode"),
        (
            "wildcard verb without allowWildcards",
            "spec:\n  rbac: {roles: [{name: r, rules: [{apiGroups: [''], resources: [pods], verbs: ['*']}]}]}\n",
            "spec.rbac.roles[0].rules",
        ),
        (
            "bad quantity",
            "spec:\n  resourceQuota: {hard: {cpu: lots}}\n",
            "spec.resourceQuota.hard.cpu",
        ),
        (
            "bad PSA level",
            "spec:\n  podSecurity: {enforce: strict}\n",
            "spec.podSecurity.enforce",
        ),
        (
            "unknown field",
            "spec:\n  networkPolicy: {defaultDenyy: [Ingress]}\n",
            "spec.networkPolicy.defaultDenyy",
        ),
        (
            "allowDNS without an egress deny",
            "spec:\n  networkPolicy: {defaultDeny: [Ingress], allowDNS: true}\n",
            "spec.networkPolicy.allowDNS",
        ),
        (
            "bad PSA version",
            "spec:\n  podSecurity: {version: '1.30'}\n",
            "spec.podSecurity.version",
        ),
        (
            "privileged verb without opt-in",
            "spec:\n  rbac: {roles: [{name: r, rules: [{apiGroups: [rbac.authorization.k8s.io], resources: [roles], verbs: [escalate]}]}]}\n",
            "spec.rbac.roles[0].rules",
        ),
        (
            "duplicate role names",
            "spec:\n  rbac: {roles: [{name: r, rules: [{apiGroups: [''], resources: [pods], verbs: [get]}]}, {name: r, rules: [{apiGroups: [''], resources: [pods], verbs: [list]}]}]}\n",
            "spec.rbac.roles[1]",
        ),
        (
            "bad subject kind",
            "spec:\n  rbac: {roles: [{name: r, rules: [{apiGroups: [''], resources: [pods], verbs: [get]}], subjects: [{kind: Robot, name: x}]}]}\n",
            "spec.rbac.roles[0].subjects[0].kind",
        ),
    ];
    for (what, spec, field) in cases {
        let name = unique("invalid");
        let manifest = format!(
            "apiVersion: zerotrust.dev/v1alpha1\nkind: SecurityBaseline\nmetadata: {{name: {name}}}\n{spec}"
        );
        let out = plane.kubectl(&["apply", "-f", "-"], Some(&manifest));
        let message = stderr(&out);
        assert!(!out.status.success(), "{what}: the API server accepted it");
        assert!(
            message.contains(field),
            "{what}: the error should name {field}: {message}"
        );
        let out = plane.kubectl(
            &[
                "get",
                "securitybaseline",
                &name,
                "--ignore-not-found",
                "-o",
                "name",
            ],
            None,
        );
        assert_eq!(stdout(&out), "", "{what}: nothing was stored");
    }
}

#[tokio::test]
async fn pod_security_admission_rejects_a_privileged_pod() {
    let client = client().await;
    let ns = namespace(
        &client,
        &unique("psa"),
        &[("pod-security.kubernetes.io/enforce", "restricted")],
    )
    .await;
    // The ServiceAccount admission plugin needs the default ServiceAccount the controller-manager makes.
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns.name);
    eventually(
        Duration::from_secs(30),
        "the default ServiceAccount",
        || async { accounts.get_opt("default").await.ok().flatten() },
    )
    .await;

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let privileged: Pod = serde_json::from_value(json!({
        "metadata": {"name": "privileged"},
        "spec": {"containers": [{"name": "c", "image": "busybox", "securityContext": {"privileged": true}}]}
    }))
    .unwrap();
    match pods.create(&PostParams::default(), &privileged).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403, "{status:?}");
            assert!(
                status.message.contains("violates PodSecurity \"restricted"),
                "{}",
                status.message
            );
        }
        other => panic!("a privileged pod must be rejected, got {other:?}"),
    }

    // A pod that meets "restricted" is admitted: the rejection was the policy, not a broken cluster.
    let restricted: Pod = serde_json::from_value(json!({
        "metadata": {"name": "restricted"},
        "spec": {
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "c", "image": "busybox",
                "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}
            }]
        }
    }))
    .unwrap();
    pods.create(&PostParams::default(), &restricted)
        .await
        .expect("a restricted pod is admitted");
}

#[tokio::test]
async fn namespace_deletion_is_finalized_by_the_controller_manager() {
    let client = client().await;
    let name = unique("delete");
    let guard = namespace(&client, &name, &[]).await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &name);
    let map: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "content"}, "data": {"k": "v"}}))
            .unwrap();
    maps.create(&PostParams::default(), &map)
        .await
        .expect("configmap created");

    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .delete(&name, &DeleteParams::default())
        .await
        .expect("delete accepted");
    eventually(
        Duration::from_secs(60),
        "the namespace to be gone",
        || async { matches!(namespaces.get_opt(&name).await, Ok(None)).then_some(()) },
    )
    .await;
    drop(guard);
}
