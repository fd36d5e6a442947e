//! One namespace, one pass: read the caches, let the engine render, diff and plan, apply the plan,
//! record the outcome for each baseline. A compliant namespace costs no API request at all.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use tracing::{info, instrument, warn};

use super::Context;
use super::apply::{Written, create_object, delete_object, execute, exists};
use super::error::Error;
use super::metrics::KindLabels;
use super::status::{Outcome, drift_records};
use crate::api::{DeletionPolicy, Mode, SecurityBaseline};
use crate::engine::{
    Action, DesiredState, Drift, DriftReason, Kind, LiveState, Object, Ownership, ValidBaseline,
    applied_by_us, diff, ownership, plan, released_labels, render, repairable, validate,
};

/// The safety-net resync; repair is driven by watch events, not by this.
pub const RESYNC: Duration = Duration::from_secs(600);

/// How soon a namespace with writes refused by RBAC is tried again.
const FORBIDDEN_RETRY: Duration = Duration::from_secs(10);

#[instrument(skip_all, fields(namespace = %namespace.name_any()))]
pub async fn reconcile(namespace: Arc<Namespace>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    let namespace = ctx.caches.newest_namespace(namespace);
    let name = namespace.name_any();
    if namespace.metadata.deletion_timestamp.is_some() {
        // A terminating namespace only affects itself: nothing to write, nothing to count.
        ctx.outcomes.forget_namespace(&name, &[]);
        return Ok(Requeue::await_change());
    }
    let baselines = ctx.baselines.state();
    let (valid, deleting): (Vec<ValidBaseline>, Vec<ValidBaseline>) = baselines
        .iter()
        .filter_map(|b| validate(b).ok())
        .partition(|v| v.baseline.metadata.deletion_timestamp.is_none());
    let desired = render(&valid, &name, namespace.labels(), &ctx.operator_namespace);
    // Baselines whose objects leave this namespace: deletionPolicy Delete, and no longer
    // selecting it or being deleted. (An invalid baseline's objects stay: we cannot tell what it meant.)
    let leaving: Vec<ValidBaseline> = valid
        .iter()
        .chain(&deleting)
        .filter(|v| v.baseline.spec.deletion_policy == DeletionPolicy::Delete)
        .filter(|v| desired.baseline(v.name()).is_none())
        .cloned()
        .collect();
    let live = ctx.caches.live_state(&namespace);
    let mut drift = diff(&desired, &live);

    // Our caches see only labelled objects, so a "missing" object may be someone else's. What
    // we will write is found out by creating it (below); what we only report is looked up.
    for d in drift
        .iter_mut()
        .filter(|d| d.reason == DriftReason::Missing && !repairable(&desired, d))
        .filter(|d| !matches!(d.kind, Kind::Namespace | Kind::ServiceAccount))
    {
        if exists(&ctx.client, &name, d.kind, &d.name).await? {
            d.reason = DriftReason::Conflict;
        }
    }

    let released = released_labels(&desired, &leaving, &live);
    for action in plan(&desired, &live, &drift, &released) {
        let Some(result) = carry_out(&ctx, &desired, &action, &mut drift).await else {
            continue;
        };
        match result {
            Ok(written) => ctx.caches.write_through(&name, written),
            // RBAC refused this write: report it as unrepaired drift and go on with the rest,
            // rather than retrying what cannot succeed. (Binding a Role we may not create fails
            // as NotFound: the authorizer looks the Role up to check we hold its permissions.)
            Err(kube::Error::Api(status))
                if status.code == 403
                    || (status.code == 404
                        && matches!(action, Action::Apply(Object::RoleBinding(_)))) =>
            {
                warn!(message = status.message, "write forbidden");
                for d in drift.iter_mut().filter(|d| action.repairs(d)) {
                    d.reason = DriftReason::Forbidden(d.reason.to_string());
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    remove_leaving_objects(&ctx, &name, &live, &leaving).await?;

    let selected: Vec<&str> = desired.baselines.iter().map(|b| b.name.as_str()).collect();
    ctx.outcomes.forget_namespace(&name, &selected);
    for baseline in &desired.baselines {
        let generation = valid
            .iter()
            .find(|v| v.name() == baseline.name)
            .and_then(|v| v.baseline.metadata.generation)
            .unwrap_or(0);
        let mine = || drift.iter().filter(|d| d.baseline == baseline.name);
        let (records, drift_count) =
            drift_records(&name, mine().filter(|d| !repairable(&desired, d)));
        // Setting the default ServiceAccount the first time is onboarding, not a repair.
        let first_touch = |d: &Drift| {
            d.kind == Kind::ServiceAccount
                && live
                    .default_service_account
                    .as_ref()
                    .is_some_and(|sa| !applied_by_us(&sa.metadata))
        };
        let repaired: Vec<&Drift> = mine()
            .filter(|d| repairable(&desired, d) && !first_touch(d))
            .collect();
        let outcome = Outcome {
            generation,
            drift: records,
            drift_count,
        };
        let previous = ctx.outcomes.previous(&baseline.name, &name);
        // Onboarding (no earlier outcome) creates; only a namespace we saw comply can drift.
        let was_compliant = previous.as_ref().is_some_and(|p| p.drift_count == 0);
        let repairs = if was_compliant {
            repaired.len() as i64
        } else {
            0
        };
        let source = baselines
            .iter()
            .find(|b| b.name_any() == baseline.name)
            .map(Arc::as_ref);
        if repairs > 0 {
            for d in &repaired {
                let kind = KindLabels {
                    kind: d.kind.to_string(),
                };
                ctx.metrics.drift_detected.get_or_create(&kind).inc();
                ctx.metrics.drift_repaired.get_or_create(&kind).inc();
            }
            report_repairs(&ctx, &namespace, source, &repaired).await;
        }
        if baseline.mode == Mode::Audit
            && drift_count > 0
            && previous.as_ref().map(|p| &p.drift) != Some(&outcome.drift)
        {
            for d in mine() {
                ctx.metrics
                    .drift_detected
                    .get_or_create(&KindLabels {
                        kind: d.kind.to_string(),
                    })
                    .inc();
            }
            report_drift(&ctx, &namespace, source, mine().collect()).await;
        }
        // Onboarding latency: creation to first compliance, for namespaces born while we lead.
        let first_compliant =
            drift_count == 0 && previous.as_ref().is_none_or(|p| p.drift_count > 0);
        if let Some(created) = namespace.metadata.creation_timestamp.as_ref()
            && first_compliant
            && created.0.as_second() >= ctx.started_second
        {
            let latency = k8s_openapi::jiff::Timestamp::now().duration_since(created.0);
            ctx.metrics
                .onboarding_latency
                .observe(latency.as_secs_f64().max(0.0));
        }
        ctx.outcomes.record(&baseline.name, &name, outcome, repairs);
    }
    // A refused write may be allowed after an RBAC change, which no watch of ours sees.
    if drift
        .iter()
        .any(|d| matches!(d.reason, DriftReason::Forbidden(_)))
    {
        return Ok(Requeue::requeue(FORBIDDEN_RETRY));
    }
    Ok(Requeue::requeue(RESYNC))
}

/// Carries out `action`, or nothing (None) when it turns out to be a conflict to report. A
/// missing object is created, not applied: a create that finds a same-named object marks its drift
/// as a conflict (and applies over it only if the baseline adopts conflicts), so nothing of
/// someone else's is written over, not even an object made a moment ago.
async fn carry_out(
    ctx: &Context,
    desired: &DesiredState,
    action: &Action,
    drift: &mut [Drift],
) -> Option<Result<Written, kube::Error>> {
    let missing = match action {
        Action::Apply(object) => drift
            .iter()
            .any(|d| action.repairs(d) && d.reason == DriftReason::Missing)
            .then_some(object),
        _ => None,
    };
    let Some(object) = missing else {
        return Some(execute(&ctx.client, desired, action).await);
    };
    match create_object(&ctx.client, &desired.namespace, object).await {
        Err(kube::Error::Api(status)) if status.code == 409 => {
            for d in drift.iter_mut().filter(|d| action.repairs(d)) {
                d.reason = DriftReason::Conflict;
            }
            let adopt = drift
                .iter()
                .any(|d| action.repairs(d) && repairable(desired, d));
            if adopt {
                Some(execute(&ctx.client, desired, action).await)
            } else {
                None
            }
        }
        created => Some(created),
    }
}

/// Deletes exactly the objects the leaving baselines (`deletionPolicy: Delete`) created here.
async fn remove_leaving_objects(
    ctx: &Context,
    namespace: &str,
    live: &LiveState,
    leaving: &[ValidBaseline],
) -> Result<(), Error> {
    for object in &live.objects {
        let Ownership::Baseline(owner) = ownership(object.meta()) else {
            continue;
        };
        if !leaving.iter().any(|b| b.name() == owner) {
            continue;
        }
        let (kind, name) = (object.kind(), object.name().to_string());
        delete_object(
            &ctx.client,
            namespace,
            kind,
            &name,
            object.meta().uid.as_deref(),
        )
        .await?;
        info!(%kind, object = %name, baseline = owner, "deleted (deletionPolicy: Delete)");
        ctx.caches
            .write_through(namespace, Written::Deleted { kind, name });
    }
    Ok(())
}

fn summary(drift: &[&Drift]) -> String {
    let mut text = drift
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("; ");
    if text.len() > 900 {
        let mut end = 900;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
    text
}

async fn publish(
    ctx: &Context,
    event: &Event,
    namespace: &Namespace,
    baseline: Option<&SecurityBaseline>,
) {
    // Events about a namespace live in that namespace, where `kubectl get events -n` finds them.
    let mut in_namespace = namespace.object_ref(&());
    in_namespace.namespace = Some(namespace.name_any());
    let mut references = vec![in_namespace];
    references.extend(baseline.map(|b| b.object_ref(&())));
    for reference in references {
        if let Err(e) = ctx.recorder.publish(event, &reference).await {
            warn!(error = %e, "publishing an event failed");
        }
    }
}

async fn report_repairs(
    ctx: &Context,
    namespace: &Namespace,
    baseline: Option<&SecurityBaseline>,
    repaired: &[&Drift],
) {
    let note = format!("{}: repaired {}", namespace.name_any(), summary(repaired));
    info!(repairs = repaired.len(), "{note}");
    // Events with the same action fold into one series; one series per kind keeps each kind's
    // repairs visible without letting a fight over one object flood the API server.
    let mut kinds: Vec<&str> = repaired.iter().map(|d| d.kind.as_str()).collect();
    kinds.dedup();
    let event = Event {
        type_: EventType::Normal,
        reason: "DriftRepaired".to_string(),
        note: Some(note),
        action: format!("Repair{}", kinds.join("")),
        secondary: None,
    };
    publish(ctx, &event, namespace, baseline).await;
}

async fn report_drift(
    ctx: &Context,
    namespace: &Namespace,
    baseline: Option<&SecurityBaseline>,
    drift: Vec<&Drift>,
) {
    let note = format!("{}: {}", namespace.name_any(), summary(&drift));
    info!(drift = drift.len(), "drift detected (Audit mode): {note}");
    let event = Event {
        type_: EventType::Warning,
        reason: "DriftDetected".to_string(),
        note: Some(note),
        action: "Audit".to_string(),
        secondary: None,
    };
    publish(ctx, &event, namespace, baseline).await;
}
