//! Criterion micro-benchmarks of the engine's per-namespace work: what a reconcile of one
//! namespace costs in CPU before any API request (`cargo bench --bench engine`).

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;

use zerotrust_operator::api::parse_baselines;
use zerotrust_operator::engine::{
    DesiredState, FIELD_MANAGER, LiveState, ValidBaseline, diff, render, validate,
};

const OPERATOR_NS: &str = "zerotrust-system";

fn example() -> Vec<ValidBaseline> {
    let text = include_str!("../examples/restricted-tenants.yaml");
    parse_baselines(text)
        .expect("the example parses")
        .iter()
        .map(|b| validate(b).expect("the example is valid"))
        .collect()
}

fn labels(namespace: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("tenant".to_string(), "true".to_string()),
        (
            "kubernetes.io/metadata.name".to_string(),
            namespace.to_string(),
        ),
    ])
}

/// The rendered state as the API server would hand it back: applied by our field manager.
fn as_live(desired: &DesiredState, labels: &BTreeMap<String, String>) -> LiveState {
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
            automount_service_account_token: Some(false),
            ..ServiceAccount::default()
        }),
        objects,
        owned_namespace_labels: desired.namespace_labels.keys().cloned().collect(),
    }
}

fn engine(c: &mut Criterion) {
    let baselines = example();
    let namespace = "team-a";
    let labels = labels(namespace);
    let desired = render(&baselines, namespace, &labels, OPERATOR_NS);
    let compliant = as_live(&desired, &labels);
    assert!(
        diff(&desired, &compliant).is_empty(),
        "the benchmark's live state complies"
    );
    let mut drifted = compliant.clone();
    drifted.objects.remove(0);

    c.bench_function("render (restricted-tenants, one namespace)", |b| {
        b.iter(|| render(black_box(&baselines), namespace, &labels, OPERATOR_NS))
    });
    c.bench_function("render + diff, compliant namespace", |b| {
        b.iter(|| {
            let desired = render(black_box(&baselines), namespace, &labels, OPERATOR_NS);
            diff(&desired, black_box(&compliant))
        })
    });
    c.bench_function("render + diff, one object missing", |b| {
        b.iter(|| {
            let desired = render(black_box(&baselines), namespace, &labels, OPERATOR_NS);
            diff(&desired, black_box(&drifted))
        })
    });
}

criterion_group!(benches, engine);
criterion_main!(benches);
