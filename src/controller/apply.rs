//! Carries out the engine's actions against the API server: server-side apply with our one field
//! manager, deletes guarded by uid.

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DeleteParams, GetParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::engine::{Action, DesiredState, FIELD_MANAGER, Kind, Object, compare};

/// Forced: a repair takes back the fields someone else changed. Only ever used on objects that are
/// ours, or that a baseline explicitly adopts.
fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

fn namespaced<K>(client: &Client, namespace: &str) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
{
    Api::namespaced(client.clone(), namespace)
}

async fn apply_one<K>(client: &Client, namespace: &str, object: &K) -> Result<K, kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug,
{
    let name = object.meta().name.clone().unwrap_or_default();
    namespaced::<K>(client, namespace)
        .patch(&name, &apply_params(), &Patch::Apply(object))
        .await
}

async fn apply_object(
    client: &Client,
    namespace: &str,
    object: &Object,
) -> Result<Object, kube::Error> {
    let applied = apply_typed(client, namespace, object).await?;
    if compare(object, &applied).is_none() {
        return Ok(applied);
    }
    // Under server-side apply, fields someone else added (an extra allow rule, an extra quota key)
    // belong to them and an apply cannot remove them. The object is ours: replace the part of it
    // the baseline defines, guarded by the resource version we just saw.
    replace_defined_fields(client, namespace, object, &applied).await
}

async fn apply_typed(
    client: &Client,
    namespace: &str,
    object: &Object,
) -> Result<Object, kube::Error> {
    Ok(match object {
        Object::NetworkPolicy(o) => Object::NetworkPolicy(apply_one(client, namespace, o).await?),
        Object::Role(o) => Object::Role(apply_one(client, namespace, o).await?),
        Object::RoleBinding(o) => Object::RoleBinding(apply_one(client, namespace, o).await?),
        Object::ResourceQuota(o) => Object::ResourceQuota(apply_one(client, namespace, o).await?),
        Object::LimitRange(o) => Object::LimitRange(apply_one(client, namespace, o).await?),
    })
}

/// Where the baseline-defined part of each kind lives.
fn defined_field(kind: Kind) -> &'static str {
    match kind {
        Kind::Role => "rules",
        Kind::RoleBinding => "subjects",
        _ => "spec",
    }
}

async fn replace_defined_fields(
    client: &Client,
    namespace: &str,
    desired: &Object,
    applied: &Object,
) -> Result<Object, kube::Error> {
    let field = defined_field(desired.kind());
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
    let name = desired.name();
    let patch = Patch::Json::<()>(patch);
    Ok(match desired {
        Object::NetworkPolicy(_) => Object::NetworkPolicy(
            namespaced(client, namespace)
                .patch(name, &params, &patch)
                .await?,
        ),
        Object::Role(_) => Object::Role(
            namespaced(client, namespace)
                .patch(name, &params, &patch)
                .await?,
        ),
        Object::RoleBinding(_) => Object::RoleBinding(
            namespaced(client, namespace)
                .patch(name, &params, &patch)
                .await?,
        ),
        Object::ResourceQuota(_) => Object::ResourceQuota(
            namespaced(client, namespace)
                .patch(name, &params, &patch)
                .await?,
        ),
        Object::LimitRange(_) => Object::LimitRange(
            namespaced(client, namespace)
                .patch(name, &params, &patch)
                .await?,
        ),
    })
}

/// What a write left in the cluster, for the caches to hold before the watch reports it.
pub enum Written {
    Object(Object),
    Namespace(Namespace),
    ServiceAccount(ServiceAccount),
    Deleted { kind: Kind, name: String },
}

