//! A baseline's least-privilege Roles and the RoleBindings that grant them.

use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};

use super::metadata;
use crate::api::{RoleSpec, SubjectKind};
use crate::engine::object::object_name;
use crate::engine::template;

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

pub(super) fn role_object(baseline: &str, role: &RoleSpec, namespace: &str) -> Role {
    Role {
        metadata: metadata(baseline, namespace, &role.name),
        rules: Some(
            role.rules
                .iter()
                .map(|rule| PolicyRule {
                    api_groups: Some(rule.api_groups.clone()),
                    resources: Some(rule.resources.clone()),
                    verbs: rule.verbs.clone(),
                    resource_names: (!rule.resource_names.is_empty())
                        .then(|| rule.resource_names.clone()),
                    non_resource_urls: None,
                })
                .collect(),
        ),
    }
}

pub(super) fn role_binding(baseline: &str, role: &RoleSpec, namespace: &str) -> RoleBinding {
    RoleBinding {
        metadata: metadata(baseline, namespace, &role.name),
        role_ref: RoleRef {
            api_group: Some(RBAC_GROUP.to_string()),
            kind: "Role".to_string(),
            name: object_name(baseline, &role.name),
        },
        subjects: Some(
            role.subjects
                .iter()
                .map(|s| {
                    let name = template::expand(&s.name, namespace);
                    match s.kind {
                        SubjectKind::ServiceAccount => Subject {
                            kind: "ServiceAccount".to_string(),
                            name,
                            namespace: Some(
                                s.namespace
                                    .as_deref()
                                    .map(|ns| template::expand(ns, namespace))
                                    .unwrap_or_else(|| namespace.to_string()),
                            ),
                            api_group: None,
                        },
                        SubjectKind::User | SubjectKind::Group => Subject {
                            kind: if s.kind == SubjectKind::User {
                                "User"
                            } else {
                                "Group"
                            }
                            .to_string(),
                            name,
                            namespace: None,
                            api_group: Some(RBAC_GROUP.to_string()),
                        },
                    }
                })
                .collect(),
        ),
    }
}
