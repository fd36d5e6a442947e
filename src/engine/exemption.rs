//! (baseline, namespace, now) -> which of the baseline's controls are exempt there, and why. The
//! one function that decides: render leaves exempt controls out, the admission policies let them
//! be, and status, `check` and Events report them as exempt, so none can disagree with another,
//! also not at the moment an exemption expires.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::{Selector, SelectorExt};
use serde::Serialize;

use super::validate::ValidBaseline;
use crate::api::{Control, Exemption};

/// One control exempt in a namespace.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ExemptControl {
    pub baseline: String,
    /// The control: `NetworkPolicy`, `PodSecurity`, ..., or `Role/<name>` for one role.
    pub control: String,
    pub reason: String,
    /// When it ends (seconds since the epoch); None for a permanent exemption.
    pub expires_at: Option<i64>,
}

impl std::fmt::Display for ExemptControl {
    /// `NetworkPolicy (until 2027-03-31T00:00:00Z: reason)`, as render, check and Events say it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let until = self
            .expires_at
            .and_then(|s| k8s_openapi::jiff::Timestamp::from_second(s).ok())
            .map_or_else(|| "permanent".to_string(), |t| format!("until {t}"));
        write!(f, "{} ({until}: {})", self.control, self.reason)
    }
}

/// An exemption without end, as the status and `check` list it: a hole someone chose to keep.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PermanentExemption {
    pub baseline: String,
    /// Its index in `spec.exemptions`.
    pub index: usize,
    /// What it exempts: controls, and `Role/<name>` for single roles.
    pub controls: Vec<String>,
    pub reason: String,
}

impl std::fmt::Display for PermanentExemption {
    /// `SecurityBaseline "b" spec.exemptions[1]: NetworkPolicy, Role/viewer (permanent: reason)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SecurityBaseline {:?} spec.exemptions[{}]: {} (permanent: {})",
            self.baseline,
            self.index,
            self.controls.join(", "),
            self.reason
        )
    }
}

/// The exemptions of `baseline` that never end, in the order of `spec.exemptions`.
pub fn permanent_exemptions(baseline: &ValidBaseline) -> Vec<PermanentExemption> {
    let spec = &baseline.baseline.spec;
    spec.exemptions
        .iter()
        .enumerate()
        .filter(|(_, e)| e.permanent)
        .map(|(index, e)| PermanentExemption {
            baseline: baseline.name().to_string(),
            index,
            controls: (e.controls.iter().map(|c| c.as_str().to_string()))
                .chain(e.roles.iter().map(|r| format!("Role/{r}")))
                .collect(),
            reason: e.reason.clone(),
        })
        .collect()
}

/// What a baseline leaves alone in one namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exempted {
    pub controls: BTreeSet<Control>,
    /// Roles exempt one by one (all of them when `controls` holds `Roles`).
    pub roles: BTreeSet<String>,
    /// Each exempt control with its reason, for reports.
    pub why: Vec<ExemptControl>,
}

impl Exempted {
    pub fn control(&self, control: Control) -> bool {
        self.controls.contains(&control)
    }

    pub fn role(&self, name: &str) -> bool {
        self.control(Control::Roles) || self.roles.contains(name)
    }
}

/// The controls of `baseline` exempt in `namespace` (with `labels`) at `now` (seconds since the
/// epoch): those of every exemption naming or selecting the namespace that has not expired. An
/// exemption ends at its `expiresAt`, to the second.
pub fn exempted(
    baseline: &ValidBaseline,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    now: i64,
) -> Exempted {
    let mut result = Exempted::default();
    let name = baseline.name();
    for (exemption, selector) in in_force(baseline, now) {
        let expires_at = expires_at(exemption);
        let by_name = exemption.namespaces.iter().any(|n| n == namespace);
        let by_labels = selector.as_ref().is_some_and(|s| s.matches(labels));
        if !by_name && !by_labels {
            continue;
        }
        let mut note = |control: String| {
            result.why.push(ExemptControl {
                baseline: name.to_string(),
                control,
                reason: exemption.reason.clone(),
                expires_at,
            })
        };
        for control in &exemption.controls {
            if result.controls.insert(*control) {
                note(control.as_str().to_string());
            }
        }
        for role in &exemption.roles {
            if result.roles.insert(role.clone()) {
                note(format!("Role/{role}"));
            }
        }
    }
    result.why.sort();
    result
}

/// The exemptions of `baseline` in force at `now`, with their parsed selectors: one that has an
/// `expiresAt` ends at it, to the second.
fn in_force(
    baseline: &ValidBaseline,
    now: i64,
) -> impl Iterator<Item = (&Exemption, Option<&Selector>)> {
    baseline
        .baseline
        .spec
        .exemptions
        .iter()
        .zip(&baseline.exemption_selectors)
        .filter(move |(e, _)| expires_at(e).is_none_or(|end| end > now))
        .map(|(e, s)| (e, s.as_ref()))
}

fn expires_at(exemption: &Exemption) -> Option<i64> {
    exemption.expires_at.as_ref().map(|t| t.0.as_second())
}

