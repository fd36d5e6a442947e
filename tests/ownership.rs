//! No data loss: a conflict matrix over every kind the operator generates. Same-named objects of
//! the user's, user objects with our labels forged, user labels and annotations on our objects and
//! extra user policies: nothing the operator did not create is modified or deleted, not even by a
//! `deletionPolicy: Delete` baseline going away, and every conflict is reported.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{LimitRange, ResourceQuota};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use zerotrust_testkit::*;

const WAIT: Duration = Duration::from_secs(30);

/// One object of each kind, removed when the baseline goes.
const SPEC: &str = r#"networkPolicy: {defaultDeny: [Ingress]}
rbac:
  roles:
    - name: viewer
      rules: [{apiGroups: [""], resources: [pods], verbs: [get]}]
      subjects: [{kind: Group, name: viewers}]
resourceQuota: {hard: {pods: "20"}}
limitRange: {limits: [{type: Container, default: {cpu: 500m}}]}
deletionPolicy: Delete
"#;

/// A user's object of `kind` named `name`, with `labels`; created with a plain POST (not by us).
fn user_object(kind: &str, name: &str, labels: &BTreeMap<String, String>) -> Value {
    let meta = json!({"name": name, "labels": labels});
    match kind {
        // Within the namespace: a user policy that opened it would itself be a (Widened) finding.
        "NetworkPolicy" => json!({"metadata": meta, "spec": {"podSelector": {},
            "ingress": [{"from": [{"podSelector": {}}]}]}}),
        "Role" => {
            json!({"metadata": meta, "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]})
        }
        "RoleBinding" => json!({"metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "Group", "name": "everyone", "apiGroup": "rbac.authorization.k8s.io"}]}),
        "ResourceQuota" => json!({"metadata": meta, "spec": {"hard": {"pods": "1000"}}}),
        "LimitRange" => {
            json!({"metadata": meta, "spec": {"limits": [{"type": "Container", "max": {"cpu": "64"}}]}})
        }
        other => panic!("no such kind {other}"),
    }
}

const KINDS: [(&str, &str); 5] = [
    ("NetworkPolicy", "default-deny"),
    ("Role", "viewer"),
    ("RoleBinding", "viewer"),
    ("ResourceQuota", "quota"),
    ("LimitRange", "limits"),
];

/// What must not change about a user's object: everything but its status and bookkeeping, and
/// which field managers wrote to it (never ours).
fn fingerprint(object: Value) -> Value {
    let mut object = object;
    let managers: std::collections::BTreeSet<String> = object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e.get("subresource").is_none())
        .filter_map(|e| e["manager"].as_str().map(String::from))
        .collect();
    let meta = object["metadata"].as_object_mut().expect("metadata");
    meta.remove("resourceVersion");
    meta.remove("managedFields");
    meta.insert("managers".into(), json!(managers));
    object.as_object_mut().expect("an object").remove("status");
    object
}

/// The API of `kind` in `ns`, untyped (the objects are compared as JSON anyway), and its type.
fn api(client: &Client, ns: &str, kind: &str) -> (Api<DynamicObject>, ApiResource) {
    let resource = match kind {
        "NetworkPolicy" => ApiResource::erase::<NetworkPolicy>(&()),
        "Role" => ApiResource::erase::<Role>(&()),
        "RoleBinding" => ApiResource::erase::<RoleBinding>(&()),
        "ResourceQuota" => ApiResource::erase::<ResourceQuota>(&()),
        _ => ApiResource::erase::<LimitRange>(&()),
    };
    (
        Api::namespaced_with(client.clone(), ns, &resource),
        resource,
    )
}

/// Creates a user object; returns (kind, name, fingerprint) to compare later.
async fn create(
    client: &Client,
    ns: &str,
    kind: &str,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> (String, String, Value) {
    let (api, resource) = api(client, ns, kind);
    let mut body = user_object(kind, name, labels);
    body["apiVersion"] = json!(resource.api_version);
    body["kind"] = json!(resource.kind);
    let object: DynamicObject = serde_json::from_value(body).expect("valid object");
    let created = api
        .create(&PostParams::default(), &object)
        .await
        .expect("user object created");
    let created = serde_json::to_value(created).expect("serializes");
    (kind.to_string(), name.to_string(), fingerprint(created))
}

/// The fingerprint of an object now, or None if it is gone.
async fn current(client: &Client, ns: &str, kind: &str, name: &str) -> Option<Value> {
    let (api, _) = api(client, ns, kind);
    api.get_opt(name)
        .await
        .expect("get")
        .map(|o| fingerprint(serde_json::to_value(o).expect("serializes")))
}

#[tokio::test]
async fn nothing_the_operator_did_not_create_is_modified_or_deleted_and_conflicts_are_reported() {
    operator();
    let client = client().await;
    let tag = unique("matrix");
    let name = tag.clone();
    let ours = |suffix: &str| format!("zt-{name}-{suffix}");
    let plain = namespace(&client, &format!("{tag}-plain"), &[("zt-test", &tag)]).await;
    let forged = namespace(&client, &format!("{tag}-forged"), &[("zt-test", &tag)]).await;
    let shared = namespace(&client, &format!("{tag}-shared"), &[("zt-test", &tag)]).await;
    let forged_labels = BTreeMap::from([
        (
            "app.kubernetes.io/managed-by".to_string(),
            "zerotrust-operator".to_string(),
        ),
        ("zerotrust.dev/baseline".to_string(), name.clone()),
    ]);

    // Same-named user objects of every kind, without and with our labels forged; and, beside our
    // objects later, user policies: one plain, one with our labels forged and a name of ours
    // that the baseline does not render.
    let mut users = Vec::new();
    for (kind, suffix) in KINDS {
        users.push((
            plain.name.clone(),
            create(&client, &plain.name, kind, &ours(suffix), &BTreeMap::new()).await,
        ));
        users.push((
            forged.name.clone(),
            create(&client, &forged.name, kind, &ours(suffix), &forged_labels).await,
        ));
    }
    users.push((
        shared.name.clone(),
        create(
            &client,
            &shared.name,
            "NetworkPolicy",
            "users-extra",
            &BTreeMap::new(),
        )
        .await,
    ));
    users.push((
        shared.name.clone(),
        create(
            &client,
            &shared.name,
            "NetworkPolicy",
            &ours("stale-looking"),
            &forged_labels,
        )
        .await,
    ));

    apply(&baseline(&name, &tag, SPEC));
    // `check` reports the conflicts: every kind, in both namespaces.
    let out = eventually(
        WAIT,
        "the operator onboards the clean namespace",
        || async {
            let out = check_baseline(&name);
            let table = stdout(&out);
            let deny = Api::<NetworkPolicy>::namespaced(client.clone(), &shared.name)
                .get_opt(&ours("default-deny"))
                .await
                .ok()??;
            (deny.labels().contains_key("zerotrust.dev/baseline") && out.status.code() == Some(1))
                .then_some(table)
        },
    )
    .await;
    for ns in [&plain.name, &forged.name] {
        for (kind, suffix) in KINDS {
            let row = out
                .lines()
                .find(|l| l.contains(ns.as_str()) && l.contains(kind) && l.contains(&ours(suffix)));
            assert!(
                row.is_some_and(|r| r.contains("Conflict")),
                "{ns} {kind}: conflict reported:\n{out}"
            );
        }
    }
    let api: Api<zerotrust_operator::api::SecurityBaseline> = Api::all(client.clone());
    let status = eventually(WAIT, "conflicts in status", || async {
        let s = api.get(&name).await.ok()?.status?;
        (s.drift_count >= 10).then_some(s)
    })
    .await;
    assert!(
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "Conflict" && c.status == "True"),
        "{status:?}"
    );
    assert_eq!(
        status.drifted_namespaces, 2,
        "the two namespaces with conflicts are drifted"
    );

    // User labels and annotations on our objects stay, through a repair too.
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &shared.name);
    let marks =
        json!({"metadata": {"labels": {"team": "payments"}, "annotations": {"owner": "alice"}}});
    policies
        .patch(
            &ours("default-deny"),
            &PatchParams::default(),
            &Patch::Merge(marks),
        )
        .await
        .expect("user marks our object");
    let broadened = json!({"spec": {"ingress": [{}]}});
    policies
        .patch(
            &ours("default-deny"),
            &PatchParams::default(),
            &Patch::Merge(broadened),
        )
        .await
        .expect("user weakens it");
    let repaired = eventually(WAIT, "the weakening repaired", || async {
        let p = policies.get(&ours("default-deny")).await.ok()?;
        p.spec.as_ref()?.ingress.is_none().then_some(p)
    })
    .await;
    assert_eq!(
        repaired.labels().get("team").map(String::as_str),
        Some("payments")
    );
    assert_eq!(
        repaired.annotations().get("owner").map(String::as_str),
        Some("alice")
    );

    // Deleting the Delete-policy baseline removes exactly our objects.
    delete_baseline(&name);
    eventually(WAIT, "our objects removed", || async {
        policies
            .get_opt(&ours("default-deny"))
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    eventually(WAIT, "the baseline's finalizer done", || async {
        api.get_opt(&name).await.ok()?.is_none().then_some(())
    })
    .await;
    for (ns, (kind, object, before)) in &users {
        let now = current(&client, ns, kind, object).await;
        assert_eq!(now.as_ref(), Some(before), "{ns} {kind}/{object} untouched");
    }
    let left = Api::<Role>::namespaced(client.clone(), &shared.name)
        .list(&ListParams::default().labels(&format!("zerotrust.dev/baseline={name}")))
        .await
        .expect("list");
    assert!(
        left.items.is_empty(),
        "our Role in the shared namespace is gone"
    );
    let _ = policies
        .delete("users-extra", &DeleteParams::default())
        .await;
}
