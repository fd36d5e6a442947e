//! The pure core: validate, select, render, diff, plan and results (per control, for reports). No
//! API client anywhere in here, so the offline `render` preview and the operator compute exactly
//! the same thing.

mod admission;
mod diff;
mod exemption;
mod object;
mod plan;
mod policy_report;
mod quantity;
mod render;
mod results;
mod select;
mod template;
mod validate;
mod widening;

pub use admission::{
    AdmissionSettings, ONBOARDED_LABEL_PREFIX, gates_namespace, onboarded_label, render_admission,
    unavailable, vet,
};
pub use diff::{Drift, DriftReason, LiveState, compare, diff, diff_admission};
pub use exemption::{ExemptControl, Exempted, exempted, next_expiry};
pub use object::{
    BASELINE_LABEL, FIELD_MANAGER, Kind, MANAGED_BY_LABEL, MANAGED_BY_VALUE, MANAGED_SELECTOR,
    Object, Ownership, applied_by_us, owned_label_keys, owner_labels, ownership,
};
pub use plan::{
    Write, blocks_onboarding, labels_wait_for_markers, markers_due, namespace_labels, plan,
    plan_admission, released_labels, repairable,
};
pub use policy_report::{
    CONTENT_HASH_ANNOTATION, REPORT_NAME, REPORT_SOURCE, ReportApi, policy_report,
};
pub use quantity::{Quantity, QuantityError};
pub use render::{
    DesiredObject, DesiredState, DesiredValue, Endpoint, Environment, PSA_LABEL_PREFIX, PSA_MODES,
    PodSecurityPolicy, Requirement, SelectedBaseline, object_name, pod_security_labels,
    policy_labels, render,
};
pub use results::{
    ADMISSION_CONTROL, Compliance, ControlResult, MAX_MESSAGE, Tally, admission_results, control,
    results, until,
};
pub use select::{ALWAYS_EXCLUDED, DEFAULT_OPERATOR_NAMESPACE, selects};
pub use template::TemplateError;
pub use validate::{FieldError, InvalidSpec, PSA_VERSION_FLOOR, ValidBaseline, validate};
pub use widening::{ForeignPolicy, MAX_PEERS, Opening, Peer, summarize, widening};

#[cfg(test)]
mod diff_tests;
#[cfg(test)]
mod network_tests;
#[cfg(test)]
mod plan_tests;
#[cfg(test)]
mod property_tests;
#[cfg(test)]
mod render_tests;
#[cfg(test)]
mod test_support;
