//! Ownership no tenant can forge: a tenant bound to the built-in `admin` role in its namespace
//! (and, for the kinds `admin` may not write, a Role that may) cannot give its own objects our
//! ownership labels, with or without our field manager, on any kind we generate, at creation or
//! later, in a namespace a baseline selects or in one none does; a namespace provisioner cannot
//! set an onboarding marker. What it refuses is the API server's answer with the ownership
//! protection's message.

use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use zerotrust_operator::engine::OWNERSHIP_MESSAGE;
use zerotrust_testkit::*;

use super::{WAIT, refused, wait_in_force};

/// The kinds we generate, and a tenant's own object of each (none opening anything).
fn tenant_object(kind: &str, name: &str) -> (ApiResource, Value) {
    use k8s_openapi::api::core::v1::{LimitRange, ResourceQuota};
    use k8s_openapi::api::networking::v1::NetworkPolicy;
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    let meta = json!({"name": name});
    let (resource, body) = match kind {
        "NetworkPolicy" => (
            ApiResource::erase::<NetworkPolicy>(&()),
            json!({"spec": {"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}}),
        ),
        "Role" => (
            ApiResource::erase::<Role>(&()),
            json!({"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}),
        ),
        "RoleBinding" => (
            ApiResource::erase::<RoleBinding>(&()),
            json!({"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
                   "subjects": [{"kind": "Group", "name": "viewers", "apiGroup": "rbac.authorization.k8s.io"}]}),
        ),
        "ResourceQuota" => (
            ApiResource::erase::<ResourceQuota>(&()),
            json!({"spec": {"hard": {"pods": "1000"}}}),
        ),
        _ => (
            ApiResource::erase::<LimitRange>(&()),
            json!({"spec": {"limits": [{"type": "Container", "max": {"cpu": "64"}}]}}),
        ),
    };
    let mut body = body;
    body["metadata"] = meta;
    body["apiVersion"] = json!(resource.api_version);
    body["kind"] = json!(resource.kind);
    (resource, body)
}

const KINDS: [&str; 5] = [
    "NetworkPolicy",
    "Role",
    "RoleBinding",
    "ResourceQuota",
    "LimitRange",
];

/// Our labels as a tenant would forge them, none of them the selecting baseline's own pair (which
/// its tamper protection refuses as well): the refusal is the ownership protection's alone.
fn forgeries() -> [Vec<(&'static str, &'static str)>; 3] {
    [
        vec![("app.kubernetes.io/managed-by", "zerotrust-operator")],
        vec![("zerotrust.dev/baseline", "no-such-baseline")],
        vec![
            ("app.kubernetes.io/managed-by", "zerotrust-operator"),
            ("zerotrust.dev/baseline", "nobody"),
        ],
    ]
}

/// The tenant of `ns`: bound to `admin`, and to a Role that may write quotas and limit ranges
/// (which `admin` only reads), so that what refuses those is our policy, not RBAC.
async fn tenant(ns: &str) -> Client {
    apply(&format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: quota-writer, namespace: {ns}}}\nrules: [{{apiGroups: [''], resources: [resourcequotas, limitranges], verbs: [get, list, create, update, patch, delete]}}]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: quota-writer, namespace: {ns}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: quota-writer}}\nsubjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: {ns}-admin}}]\n"
    ));
    tenant_admin(ns).await.1
}

fn params(manager: Option<&str>) -> (PostParams, PatchParams) {
    let post = PostParams {
        field_manager: manager.map(String::from),
        ..PostParams::default()
    };
    let patch = PatchParams {
        field_manager: manager.map(String::from),
        ..PatchParams::default()
    };
    (post, patch)
}

