//! Kubernetes Events: repairs, Audit-mode drift and failed writes, on the namespace (where
//! `kubectl get events -n` finds them) and on the baseline.

use super::held_namespace::HeldNamespace;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use tracing::{info, warn};

use super::context::Context;
use super::error::Error;
use super::reports::ReportFinding;
use crate::api::{Mode, SecurityBaseline};
use crate::engine::{Drift, DriftReason, ExemptControl};

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
    namespace: &HeldNamespace,
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
    namespace: &HeldNamespace,
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

/// The reason of the Warning Event that reports unrepaired `reason` under a baseline in `mode`:
/// what the operator will not or cannot repair has its own reason in both modes, the rest of an
/// Audit baseline's drift is `DriftDetected`.
fn finding_reason(mode: Mode, reason: &DriftReason) -> &'static str {
    match (mode, reason) {
        (_, DriftReason::Widened(_)) => "Widened",
        (_, DriftReason::Conflict) => "Conflict",
        (Mode::Audit, _) => "DriftDetected",
        (Mode::Enforce, other) => other.short(),
    }
}

/// Warning Events for drift left unrepaired in `namespace`: one per reason, naming every object.
pub async fn report_findings(
    ctx: &Context,
    namespace: &HeldNamespace,
    baseline: Option<&SecurityBaseline>,
    mode: Mode,
    drift: &[&Drift],
) {
    let mut reasons: Vec<&str> = drift
        .iter()
        .map(|d| finding_reason(mode, &d.reason))
        .collect();
    reasons.sort();
    reasons.dedup();
    for reason in reasons {
        let these: Vec<&Drift> = drift
            .iter()
            .copied()
            .filter(|d| finding_reason(mode, &d.reason) == reason)
            .collect();
        let note = format!("{}: {}", namespace.name_any(), summary(&these));
        info!(reason, drift = these.len(), "{note}");
        let event = Event {
            type_: EventType::Warning,
            reason: reason.to_string(),
            note: Some(note),
            action: if mode == Mode::Audit {
                "Audit"
            } else {
                "Report"
            }
            .to_string(),
            secondary: None,
        };
        publish(ctx, &event, namespace, baseline).await;
    }
}

/// Exemptions that began or ended in `namespace` since the last pass: `Exempt` names each
/// control no longer enforced here with its reason and end; `ExemptionExpired` (its time came)
/// or `ExemptionEnded` (taken out of the baseline) each control enforced again.
pub async fn report_exemptions(
    ctx: &Context,
    namespace: &HeldNamespace,
    baseline: Option<&SecurityBaseline>,
    before: &[ExemptControl],
    now: &[ExemptControl],
) {
    let ns = namespace.name_any();
    let began: Vec<String> = now
        .iter()
        .filter(|e| !before.iter().any(|b| b.control == e.control))
        .map(ExemptControl::to_string)
        .collect();
    let second = k8s_openapi::jiff::Timestamp::now().as_second();
    let (expired, removed): (Vec<&ExemptControl>, Vec<&ExemptControl>) = before
        .iter()
        .filter(|b| !now.iter().any(|e| e.control == b.control))
        .partition(|b| b.expires_at.is_some_and(|end| end <= second));
    let mut events = Vec::new();
    if !began.is_empty() {
        events.push((
            EventType::Warning,
            "Exempt",
            format!("{ns}: not enforced here: {}", began.join("; ")),
        ));
    }
    for (ended, reason, why) in [
        (expired, "ExemptionExpired", "exemption expired"),
        (removed, "ExemptionEnded", "exemption removed"),
    ] {
        if !ended.is_empty() {
            let controls: Vec<&str> = ended.iter().map(|e| e.control.as_str()).collect();
            events.push((
                EventType::Normal,
                reason,
                format!("{ns}: {why}, enforced again: {}", controls.join(", ")),
            ));
        }
    }
    for (type_, reason, note) in events {
        info!(reason, "{note}");
        let event = Event {
            type_,
            reason: reason.to_string(),
            note: Some(cut(note)),
            action: "Exempt".to_string(),
            secondary: None,
        };
        publish(ctx, &event, namespace, baseline).await;
    }
}

/// A PolicyReport someone else edited, deleted or holds our name with: a Warning on the
/// namespace and on each selecting baseline (whose Events, unlike the namespace's, its tenants
/// cannot delete).
pub async fn report_report_finding(
    ctx: &Context,
    namespace: &HeldNamespace,
    baselines: impl Iterator<Item = &std::sync::Arc<SecurityBaseline>>,
    finding: &ReportFinding,
) {
    let note = finding.note(&namespace.name_any());
    warn!(reason = finding.reason(), "{note}");
    let event = Event {
        type_: EventType::Warning,
        reason: finding.reason().to_string(),
        note: Some(cut(note)),
        action: "Report".to_string(),
        secondary: None,
    };
    let mut published = false;
    for baseline in baselines {
        publish(ctx, &event, namespace, Some(baseline)).await;
        published = true;
    }
    if !published {
        publish(ctx, &event, namespace, None).await;
    }
}

/// A failed reconcile of `namespace`, with the failed operation as its reason.
pub async fn report_failure(ctx: &Context, namespace: &HeldNamespace, error: &Error) {
    let event = Event {
        type_: EventType::Warning,
        reason: error.event_reason().to_string(),
        note: Some(cut(error.to_string())),
        action: "Reconcile".to_string(),
        secondary: None,
    };
    publish(ctx, &event, namespace, None).await;
}
