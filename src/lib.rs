//! zerotrust-operator: zero-trust defaults in every namespace of a Kubernetes cluster.
//!
//! Modules depend one way: `api` (types) <- `engine` (pure) <- `controller` (I/O) <- `cli`.

pub mod api;
pub mod cli;
pub mod controller;
pub mod engine;
