//! RBAC: each Role's name, its rules (no wildcards, privileged verbs or sensitive resources unless
//! asked for, no templates) and its subjects (names, API groups, namespaces).

use std::collections::BTreeSet;

use super::Errors;
use super::syntax::{is_dns_label, is_dns_subdomain};
use crate::api::{RbacSpec, RoleRule, RoleSpec, RoleSubject, SubjectKind};
use crate::engine::template;

const PRIVILEGED_VERBS: [&str; 3] = ["escalate", "bind", "impersonate"];

/// Resources whose access is what an attacker in a namespace looks for; granted only on request.
const SENSITIVE_RESOURCES: [&str; 5] = [
    "secrets",
    "pods/exec",
    "pods/attach",
    "serviceaccounts/token",
    "nodes/proxy",
];

/// `spec.rbac.roles`: names used once, each role valid.
pub(super) fn validate_rbac(rbac: &RbacSpec, errors: &mut Errors) {
    let mut seen = BTreeSet::new();
    for (i, role) in rbac.roles.iter().enumerate() {
        let path = format!("spec.rbac.roles[{i}]");
        if !seen.insert(role.name.as_str()) {
            errors.add(
                format!("{path}.name"),
                format!("{:?} is used by another role", role.name),
            );
        }
        validate_role(role, &path, errors);
    }
}

fn validate_role(role: &RoleSpec, path: &str, errors: &mut Errors) {
    if !is_dns_label(&role.name) {
        errors.add(
            format!("{path}.name"),
            format!("{:?} must be lowercase letters, digits and '-'", role.name),
        );
    }
    if role.rules.is_empty() {
        errors.add(format!("{path}.rules"), "must have at least one rule");
    }
    for (j, rule) in role.rules.iter().enumerate() {
        validate_rule(role, rule, &format!("{path}.rules[{j}]"), errors);
    }
    for (j, subject) in role.subjects.iter().enumerate() {
        validate_subject(subject, &format!("{path}.subjects[{j}]"), errors);
    }
}

/// One rule of a role, at `rule_path`.
fn validate_rule(role: &RoleSpec, rule: &RoleRule, rule_path: &str, errors: &mut Errors) {
    for (field, items) in [
        ("apiGroups", &rule.api_groups),
        ("resources", &rule.resources),
        ("verbs", &rule.verbs),
        ("resourceNames", &rule.resource_names),
    ] {
        if items.iter().any(|item| item.contains("${")) {
            errors.add(
                format!("{rule_path}.{field}"),
                "templates are expanded only in subject names and namespaces; this would be granted literally",
            );
        }
        if field == "resourceNames" {
            continue;
        }
        if items.is_empty() {
            errors.add(
                format!("{rule_path}.{field}"),
                "must not be empty: list what is granted explicitly",
            );
        }
        if !role.allow_wildcards && items.iter().any(|item| item == "*") {
            errors.add(
                format!("{rule_path}.{field}"),
                "'*' is not least privilege; list them explicitly or set allowWildcards: true",
            );
        }
    }
    if !role.allow_sensitive_resources
        && let Some(resource) = rule
            .resources
            .iter()
            .find(|r| SENSITIVE_RESOURCES.contains(&r.as_str()))
    {
        errors.add(
            format!("{rule_path}.resources"),
            format!("{resource:?} is what attackers look for; set allowSensitiveResources: true to grant it"),
        );
    }
    if !role.allow_privileged_verbs
        && let Some(verb) = rule
            .verbs
            .iter()
            .find(|v| PRIVILEGED_VERBS.contains(&v.as_str()))
    {
        errors.add(
            format!("{rule_path}.verbs"),
            format!("{verb:?} lets a subject gain more privileges; set allowPrivilegedVerbs: true to grant it"),
        );
    }
}

/// One subject of a role, at `subject_path`.
fn validate_subject(subject: &RoleSubject, subject_path: &str, errors: &mut Errors) {
    if let Err(e) = template::check(&subject.name) {
        errors.add(format!("{subject_path}.name"), e.to_string());
    } else if subject.name.is_empty() {
        errors.add(format!("{subject_path}.name"), "is required");
    } else if subject.kind == SubjectKind::ServiceAccount
        && !is_dns_subdomain(&template::expand(&subject.name, "x"))
    {
        errors.add(
            format!("{subject_path}.name"),
            format!("{:?} is not a ServiceAccount name", subject.name),
        );
    }
    let api_group_ok = matches!(
        (subject.api_group.as_deref(), subject.kind),
        (None, _)
            | (Some(""), SubjectKind::ServiceAccount)
            | (
                Some("rbac.authorization.k8s.io"),
                SubjectKind::User | SubjectKind::Group
            )
    );
    if !api_group_ok {
        errors.add(
            format!("{subject_path}.apiGroup"),
            "is rbac.authorization.k8s.io for User and Group subjects and empty for ServiceAccount subjects",
        );
    }
    match (&subject.namespace, subject.kind) {
        (Some(_), SubjectKind::User | SubjectKind::Group) => errors.add(
            format!("{subject_path}.namespace"),
            "is only for ServiceAccount subjects",
        ),
        (Some(ns), SubjectKind::ServiceAccount) => {
            if let Err(e) = template::check(ns) {
                errors.add(format!("{subject_path}.namespace"), e.to_string());
            } else if ns.contains("${") && ns != "${namespace}" {
                errors.add(
                    format!("{subject_path}.namespace"),
                    format!("{ns:?}: a namespace may be exactly ${{namespace}} or a literal name; a template such as \"${{namespace}}-ci\" hands the Role to whoever creates that namespace"),
                );
            } else if !is_dns_label(&template::expand(ns, "x")) {
                errors.add(
                    format!("{subject_path}.namespace"),
                    format!("{ns:?} is not a namespace name"),
                );
            }
        }
        (None, _) => {}
    }
}
