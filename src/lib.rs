//! zerotrust-operator: zero-trust defaults in every namespace of a Kubernetes cluster.
//!
//! Modules depend one way: `api` (types) <- `engine` (pure) <- `cli` (commands and I/O).

pub mod api;
pub mod cli;
pub mod engine;