/// Every forgery on every kind in `ns`, as its tenant: refused at creation and when labelled
/// later, with and without our field manager; the tenant's plain objects are its own.
async fn forgeries_refused_in(tenant: &Client, ns: &str) {
    for kind in KINDS {
        let (resource, plain) = tenant_object(kind, "mine");
        let api: Api<DynamicObject> = Api::namespaced_with(tenant.clone(), ns, &resource);
        let mine: DynamicObject = serde_json::from_value(plain.clone()).unwrap();
        api.create(&PostParams::default(), &mine)
            .await
            .unwrap_or_else(|e| panic!("{kind} of the tenant's own in {ns}: {e}"));
        for labels in forgeries() {
            let labels: serde_json::Map<String, Value> = labels
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect();
            for manager in [None, Some("zerotrust-operator")] {
                let (post, patch) = params(manager);
                let mut forged = plain.clone();
                forged["metadata"] = json!({"name": "forged", "labels": labels});
                let forged: DynamicObject = serde_json::from_value(forged).unwrap();
                let created = api.create(&post, &forged).await;
                assert!(
                    refused(&created, OWNERSHIP_MESSAGE),
                    "{kind} created in {ns} with {labels:?}, manager {manager:?}: {created:?}"
                );
                let later = json!({"metadata": {"labels": labels}});
                let labelled = api.patch("mine", &patch, &Patch::Merge(&later)).await;
                assert!(
                    refused(&labelled, OWNERSHIP_MESSAGE),
                    "{kind} labelled in {ns} with {labels:?}, manager {manager:?}: {labelled:?}"
                );
            }
        }
        api.delete("mine", &Default::default())
            .await
            .unwrap_or_else(|e| panic!("{kind}: the tenant deletes its own: {e}"));
    }
}

#[tokio::test]
async fn nobody_but_the_operator_gives_our_labels_in_any_namespace() {
    operator();
    let client = client().await;
    let tag = unique("forge");
    let selected = namespace(&client, &tag, &[("zt-test", &tag)]).await;
    let elsewhere = namespace(&client, &format!("{tag}-out"), &[]).await;
    let _cleanup = Cleanup(vec![tag.clone()]);
    apply(&baseline(
        &tag,
        &tag,
        "networkPolicy: {defaultDeny: [Ingress, Egress], allowDNS: true}",
    ));
    wait_in_force(&client, &tag, 1).await;
    for ns in [&selected.name, &elsewhere.name] {
        let tenant = tenant(ns).await;
        // The API server picks the policy up a moment after it exists: probe with a dry run.
        let (resource, mut probe) = tenant_object("NetworkPolicy", "probe");
        probe["metadata"]["labels"] = json!({"zerotrust.dev/baseline": "probe"});
        let probe: DynamicObject = serde_json::from_value(probe).unwrap();
        let api: Api<DynamicObject> = Api::namespaced_with(tenant.clone(), ns, &resource);
        let dry_run = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        eventually(WAIT, "the ownership protection in force", || async {
            refused(&api.create(&dry_run, &probe).await, OWNERSHIP_MESSAGE).then_some(())
        })
        .await;
        forgeries_refused_in(&tenant, ns).await;
    }

    // A namespace provisioner cannot create or label a namespace with a marker or our labels.
    let labeller = namespace_labeller(&format!("{tag}-labeller")).await;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(labeller);
    for (key, value) in [
        ("onboarded.zerotrust.dev/no-such-baseline", "true"),
        ("zerotrust.dev/baseline", "nobody"),
    ] {
        let marked = json!({"metadata": {"name": format!("{tag}-early"), "labels": {key: value}}});
        let marked = serde_json::from_value(marked).unwrap();
        let created = namespaces.create(&PostParams::default(), &marked).await;
        assert!(refused(&created, OWNERSHIP_MESSAGE), "{key}: {created:?}");
        let later = json!({"metadata": {"labels": {key: value}}});
        let labelled = namespaces
            .patch(
                &elsewhere.name,
                &PatchParams::default(),
                &Patch::Merge(&later),
            )
            .await;
        assert!(refused(&labelled, OWNERSHIP_MESSAGE), "{key}: {labelled:?}");
    }
    control_plane().kubectl(
        &[
            "delete",
            "clusterrole,clusterrolebinding",
            &format!("{tag}-labeller"),
        ],
        None,
    );
}
