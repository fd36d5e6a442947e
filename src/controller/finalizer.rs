//! The cleanup finalizer of `deletionPolicy: Delete` baselines: held until every object the
//! baseline created is gone, so deleting the baseline removes them first.

use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use tracing::info;

use super::context::Context;
use super::error::{Error, Failed, Operation};
use crate::api::{DeletionPolicy, SecurityBaseline};
use crate::engine::FIELD_MANAGER;

/// Held by `deletionPolicy: Delete` baselines, so their objects are removed before they go.
pub const CLEANUP_FINALIZER: &str = "zerotrust.dev/cleanup";

/// Whether `baseline` should hold our finalizer from now on, or `None` to leave it as it is.
/// `owned` counts the objects of the baseline still in the cluster; it is called only for a
/// baseline being deleted (the count reads every cached object: at 10,000 namespaces 100,000 of
/// them, on every status tick of every baseline, if it were counted always).
pub fn finalizer_wanted(
    baseline: &SecurityBaseline,
    owned: impl FnOnce() -> usize,
) -> Option<bool> {
    let wants = baseline.spec.deletion_policy == DeletionPolicy::Delete;
    let has = baseline.finalizers().iter().any(|f| f == CLEANUP_FINALIZER);
    match (baseline.metadata.deletion_timestamp.is_some(), wants, has) {
        (false, true, false) => Some(true),
        (false, false, true) => Some(false),
        (true, _, true) if owned() == 0 => Some(false),
        _ => None,
    }
}

/// Adds our finalizer to Delete baselines, and removes it when the policy changes or, during
/// deletion, once no object of the baseline is left.
pub async fn manage_finalizer(ctx: &Context, baseline: &SecurityBaseline) -> Result<(), Error> {
    let name = baseline.name_any();
    let Some(keep) = finalizer_wanted(baseline, || ctx.caches.owned_by(&name)) else {
        return Ok(());
    };
    // Server-side apply of our one list entry: other controllers' finalizers are untouched.
    let finalizers: Vec<&str> = if keep {
        vec![CLEANUP_FINALIZER]
    } else {
        vec![]
    };
    let patch = serde_json::json!({
        "apiVersion": SecurityBaseline::api_version(&()),
        "kind": SecurityBaseline::kind(&()),
        "metadata": {"name": name, "finalizers": finalizers},
    });
    // Untyped, so the answer for a baseline whose spec does not decode is no error.
    Api::<DynamicObject>::all_with(
        ctx.client.clone(),
        &ApiResource::erase::<SecurityBaseline>(&()),
    )
    .patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(patch),
    )
    .await
    .failed(Operation::UpdateFinalizer, "SecurityBaseline", "", &name)?;
    info!(
        baseline = name,
        finalizer = keep,
        "cleanup finalizer updated"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn baseline(policy: DeletionPolicy, has: bool, deleting: bool) -> SecurityBaseline {
        let mut b = SecurityBaseline::new("b", Default::default());
        b.spec.deletion_policy = policy;
        if has {
            b.metadata.finalizers = Some(vec![CLEANUP_FINALIZER.to_string()]);
        }
        if deleting {
            b.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
        }
        b
    }

    #[test]
    fn held_while_objects_remain() {
        use DeletionPolicy::*;
        assert_eq!(
            finalizer_wanted(&baseline(Delete, false, false), || 0),
            Some(true)
        );
        assert_eq!(finalizer_wanted(&baseline(Delete, true, false), || 3), None);
        assert_eq!(
            finalizer_wanted(&baseline(Orphan, true, false), || 3),
            Some(false)
        );
        assert_eq!(
            finalizer_wanted(&baseline(Orphan, false, false), || 3),
            None
        );
        assert_eq!(finalizer_wanted(&baseline(Delete, true, true), || 3), None);
        assert_eq!(
            finalizer_wanted(&baseline(Delete, true, true), || 0),
            Some(false)
        );
        assert_eq!(finalizer_wanted(&baseline(Delete, false, true), || 0), None);
    }

    #[test]
    fn objects_are_counted_only_for_a_baseline_being_deleted_with_the_finalizer() {
        use DeletionPolicy::*;
        let counted = || -> usize { panic!("counted") };
        for (policy, has) in [
            (Delete, true),
            (Delete, false),
            (Orphan, true),
            (Orphan, false),
        ] {
            finalizer_wanted(&baseline(policy, has, false), counted);
        }
        finalizer_wanted(&baseline(Delete, false, true), counted);
    }
}
