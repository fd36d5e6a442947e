//! Which namespaces a baseline selects.

use std::collections::BTreeMap;

use kube::core::SelectorExt;

use super::validate::ValidBaseline;

/// Namespaces no baseline ever selects: the cluster's own, whose workloads a default-deny would break.
pub const ALWAYS_EXCLUDED: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

/// Where the operator runs; that namespace is never selected either.
pub const DEFAULT_OPERATOR_NAMESPACE: &str = "zerotrust-system";

/// True when `baseline` applies to the namespace `name` with `labels`.
pub fn selects(
    baseline: &ValidBaseline,
    name: &str,
    labels: &BTreeMap<String, String>,
    operator_namespace: &str,
) -> bool {
    if ALWAYS_EXCLUDED.contains(&name) || name == operator_namespace {
        return false;
    }
    if baseline
        .baseline
        .spec
        .excluded_namespaces
        .iter()
        .any(|n| n == name)
    {
        return false;
    }
    baseline
        .selector
        .as_ref()
        .is_none_or(|selector| selector.matches(labels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::test_support::{baseline, labels};

    #[test]
    fn absent_selector_selects_all_but_system_namespaces() {
        let b = baseline("{excludedNamespaces: [legacy]}");
        assert!(selects(&b, "team-a", &labels(&[]), "zerotrust-system"));
        for name in [
            "kube-system",
            "kube-public",
            "kube-node-lease",
            "zerotrust-system",
            "legacy",
        ] {
            assert!(
                !selects(&b, name, &labels(&[]), "zerotrust-system"),
                "{name}"
            );
        }
        assert!(!selects(&b, "ops", &labels(&[]), "ops"));
    }

    #[test]
    fn selector_is_honoured() {
        let b = baseline(
            "{namespaceSelector: {matchLabels: {tier: tenant}, matchExpressions: [{key: env, operator: NotIn, values: [sandbox]}]}}",
        );
        assert!(selects(
            &b,
            "a",
            &labels(&[("tier", "tenant")]),
            "zerotrust-system"
        ));
        assert!(!selects(
            &b,
            "a",
            &labels(&[("tier", "tenant"), ("env", "sandbox")]),
            "zerotrust-system"
        ));
        assert!(!selects(&b, "a", &labels(&[]), "zerotrust-system"));
    }
}
