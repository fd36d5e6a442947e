//! The kinds of object the operator generates, and how it recognises the ones it made.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingAdmissionPolicy, MutatingAdmissionPolicyBinding, ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::ApiResource;
use serde::Serialize;
use serde::de::Error as _;

/// Label on every generated object: who manages it.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// The value of [`MANAGED_BY_LABEL`] on our objects.
pub const MANAGED_BY_VALUE: &str = "zerotrust-operator";
/// Label on every generated object: which SecurityBaseline it belongs to.
pub const BASELINE_LABEL: &str = "zerotrust.dev/baseline";
/// The one server-side-apply field manager the operator writes with.
pub const FIELD_MANAGER: &str = "zerotrust-operator";
/// The start of every generated object's name: `zt-<baseline>-<suffix>`.
pub const NAME_PREFIX: &str = "zt-";
/// The label selector that finds every object we generated.
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=zerotrust-operator";

/// The name of a generated object: `zt-<baseline>-<suffix>`.
pub fn object_name(baseline: &str, suffix: &str) -> String {
    format!("{NAME_PREFIX}{baseline}-{suffix}")
}

/// Kinds the operator writes. Namespace and ServiceAccount are shared objects: we own only a few
/// fields of them (PSA labels, automountServiceAccountToken), never the object. Every other kind
/// is generated whole, and this file is the one place that lists them: the controller watches,
/// caches, creates, applies and deletes each kind in [`Kind::GENERATED`] through
/// [`Kind::api_resource`] and [`Object::from_json`], with no per-kind code of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Kind {
    Namespace,
    ServiceAccount,
    NetworkPolicy,
    Role,
    RoleBinding,
    ResourceQuota,
    LimitRange,
    ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding,
    MutatingAdmissionPolicy,
    MutatingAdmissionPolicyBinding,
}

impl Kind {
    /// The kinds generated as whole objects in each selected namespace.
    pub const GENERATED: [Kind; 5] = [
        Kind::NetworkPolicy,
        Kind::Role,
        Kind::RoleBinding,
        Kind::ResourceQuota,
        Kind::LimitRange,
    ];

    /// The cluster-scoped kinds generated per baseline: its admission policies and bindings.
    pub const ADMISSION: [Kind; 4] = [
        Kind::ValidatingAdmissionPolicy,
        Kind::ValidatingAdmissionPolicyBinding,
        Kind::MutatingAdmissionPolicy,
        Kind::MutatingAdmissionPolicyBinding,
    ];

    /// Where the API serves this kind.
    pub fn api_resource(self) -> ApiResource {
        match self {
            Kind::Namespace => ApiResource::erase::<Namespace>(&()),
            Kind::ServiceAccount => ApiResource::erase::<ServiceAccount>(&()),
            Kind::NetworkPolicy => ApiResource::erase::<NetworkPolicy>(&()),
            Kind::Role => ApiResource::erase::<Role>(&()),
            Kind::RoleBinding => ApiResource::erase::<RoleBinding>(&()),
            Kind::ResourceQuota => ApiResource::erase::<ResourceQuota>(&()),
            Kind::LimitRange => ApiResource::erase::<LimitRange>(&()),
            Kind::ValidatingAdmissionPolicy => ApiResource::erase::<ValidatingAdmissionPolicy>(&()),
            Kind::ValidatingAdmissionPolicyBinding => {
                ApiResource::erase::<ValidatingAdmissionPolicyBinding>(&())
            }
            Kind::MutatingAdmissionPolicy => ApiResource::erase::<MutatingAdmissionPolicy>(&()),
            Kind::MutatingAdmissionPolicyBinding => {
                ApiResource::erase::<MutatingAdmissionPolicyBinding>(&())
            }
        }
    }

