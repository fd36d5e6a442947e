//! (desired, drift left) -> one result per baseline and control in a namespace: pass, fail or
//! skip. `check -o json` and the PolicyReports both read these, so they cannot disagree.

use std::collections::BTreeMap;

use serde::Serialize;

use super::diff::Drift;
use super::exemption::ExemptControl;
use super::object::Kind;
use super::object::object_name;
use super::render::{DesiredObject, DesiredState};
use crate::api::Control;

/// The control named for the cluster-scoped admission policies of a baseline.
pub const ADMISSION_CONTROL: &str = "AdmissionPolicies";

/// Longest result message, in bytes: a report stays the same size however many policies of
/// others widen a namespace.
pub const MAX_MESSAGE: usize = 1024;
/// Findings a failed result's message names before it only counts the rest.
const LISTED_FINDINGS: usize = 5;
/// Longest finding in a message, so the count of the rest always fits after the listed ones.
const FINDING_MESSAGE: usize = (MAX_MESSAGE - 32) / LISTED_FINDINGS;

/// Where one control of one baseline stands in a namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compliance {
    /// In place as the baseline asks.
    Pass,
    /// Drift or a conflict is left: repaired neither yet nor ever (Audit mode, others' objects).
    Fail,
    /// Exempt here, for a reason, maybe until a time.
    Skip,
}

impl Compliance {
    pub fn as_str(self) -> &'static str {
        match self {
            Compliance::Pass => "pass",
            Compliance::Fail => "fail",
            Compliance::Skip => "skip",
        }
    }
}

/// One control of one baseline in one namespace, with what decides its result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlResult {
    pub baseline: String,
    /// `NetworkPolicy`, `PodSecurity`, `Role/<name>`, `Roles` (every role exempt),
    /// `ResourceQuota`, `LimitRange`, `ServiceAccount`, or [`ADMISSION_CONTROL`].
    pub control: String,
    pub result: Compliance,
    /// The drift that fails it, in the order found; empty unless it fails.
    pub drift: Vec<Drift>,
    /// Its exemption, when exempt (drift fails it all the same).
    pub exemption: Option<ExemptControl>,
}

impl ControlResult {
    /// One line for people: the findings (the first few, then how many more) for a failure, the
    /// exemption for a skip. At most [`MAX_MESSAGE`] bytes.
    pub fn message(&self) -> String {
        let text = match (self.result, &self.exemption) {
            (Compliance::Fail, _) => {
                let mut listed: Vec<String> = self
                    .drift
                    .iter()
                    .take(LISTED_FINDINGS)
                    .map(|d| truncate(&d.to_string(), FINDING_MESSAGE))
                    .collect();
                if self.drift.len() > LISTED_FINDINGS {
                    listed.push(format!("and {} more", self.drift.len() - LISTED_FINDINGS));
                }
                listed.join("; ")
            }
            (Compliance::Skip, Some(e)) => match until(e) {
                Some(t) => format!("exempt until {t}: {}", e.reason),
                None => format!("exempt: {}", e.reason),
            },
            _ => "in place".to_string(),
        };
        truncate(&text, MAX_MESSAGE)
    }
}

/// When `exemption` ends, as RFC 3339.
pub fn until(exemption: &ExemptControl) -> Option<String> {
    exemption
        .expires_at
        .and_then(|s| k8s_openapi::jiff::Timestamp::from_second(s).ok())
        .map(|t| t.to_string())
}

/// How many results have each outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub pass: usize,
    pub fail: usize,
    pub skip: usize,
}

impl Tally {
    pub fn of<'a>(results: impl IntoIterator<Item = &'a ControlResult>) -> Tally {
        let mut tally = Tally::default();
        for r in results {
            match r.result {
                Compliance::Pass => tally.pass += 1,
                Compliance::Fail => tally.fail += 1,
                Compliance::Skip => tally.skip += 1,
            }
        }
        tally
    }
}

