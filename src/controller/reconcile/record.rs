//! Step 5 of a pass, record: what the pass means for each selecting baseline (outcomes for the
//! status, metrics, Events, onboarding latency) and the namespace's PolicyReport.

use std::sync::Arc;

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use super::Pass;
use crate::api::{DriftRecord, MAX_STATUS_DRIFT};
use crate::controller::context::Context;
use crate::controller::events;
use crate::controller::held_namespace::HeldNamespace;
use crate::controller::status::Outcome;
use crate::controller::verdict::verdict;
use crate::engine::{
    Drift, DriftReason, ExemptControl, Kind, LiveState, ReportWarning, applied_by_us, repairable,
    results, unclaimed_message, unclaimed_names,
};

/// Step 5: what the pass means for each selecting baseline: outcomes for the status, repairs and
/// drift as metrics and Events, onboarding latency.
pub(super) async fn record(ctx: &Context, pass: &Pass) {
    let selected: Vec<&str> = pass
        .desired
        .baselines
        .iter()
        .map(|b| b.name.as_str())
        .collect();
    ctx.outcomes.forget_namespace(&pass.name, &selected);
    for baseline in &pass.desired.baselines {
        let source = pass
            .baselines
            .iter()
            .find(|b| b.name_any() == baseline.name)
            .map(Arc::as_ref);
        let generation = baseline.generation;
        let mine: Vec<&Drift> = pass
            .drift
            .iter()
            .filter(|d| d.baseline == baseline.name)
            .collect();
        let previous = ctx.outcomes.previous(&baseline.name, &pass.name);
        let exempt: Vec<ExemptControl> = pass
            .desired
            .exempt
            .iter()
            .filter(|e| e.baseline == baseline.name)
            .cloned()
            .collect();
        let was_exempt = previous.as_ref().map_or(&[][..], |p| &p.exempt[..]);
        if was_exempt != exempt {
            events::report_exemptions(ctx, &pass.namespace, source, was_exempt, &exempt).await;
        }
        let mut v = verdict(
            &pass.name,
            generation,
            &mine,
            |d| repairable(&pass.desired, d),
            |d| first_touch(&pass.live, d),
            previous.as_ref(),
        );
        if !v.repaired.is_empty() {
            for d in &v.repaired {
                ctx.metrics.count_drift(d.kind, true);
            }
            events::report_repairs(ctx, &pass.namespace, source, &v.repaired).await;
        }
        if !v.reported.is_empty() {
            for d in &v.reported {
                ctx.metrics.count_drift(d.kind, false);
            }
            events::report_findings(ctx, &pass.namespace, source, baseline.mode, &v.reported).await;
        }
        if v.first_compliant {
            observe_onboarding(ctx, &pass.namespace);
        }
        v.outcome.exempt = exempt;
        if let Some(squatted) = ctx.reports.as_ref().and_then(|r| r.squatted(&pass.name)) {
            add_conflict(&mut v.outcome, squatted);
        }
        let repairs = v.repaired.len() as i64;
        ctx.outcomes
            .record(&baseline.name, &pass.name, v.outcome, repairs);
    }
}

/// Step 5b: the namespace's PolicyReport holds what the pass left: one result per baseline and
/// control, the same `check` computes.
pub(super) async fn report(ctx: &Context, pass: &Pass) {
    let Some(reports) = &ctx.reports else {
        return;
    };
    let finding = reports
        .record(
            &ctx.client,
            &pass.name,
            &results(&pass.desired, pass.unrepaired()),
            &unclaimed_warnings(ctx, pass),
        )
        .await;
    if let Some(finding) = finding {
        ctx.metrics.count_report_finding(finding.reason());
        let selecting = pass.baselines.iter().filter(|b| {
            pass.desired
                .baselines
                .iter()
                .any(|d| d.name == b.name_any())
        });
        events::report_report_finding(ctx, &pass.namespace, selecting, &finding).await;
    }
    reports.prune(ctx.namespaces.len(), |name| {
        ctx.namespaces.get(&ObjectRef::new(name)).is_some()
    });
}

/// For each selecting baseline that trusts namespaces by name that do not exist, a warning for the
/// report (bounded: [`crate::engine::MAX_LISTED_UNCLAIMED`] names and a count, under a report
/// message's 1,024 bytes). A namespace created later clears it at this namespace's next pass.
fn unclaimed_warnings(ctx: &Context, pass: &Pass) -> Vec<ReportWarning> {
    let exists = |name: &str| ctx.namespaces.get(&ObjectRef::new(name)).is_some();
    pass.desired
        .baselines
        .iter()
        .filter_map(|selected| {
            let stored = pass
                .baselines
                .iter()
                .find(|b| b.name_any() == selected.name)?;
            let valid = ctx.last_valid.enforced(stored).valid?;
            let message = unclaimed_message(&unclaimed_names(&valid.baseline.spec, exists))?;
            Some(ReportWarning {
                baseline: selected.name.clone(),
                rule: "UnclaimedNamespaces",
                message,
            })
        })
        .collect()
}

/// `record` as one more conflict of `outcome`, among its records by severity (capped).
fn add_conflict(outcome: &mut Outcome, record: DriftRecord) {
    outcome.drift_count += 1;
    outcome.conflicts += 1;
    outcome
        .drift
        .push((DriftReason::Conflict.severity(), record));
    outcome
        .drift
        .sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    outcome.drift.truncate(MAX_STATUS_DRIFT);
}

/// Setting the default ServiceAccount the first time is onboarding, not a repair.
fn first_touch(live: &LiveState, drift: &Drift) -> bool {
    drift.kind == Kind::ServiceAccount
        && live
            .default_service_account
            .as_ref()
            .is_some_and(|sa| !applied_by_us(&sa.metadata))
}

/// Onboarding latency: creation to first compliance, for namespaces born while we lead.
fn observe_onboarding(ctx: &Context, namespace: &HeldNamespace) {
    if let Some(created) = namespace.metadata.creation_timestamp.as_ref()
        && created.0.as_second() >= ctx.started_second
    {
        let latency = k8s_openapi::jiff::Timestamp::now().duration_since(created.0);
        ctx.metrics
            .onboarding_latency
            .observe(latency.as_secs_f64().max(0.0));
    }
}