    /// True for the kinds that live outside any namespace.
    pub fn cluster_scoped(self) -> bool {
        matches!(self, Kind::Namespace) || Kind::ADMISSION.contains(&self)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Namespace => "Namespace",
            Kind::ServiceAccount => "ServiceAccount",
            Kind::NetworkPolicy => "NetworkPolicy",
            Kind::Role => "Role",
            Kind::RoleBinding => "RoleBinding",
            Kind::ResourceQuota => "ResourceQuota",
            Kind::LimitRange => "LimitRange",
            Kind::ValidatingAdmissionPolicy => "ValidatingAdmissionPolicy",
            Kind::ValidatingAdmissionPolicyBinding => "ValidatingAdmissionPolicyBinding",
            Kind::MutatingAdmissionPolicy => "MutatingAdmissionPolicy",
            Kind::MutatingAdmissionPolicyBinding => "MutatingAdmissionPolicyBinding",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An object the operator generates and owns outright: namespaced controls, and the
/// cluster-scoped admission policies of a baseline.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Object {
    NetworkPolicy(NetworkPolicy),
    Role(Role),
    RoleBinding(RoleBinding),
    ResourceQuota(ResourceQuota),
    LimitRange(LimitRange),
    ValidatingAdmissionPolicy(ValidatingAdmissionPolicy),
    ValidatingAdmissionPolicyBinding(ValidatingAdmissionPolicyBinding),
    MutatingAdmissionPolicy(MutatingAdmissionPolicy),
    MutatingAdmissionPolicyBinding(MutatingAdmissionPolicyBinding),
}

/// Applies `$body` to the object inside any [`Object`] variant.
macro_rules! each_object {
    ($object:expr, $o:ident => $body:expr) => {
        match $object {
            Object::NetworkPolicy($o) => $body,
            Object::Role($o) => $body,
            Object::RoleBinding($o) => $body,
            Object::ResourceQuota($o) => $body,
            Object::LimitRange($o) => $body,
            Object::ValidatingAdmissionPolicy($o) => $body,
            Object::ValidatingAdmissionPolicyBinding($o) => $body,
            Object::MutatingAdmissionPolicy($o) => $body,
            Object::MutatingAdmissionPolicyBinding($o) => $body,
        }
    };
}

impl Object {
    pub fn kind(&self) -> Kind {
        match self {
            Object::NetworkPolicy(_) => Kind::NetworkPolicy,
            Object::Role(_) => Kind::Role,
            Object::RoleBinding(_) => Kind::RoleBinding,
            Object::ResourceQuota(_) => Kind::ResourceQuota,
            Object::LimitRange(_) => Kind::LimitRange,
            Object::ValidatingAdmissionPolicy(_) => Kind::ValidatingAdmissionPolicy,
            Object::ValidatingAdmissionPolicyBinding(_) => Kind::ValidatingAdmissionPolicyBinding,
            Object::MutatingAdmissionPolicy(_) => Kind::MutatingAdmissionPolicy,
            Object::MutatingAdmissionPolicyBinding(_) => Kind::MutatingAdmissionPolicyBinding,
        }
    }

    pub fn meta(&self) -> &ObjectMeta {
        each_object!(self, o => &o.metadata)
    }

    pub fn meta_mut(&mut self) -> &mut ObjectMeta {
        each_object!(self, o => &mut o.metadata)
    }

    pub fn name(&self) -> &str {
        self.meta().name.as_deref().unwrap_or_default()
    }

    /// Reads an object of a generated `kind` from its JSON, as the API server or a cache holds it.
    pub fn from_json(kind: Kind, json: &[u8]) -> Result<Object, serde_json::Error> {
        Ok(match kind {
            Kind::NetworkPolicy => Object::NetworkPolicy(serde_json::from_slice(json)?),
            Kind::Role => Object::Role(serde_json::from_slice(json)?),
            Kind::RoleBinding => Object::RoleBinding(serde_json::from_slice(json)?),
            Kind::ResourceQuota => Object::ResourceQuota(serde_json::from_slice(json)?),
            Kind::LimitRange => Object::LimitRange(serde_json::from_slice(json)?),
            Kind::ValidatingAdmissionPolicy => {
                Object::ValidatingAdmissionPolicy(serde_json::from_slice(json)?)
            }
            Kind::ValidatingAdmissionPolicyBinding => {
                Object::ValidatingAdmissionPolicyBinding(serde_json::from_slice(json)?)
            }
            Kind::MutatingAdmissionPolicy => {
                Object::MutatingAdmissionPolicy(serde_json::from_slice(json)?)
            }
            Kind::MutatingAdmissionPolicyBinding => {
                Object::MutatingAdmissionPolicyBinding(serde_json::from_slice(json)?)
            }
            Kind::Namespace | Kind::ServiceAccount => {
                return Err(serde_json::Error::custom(format!(
                    "{kind} is shared, not a generated kind"
                )));
            }
        })
    }
}

/// Who an existing object belongs to, as far as this operator is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ownership {
    /// Labelled for this baseline and applied by our field manager.
    Baseline(String),
    /// Not ours: no labels, or labels someone else wrote (no apply from our field manager).
    Foreign,
}

