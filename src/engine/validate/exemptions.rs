//! Exemptions: where, what and why, naming only roles the baseline has.

use std::collections::BTreeSet;

use kube::core::Selector;

use super::Errors;
use super::syntax::{is_dns_label, validate_selector};
use crate::api::SecurityBaselineSpec;

/// Exemptions: where, what and why; their selectors parsed.
pub(super) fn validate_exemptions(
    spec: &SecurityBaselineSpec,
    errors: &mut Errors,
) -> Vec<Option<Selector>> {
    let roles: BTreeSet<&str> = spec
        .rbac
        .iter()
        .flat_map(|r| &r.roles)
        .map(|r| r.name.as_str())
        .collect();
    let mut selectors = Vec::new();
    for (i, exemption) in spec.exemptions.iter().enumerate() {
        let path = format!("spec.exemptions[{i}]");
        if exemption.reason.trim().is_empty() {
            errors.add(
                format!("{path}.reason"),
                "is required: say why the control is not enforced",
            );
        }
        if exemption.namespaces.is_empty() && exemption.namespace_selector.is_none() {
            errors.add(&path, "needs namespaces or a namespaceSelector");
        }
        if exemption.controls.is_empty() && exemption.roles.is_empty() {
            errors.add(
                format!("{path}.controls"),
                "needs controls or roles: what is not enforced",
            );
        }
        for (j, ns) in exemption.namespaces.iter().enumerate() {
            if !is_dns_label(ns) {
                errors.add(
                    format!("{path}.namespaces[{j}]"),
                    format!("{ns:?} is not a namespace name"),
                );
            }
        }
        for (j, role) in exemption.roles.iter().enumerate() {
            if !roles.contains(role.as_str()) {
                errors.add(
                    format!("{path}.roles[{j}]"),
                    format!(
                        "{role:?} is not one of spec.rbac.roles: the exemption would exempt nothing"
                    ),
                );
            }
        }
        selectors.push(exemption.namespace_selector.as_ref().and_then(|selector| {
            validate_selector(selector, &format!("{path}.namespaceSelector"), errors);
            Selector::try_from(selector.clone()).ok()
        }));
    }
    selectors
}