/// The control a finding on `kind` `name` of `baseline` is about. Roles and their bindings are
/// one control per role, `Role/<name>`; a Namespace finding is a Pod Security label.
pub fn control(baseline: &str, kind: Kind, name: &str) -> String {
    match kind {
        Kind::NetworkPolicy => Control::NetworkPolicy.as_str().to_string(),
        Kind::Namespace => Control::PodSecurity.as_str().to_string(),
        Kind::ServiceAccount => Control::ServiceAccount.as_str().to_string(),
        Kind::ResourceQuota => Control::ResourceQuota.as_str().to_string(),
        Kind::LimitRange => Control::LimitRange.as_str().to_string(),
        Kind::Role | Kind::RoleBinding => {
            let prefix = object_name(baseline, "");
            format!("Role/{}", name.strip_prefix(&prefix).unwrap_or(name))
        }
        Kind::ValidatingAdmissionPolicy
        | Kind::ValidatingAdmissionPolicyBinding
        | Kind::MutatingAdmissionPolicy
        | Kind::MutatingAdmissionPolicyBinding => ADMISSION_CONTROL.to_string(),
    }
}

/// One result per baseline and control of `desired` (the namespace's selecting baselines), given
/// the `drift` left there: fail with drift, else skip when exempt, else pass. Every finding lands
/// in exactly one result; sorted by baseline, then control.
pub fn results<'a>(
    desired: &DesiredState,
    drift: impl IntoIterator<Item = &'a Drift>,
) -> Vec<ControlResult> {
    let mut by_control: BTreeMap<(String, String), ControlResult> = BTreeMap::new();
    for wanted in &desired.objects {
        let (kind, name) = (wanted.object.kind(), wanted.object.name());
        entry(
            &mut by_control,
            &wanted.baseline,
            control(&wanted.baseline, kind, name),
        );
    }
    for requirement in &desired.requirements {
        if !requirement.pod_security.is_empty() {
            entry(
                &mut by_control,
                &requirement.baseline,
                Control::PodSecurity.as_str().into(),
            );
        }
        if requirement.disable_token_automount {
            entry(
                &mut by_control,
                &requirement.baseline,
                Control::ServiceAccount.as_str().into(),
            );
        }
    }
    for exempt in &desired.exempt {
        entry(&mut by_control, &exempt.baseline, exempt.control.clone()).exemption =
            Some(exempt.clone());
    }
    for d in drift {
        entry(
            &mut by_control,
            &d.baseline,
            control(&d.baseline, d.kind, &d.name),
        )
        .drift
        .push(d.clone());
    }
    by_control
        .into_values()
        .map(|mut r| {
            r.result = if !r.drift.is_empty() {
                Compliance::Fail
            } else if r.exemption.is_some() {
                Compliance::Skip
            } else {
                Compliance::Pass
            };
            r
        })
        .collect()
}

/// One result per baseline for its cluster-scoped admission policies ([`ADMISSION_CONTROL`]):
/// pass for each baseline in `desired` (what the baselines render), fail for each with drift
/// among `drift` (a stale policy of a baseline that renders none fails it too). Sorted by baseline.
pub fn admission_results<'a>(
    desired: impl IntoIterator<Item = &'a DesiredObject>,
    drift: impl IntoIterator<Item = &'a Drift>,
) -> Vec<ControlResult> {
    let mut by_control: BTreeMap<(String, String), ControlResult> = BTreeMap::new();
    for object in desired {
        entry(&mut by_control, &object.baseline, ADMISSION_CONTROL.into());
    }
    for d in drift {
        let r = entry(&mut by_control, &d.baseline, ADMISSION_CONTROL.into());
        r.result = Compliance::Fail;
        r.drift.push(d.clone());
    }
    by_control.into_values().collect()
}