async fn delete_one<K>(
    client: &Client,
    namespace: &str,
    name: &str,
    uid: Option<&str>,
) -> Result<(), kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + DeserializeOwned
        + Clone
        + Debug,
{
    let params = DeleteParams {
        preconditions: uid.map(|uid| Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match namespaced::<K>(client, namespace)
        .delete(name, &params)
        .await
    {
        Ok(_) => Ok(()),
        // Already gone, or replaced by an object that is not the one we meant to delete.
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Deletes one of our objects, only if its uid is still `uid`.
pub async fn delete_object(
    client: &Client,
    namespace: &str,
    kind: Kind,
    name: &str,
    uid: Option<&str>,
) -> Result<(), kube::Error> {
    match kind {
        Kind::NetworkPolicy => delete_one::<NetworkPolicy>(client, namespace, name, uid).await,
        Kind::Role => delete_one::<Role>(client, namespace, name, uid).await,
        Kind::RoleBinding => delete_one::<RoleBinding>(client, namespace, name, uid).await,
        Kind::ResourceQuota => delete_one::<ResourceQuota>(client, namespace, name, uid).await,
        Kind::LimitRange => delete_one::<LimitRange>(client, namespace, name, uid).await,
        Kind::Namespace | Kind::ServiceAccount => Ok(()), // shared objects are never deleted
    }
}

/// Whether an object of `kind` named `name` exists. Our caches hold only labelled objects, so a
/// same-named object someone else created is invisible to them; this read keeps us from applying
/// over it.
pub async fn exists(
    client: &Client,
    namespace: &str,
    kind: Kind,
    name: &str,
) -> Result<bool, kube::Error> {
    async fn get<K>(client: &Client, namespace: &str, name: &str) -> Result<bool, kube::Error>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + DeserializeOwned
            + Clone
            + Debug,
    {
        // A quorum read: the API server's watch cache may not have an object created a moment ago.
        Ok(namespaced::<K>(client, namespace)
            .get_metadata_opt_with(name, &GetParams::default())
            .await?
            .is_some())
    }
    match kind {
        Kind::NetworkPolicy => get::<NetworkPolicy>(client, namespace, name).await,
        Kind::Role => get::<Role>(client, namespace, name).await,
        Kind::RoleBinding => get::<RoleBinding>(client, namespace, name).await,
        Kind::ResourceQuota => get::<ResourceQuota>(client, namespace, name).await,
        Kind::LimitRange => get::<LimitRange>(client, namespace, name).await,
        Kind::Namespace | Kind::ServiceAccount => Ok(true),
    }
}

async fn create_one<K>(client: &Client, namespace: &str, object: &K) -> Result<K, kube::Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Serialize
        + DeserializeOwned
        + Clone
        + Debug,
{
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PostParams::default()
    };
    namespaced::<K>(client, namespace)
        .create(&params, object)
        .await
}

/// Creates an object our caches do not show. Unlike an apply, a create fails (409 AlreadyExists)
/// when a same-named object exists, so an object someone else made, which our label-filtered
/// caches cannot see, is never written over, not even one created a moment ago.
pub async fn create_object(
    client: &Client,
    namespace: &str,
    object: &Object,
) -> Result<Written, kube::Error> {
    Ok(Written::Object(match object {
        Object::NetworkPolicy(o) => Object::NetworkPolicy(create_one(client, namespace, o).await?),
        Object::Role(o) => Object::Role(create_one(client, namespace, o).await?),
        Object::RoleBinding(o) => Object::RoleBinding(create_one(client, namespace, o).await?),
        Object::ResourceQuota(o) => Object::ResourceQuota(create_one(client, namespace, o).await?),
        Object::LimitRange(o) => Object::LimitRange(create_one(client, namespace, o).await?),
    }))
}

/// Carries out one action in `desired.namespace`.
pub async fn execute(
    client: &Client,
    desired: &DesiredState,
    action: &Action,
) -> Result<Written, kube::Error> {
    let namespace = desired.namespace.as_str();
    Ok(match action {
        Action::Apply(object) => Written::Object(apply_object(client, namespace, object).await?),
        Action::Recreate(object) => {
            delete_object(client, namespace, object.kind(), object.name(), None).await?;
            Written::Object(apply_object(client, namespace, object).await?)
        }
        Action::Delete { kind, name, uid } => {
            delete_object(client, namespace, *kind, name, uid.as_deref()).await?;
            Written::Deleted {
                kind: *kind,
                name: name.clone(),
            }
        }
        Action::ApplyNamespaceLabels(labels) => {
            let patch = desired.namespace_patch(labels.clone());
            Written::Namespace(
                Api::<Namespace>::all(client.clone())
                    .patch(namespace, &apply_params(), &Patch::Apply(&patch))
                    .await?,
            )
        }
        Action::DisableDefaultTokenAutomount => {
            let patch = desired.service_account_patch();
            Written::ServiceAccount(
                namespaced::<ServiceAccount>(client, namespace)
                    .patch("default", &apply_params(), &Patch::Apply(&patch))
                    .await?,
            )
        }
    })
}
