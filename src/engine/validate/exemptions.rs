//! Exemptions: where, what, why and until when, naming only roles the baseline has.

use std::collections::BTreeSet;

use kube::core::Selector;

use super::Errors;
use super::syntax::{is_dns_label, validate_selector};
use crate::api::{Exemption, SecurityBaselineSpec};

/// Exemptions: where, what, why and until when (at `now`, seconds since the epoch); their
/// selectors parsed.
pub(super) fn validate_exemptions(
    spec: &SecurityBaselineSpec,
    now: i64,
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
        validate_end(exemption, &path, now, errors);
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

/// An exemption ends at most [`Exemption::MAX_DAYS`] after `now`, or says it is permanent: a hole
/// without end is a decision someone states, not a field someone forgot. Only an end too far
/// ahead is measured against the clock, so a baseline valid once stays valid as time passes.
fn validate_end(exemption: &Exemption, path: &str, now: i64, errors: &mut Errors) {
    let horizon = now + Exemption::MAX_DAYS * 86_400;
    match (&exemption.expires_at, exemption.permanent) {
        (None, false) => errors.add(
            format!("{path}.expiresAt"),
            format!(
                "is required (at most {} days ahead), or say permanent: true for an exemption without end",
                Exemption::MAX_DAYS
            ),
        ),
        (Some(_), true) => errors.add(
            format!("{path}.permanent"),
            "is set beside expiresAt: an exemption either ends or is permanent",
        ),
        (Some(end), false) if end.0.as_second() > horizon => errors.add(
            format!("{path}.expiresAt"),
            format!(
                "{} is more than {} days ahead; say permanent: true for an exemption without end",
                end.0,
                Exemption::MAX_DAYS
            ),
        ),
        _ => {}
    }
}