/// The result of `control` of `baseline` in `by_control`, a pass until something says otherwise.
fn entry<'m>(
    by_control: &'m mut BTreeMap<(String, String), ControlResult>,
    baseline: &str,
    control: String,
) -> &'m mut ControlResult {
    by_control
        .entry((baseline.to_string(), control.clone()))
        .or_insert_with(|| ControlResult {
            baseline: baseline.to_string(),
            control,
            result: Compliance::Pass,
            drift: Vec::new(),
            exemption: None,
        })
}
/// `text` cut to at most `max` bytes, on a character boundary, marked when cut.
fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub(3);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::parse_baselines;
    use crate::engine::{DriftReason, Environment, LiveState, diff, render, validate};

    const NOON: i64 = 1_798_804_800; // 2027-01-01T12:00:00Z

    fn desired(spec: &str, namespace: &str) -> DesiredState {
        let text = format!(
            "apiVersion: zerotrust.dev/v1alpha1\nkind: SecurityBaseline\nmetadata: {{name: b}}\nspec:\n{spec}"
        );
        let valid = validate(
            &parse_baselines(&text).unwrap()[0],
            crate::engine::test_support::VALIDATED_AT,
        )
        .unwrap();
        let env = Environment {
            now: NOON - 60,
            ..Environment::new("zerotrust-system")
        };
        render(&[valid], namespace, &Default::default(), &env)
    }

    const EVERY_CONTROL: &str = "  networkPolicy: {defaultDeny: [Ingress, Egress], allowDNS: true}\n  podSecurity: {enforce: restricted}\n  rbac: {roles: [{name: viewer, rules: [{apiGroups: [''], resources: [pods], verbs: [get]}]}, {name: editor, rules: [{apiGroups: [''], resources: [pods], verbs: [create]}]}]}\n  resourceQuota: {hard: {pods: '5'}}\n  limitRange: {limits: [{type: Container, default: {cpu: 500m}}]}\n  serviceAccounts: {automountDefaultToken: false}\n";

    fn summary(results: &[ControlResult]) -> Vec<(String, Compliance)> {
        results
            .iter()
            .map(|r| (r.control.clone(), r.result))
            .collect()
    }

    #[test]
    fn a_compliant_namespace_passes_one_result_per_control() {
        let desired = desired(EVERY_CONTROL, "team-a");
        let live = LiveState::complying(&desired, &Default::default());
        let drift = diff(&desired, &live);
        assert!(drift.is_empty(), "{drift:?}");
        let results = results(&desired, &drift);
        assert_eq!(
            summary(&results),
            [
                "LimitRange",
                "NetworkPolicy",
                "PodSecurity",
                "ResourceQuota",
                "Role/editor",
                "Role/viewer",
                "ServiceAccount",
            ]
            .map(|c| (c.to_string(), Compliance::Pass))
        );
        assert_eq!(
            Tally::of(&results),
            Tally {
                pass: 7,
                fail: 0,
                skip: 0
            }
        );
        assert_eq!(results[0].message(), "in place");
    }

    #[test]
    fn drift_fails_its_control_and_every_finding_lands_in_one_result() {
        let desired = desired(EVERY_CONTROL, "team-a");
        let live = LiveState {
            default_service_account: Some(Default::default()),
            ..LiveState::default()
        };
        let drift = diff(&desired, &live);
        let results = results(&desired, &drift);
        assert!(results.iter().all(|r| r.result == Compliance::Fail));
        let found: usize = results.iter().map(|r| r.drift.len()).sum();
        assert_eq!(found, drift.len(), "no finding lost or counted twice");
        let network = results
            .iter()
            .find(|r| r.control == "NetworkPolicy")
            .unwrap();
        assert_eq!(network.drift.len(), 2, "default-deny and allow-dns");
        assert!(
            network.message().starts_with(
                "NetworkPolicy zt-b-allow-dns: Missing; NetworkPolicy zt-b-default-deny: Missing"
            ),
            "{}",
            network.message()
        );
        let viewer = results.iter().find(|r| r.control == "Role/viewer").unwrap();
        let kinds: Vec<Kind> = viewer.drift.iter().map(|d| d.kind).collect();
        assert_eq!(
            kinds,
            [Kind::Role, Kind::RoleBinding],
            "a role and its binding"
        );
    }

    #[test]
    fn an_exempt_control_is_skipped_with_its_reason_and_expiry_unless_drift_fails_it() {
        let spec = format!(
            "{EVERY_CONTROL}  exemptions:\n    - {{namespaces: [legacy], controls: [NetworkPolicy], roles: [viewer], reason: moving, expiresAt: '2027-01-01T12:00:00Z'}}\n    - {{namespaces: [legacy], controls: [LimitRange], reason: forever, permanent: true}}\n"
        );
        let desired = desired(&spec, "legacy");
        let live = LiveState::complying(&desired, &Default::default());
        // A policy of ours the exemption left behind (Audit mode keeps it): drift all the same.
        let stale = Drift {
            baseline: "b".into(),
            kind: Kind::Role,
            name: "zt-b-viewer".into(),
            reason: DriftReason::Stale,
        };
        let mut drift = diff(&desired, &live);
        assert!(drift.is_empty(), "{drift:?}");
        drift.push(stale);
        let results = results(&desired, &drift);
        let get = |c: &str| results.iter().find(|r| r.control == c).unwrap();
        assert_eq!(get("NetworkPolicy").result, Compliance::Skip);
        assert_eq!(
            get("NetworkPolicy").message(),
            "exempt until 2027-01-01T12:00:00Z: moving"
        );
        assert_eq!(get("LimitRange").message(), "exempt: forever");
        assert_eq!(get("Role/viewer").result, Compliance::Fail);
        assert!(get("Role/viewer").exemption.is_some());
        assert_eq!(get("Role/editor").result, Compliance::Pass);
        assert_eq!(
            Tally::of(&results),
            Tally {
                pass: 4,
                fail: 1,
                skip: 2
            }
        );
    }

    #[test]
    fn a_failure_message_stays_bounded_however_many_findings() {
        let desired = desired("  networkPolicy: {defaultDeny: [Ingress]}\n", "team-a");
        let drift: Vec<Drift> = (0..500)
            .map(|i| Drift {
                baseline: "b".into(),
                kind: Kind::NetworkPolicy,
                name: format!("allow-everything-{i}"),
                reason: DriftReason::Widened("x".repeat(300)),
            })
            .collect();
        let results = results(&desired, &drift);
        assert_eq!(results.len(), 1, "one result per control");
        let message = results[0].message();
        assert!(message.len() <= MAX_MESSAGE, "{}", message.len());
        assert!(message.contains("allow-everything-0"));
        let few = &drift[..7];
        let message = super::results(&desired, few)[0].message();
        assert!(message.ends_with("; and 2 more"), "{message}");
    }

    #[test]
    fn admission_policy_drift_is_its_own_control() {
        assert_eq!(
            control("b", Kind::ValidatingAdmissionPolicy, "zt-b-tamper"),
            ADMISSION_CONTROL
        );
        assert_eq!(
            control("b", Kind::RoleBinding, "zt-b-viewer"),
            "Role/viewer"
        );
        assert_eq!(
            control("b", Kind::Namespace, "pod-security.kubernetes.io/enforce"),
            "PodSecurity"
        );
    }

    #[test]
    fn admission_results_pass_per_rendering_baseline_and_fail_with_drift() {
        let policy = |baseline: &str| Drift {
            baseline: baseline.into(),
            kind: Kind::ValidatingAdmissionPolicy,
            name: format!("zt-{baseline}-tamper"),
            reason: DriftReason::Missing,
        };
        let wanted: Vec<DesiredObject> = ["a", "b"]
            .iter()
            .flat_map(|b| {
                let desired = desired("  networkPolicy: {defaultDeny: [Ingress]}\n", "team-a");
                desired.objects.into_iter().map(move |mut o| {
                    o.baseline = b.to_string();
                    o
                })
            })
            .collect();
        // "c" renders none, but a stale policy of its own fails it all the same.
        let drift = [policy("b"), policy("c")];
        let results = admission_results(&wanted, &drift);
        let got: Vec<(&str, &str, Compliance, usize)> = results
            .iter()
            .map(|r| {
                (
                    r.baseline.as_str(),
                    r.control.as_str(),
                    r.result,
                    r.drift.len(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("a", ADMISSION_CONTROL, Compliance::Pass, 0),
                ("b", ADMISSION_CONTROL, Compliance::Fail, 1),
                ("c", ADMISSION_CONTROL, Compliance::Fail, 1),
            ]
        );
        assert_eq!(
            results[1].message(),
            "ValidatingAdmissionPolicy zt-b-tamper: Missing"
        );
    }
}
