//! Test namespaces: created with labels, deleted when their guard drops, so a failed test leaves
//! nothing behind.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

use crate::cluster::{control_plane, run_bounded};

/// A Namespace object named `name` with `labels`.
pub fn labelled(name: &str, labels: &BTreeMap<String, String>) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(labels.clone()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

/// Creates `namespaces`, `concurrency` at a time.
pub async fn create_all(client: &Client, namespaces: &[Namespace], concurrency: usize) {
    let api: Api<Namespace> = Api::all(client.clone());
    futures::stream::iter(namespaces)
        .map(|ns| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), ns).await }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await
        .expect("namespaces are created");
}

/// Creates a namespace with labels in the test control plane; it is deleted when the guard drops.
pub async fn namespace(client: &Client, name: &str, labels: &[(&str, &str)]) -> NamespaceGuard {
    let labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    create_all(client, &[labelled(name, &labels)], 1).await;
    NamespaceGuard {
        name: name.to_string(),
    }
}

/// Deletes its namespace on drop (without waiting).
pub struct NamespaceGuard {
    pub name: String,
}

impl Drop for NamespaceGuard {
    fn drop(&mut self) {
        let plane = control_plane();
        let mut kubectl = Command::new(&plane.kubectl);
        kubectl
            .args([
                "delete",
                "namespace",
                &self.name,
                "--wait=false",
                "--ignore-not-found",
            ])
            .env("KUBECONFIG", &plane.kubeconfig);
        run_bounded(&mut kubectl, None, Duration::from_secs(60));
    }
}

/// Creates `count` namespaces `<prefix>-<i>` labelled `label=value`, 16 at a time. They are
/// deleted together, by that label, when the guard drops.
pub async fn namespaces(
    client: &Client,
    prefix: &str,
    count: usize,
    (label, value): (&str, &str),
) -> LabelledNamespaces {
    let labels = BTreeMap::from([(label.to_string(), value.to_string())]);
    let guard = LabelledNamespaces {
        selector: format!("{label}={value}"),
        names: (0..count).map(|i| format!("{prefix}-{i}")).collect(),
    };
    let objects: Vec<Namespace> = guard.names.iter().map(|n| labelled(n, &labels)).collect();
    create_all(client, &objects, 16).await;
    guard
}

/// Namespaces made by [`namespaces`]; deleted by their label on drop.
pub struct LabelledNamespaces {
    pub selector: String,
    pub names: Vec<String>,
}

impl Drop for LabelledNamespaces {
    fn drop(&mut self) {
        // Waits (up to 5 minutes) until they are gone: deleting hundreds of namespaces keeps the
        // controller-manager and API server busy for minutes, which must not spill into the
        // tests that run next.
        control_plane().kubectl(
            &[
                "delete",
                "namespace",
                "-l",
                &self.selector,
                "--wait=true",
                "--timeout=300s",
            ],
            None,
        );
    }
}
