//! The rendered state as the API server hands it back once the operator has applied it: shared by
//! the engine fuzzer and the engine benchmarks (included by path: they are separate crates).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use zerotrust_operator::engine::{DesiredState, FIELD_MANAGER, LiveState};

/// `desired` as live state in a namespace labelled `labels`: our objects with our managedFields
/// entry, our PSA labels, and the default ServiceAccount as we set it.
pub fn as_applied(desired: &DesiredState, labels: &BTreeMap<String, String>) -> LiveState {
    let objects = desired
        .objects
        .iter()
        .map(|d| {
            let mut object = d.object.clone();
            object.meta_mut().managed_fields = Some(vec![ManagedFieldsEntry {
                manager: Some(FIELD_MANAGER.to_string()),
                operation: Some("Apply".to_string()),
                ..ManagedFieldsEntry::default()
            }]);
            object
        })
        .collect();
    let mut namespace_labels = labels.clone();
    namespace_labels.extend(
        desired
            .namespace_labels
            .iter()
            .map(|(k, v)| (k.clone(), v.value.clone())),
    );
    LiveState {
        namespace_labels,
        default_service_account: Some(ServiceAccount {
            automount_service_account_token: desired
                .disable_default_token_automount
                .as_ref()
                .map(|_| false),
            ..ServiceAccount::default()
        }),
        objects,
        owned_namespace_labels: desired.namespace_labels.keys().cloned().collect(),
    }
}
