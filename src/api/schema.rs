//! Hand-written OpenAPI schema fragments where the derived one cannot say enough.

use schemars::{Schema, SchemaGenerator, json_schema};

/// Kubernetes' quantity grammar (the same pattern controller-gen emits for resource.Quantity), so
/// the API server itself rejects `cpu: lots`.
pub const QUANTITY_PATTERN: &str = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$";

/// A map from resource name to quantity (a string, or an integer), at most 32 entries.
pub fn quantity_map_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "maxProperties": 32,
        "additionalProperties": {
            "x-kubernetes-int-or-string": true,
            "maxLength": 64,
            "pattern": QUANTITY_PATTERN,
        },
    })
}

/// RFC 3339 as the operator reads it. The API server's `date-time` format alone also takes text
/// the operator cannot parse (`2027-01-01T00:00:00ZT`); refused here, it never reaches a stored
/// baseline.
pub const DATE_TIME_PATTERN: &str = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$";

/// An optional RFC 3339 time the operator can parse.
pub fn date_time_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "format": "date-time",
        "pattern": DATE_TIME_PATTERN,
        "nullable": true,
    })
}

/// A set of namespace names (DNS labels), at most 512.
pub fn dns_label_list_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "maxItems": 512,
        "x-kubernetes-list-type": "set",
        "items": {
            "type": "string",
            "maxLength": 63,
            "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        },
    })
}

/// Reads a quantity map whose values may be YAML integers (`pods: 10`) as well as strings.
pub fn deserialize_quantity_map<'de, D>(
    deserializer: D,
) -> Result<std::collections::BTreeMap<String, String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::Deserialize;
    #[derive(Deserialize)]
    #[serde(
        untagged,
        expecting = "a quantity: a string like \"500m\" or \"1Gi\", or an integer"
    )]
    enum IntOrString {
        Int(i64),
        Str(String),
    }
    let raw = std::collections::BTreeMap::<String, IntOrString>::deserialize(deserializer)?;
    Ok(raw
        .into_iter()
        .map(|(key, value)| match value {
            IntOrString::Int(i) => (key, i.to_string()),
            IntOrString::Str(s) => (key, s),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn parses(text: &str) -> bool {
        serde_json::from_value::<Time>(serde_json::json!(text)).is_ok()
    }

    #[test]
    fn every_form_the_date_time_pattern_admits_is_one_the_operator_parses() {
        // The pattern's every branch: fractions of 1 to 9 digits, `Z` or a numeric offset.
        for text in [
            "2027-01-01T00:00:00Z",
            "2027-01-01T00:00:00.1Z",
            "2027-01-01T00:00:00.123456789Z",
            "2027-12-31T23:59:59+05:30",
            "2027-12-31T23:59:59-08:00",
            "0001-01-01T00:00:00Z",
        ] {
            assert!(parses(text), "{text}");
        }
        // What the API server's `date-time` format alone lets through (the pattern refuses it,
        // `last_valid::an_undecodable_edit_...` shows the API server saying so).
        assert!(!parses("2027-01-01T00:00:00ZT"));
    }
}