/// Ours means both our labels and an apply by our field manager: labels alone can be forged by
/// anyone who can create the object, and such an object must never be modified or deleted.
pub fn ownership(meta: &ObjectMeta) -> Ownership {
    let labels = meta.labels.as_ref();
    let label = |key: &str| labels.and_then(|l| l.get(key)).map(String::as_str);
    match (label(MANAGED_BY_LABEL), label(BASELINE_LABEL)) {
        (Some(MANAGED_BY_VALUE), Some(baseline)) if applied_by_us(meta) => {
            Ownership::Baseline(baseline.to_string())
        }
        _ => Ownership::Foreign,
    }
}

/// True when our field manager has written to the object.
pub fn applied_by_us(meta: &ObjectMeta) -> bool {
    meta.managed_fields
        .iter()
        .flatten()
        .any(|entry| entry.manager.as_deref() == Some(FIELD_MANAGER))
}

/// The label keys our field manager owns on an object, read from its managedFields entry
/// (`{"f:metadata": {"f:labels": {"f:<key>": {}}}}`).
pub fn owned_label_keys(meta: &ObjectMeta) -> BTreeSet<String> {
    meta.managed_fields
        .iter()
        .flatten()
        .filter(|e| e.manager.as_deref() == Some(FIELD_MANAGER))
        .filter_map(|e| e.fields_v1.as_ref())
        .filter_map(|f| f.0.get("f:metadata")?.get("f:labels")?.as_object().cloned())
        .flat_map(|labels| {
            labels
                .into_iter()
                .filter_map(|(k, _)| k.strip_prefix("f:").map(String::from))
        })
        .collect()
}

/// The labels every object generated for `baseline` carries.
pub fn owner_labels(baseline: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string()),
        (BASELINE_LABEL.to_string(), baseline.to_string()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind is generated per namespace, generated per baseline (admission), or a shared
    /// object we own fields of: exactly one of them; and each list agrees with the API's scope.
    #[test]
    fn the_kind_lists_cover_every_kind_once_and_match_the_apis_scope() {
        let shared = [Kind::Namespace, Kind::ServiceAccount];
        let every = [
            Kind::Namespace,
            Kind::ServiceAccount,
            Kind::NetworkPolicy,
            Kind::Role,
            Kind::RoleBinding,
            Kind::ResourceQuota,
            Kind::LimitRange,
            Kind::ValidatingAdmissionPolicy,
            Kind::ValidatingAdmissionPolicyBinding,
            Kind::MutatingAdmissionPolicy,
            Kind::MutatingAdmissionPolicyBinding,
        ];
        for kind in every {
            // A new variant fails to compile here until it is placed in one list.
            match kind {
                Kind::Namespace
                | Kind::ServiceAccount
                | Kind::NetworkPolicy
                | Kind::Role
                | Kind::RoleBinding
                | Kind::ResourceQuota
                | Kind::LimitRange
                | Kind::ValidatingAdmissionPolicy
                | Kind::ValidatingAdmissionPolicyBinding
                | Kind::MutatingAdmissionPolicy
                | Kind::MutatingAdmissionPolicyBinding => {}
            }
            let lists = [
                Kind::GENERATED.contains(&kind),
                Kind::ADMISSION.contains(&kind),
                shared.contains(&kind),
            ];
            assert_eq!(lists.iter().filter(|x| **x).count(), 1, "{kind}");
            assert_eq!(kind.api_resource().kind, kind.as_str());
        }
        let namespaced = |k: &Kind| !k.cluster_scoped();
        assert!(Kind::GENERATED.iter().all(namespaced));
        assert!(!Kind::ADMISSION.iter().any(namespaced));
    }

    #[test]
    fn object_names_start_with_the_prefix_and_name_the_baseline() {
        assert_eq!(object_name("b", "quota"), "zt-b-quota");
        assert!(object_name("b", "").starts_with(NAME_PREFIX));
    }
}
