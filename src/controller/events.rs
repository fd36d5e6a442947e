//! Kubernetes Events: repairs, Audit-mode drift and failed writes, on the namespace (where
//! `kubectl get events -n` finds them) and on the baseline.

use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use tracing::{info, warn};

use super::context::Context;
use super::error::Error;
use crate::api::SecurityBaseline;
use crate::engine::Drift;

/// Longest Event note; the API server refuses notes over 1 KiB.
const MAX_NOTE: usize = 900;

fn summary(drift: &[&Drift]) -> String {
    let text = drift
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("; ");
    cut(text)
}

fn cut(mut text: String) -> String {
    if text.len() > MAX_NOTE {
        let mut end = MAX_NOTE;
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

/// `DriftRepaired`: what was repaired in `namespace` for `baseline`.
pub async fn report_repairs(
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

/// `DriftDetected`: drift an Audit baseline found in `namespace`.
pub async fn report_drift(
    ctx: &Context,
    namespace: &Namespace,
    baseline: Option<&SecurityBaseline>,
    drift: &[&Drift],
) {
    let note = format!("{}: {}", namespace.name_any(), summary(drift));
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

/// A failed reconcile of `namespace`, with the failed operation as its reason.
pub async fn report_failure(ctx: &Context, namespace: &Namespace, error: &Error) {
    let event = Event {
        type_: EventType::Warning,
        reason: error.event_reason().to_string(),
        note: Some(cut(error.to_string())),
        action: "Reconcile".to_string(),
        secondary: None,
    };
    publish(ctx, &event, namespace, None).await;
}
