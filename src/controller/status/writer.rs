//! The status writer: every interval, recomputes each baseline's status from the outcomes and
//! writes it (server-side apply on the status subresource) only if it changed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, warn};

use super::compute::{Spec, compute_status};
use crate::api::{
    AdmissionIdentityRecord, LastValidSpec, SecurityBaseline, SecurityBaselineStatus,
};
use crate::controller::context::Context;
use crate::controller::decode::unreadable;
use crate::controller::enforced::record;
use crate::controller::error::{Error, Failed, Operation};
use crate::controller::finalizer::manage_finalizer;
use crate::controller::held_namespace::HeldNamespace;
use crate::controller::http::Health;
use crate::engine::{
    FIELD_MANAGER, ValidBaseline, permanent_exemptions, selects, unavailable, unclaimed_names,
};

/// How long the first full lists may take before the wait is logged as a warning.
const UNSYNCED_WARNING: Duration = Duration::from_secs(30);

/// Every `interval`, recomputes each baseline's status and writes it if it changed.
pub async fn write_statuses(ctx: Arc<Context>, interval: Duration, health: Arc<Health>) {
    // Status writes go through the untyped API, so a response for a baseline we cannot decode
    // does not fail the write.
    let raw: Api<DynamicObject> = Api::all_with(
        ctx.client.clone(),
        &ApiResource::erase::<SecurityBaseline>(&()),
    );
    if ctx.namespaces.wait_until_ready().await.is_err() {
        return;
    }
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut known: BTreeMap<String, Option<String>> = BTreeMap::new();
    let started = std::time::Instant::now();
    let mut warned = false;
    loop {
        ticker.tick().await;
        // Until the baselines and every cache are full, outcomes would undercount: write
        // nothing, and `/readyz` says so.
        if !ctx.synced() {
            warn_once_unsynced(started, &mut warned);
            continue;
        }
        health.set_caches_synced(true);
        let baselines = ctx.baselines.state();
        let namespaces = ctx.namespaces.state();
        forget_gone(&ctx, &baselines, &mut known);
        for baseline in baselines {
            keep_baseline(&ctx, &raw, &baseline, &namespaces).await;
        }
    }
}

/// Logs, once, a wait for the first full lists that does not end.
fn warn_once_unsynced(started: std::time::Instant, warned: &mut bool) {
    if !*warned && started.elapsed() > UNSYNCED_WARNING {
        warn!(
            waited = ?started.elapsed(),
            "the caches have not had their first full list yet: no namespace is reconciled until they have (is a watch refused?)"
        );
        *warned = true;
    }
}

/// Forgets what the baselines no longer stored (deleted, or recreated under a new uid) left:
/// their outcomes and last valid generations. `known` is the baselines of the last tick.
fn forget_gone(
    ctx: &Context,
    baselines: &[Arc<SecurityBaseline>],
    known: &mut BTreeMap<String, Option<String>>,
) {
    let current: BTreeMap<String, Option<String>> =
        baselines.iter().map(|b| (b.name_any(), b.uid())).collect();
    for (gone, uid) in known.iter().filter(|(k, uid)| current.get(*k) != Some(uid)) {
        ctx.outcomes.forget_baseline(gone, uid.as_deref());
    }
    *known = current;
    let uids: Vec<String> = baselines.iter().filter_map(|b| b.uid()).collect();
    ctx.last_valid.retain(&uids);
}

