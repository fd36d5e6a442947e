//! Carries out the engine's writes against the API server: creates that refuse to overwrite,
//! server-side applies with our one field manager, deletes guarded by uid. Every generated kind
//! goes through the same untyped requests, addressed by [`Kind::api_resource`].

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, PostParams, Preconditions};
use kube::{Api, Client};
use serde_json::json;

use super::error::{Error, Failed, Operation};
use crate::engine::{DesiredState, FIELD_MANAGER, Kind, Object, Write, compare};

/// What a write left in the cluster, for the caches to hold before the watch reports it.
pub enum Written {
    Object(Box<Object>),
    Namespace(Namespace),
    ServiceAccount(ServiceAccount),
    Deleted { kind: Kind, name: String },
}

/// Forced: a repair takes back the fields someone else changed. Only ever used on objects that are
/// ours, or that a baseline explicitly adopts.
fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// The API of `kind` in `namespace`, or cluster-wide for a cluster-scoped kind.
fn api(client: &Client, kind: Kind, namespace: &str) -> Api<DynamicObject> {
    if kind.cluster_scoped() {
        Api::all_with(client.clone(), &kind.api_resource())
    } else {
        Api::namespaced_with(client.clone(), namespace, &kind.api_resource())
    }
}

fn to_dynamic(object: &Object) -> Result<DynamicObject, kube::Error> {
    serde_json::to_value(object)
        .and_then(serde_json::from_value)
        .map_err(kube::Error::SerdeError)
}

fn from_dynamic(kind: Kind, object: &DynamicObject) -> Result<Object, kube::Error> {
    serde_json::to_vec(object)
        .and_then(|json| Object::from_json(kind, &json))
        .map_err(kube::Error::SerdeError)
}

/// Creates an object our caches do not show. Unlike an apply, a create fails (409 AlreadyExists)
/// when a same-named object exists, so an object someone else made, which our label-filtered
/// caches cannot see, is never written over, not even one created a moment ago.
pub async fn create(client: &Client, namespace: &str, object: &Object) -> Result<Object, Error> {
    let (kind, name) = (object.kind(), object.name());
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PostParams::default()
    };
    let created = async {
        let created = api(client, kind, namespace)
            .create(&params, &to_dynamic(object)?)
            .await?;
        from_dynamic(kind, &created)
    };
    created
        .await
        .failed(Operation::Create, kind.as_str(), namespace, name)
}

/// What creating one of our objects found.
#[derive(Debug)]
pub enum Created {
    /// Created: the object as the API server stored it.
    Object(Box<Object>),
    /// A same-named object was there already. It is never written over here: the caller
    /// reports a conflict, or finds out whether it is ours.
    Taken,
}

/// Creates `object` unless its name is taken: the one step every missing object is put in
/// place with, so nothing of someone else's is written over, not even an object made a moment
/// ago.
pub async fn create_unless_taken(
    client: &Client,
    namespace: &str,
    object: &Object,
) -> Result<Created, Error> {
    match create(client, namespace, object).await {
        Err(error) if error.status_code() == Some(409) => Ok(Created::Taken),
        created => created.map(|o| Created::Object(Box::new(o))),
    }
}

/// Applies one of our objects. Under server-side apply, fields someone else added (an extra allow
/// rule, an extra quota key) belong to them and an apply cannot remove them; the object is ours,
/// so the part of it the baseline defines is then replaced, guarded by the resource version just
/// seen.
pub async fn apply(client: &Client, namespace: &str, object: &Object) -> Result<Object, Error> {
    let (kind, name) = (object.kind(), object.name());
    let applied = async {
        let applied = api(client, kind, namespace)
            .patch(name, &apply_params(), &Patch::Apply(to_dynamic(object)?))
            .await?;
        from_dynamic(kind, &applied)
    };
    let applied = applied
        .await
        .failed(Operation::Apply, kind.as_str(), namespace, name)?;
    if compare(object, &applied).is_none() {
        return Ok(applied);
    }
    replace_defined_fields(client, namespace, object, &applied)
        .await
        .failed(Operation::Replace, kind.as_str(), namespace, name)
}

/// Where the baseline-defined part of each kind lives.
fn defined_field(kind: Kind) -> &'static str {
    match kind {
        Kind::Role => "rules",
        Kind::RoleBinding => "subjects",
        Kind::Namespace
        | Kind::ServiceAccount
        | Kind::NetworkPolicy
        | Kind::ResourceQuota
        | Kind::LimitRange
        | Kind::ValidatingAdmissionPolicy
        | Kind::ValidatingAdmissionPolicyBinding
        | Kind::MutatingAdmissionPolicy
        | Kind::MutatingAdmissionPolicyBinding => "spec",
    }
}

