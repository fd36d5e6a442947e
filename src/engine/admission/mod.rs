//! (baseline, who the operator is) -> the admission policies through which the API server itself
//! refuses what the baseline forbids: CEL evaluated in-process, no webhook, nothing of ours on the
//! request path that can be down.
//!
//! Each protection is one row of [`PROTECTIONS`] and one file: whether a baseline asks for it,
//! which admission API it needs, and how it renders. Rendering and "what this API server cannot
//! carry" both read the table, so the status never claims a protection the server cannot run.
//! The CEL is rendered for each baseline rather than interpreting its spec at admission time: what
//! `render` prints is exactly what the API server evaluates, and each expression stays small.

mod onboarding_gate;
mod ownership;
mod pod_security_at_creation;
mod policy;
mod tamper;
mod vet;
mod widening_refusal;

pub use onboarding_gate::{ONBOARDED_LABEL_PREFIX, marker_value, onboarded_label};
pub use ownership::OWNERSHIP_MESSAGE;
pub use vet::vet;

use super::object::Object;
use super::validate::ValidBaseline;
use crate::api::Mode;

/// Who the policies let through, and what the API server serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdmissionSettings {
    /// The operator's user name as the API server authenticates it: the one identity that may
    /// change what a baseline owns.
    pub operator_user: String,
    /// Members of this group may change it too, on purpose (break-glass); the API server's audit
    /// log records them as it records everyone.
    pub break_glass_group: String,
    /// The operator's namespace, which no binding ever selects.
    pub operator_namespace: String,
    /// ValidatingAdmissionPolicy is served (Kubernetes 1.30+).
    pub validating: bool,
    /// MutatingAdmissionPolicy is served (Kubernetes 1.36+, on by default).
    pub mutating: bool,
}

/// The admission API a protection is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdmissionApi {
    Validating,
    Mutating,
}

impl AdmissionApi {
    fn served(self, settings: &AdmissionSettings) -> bool {
        match self {
            AdmissionApi::Validating => settings.validating,
            AdmissionApi::Mutating => settings.mutating,
        }
    }
}

/// One protection a baseline can ask the API server to carry: a policy and its binding.
pub struct Protection {
    /// Its name in the status and `check` when the API server cannot carry it.
    pub name: &'static str,
    /// The admission API it needs.
    pub api: AdmissionApi,
    /// Whether `baseline` asks for it.
    asked: fn(&ValidBaseline) -> bool,
    /// The policy and its binding, honouring the exemptions in force at the given time.
    render: fn(&ValidBaseline, &AdmissionSettings, i64) -> [Object; 2],
}

/// Every protection, in the order they are rendered.
pub const PROTECTIONS: &[Protection] = &[
    Protection {
        name: "pod-security-at-creation",
        api: AdmissionApi::Mutating,
        asked: |b| enforces(b) && b.baseline.spec.pod_security.is_some(),
        render: pod_security_at_creation::pod_security_at_creation,
    },
    Protection {
        name: "onboarding-gate",
        api: AdmissionApi::Validating,
        asked: enforces,
        render: |b, settings, _| onboarding_gate::onboarding_gate(b, settings),
    },
    Protection {
        name: "tamper-protection",
        api: AdmissionApi::Validating,
        asked: |_| true,
        render: tamper::tamper_protection,
    },
    Protection {
        name: "ownership-protection",
        api: AdmissionApi::Validating,
        asked: |_| true,
        render: |b, settings, _| ownership::ownership_protection(b, settings),
    },
    Protection {
        name: "network-policy-refusal",
        api: AdmissionApi::Validating,
        asked: refuses_widening,
        render: widening_refusal::network_policy_refusal,
    },
];

fn enforces(baseline: &ValidBaseline) -> bool {
    baseline.baseline.spec.mode == Mode::Enforce
}

fn refuses_widening(baseline: &ValidBaseline) -> bool {
    baseline
        .baseline
        .spec
        .network_policy
        .as_ref()
        .is_some_and(|np| np.refuse_widening && !np.default_deny.is_empty())
}

/// The protections a baseline asks for that the API server cannot carry, by name.
pub fn unavailable(baseline: &ValidBaseline, settings: &AdmissionSettings) -> Vec<&'static str> {
    PROTECTIONS
        .iter()
        .filter(|p| (p.asked)(baseline) && !p.api.served(settings))
        .map(|p| p.name)
        .collect()
}

/// The admission policies and bindings of `baseline`, cluster-scoped, honouring the exemptions
/// in force at `now` (seconds since the epoch): rendered again when one expires.
pub fn render_admission(
    baseline: &ValidBaseline,
    settings: &AdmissionSettings,
    now: i64,
) -> Vec<Object> {
    PROTECTIONS
        .iter()
        .filter(|p| (p.asked)(baseline) && p.api.served(settings))
        .flat_map(|p| (p.render)(baseline, settings, now))
        .collect()
}

#[cfg(test)]
mod tests;
