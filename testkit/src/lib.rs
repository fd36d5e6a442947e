//! Test support for zerotrust-operator, shared by the integration tests (`tests/`) and the
//! benchmarks (`benches/`): the real control plane the project builds (never a fake), operator
//! processes with bounded waits, namespaces that clean up after themselves, baseline manifests,
//! and polling with deadlines instead of sleeps.

pub mod audit;
pub mod baselines;
pub mod cluster;
pub mod crd;
pub mod helm;
pub mod http;
pub mod namespaces;
pub mod operator;
pub mod poll;
pub mod shipped_rbac;

pub use baselines::{RESTRICTED, apply, baseline, check_baseline, delete_baseline};
pub use cluster::{
    ControlPlane, client, connect, control_plane, controlplane, run_bounded, stderr, stdout, unique,
};
pub use http::http_get;
pub use namespaces::{LabelledNamespaces, NamespaceGuard, namespace, namespaces};
pub use operator::{OperatorProcess, operator, operator_binary};
pub use poll::eventually;
