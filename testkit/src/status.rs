//! Reading what the operator reports: a baseline's status (waited for with a deadline), its
//! conditions, and the Events in a namespace.

use std::time::Duration;

use k8s_openapi::api::core::v1::Event;
use kube::api::ListParams;
use kube::{Api, Client};
use zerotrust_operator::api::{SecurityBaseline, SecurityBaselineStatus};

use crate::poll::eventually;

/// The status of baseline `name` now; empty while it has none (or does not exist).
pub async fn baseline_status(client: &Client, name: &str) -> SecurityBaselineStatus {
    let api: Api<SecurityBaseline> = Api::all(client.clone());
    api.get(name)
        .await
        .ok()
        .and_then(|b| b.status)
        .unwrap_or_default()
}

/// Polls the status of `name` until `ok` holds (panicking with `what` after `timeout`).
pub async fn wait_status(
    client: &Client,
    name: &str,
    timeout: Duration,
    what: &str,
    ok: impl Fn(&SecurityBaselineStatus) -> bool,
) -> SecurityBaselineStatus {
    eventually(timeout, what, || async {
        let s = baseline_status(client, name).await;
        ok(&s).then_some(s)
    })
    .await
}

/// The (status, reason, message) of condition `type_`.
pub fn condition<'a>(
    s: &'a SecurityBaselineStatus,
    type_: &str,
) -> Option<(&'a str, &'a str, &'a str)> {
    s.conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.as_str(), c.reason.as_str(), c.message.as_str()))
}

/// The messages of the Events in `namespace` with `reason`.
pub async fn events_for(client: &Client, namespace: &str, reason: &str) -> Vec<String> {
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    api.list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .map(|e| e.message.unwrap_or_default())
        .collect()
}