/// Keeps `baseline`'s finalizer and, unless it is being deleted, writes its status.
async fn keep_baseline(
    ctx: &Context,
    raw: &Api<DynamicObject>,
    baseline: &SecurityBaseline,
    namespaces: &[Arc<HeldNamespace>],
) {
    let enforced = ctx.last_valid.enforced(baseline);
    // A stand-in for an unreadable baseline goes by its last valid spec's deletion policy; with
    // none recorded, its finalizer stays as it is.
    let by = match unreadable(baseline) {
        Some(_) => enforced.valid.as_ref().map(|v| SecurityBaseline {
            metadata: baseline.metadata.clone(),
            spec: v.baseline.spec.clone(),
            status: None,
        }),
        None => Some(baseline.clone()),
    };
    if let Some(by) = by
        && let Err(e) = manage_finalizer(ctx, &by).await
    {
        warn!(baseline = baseline.name_any(), error = %e, "finalizer update failed");
    }
    if baseline.metadata.deletion_timestamp.is_some() {
        return;
    }
    let selected = selected_namespaces(ctx, enforced.valid.as_ref(), namespaces);
    let admission = ctx.outcomes.cluster(&baseline.name_any());
    let unavailable = enforced
        .valid
        .as_ref()
        .map(|v| unavailable(v, &ctx.admission))
        .unwrap_or_default();
    let unclaimed = enforced
        .valid
        .as_ref()
        .map(|v| unclaimed_names(&v.baseline.spec, |n| exists(ctx, n)))
        .unwrap_or_default();
    let spec = Spec {
        invalid: enforced.invalid.as_ref(),
        enforcing: enforced.generation(),
        admission: admission.as_ref(),
        unavailable: &unavailable,
        permanent_exemptions: (enforced.valid.iter().flat_map(permanent_exemptions))
            .map(|p| p.index as i32)
            .collect(),
        unclaimed: &unclaimed,
    };
    let recorded = Recorded {
        last_valid: enforced.valid.as_ref().and_then(record),
        identity: AdmissionIdentityRecord {
            operator_user: ctx.admission.operator_user.clone(),
            break_glass_group: ctx.admission.break_glass_group.clone(),
        },
    };
    if let Err(e) = write_status(ctx, raw, baseline, spec, &selected, recorded).await {
        warn!(baseline = baseline.name_any(), error = %e, "status write failed");
    }
}

/// What the status records for the next process and for `check` (`api::recorded`).
struct Recorded {
    last_valid: Option<LastValidSpec>,
    identity: AdmissionIdentityRecord,
}

/// A namespace named `name` exists (one being deleted still holds its name).
fn exists(ctx: &Context, name: &str) -> bool {
    ctx.namespaces.get(&ObjectRef::new(name)).is_some()
}

/// The namespaces, not being deleted, that the enforced generation `valid` selects.
fn selected_namespaces(
    ctx: &Context,
    valid: Option<&ValidBaseline>,
    namespaces: &[Arc<HeldNamespace>],
) -> Vec<String> {
    valid
        .iter()
        .flat_map(|valid| {
            namespaces
                .iter()
                .filter(|ns| ns.metadata.deletion_timestamp.is_none())
                .filter(|ns| selects(valid, &ns.name_any(), ns.labels(), &ctx.operator_namespace))
                .map(|ns| ns.name_any())
        })
        .collect()
}

/// Writes `baseline`'s status, given what its spec says and the namespaces it selects, if it
/// changed.
async fn write_status(
    ctx: &Context,
    api: &Api<DynamicObject>,
    baseline: &SecurityBaseline,
    spec: Spec<'_>,
    selected: &[String],
    recorded: Recorded,
) -> Result<(), Error> {
    let name = baseline.name_any();
    let previous = ctx.outcomes.current_status(baseline);
    let (outcomes, repairs) = ctx.outcomes.snapshot(&name, selected);
    let mut status = compute_status(
        baseline,
        spec,
        &outcomes,
        repairs,
        &previous,
        Timestamp::now(),
    );
    status.last_valid = recorded.last_valid;
    status.admission_identity = Some(recorded.identity);
    let pending = status.selected_namespaces
        - status.compliant_namespaces
        - status.drifted_namespaces
        - status.exempt_namespaces;
    ctx.metrics
        .set_namespaces(&name, "compliant", status.compliant_namespaces);
    ctx.metrics
        .set_namespaces(&name, "drifted", status.drifted_namespaces);
    ctx.metrics
        .set_namespaces(&name, "exempt", status.exempt_namespaces);
    ctx.metrics.set_namespaces(&name, "pending", pending);
    if previous == status {
        return Ok(());
    }
    // A server-side apply needs the stored object to match the schema; one that does not (we
    // could not decode it) gets its status merged in instead, by the same field manager.
    let decodable = unreadable(baseline).is_none();
    let patch = status_patch(&status);
    let (params, patch) = if decodable {
        (
            PatchParams::apply(FIELD_MANAGER).force(),
            Patch::Apply(patch),
        )
    } else {
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PatchParams::default()
        };
        (params, Patch::Merge(patch))
    };
    api.patch_status(&name, &params, &patch).await.failed(
        Operation::WriteStatus,
        "SecurityBaseline",
        "",
        &name,
    )?;
    ctx.outcomes.status_written(baseline, status, repairs);
    ctx.metrics.status_writes.inc();
    debug!(baseline = name, "status written");
    Ok(())
}

/// The server-side-apply body for a status write.
fn status_patch(status: &SecurityBaselineStatus) -> serde_json::Value {
    json!({
        "apiVersion": SecurityBaseline::api_version(&()),
        "kind": SecurityBaseline::kind(&()),
        "status": status,
    })
}
