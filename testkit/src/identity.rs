//! Acting as someone else on the test control plane, as the attackers of a namespace default are:
//! a tenant bound to the built-in `admin` ClusterRole in its namespace, a user allowed to label
//! namespaces. Requests go through the admin credentials with impersonation, so the API server
//! authorizes and admits them as that user.

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::baselines::apply;
use crate::cluster::control_plane;

/// A client acting as `user` in `groups` (plus `system:authenticated`).
pub async fn client_as(user: &str, groups: &[&str]) -> Client {
    let kubeconfig = Kubeconfig::read_from(&control_plane().kubeconfig).expect("kubeconfig");
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig is usable");
    config.auth_info.impersonate = Some(user.to_string());
    let mut groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
    groups.push("system:authenticated".to_string());
    config.auth_info.impersonate_groups = Some(groups);
    Client::try_from(config).expect("a client")
}

/// A tenant: the user `<namespace>-admin`, bound to the built-in `admin` ClusterRole in
/// `namespace` only, and a client acting as it.
pub async fn tenant_admin(namespace: &str) -> (String, Client) {
    let user = format!("{namespace}-admin");
    apply(&format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: tenant-admin, namespace: {namespace}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: admin}}\nsubjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: {user}}}]\n"
    ));
    let client = client_as(&user, &[]).await;
    (user, client)
}

/// A user who may get, list, label and patch every namespace (a namespace provisioner), and a
/// client acting as it. The ClusterRole and binding are named `<name>`.
pub async fn namespace_labeller(name: &str) -> Client {
    apply(&format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: {name}}}\nrules: [{{apiGroups: [''], resources: [namespaces], verbs: [get, list, watch, create, update, patch]}}]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: {name}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {name}}}\nsubjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: {name}}}]\n"
    ));
    client_as(name, &[]).await
}
