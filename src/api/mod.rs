//! The user-facing API: the SecurityBaseline resource and how baselines are read from YAML.

mod baseline;
mod exemption;
mod manifest;
mod network;
mod recorded;
mod schema;

pub use baseline::*;
pub use exemption::{Control, Exemption};
pub use manifest::{ManifestError, parse_baselines};
pub use network::{
    AllowPeer, AllowPort, AllowRule, DnsProvider, DnsSpec, Protocol, RESERVED_ALLOW_NAMES,
};
pub use recorded::{AdmissionIdentityRecord, LastValidSpec, MAX_RECORDED_SPEC_BYTES, Unreadable};
pub use schema::QUANTITY_PATTERN;