async fn replace_defined_fields(
    client: &Client,
    namespace: &str,
    desired: &Object,
    applied: &Object,
) -> Result<Object, kube::Error> {
    let kind = desired.kind();
    let field = defined_field(kind);
    let value = serde_json::to_value(desired).map_err(kube::Error::SerdeError)?[field].clone();
    let patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": applied.meta().resource_version},
        {"op": "add", "path": format!("/{field}"), "value": value},
    ]))
    .map_err(kube::Error::SerdeError)?;
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    };
    let replaced = api(client, kind, namespace)
        .patch(desired.name(), &params, &Patch::Json::<()>(patch))
        .await?;
    from_dynamic(kind, &replaced)
}

/// Delete parameters that delete the object only while its uid is `uid` (any object when `None`):
/// a same-named object created since we looked is not the one we meant.
pub fn only_uid(uid: Option<&str>) -> DeleteParams {
    DeleteParams {
        preconditions: uid.map(|uid| Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    }
}

/// Deletes one of our objects, only if its uid is still `uid`.
pub async fn delete(
    client: &Client,
    namespace: &str,
    kind: Kind,
    name: &str,
    uid: Option<&str>,
) -> Result<(), Error> {
    match api(client, kind, namespace)
        .delete(name, &only_uid(uid))
        .await
    {
        Ok(_) => Ok(()),
        // Already gone, or replaced by an object that is not the one we meant to delete.
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
        Err(e) => Err(e).failed(Operation::Delete, kind.as_str(), namespace, name),
    }
}

/// The object of `kind` named `name`, if there is one. Our caches hold only labelled objects, so
/// a same-named object someone else created is invisible to them; this read keeps us from
/// applying over it. A quorum read: the API server's watch cache may not have an object created a
/// moment ago.
pub async fn get(
    client: &Client,
    namespace: &str,
    kind: Kind,
    name: &str,
) -> Result<Option<Object>, Error> {
    let found = async {
        // GetParams' default (no resourceVersion) is the quorum read.
        match api(client, kind, namespace).get_opt(name).await? {
            Some(found) => from_dynamic(kind, &found).map(Some),
            None => Ok(None),
        }
    };
    found
        .await
        .failed(Operation::Read, kind.as_str(), namespace, name)
}

/// Carries out one write in `desired.namespace`.
pub async fn execute(
    client: &Client,
    desired: &DesiredState,
    write: &Write,
) -> Result<Written, Error> {
    let namespace = desired.namespace.as_str();
    Ok(match write {
        Write::Apply(object) => Written::Object(Box::new(apply(client, namespace, object).await?)),
        Write::Recreate(object) => {
            delete(client, namespace, object.kind(), object.name(), None).await?;
            Written::Object(Box::new(apply(client, namespace, object).await?))
        }
        Write::Delete { kind, name, uid } => {
            delete(client, namespace, *kind, name, uid.as_deref()).await?;
            Written::Deleted {
                kind: *kind,
                name: name.clone(),
            }
        }
        Write::ApplyNamespaceLabels(labels) => {
            let patch = desired.namespace_patch(labels.clone());
            Written::Namespace(
                Api::<Namespace>::all(client.clone())
                    .patch(namespace, &apply_params(), &Patch::Apply(&patch))
                    .await
                    .failed(Operation::Apply, "Namespace", "", namespace)?,
            )
        }
        Write::RemoveNamespaceLabels(keys) => {
            let removed: serde_json::Map<String, serde_json::Value> = keys
                .iter()
                .map(|k| (k.clone(), serde_json::Value::Null))
                .collect();
            let patch = json!({"metadata": {"labels": removed}});
            let params = PatchParams {
                field_manager: Some(FIELD_MANAGER.to_string()),
                ..PatchParams::default()
            };
            Written::Namespace(
                Api::<Namespace>::all(client.clone())
                    .patch(namespace, &params, &Patch::Merge(&patch))
                    .await
                    .failed(Operation::Apply, "Namespace", "", namespace)?,
            )
        }
        Write::DisableDefaultTokenAutomount => {
            let patch = desired.service_account_patch();
            Written::ServiceAccount(
                Api::<ServiceAccount>::namespaced(client.clone(), namespace)
                    .patch("default", &apply_params(), &Patch::Apply(&patch))
                    .await
                    .failed(Operation::Apply, "ServiceAccount", namespace, "default")?,
            )
        }
    })
}
