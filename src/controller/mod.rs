//! The operator: the I/O shell around the engine.
//!
//! Watches (`watches`) fill the caches (`index`, objects held as `held_object`; `caches`) and
//! feed kube's per-namespace work queue (`operate`); each namespace is reconciled (`reconcile`)
//! in five steps: gather, classify missing objects, repair (`apply`), remove leaving objects,
//! record (`reconcile/record`); an invalid edit keeps
//! the last valid generation enforced (`enforced`). What a pass means for each
//! baseline is decided by a pure function (`verdict`); outcomes are aggregated into each
//! baseline's status (`status`) by a writer loop, which also keeps the cleanup finalizer
//! (`finalizer`). `run` is the process: stop signals (`shutdown`), health and metrics (`http`,
//! `metrics`), and leader election (`leader`). `check` is the same engine over one read of the
//! cluster, and `InProcess` runs reconciles on demand for integration tests. The cluster-scoped
//! admission policies of each baseline are kept by `admission`, rendered for what `discovery`
//! finds the API server serves and who the operator is. With `--policy-reports`, `reports` keeps
//! one PolicyReport per selected namespace.

mod admission;
mod api_server;
mod apply;
mod caches;
mod check;
mod context;
mod decode;
mod discovery;
mod enforced;
mod error;
mod events;
mod fence;
mod finalizer;
mod held_namespace;
mod held_object;
mod http;
mod in_process;
mod index;
mod leader;
mod metrics;
mod operate;
mod reconcile;
mod report_check;
mod reports;
mod run;
mod settings;
mod shutdown;
mod status;
mod verdict;
mod watches;

#[cfg(test)]
mod admission_api_tests;
#[cfg(test)]
mod mock_api;
#[cfg(test)]
mod reconcile_api_tests;

pub use check::{Report, check};
pub use discovery::{AdmissionIdentity, DEFAULT_BREAK_GLASS_GROUP, DEFAULT_OPERATOR_USER, served};
pub use error::{Error, Operation, RunError};
pub use in_process::InProcess;
pub use leader::lease_manager;
pub use reconcile::{FORBIDDEN_RETRY, RESYNC};
pub use report_check::FalseReport;
pub use run::run;
pub use settings::{LeaderElection, Settings};
