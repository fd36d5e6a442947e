//! Reconciling while this process leads: the watches feed a per-namespace work queue (kube's
//! Controller) and the status writer, until a stop drains them.

use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use kube::Client;
use kube::core::ObjectMeta;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use tracing::{debug, info, warn};

use super::admission;
use super::context::{Context, error_policy};
use super::discovery::admission_settings;
use super::error::Error;
use super::http::Health;
use super::metrics::Metrics;
use super::reconcile;
use super::reports::Reports;
use super::settings::Settings;
use super::shutdown::drain_deadline;
use super::status::write_statuses;
use super::watches::{drain, namespace_of, watch_reports};

/// Reconciles until `stop` completes, then drains in-flight reconciles.
pub async fn operate(
    client: Client,
    settings: &Settings,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    stop: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), Error> {
    let stop = stop.shared();
    let admission =
        admission_settings(&client, &settings.admission, &settings.operator_namespace).await?;
    let reports = match settings.policy_reports {
        Some(api) => Some(Reports::start(&client, api).await?),
        None => None,
    };
    let (ctx, inputs) = Context::connect(client, admission, metrics, &health, reports);
    // The admission watches feed the caches and wake the keeper; nothing else reads them.
    let admission_watches: Vec<_> = inputs.admission.into_iter().map(drain).collect();
    let mut controller = Controller::for_stream(inputs.namespaces, ctx.namespaces.clone())
        .with_config(ControllerConfig::default().concurrency(settings.concurrency));
    for (kind, touched) in inputs.generated {
        controller = controller.watches_stream_with(touched, namespace_of, kind.api_resource());
    }
    if let Some(resource) = ctx.reports.as_ref().and_then(Reports::resource) {
        let reports = ctx.clone();
        let touched = move |meta: &ObjectMeta, deleted: bool| {
            reports
                .reports
                .as_ref()
                .is_some_and(|r| r.touched(meta, deleted))
        };
        let watch = watch_reports(&ctx.client, resource, touched);
        controller = controller.watches_stream_with(watch, namespace_of, resource.clone());
    }
    let controller = controller
        .watches_stream(inputs.service_accounts, namespace_of)
        .watches_stream(inputs.network_policies, namespace_of)
        .reconcile_all_on(inputs.baseline_changes)
        .graceful_shutdown_on(stop.clone())
        .run(reconcile::run, error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(e) = result {
                debug!(error = %e, "controller event");
            }
        });
    let status_writer = write_statuses(ctx.clone(), settings.status_interval, health);
    let admission_keeper = admission::keep(ctx.clone());
    let drain_deadline = drain_deadline(stop, ctx.namespaces.clone());
    info!(
        operator_namespace = settings.operator_namespace,
        "zerotrust-operator running"
    );
    tokio::select! {
        _ = controller => info!("controller stopped"),
        _ = status_writer => warn!("status writer stopped"),
        _ = admission_keeper => warn!("admission keeper stopped"),
        _ = drain_deadline => warn!("stopping without waiting longer for in-flight reconciles"),
    }
    for watch in admission_watches {
        watch.abort();
    }
    Ok(())
}
