//! What the operator records in a baseline's status so that it outlives the process: the last
//! valid spec it enforces while a newer edit is invalid or unreadable, and the identity its
//! admission policies are rendered for. Only the status subresource writes them, so a baseline
//! writer without `securitybaselines/status` cannot set them; they are validated again when read.

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// Largest recorded spec, in bytes of JSON: a spec the CRD accepts fits, and a status cannot grow
/// past what etcd takes.
pub const MAX_RECORDED_SPEC_BYTES: usize = 256 * 1024;

/// The last valid generation of a baseline and its spec, as the operator enforced it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastValidSpec {
    /// The generation the spec is from.
    pub generation: i64,
    /// The spec, kept whole: read back it is decoded and validated like any spec.
    #[schemars(schema_with = "opaque_object_schema")]
    pub spec: serde_json::Value,
}

/// The identity the operator renders the admission policies for (the one user they let change
/// what a baseline owns), so `check` renders them alike.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionIdentityRecord {
    /// The operator's user name, as the API server authenticates it.
    #[schemars(length(max = 1024))]
    pub operator_user: String,
    /// The break-glass group the policies let through.
    #[schemars(length(max = 1024))]
    pub break_glass_group: String,
}

/// A stored baseline this process could not decode: the field and why. Never serialized; it
/// marks the stand-in the operator holds for such a baseline.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Unreadable {
    pub path: String,
    pub message: String,
}

/// Any object, replaced whole by each write (the spec's own schema and rules are checked when
/// the operator reads it back, not here).
fn opaque_object_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
        "x-kubernetes-map-type": "atomic",
    })
}
