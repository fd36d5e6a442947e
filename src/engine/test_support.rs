//! Test helpers shared by the engine's unit tests: a baseline from YAML or from a spec, label maps,
//! an environment at a fixed moment, and live state as the API server hands it back.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;

use super::validate::{ValidBaseline, validate};
use super::{DesiredState, Endpoint, Environment, LiveState, Object, Quantity};
use crate::api::{
    Mode, PodSecurityLevel, PodSecuritySpec, SecurityBaseline, SecurityBaselineSpec,
    parse_baselines,
};

/// The baseline `b` with the spec `spec` (YAML for the spec's fields, block or flow style), or
/// why it is refused (parse or validation error).
pub fn try_baseline(spec: &str) -> Result<ValidBaseline, String> {
    let spec: String = spec.lines().map(|l| format!("  {l}\n")).collect();
    let text = format!(
        "apiVersion: zerotrust.dev/v1alpha1\nkind: SecurityBaseline\nmetadata: {{name: b}}\nspec:\n{spec}"
    );
    let parsed = parse_baselines(&text).map_err(|e| e.to_string())?;
    validate(&parsed[0], VALIDATED_AT).map_err(|e| e.to_string())
}

/// The valid baseline `b` with the spec `spec`; panics with the error otherwise.
pub fn baseline(spec: &str) -> ValidBaseline {
    try_baseline(spec).unwrap_or_else(|e| panic!("{e}"))
}

pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub const OPERATOR_NS: &str = "zerotrust-system";

/// The valid baseline `name` with `spec`, at generation 1; panics with the error otherwise.
pub fn baseline_of(name: &str, spec: SecurityBaselineSpec) -> ValidBaseline {
    let mut b = SecurityBaseline::new(name, spec);
    b.metadata.generation = Some(1);
    validate(&b, VALIDATED_AT).unwrap_or_else(|e| panic!("{e}"))
}

/// The moment the tests' baselines are validated at (2026-06-01T00:00:00Z): their exemptions end
/// within a year of it.
pub const VALIDATED_AT: i64 = 1_780_272_000;

/// A fixed moment (2026-01-01T00:00:00Z) so exemption expiries render the same every run.
const NOW: i64 = 1_767_225_600;

/// The operator's namespace, the API server at a Service address and a host address, at `NOW`.
pub fn env() -> Environment {
    Environment {
        operator_namespace: OPERATOR_NS.to_string(),
        api_server: vec![
            Endpoint {
                address: "10.96.0.1".into(),
                port: 443,
            },
            Endpoint {
                address: "192.0.2.10".into(),
                port: 6443,
            },
        ],
        now: NOW,
    }
}

pub fn none() -> std::collections::BTreeSet<String> {
    std::collections::BTreeSet::new()
}

pub fn no_labels() -> BTreeMap<String, String> {
    BTreeMap::new()
}

/// What the API server hands back for objects we applied: our managedFields entry, server-set
/// metadata, quantities respelled, and someone's harmless extra label and annotation.
pub fn as_live(desired: &DesiredState) -> LiveState {
    let labels = BTreeMap::from([(
        "kubernetes.io/metadata.name".to_string(),
        desired.namespace.clone(),
    )]);
    let mut live = LiveState::complying(desired, &labels);
    for object in &mut live.objects {
        let meta = object.meta_mut();
        meta.uid = Some(format!("uid-{}", meta.name.as_deref().unwrap_or_default()));
        meta.resource_version = Some("42".to_string());
        meta.labels
            .get_or_insert_with(BTreeMap::new)
            .insert("team".into(), "x".into());
        meta.annotations = Some(BTreeMap::from([("note".to_string(), "hi".to_string())]));
        respell_quantities(object);
    }
    live
}

/// The API server returns canonical quantities (`1000m` as `1`); ours prints them another way.
fn respell_quantities(object: &mut Object) {
    let respell = |map: &mut BTreeMap<String, K8sQuantity>| {
        for q in map.values_mut() {
            q.0 = Quantity::parse(&q.0).unwrap().to_string();
        }
    };
    match object {
        Object::ResourceQuota(q) => q
            .spec
            .iter_mut()
            .flat_map(|s| s.hard.as_mut())
            .for_each(respell),
        Object::LimitRange(l) => {
            for item in l.spec.iter_mut().flat_map(|s| s.limits.iter_mut()) {
                for map in [
                    &mut item.default,
                    &mut item.default_request,
                    &mut item.max,
                    &mut item.min,
                ] {
                    map.iter_mut().for_each(respell);
                }
            }
        }
        _ => {}
    }
}

pub fn restricted_spec() -> SecurityBaselineSpec {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/restricted-tenants.yaml"
    ))
    .unwrap();
    parse_baselines(&text).unwrap().remove(0).spec
}

pub fn tenant_labels() -> BTreeMap<String, String> {
    BTreeMap::from([("tenant".to_string(), "true".to_string())])
}

pub fn psa_spec(
    mode: Mode,
    level: PodSecurityLevel,
    version: Option<&str>,
) -> SecurityBaselineSpec {
    SecurityBaselineSpec {
        mode,
        pod_security: Some(PodSecuritySpec {
            enforce: Some(level),
            version: version.map(String::from),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub const ENFORCE_LABEL: &str = "pod-security.kubernetes.io/enforce";
