//! A namespace as the operator holds it: the metadata it reads and the label keys our field
//! manager owns, decoded straight from the API server's Namespace.
//!
//! The watch cache holds every namespace of the cluster. A whole `Namespace` cost 4.4 KiB each,
//! 2.5 KiB of that our managedFields entry, whose field set (three nested JSON maps) was kept
//! only to say which labels are ours. Here those keys are a short list, and nobody can grow what
//! is held by annotating a namespace or giving it finalizers.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Namespace;
use kube::Resource;
use kube::api::ObjectMeta;
use serde::Deserialize;

use crate::engine::owned_label_keys;

/// The watched Namespace, cut to what the reconcile reads. Decodes from a Namespace's JSON (and
/// so is what the namespace watch and its store hold) and converts from one (what a label apply
/// returns).
#[derive(Resource, Clone, Debug, Deserialize)]
#[resource(inherit = Namespace)]
#[serde(from = "Namespace")]
pub struct HeldNamespace {
    /// Name, uid, resource version, labels, creation and deletion time; nothing else.
    pub metadata: ObjectMeta,
    /// The label keys our field manager owns (its managedFields entry): labels we may release.
    /// Sorted and without repeats.
    owned_label_keys: Box<[String]>,
}

impl HeldNamespace {
    /// The label keys our field manager owns on this namespace.
    pub fn owned_label_keys(&self) -> BTreeSet<String> {
        self.owned_label_keys.iter().cloned().collect()
    }
}

impl From<Namespace> for HeldNamespace {
    fn from(namespace: Namespace) -> Self {
        let owned = owned_label_keys(&namespace.metadata);
        let meta = namespace.metadata;
        HeldNamespace {
            metadata: ObjectMeta {
                name: meta.name,
                uid: meta.uid,
                resource_version: meta.resource_version,
                labels: meta.labels,
                creation_timestamp: meta.creation_timestamp,
                deletion_timestamp: meta.deletion_timestamp,
                ..ObjectMeta::default()
            },
            owned_label_keys: owned.into_iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::engine::FIELD_MANAGER;

    fn watched() -> serde_json::Value {
        json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": "team-a",
                "uid": "6f1c2a3b-1d2e-4f50-9a8b-000000000001",
                "resourceVersion": "42",
                "creationTimestamp": "2026-12-03T10:00:00Z",
                "deletionTimestamp": "2026-12-03T11:00:00Z",
                "labels": {"tenant": "true", "pod-security.kubernetes.io/enforce": "restricted"},
                "annotations": {"big": "x".repeat(10_000)},
                "finalizers": ["someone.example/hold"],
                "managedFields": [
                    {"manager": FIELD_MANAGER, "operation": "Apply", "apiVersion": "v1",
                     "fieldsType": "FieldsV1",
                     "fieldsV1": {"f:metadata": {"f:labels": {"f:pod-security.kubernetes.io/enforce": {}}}}},
                    {"manager": "kubectl", "operation": "Update", "apiVersion": "v1",
                     "fieldsType": "FieldsV1",
                     "fieldsV1": {"f:metadata": {"f:labels": {"f:tenant": {}}}}}
                ]
            },
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Terminating"}
        })
    }

    #[test]
    fn a_namespace_is_held_as_what_the_reconcile_reads() {
        let held: HeldNamespace = serde_json::from_value(watched()).unwrap();
        let meta = &held.metadata;
        assert_eq!(meta.name.as_deref(), Some("team-a"));
        assert_eq!(
            meta.uid.as_deref(),
            Some("6f1c2a3b-1d2e-4f50-9a8b-000000000001")
        );
        assert_eq!(meta.resource_version.as_deref(), Some("42"));
        assert_eq!(meta.labels.as_ref().map(|l| l.len()), Some(2));
        assert!(meta.creation_timestamp.is_some() && meta.deletion_timestamp.is_some());
        // Only our field manager's keys, not kubectl's.
        assert_eq!(
            held.owned_label_keys(),
            BTreeSet::from(["pod-security.kubernetes.io/enforce".to_string()])
        );
        // What anyone who may annotate a namespace could grow is gone.
        assert_eq!(meta.annotations, None);
        assert_eq!(meta.finalizers, None);
        assert_eq!(meta.managed_fields, None);
    }

    #[test]
    fn decoding_and_converting_hold_the_same() {
        let decoded: HeldNamespace = serde_json::from_value(watched()).unwrap();
        let namespace: Namespace = serde_json::from_value(watched()).unwrap();
        let converted = HeldNamespace::from(namespace);
        assert_eq!(decoded.metadata, converted.metadata);
        assert_eq!(decoded.owned_label_keys, converted.owned_label_keys);
    }

    #[test]
    fn a_namespace_we_never_labelled_owns_nothing() {
        let mut value = watched();
        value["metadata"]["managedFields"] = json!([]);
        let held: HeldNamespace = serde_json::from_value(value).unwrap();
        assert!(held.owned_label_keys().is_empty());
        // It is still a Namespace to the API machinery (Events, object references).
        assert_eq!(HeldNamespace::kind(&()), "Namespace");
        assert_eq!(HeldNamespace::api_version(&()), "v1");
    }
}
