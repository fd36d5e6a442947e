//! The cluster-scoped half of the operator: keeps each baseline's admission policies and bindings
//! as the engine renders them, woken by any change to a baseline or to one of those objects (and
//! every minute as a safety net). Every object is vetted before it is written: a binding that
//! could refuse requests in the cluster's own namespaces is never written.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use tracing::{info, warn};

use super::apply::{self, Created};
use super::context::{Context, until};
use super::error::Error;
use super::held_object::strip_metadata;
use super::status::Outcome;
use crate::engine::{
    DesiredObject, Drift, DriftReason, Object, Ownership, ValidBaseline, Write, diff_admission,
    next_expiry, ownership, plan_admission, render_admission, vet,
};

/// The safety-net pass when nothing woke the keeper.
const RESYNC: Duration = Duration::from_secs(60);

/// Events arriving this close together are handled in one pass.
const COALESCE: Duration = Duration::from_millis(50);

/// Keeps the admission objects until the future is dropped.
pub async fn keep(ctx: Arc<Context>) {
    if ctx.baselines.wait_until_ready().await.is_err() {
        return;
    }
    let mut failures: u32 = 0;
    let mut wake = RESYNC;
    loop {
        tokio::select! {
            _ = ctx.admission_changed.notified() => {}
            _ = tokio::time::sleep(wake) => {}
        }
        tokio::time::sleep(COALESCE).await;
        if !ctx.caches.ready() {
            // Until the caches are full, a missing object may only be unseen.
            tokio::time::sleep(COALESCE).await;
            ctx.admission_changed.notify_one();
            continue;
        }
        // An exemption that expires is taken out of the policies at once, not at the resync.
        wake = next_expiry_of_all(&ctx)
            .map(|at| until(at).min(RESYNC))
            .unwrap_or(RESYNC);
        match reconcile(&ctx).await {
            Ok(()) => failures = 0,
            Err(error) => {
                failures = failures.saturating_add(1);
                let delay = super::context::retry_delay(failures);
                warn!(%error, retry_in = ?delay, "admission policies: pass failed");
                tokio::time::sleep(delay).await;
                ctx.admission_changed.notify_one();
            }
        }
    }
}

/// The baselines whose admission objects are kept: the last valid generation of each, not being
/// deleted.
fn enforced(ctx: &Context) -> Vec<ValidBaseline> {
    enforced_and_held(ctx).0
}

/// The baselines whose admission objects are kept, and the names of those that exist, not being
/// deleted, yet have no valid generation to enforce (invalid or unreadable since before this
/// process, with none recorded): what they have is held as it is, neither repaired nor deleted.
/// Only a baseline's deletion takes its policies away.
fn enforced_and_held(ctx: &Context) -> (Vec<ValidBaseline>, Vec<String>) {
    let mut enforced = Vec::new();
    let mut held = Vec::new();
    for baseline in ctx.baselines.state().iter() {
        if baseline.metadata.deletion_timestamp.is_some() {
            continue;
        }
        match ctx.last_valid.enforced(baseline).valid {
            Some(valid) if valid.baseline.metadata.deletion_timestamp.is_none() => {
                enforced.push(valid)
            }
            _ => held.push(baseline.name_any()),
        }
    }
    (enforced, held)
}

/// `live` without the objects of the `held` baselines, which a pass neither repairs nor deletes.
fn without_held(live: Vec<Object>, held: &[String]) -> Vec<Object> {
    live.into_iter()
        .filter(|o| !matches!(ownership(o.meta()), Ownership::Baseline(b) if held.contains(&b)))
        .collect()
}

/// The next moment one of the baselines' exemptions expires.
fn next_expiry_of_all(ctx: &Context) -> Option<i64> {
    let now = Timestamp::now().as_second();
    enforced(ctx)
        .iter()
        .filter_map(|b| next_expiry(b, now))
        .min()
}

/// One pass over every baseline's admission objects: render, diff, write, record.
pub async fn reconcile(ctx: &Context) -> Result<(), Error> {
    let (baselines, held) = enforced_and_held(ctx);
    let now = Timestamp::now().as_second();
    let desired: Vec<DesiredObject> = baselines
        .iter()
        .flat_map(|b| {
            render_admission(b, &ctx.admission, now)
                .into_iter()
                .map(|object| DesiredObject {
                    baseline: b.name().to_string(),
                    object,
                })
        })
        .collect();
    let live = without_held(ctx.caches.admission_objects(), &held);
    let mut drift = diff_admission(&desired, &live);
    let mut failure = None;
    for write in plan_admission(&desired, &live, &drift) {
        if let Err(error) = carry_out(ctx, &write, &mut drift).await {
            warn!(%error, "admission policies: write failed");
            mark(&mut drift, &write, |was| {
                DriftReason::WriteFailed(Box::new(was))
            });
            failure.get_or_insert(error);
        }
    }
    for baseline in &baselines {
        let generation = baseline.baseline.metadata.generation.unwrap_or(0);
        let left = drift
            .iter()
            .filter(|d| d.baseline == baseline.name() && !repaired(d));
        ctx.outcomes
            .record_cluster(baseline.name(), Outcome::new(generation, "", left));
    }
    match failure {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// True for drift a pass has dealt with: written, or deleted.
fn repaired(drift: &Drift) -> bool {
    !matches!(
        drift.reason,
        DriftReason::Conflict | DriftReason::WriteFailed(_) | DriftReason::Forbidden(_)
    )
}

fn mark(drift: &mut [Drift], write: &Write, reason: impl Fn(DriftReason) -> DriftReason) {
    for d in drift.iter_mut().filter(|d| write.repairs(d)) {
        let was = std::mem::replace(&mut d.reason, DriftReason::Missing);
        d.reason = reason(was);
    }
}

async fn carry_out(ctx: &Context, write: &Write, drift: &mut [Drift]) -> Result<(), Error> {
    match write {
        Write::Apply(object) => {
            if let Err(why) = vet(object, &ctx.admission) {
                warn!(
                    object = object.name(),
                    why, "admission policies: refusing to write"
                );
                mark(drift, write, |was| DriftReason::WriteFailed(Box::new(was)));
                return Ok(());
            }
            let missing = drift
                .iter()
                .any(|d| write.repairs(d) && d.reason == DriftReason::Missing);
            let mut written = if missing {
                match apply::create_unless_taken(&ctx.client, "", object).await? {
                    Created::Object(created) => *created,
                    Created::Taken => {
                        // A same-named policy we did not write: reported, never overwritten.
                        mark(drift, write, |_| DriftReason::Conflict);
                        return Ok(());
                    }
                }
            } else {
                apply::apply(&ctx.client, "", object).await?
            };
            info!(kind = %object.kind(), name = object.name(), "admission policy written");
            strip_metadata(written.meta_mut(), false);
            ctx.caches.generated(object.kind()).write_through(&written);
        }
        Write::Delete { kind, name, uid } => {
            apply::delete(&ctx.client, "", *kind, name, uid.as_deref()).await?;
            info!(%kind, name, "admission policy deleted");
            ctx.caches.generated(*kind).forget("", name);
        }
        _ => {}
    }
    Ok(())
}
