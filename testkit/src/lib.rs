//! Test support for zerotrust-operator, shared by the integration tests (`tests/`) and the
//! benchmarks (`benches/`): the real control plane the project builds (never a fake), operator
//! processes with bounded waits, namespaces that clean up after themselves, baseline manifests,
//! and polling with deadlines instead of sleeps.

pub mod admission;
pub mod audit;
pub mod baselines;
pub mod cluster;
pub mod crd;
pub mod guard;
pub mod helm;
pub mod http;
pub mod identity;
pub mod namespaces;
pub mod operator;
pub mod pods;
pub mod poll;
pub mod shipped_rbac;
pub mod status;

pub use admission::{wait_mutation_in_force, wait_tamper_refused, wait_widening_refused};
pub use baselines::{
    ADMIN_USER, Cleanup, RESTRICTED, apply, baseline, check_baseline, delete_baseline,
};
pub use cluster::{
    ControlPlane, SeparateControlPlane, client, connect, control_plane, controlplane, run_bounded,
    stderr, stdout, unique,
};
pub use guard::scopeguard;
pub use http::http_get;
pub use identity::{client_as, namespace_labeller, tenant_admin};
pub use namespaces::{LabelledNamespaces, NamespaceGuard, namespace, namespaces};
pub use operator::{OperatorProcess, operator, operator_binary};
pub use pods::restricted_pod;
pub use poll::eventually;
pub use status::{baseline_status, condition, events_for, wait_status};
