//! The user-facing API: the SecurityBaseline resource and how baselines are read from YAML.

mod baseline;
mod manifest;
mod schema;

pub use baseline::*;
pub use manifest::{ManifestError, parse_baselines};
pub use schema::QUANTITY_PATTERN;
