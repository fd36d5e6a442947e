//! Semantic validation of a SecurityBaseline: everything the CRD schema cannot express, checked
//! before any namespace is touched. Errors name the field, as `kubectl` users expect. The entry
//! `validate`, the error types and Pod Security are here; each other area has its own file: the
//! syntax of names and selectors, exemptions, network policy, RBAC, quotas and limit ranges.

mod exemptions;
mod network;
mod rbac;
mod resources;
mod syntax;
#[cfg(test)]
mod tests;

use std::fmt;

use kube::core::Selector;

use super::pod_security::{PSA_VERSION_FLOOR, is_valid_version};
use crate::api::{SecurityBaseline, SecurityBaselineSpec};
use syntax::validate_selector;
pub use syntax::{is_dns_label, is_dns_subdomain};

/// One problem with a baseline, at a dotted field path such as `spec.rbac.roles[0].rules[1].verbs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// All the problems found in one baseline.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InvalidSpec {
    pub baseline: String,
    pub errors: Vec<FieldError>,
}

impl fmt::Display for InvalidSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let listed: Vec<String> = self.errors.iter().map(ToString::to_string).collect();
        write!(
            f,
            "SecurityBaseline {:?} is invalid: {}",
            self.baseline,
            listed.join("; ")
        )
    }
}

/// A baseline that passed validation, with its selector parsed. Only these can be rendered.
#[derive(Debug, Clone)]
pub struct ValidBaseline {
    pub baseline: SecurityBaseline,
    pub(crate) selector: Option<Selector>,
    /// Each exemption's namespace selector, parsed, in the order of `spec.exemptions`.
    pub(crate) exemption_selectors: Vec<Option<Selector>>,
}

impl ValidBaseline {
    pub fn name(&self) -> &str {
        self.baseline.metadata.name.as_deref().unwrap_or_default()
    }
}

/// `baseline` checked at `now` (seconds since the epoch; only an exemption's end is measured
/// against it, and a baseline valid at one moment stays valid later).
pub fn validate(baseline: &SecurityBaseline, now: i64) -> Result<ValidBaseline, InvalidSpec> {
    let mut errors = Errors::default();
    let name = baseline.metadata.name.clone().unwrap_or_default();
    validate_name(&name, &mut errors);
    let spec = &baseline.spec;
    validate_excluded_namespaces(spec, &mut errors);
    let selector = match &spec.namespace_selector {
        None => None,
        Some(selector) => {
            validate_selector(selector, "spec.namespaceSelector", &mut errors);
            Selector::try_from(selector.clone()).ok()
        }
    };
    let exemption_selectors = exemptions::validate_exemptions(spec, now, &mut errors);
    if let Some(np) = &spec.network_policy {
        network::validate_network_policy(np, &mut errors);
    }
    if let Some(version) = spec
        .pod_security
        .as_ref()
        .and_then(|p| p.version.as_deref())
        && !is_valid_version(version)
    {
        errors.add(
            "spec.podSecurity.version",
            format!(
                "{version:?} must be \"latest\" or \"v1.NN\" with NN at least {PSA_VERSION_FLOOR}"
            ),
        );
    }
    if let Some(rbac) = &spec.rbac {
        rbac::validate_rbac(rbac, &mut errors);
    }
    if let Some(quota) = &spec.resource_quota {
        resources::validate_quota(quota, &mut errors);
    }
    if let Some(limits) = &spec.limit_range {
        resources::validate_limit_range(limits, &mut errors);
    }
    if errors.0.is_empty() {
        Ok(ValidBaseline {
            baseline: baseline.clone(),
            selector,
            exemption_selectors,
        })
    } else {
        Err(InvalidSpec {
            baseline: name,
            errors: errors.0,
        })
    }
}

/// `metadata.name`: required, and a name every generated object's name can start from.
fn validate_name(name: &str, errors: &mut Errors) {
    if name.is_empty() {
        errors.add("metadata.name", "is required");
    } else if name.len() > 63 || !is_dns_subdomain(name) {
        errors.add(
            "metadata.name",
            "must be at most 63 lowercase letters, digits, '-' or '.', starting and ending with a letter or digit",
        );
    }
}

/// `spec.excludedNamespaces`: namespace names.
fn validate_excluded_namespaces(spec: &SecurityBaselineSpec, errors: &mut Errors) {
    for (i, ns) in spec.excluded_namespaces.iter().enumerate() {
        if !is_dns_label(ns) {
            errors.add(
                format!("spec.excludedNamespaces[{i}]"),
                format!("{ns:?} is not a namespace name"),
            );
        }
    }
}

#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }
}
