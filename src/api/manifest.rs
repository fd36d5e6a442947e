//! Reads SecurityBaselines from (multi-document) YAML, with errors that name the offending field.

use kube::Resource;
use serde::Deserialize;
use serde_json::Value;

use super::SecurityBaseline;

/// Why a manifest could not be read. `path` is a dotted field path such as `spec.rbac.roles[0].name`.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ManifestError {
    #[error("not valid YAML: {0}")]
    Yaml(String),
    #[error("document {document}: {path}: {message}")]
    Field {
        document: usize,
        path: String,
        message: String,
    },
    #[error("no SecurityBaseline found in the input")]
    Empty,
}

/// Parses every document of `text` as a SecurityBaseline. Unknown fields are errors (the API
/// server rejects them too), and so is any document of another kind.
pub fn parse_baselines(text: &str) -> Result<Vec<SecurityBaseline>, ManifestError> {
    let documents: Vec<Value> =
        serde_saphyr::from_multiple(text).map_err(|e| ManifestError::Yaml(e.to_string()))?;
    let baselines = documents
        .into_iter()
        .filter(|doc| !doc.is_null())
        .enumerate()
        .map(|(index, doc)| parse_document(index + 1, doc))
        .collect::<Result<Vec<_>, _>>()?;
    if baselines.is_empty() {
        return Err(ManifestError::Empty);
    }
    Ok(baselines)
}

fn parse_document(document: usize, mut doc: Value) -> Result<SecurityBaseline, ManifestError> {
    let field_error = |path: &str, message: String| ManifestError::Field {
        document,
        path: path.to_string(),
        message,
    };
    let api_version = doc.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let expected = SecurityBaseline::api_version(&());
    if api_version != expected {
        return Err(field_error(
            "apiVersion",
            format!("must be {expected}, found {api_version:?}"),
        ));
    }
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("");
    let expected = SecurityBaseline::kind(&());
    if kind != expected {
        return Err(field_error(
            "kind",
            format!("must be {expected}, found {kind:?}"),
        ));
    }

    // Checked above; the derived type reads them through its own path, which would show as unknown.
    if let Some(map) = doc.as_object_mut() {
        map.remove("apiVersion");
        map.remove("kind");
    }
    let mut unknown = Vec::new();
    let mut track = serde_path_to_error::Track::new();
    // serde_ignored writes `?` for each Option it passes through; users know no such segment.
    let mut note_unknown =
        |path: serde_ignored::Path| unknown.push(path.to_string().replace(".?", ""));
    let ignoring = serde_ignored::Deserializer::new(&doc, &mut note_unknown);
    let tracking = serde_path_to_error::Deserializer::new(ignoring, &mut track);
    let parsed = SecurityBaseline::deserialize(tracking);
    let baseline = match parsed {
        Ok(baseline) => baseline,
        Err(e) => return Err(field_error(&track.path().to_string(), e.to_string())),
    };
    // Kubernetes drops unknown fields silently unless asked not to; a typo in a security policy
    // must not silently turn off a control.
    if let Some(path) = unknown.into_iter().next() {
        return Err(field_error(&path, "unknown field".to_string()));
    }
    if baseline.metadata.name.as_deref().unwrap_or("").is_empty() {
        return Err(field_error("metadata.name", "is required".to_string()));
    }
    Ok(baseline)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Mode;

    fn field_of(err: ManifestError) -> String {
        match err {
            ManifestError::Field { path, .. } => path,
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn parses_several_documents() {
        let text = "apiVersion: zerotrust.dev/v1alpha1\nkind: SecurityBaseline\nmetadata: {name: a}\nspec: {mode: Audit}\n---\napiVersion: zerotrust.dev/v1alpha1\nkind: SecurityBaseline\nmetadata: {name: b}\nspec: {}\n";
        let baselines = parse_baselines(text).unwrap();
        assert_eq!(baselines.len(), 2);
        assert_eq!(baselines[0].spec.mode, Mode::Audit);
        assert_eq!(baselines[1].spec.mode, Mode::Enforce);
    }

    #[test]
    fn unknown_field_is_named() {
        let text = "apiVersion: zerotrust.dev/v1alpha1\nkind: SecurityBaseline\nmetadata: {name: a}\nspec:\n  networkPolicy: {defaultDenyy: [Ingress]}\n";
        assert_eq!(
            field_of(parse_baselines(text).unwrap_err()),
            "spec.networkPolicy.defaultDenyy"
        );
    }

    #[test]
    fn bad_enum_is_named() {
        let text = "apiVersion: zerotrust.dev/v1alpha1\nkind: SecurityBaseline\nmetadata: {name: a}\nspec:\n  podSecurity: {enforce: strict}\n";
        assert_eq!(
            field_of(parse_baselines(text).unwrap_err()),
            "spec.podSecurity.enforce"
        );
    }

    #[test]
    fn integer_quantities_are_read() {
        let text = "apiVersion: zerotrust.dev/v1alpha1\nkind: SecurityBaseline\nmetadata: {name: a}\nspec:\n  resourceQuota: {hard: {pods: 10, requests.cpu: '2'}}\n";
        let b = parse_baselines(text).unwrap();
        let hard = &b[0].spec.resource_quota.as_ref().unwrap().hard;
        assert_eq!(hard["pods"], "10");
        assert_eq!(hard["requests.cpu"], "2");
    }

    #[test]
    fn other_kinds_and_missing_names_are_refused() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n";
        assert_eq!(field_of(parse_baselines(text).unwrap_err()), "apiVersion");
        let text =
            "apiVersion: zerotrust.dev/v1alpha1\nkind: SecurityBaseline\nmetadata: {}\nspec: {}\n";
        assert_eq!(
            field_of(parse_baselines(text).unwrap_err()),
            "metadata.name"
        );
        assert_eq!(parse_baselines("").unwrap_err(), ManifestError::Empty);
    }
}