/// CEL for the admission policies: true when `control` of `baseline` is exempt, at `now`, in the
/// namespace named by the CEL expression `name` with the label map `labels`; None when no
/// exemption in force names the control. The same exemptions as [`exempted`], in the same
/// words: by name, or by a selector as Kubernetes matches it. The policies are rendered again
/// the moment one expires.
pub fn exempt_cel(
    baseline: &ValidBaseline,
    control: Control,
    now: i64,
    name: &str,
    labels: &str,
) -> Option<String> {
    let alternatives: Vec<String> = in_force(baseline, now)
        .filter(|(e, _)| e.controls.contains(&control))
        .map(|(exemption, _)| {
            let mut any = Vec::new();
            if !exemption.namespaces.is_empty() {
                any.push(format!("{name} in {}", cel_list(&exemption.namespaces)));
            }
            if let Some(selector) = &exemption.namespace_selector {
                any.push(selector_cel(selector, labels));
            }
            format!("({})", any.join(" || "))
        })
        .collect();
    (!alternatives.is_empty()).then(|| format!("({})", alternatives.join(" || ")))
}

/// CEL: the label map `labels` matches `selector`, as the API server matches label selectors
/// (an empty selector matches everything; NotIn matches where the key is absent).
fn selector_cel(selector: &LabelSelector, labels: &str) -> String {
    let mut all: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| {
            format!(
                "({k} in {labels} && {labels}[{k}] == {v})",
                k = cel(k),
                v = cel(v)
            )
        })
        .collect();
    for e in selector.match_expressions.iter().flatten() {
        let k = cel(&e.key);
        let values = cel_list(e.values.as_deref().unwrap_or_default());
        all.push(match e.operator.as_str() {
            "In" => format!("({k} in {labels} && {labels}[{k}] in {values})"),
            "NotIn" => format!("(!({k} in {labels}) || !({labels}[{k}] in {values}))"),
            "Exists" => format!("({k} in {labels})"),
            "DoesNotExist" => format!("!({k} in {labels})"),
            // Validation refuses any other operator; should one get here, it matches nothing,
            // so nothing is exempt by it: the stricter answer.
            _ => "false".to_string(),
        });
    }
    if all.is_empty() {
        "true".to_string()
    } else {
        format!("({})", all.join(" && "))
    }
}

/// A CEL string literal.
pub(super) fn cel(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn cel_list(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|i| cel(i)).collect();
    format!("[{}]", items.join(", "))
}

/// The next moment (seconds since the epoch) after `now` at which one of `baseline`'s exemptions
/// expires: when enforcement must resume, without waiting for a resync.
pub fn next_expiry(baseline: &ValidBaseline, now: i64) -> Option<i64> {
    baseline
        .baseline
        .spec
        .exemptions
        .iter()
        .filter_map(expires_at)
        .filter(|end| *end > now)
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::test_support::labels;

    fn baseline(exemptions: &str) -> ValidBaseline {
        crate::engine::test_support::baseline(&format!(
            "networkPolicy: {{defaultDeny: [Ingress]}}\nrbac: {{roles: [{{name: viewer, rules: [{{apiGroups: [''], resources: [pods], verbs: [get]}}]}}]}}\nexemptions: {exemptions}"
        ))
    }

    const NOON: i64 = 1_798_804_800; // 2027-01-01T12:00:00Z

    #[test]
    fn permanent_exemptions_are_listed_by_index_with_what_they_exempt() {
        let b = baseline(
            "[{namespaces: [legacy], controls: [NetworkPolicy], reason: migrating, expiresAt: '2027-01-01T12:00:00Z'}, {namespaceSelector: {matchLabels: {lab: 'true'}}, controls: [LimitRange], roles: [viewer], reason: experiments, permanent: true}]",
        );
        let listed = permanent_exemptions(&b);
        assert_eq!(listed.len(), 1);
        assert_eq!(
            listed[0].to_string(),
            "SecurityBaseline \"b\" spec.exemptions[1]: LimitRange, Role/viewer (permanent: experiments)"
        );
        let why = exempted(&b, "lab-1", &labels(&[("lab", "true")]), NOON).why;
        assert_eq!(why[0].to_string(), "LimitRange (permanent: experiments)");
    }

    #[test]
    fn by_name_or_labels_until_it_expires_to_the_second() {
        let b = baseline(
            "[{namespaces: [legacy], controls: [NetworkPolicy], reason: migrating, expiresAt: '2027-01-01T12:00:00Z'}, {namespaceSelector: {matchLabels: {lab: 'true'}}, roles: [viewer], reason: experiments, permanent: true}]",
        );
        let before = exempted(&b, "legacy", &labels(&[]), NOON - 1);
        assert!(before.control(Control::NetworkPolicy));
        assert_eq!(before.why[0].reason, "migrating");
        assert_eq!(before.why[0].expires_at, Some(NOON));
        assert!(
            exempted(&b, "legacy", &labels(&[]), NOON)
                .controls
                .is_empty(),
            "ended"
        );
        assert!(
            exempted(&b, "other", &labels(&[]), NOON - 1)
                .controls
                .is_empty()
        );
        let lab = exempted(&b, "x", &labels(&[("lab", "true")]), NOON);
        assert!(lab.role("viewer") && !lab.role("admin"));
        assert_eq!(lab.why[0].control, "Role/viewer");
        assert_eq!(next_expiry(&b, NOON - 10), Some(NOON));
        assert_eq!(next_expiry(&b, NOON), None);
    }
}
