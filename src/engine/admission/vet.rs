//! The last check of an admission object before it is written, whatever rendered it.

use k8s_openapi::api::admissionregistration::v1::MatchResources;

use super::AdmissionSettings;
use crate::engine::object::{
    BASELINE_LABEL, Kind, MANAGED_BY_LABEL, MANAGED_BY_VALUE, NAME_PREFIX, Object,
};
use crate::engine::select::ALWAYS_EXCLUDED;

/// Checks an admission object before it is written, whatever rendered it: ours by name and
/// labels, and unable to reach beyond what a baseline governs. A binding must exclude the
/// cluster's own namespaces and the operator's (so no bug can refuse requests there), a mutating
/// policy may only touch Namespaces, a validating one only the kinds a baseline owns and pods.
pub fn vet(object: &Object, settings: &AdmissionSettings) -> Result<(), String> {
    let meta = object.meta();
    let name = meta.name.as_deref().unwrap_or_default();
    let labels = meta.labels.clone().unwrap_or_default();
    if !name.starts_with(NAME_PREFIX)
        || labels.get(MANAGED_BY_LABEL).map(String::as_str) != Some(MANAGED_BY_VALUE)
        || !labels.contains_key(BASELINE_LABEL)
    {
        return Err(format!("{name}: not named and labelled as ours"));
    }
    match object {
        Object::ValidatingAdmissionPolicyBinding(b) => {
            let spec = &b.spec;
            vet_binding(
                name,
                spec.match_resources.as_ref(),
                Some(&spec.policy_name),
                settings,
            )
        }
        Object::MutatingAdmissionPolicyBinding(b) => {
            let spec = b.spec.as_ref().ok_or("no spec")?;
            let policy = spec.policy_name.as_ref();
            vet_binding(name, spec.match_resources.as_ref(), policy, settings)
        }
        Object::MutatingAdmissionPolicy(p) => {
            let spec = p.spec.as_ref().ok_or("no spec")?;
            let touched = resources(spec.match_constraints.as_ref());
            if touched != ["namespaces"] || spec.param_kind.is_some() {
                return Err(format!(
                    "{name}: a mutating policy of ours only sets Namespace labels"
                ));
            }
            Ok(())
        }
        Object::ValidatingAdmissionPolicy(p) => {
            let spec = p.spec.as_ref().ok_or("no spec")?;
            let touched = resources(spec.match_constraints.as_ref());
            let allowed = validated_resources();
            if touched.iter().any(|r| !allowed.contains(r)) || spec.param_kind.is_some() {
                return Err(format!(
                    "{name}: validates something no baseline governs: {touched:?}"
                ));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// A binding excludes the cluster's own namespaces and the operator's (by their immutable name
/// label), and binds one of our policies.
fn vet_binding(
    name: &str,
    resources: Option<&MatchResources>,
    policy: Option<&String>,
    settings: &AdmissionSettings,
) -> Result<(), String> {
    let must_exclude: Vec<&str> = ALWAYS_EXCLUDED
        .iter()
        .copied()
        .chain([settings.operator_namespace.as_str()])
        .collect();
    let excludes = resources
        .and_then(|m| m.namespace_selector.as_ref())
        .and_then(|s| s.match_expressions.as_ref())
        .is_some_and(|expressions| {
            expressions.iter().any(|e| {
                e.key == "kubernetes.io/metadata.name"
                    && e.operator == "NotIn"
                    && must_exclude
                        .iter()
                        .all(|n| e.values.iter().flatten().any(|v| v == n))
            })
        });
    let ours = policy.is_some_and(|p| p.starts_with(NAME_PREFIX));
    if !excludes || !ours {
        return Err(format!(
            "{name}: a binding must exclude {must_exclude:?} and bind one of ours"
        ));
    }
    Ok(())
}

/// What a validating policy of ours may match: the generated kinds, the shared objects, and pods
/// (the onboarding gate).
fn validated_resources() -> Vec<String> {
    Kind::GENERATED
        .iter()
        .chain(&[Kind::Namespace, Kind::ServiceAccount])
        .map(|k| k.api_resource().plural)
        .chain(["pods".to_string()])
        .collect()
}

/// The resources a policy's match constraints name.
fn resources(constraints: Option<&MatchResources>) -> Vec<String> {
    constraints
        .and_then(|m| m.resource_rules.as_ref())
        .into_iter()
        .flatten()
        .flat_map(|r| r.resources.clone().unwrap_or_default())
        .collect()
}
