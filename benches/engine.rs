//! Criterion micro-benchmarks of the engine's per-namespace work: what a reconcile of one
//! namespace costs in CPU before any API request (`cargo bench --bench engine`).

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};

use zerotrust_operator::api::parse_baselines;
use zerotrust_operator::engine::{Environment, LiveState, ValidBaseline, diff, render, validate};

const OPERATOR_NS: &str = "zerotrust-system";

fn example() -> Vec<ValidBaseline> {
    let text = include_str!("../examples/restricted-tenants.yaml");
    parse_baselines(text)
        .expect("the example parses")
        .iter()
        .map(|b| {
            validate(b, k8s_openapi::jiff::Timestamp::now().as_second())
                .expect("the example is valid")
        })
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

fn engine(c: &mut Criterion) {
    let baselines = example();
    let namespace = "team-a";
    let labels = labels(namespace);
    let env = Environment::new(OPERATOR_NS);
    let desired = render(&baselines, namespace, &labels, &env);
    let compliant = LiveState::complying(&desired, &labels);
    assert!(
        diff(&desired, &compliant).is_empty(),
        "the benchmark's live state complies"
    );
    let mut drifted = compliant.clone();
    drifted.objects.remove(0);

    c.bench_function("render (restricted-tenants, one namespace)", |b| {
        b.iter(|| render(black_box(&baselines), namespace, &labels, &env))
    });
    c.bench_function("render + diff, compliant namespace", |b| {
        b.iter(|| {
            let desired = render(black_box(&baselines), namespace, &labels, &env);
            diff(&desired, black_box(&compliant))
        })
    });
    c.bench_function("render + diff, one object missing", |b| {
        b.iter(|| {
            let desired = render(black_box(&baselines), namespace, &labels, &env);
            diff(&desired, black_box(&drifted))
        })
    });
}

criterion_group!(benches, engine);
criterion_main!(benches);
