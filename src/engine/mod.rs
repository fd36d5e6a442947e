//! The pure core: validate, select, render, diff, plan and results (per control, for reports). No
//! API client anywhere in here, so the offline `render` preview and the operator compute exactly
//! the same thing.

mod admission;
mod diff;
mod exemption;
mod object;
mod plan;
mod pod_security;
mod policy_report;
mod quantity;
mod render;
mod results;
mod select;
mod template;
mod unclaimed;
mod validate;
mod widening;

pub use admission::{
    AdmissionSettings, OWNERSHIP_MESSAGE, marker_value, render_admission, unavailable, vet,
};
pub use diff::{Drift, DriftReason, LiveState, compare, diff, diff_admission};
pub use exemption::{ExemptControl, PermanentExemption, next_expiry, permanent_exemptions};
pub use object::{
    BASELINE_LABEL, FIELD_MANAGER, Kind, MANAGED_BY_LABEL, MANAGED_BY_VALUE, MANAGED_SELECTOR,
    Object, Ownership, applied_by_us, object_name, owned_label_keys, ownership,
};
pub use plan::{
    Write, labels_wait_for_markers, markers_due, markers_to_close, markers_to_remove,
    markers_wanted, namespace_labels, onboarding_write, plan, plan_admission, released_labels,
    repairable,
};
pub use pod_security::PSA_LABEL_PREFIX;
pub use policy_report::{
    CONTENT_HASH_ANNOTATION, REPORT_NAME, ReportApi, ReportWarning, fallback_report_name,
    policy_report, visible_hash,
};
pub use quantity::Quantity;
pub use render::{DesiredObject, DesiredState, Endpoint, Environment, render};
pub use results::{
    Compliance, ControlResult, MAX_MESSAGE, Tally, admission_results, control, results, until,
};
pub use select::{DEFAULT_OPERATOR_NAMESPACE, selects};
pub use unclaimed::{
    MAX_LISTED_UNCLAIMED, TrustedName, trusted_names, unclaimed_message, unclaimed_names,
};

pub use validate::{FieldError, InvalidSpec, ValidBaseline, validate};
pub use widening::{PolicySummary, summarize, widening};

#[cfg(test)]
mod diff_tests;
#[cfg(test)]
mod network_tests;
#[cfg(test)]
mod onboarding_tests;
#[cfg(test)]
mod plan_tests;
#[cfg(test)]
mod property_tests;
#[cfg(test)]
mod render_tests;
#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod widened_tests;
