//! The Helm chart (charts/zerotrust-operator) and the monitoring shipped with it, on the real
//! control plane: the chart is what hack/chart.py generates from config/ and renders config/ back
//! with its default values; `helm lint` passes and bad values fail with a clear message; every
//! toggle renders what it says and passes a server-side dry run; a Helm install of the chart's RBAC
//! runs the operator end to end; the dashboard's and alerts' PromQL parses and names only metrics
//! the operator exports.
//!
//! One test binary (`cargo test --test helm`), a module per subject: `chart`, `toggles`, `rbac` and
//! `monitoring`.

mod chart;
mod monitoring;
mod rbac;
mod toggles;

/// Operator processes in this binary run one at a time: the RBAC scenario needs its impersonated
/// operator to be the only one writing (another, with the admin's rights, would create the Roles
/// the ServiceAccount may not).
static ONE_OPERATOR: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
