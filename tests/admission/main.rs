//! The admission layer on the real API server, tried as the attackers of a namespace default
//! would: a user who creates a namespace and sends a privileged pod right behind it, a tenant bound
//! to the built-in `admin` role in its namespace, a user who can label namespaces, an Audit
//! baseline beside an Enforce one. Every assertion is about what the API server refuses or admits.
//!
//! One test binary (`cargo test --test admission`), a module per attacker or story: `pod_security`,
//! `tenant`, `ownership`, `audit` and `policies`. The helpers they share are here.

mod audit;
mod ownership;
mod pod_security;
mod policies;
mod tenant;

use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicy;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{ListParams, ObjectMeta};
use kube::{Api, Client};
use serde_json::json;
use zerotrust_testkit::*;

const WAIT: Duration = Duration::from_secs(30);
const ENFORCE_LABEL: &str = "pod-security.kubernetes.io/enforce";

/// Waits until the baseline's admission policies are in place and it has reconciled `count`
/// namespaces compliant.
async fn wait_in_force(client: &Client, name: &str, count: i32) {
    eventually(
        WAIT,
        "the baseline and its admission policies in force",
        || async {
            let s = baseline_status(client, name).await;
            let installed = s
                .conditions
                .iter()
                .any(|c| c.type_ == "AdmissionPolicies" && c.status == "True");
            let ready = s
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            (installed && ready && s.compliant_namespaces == count).then_some(())
        },
    )
    .await;
    // The API server picks policies up from its own informer: wait until it evaluates them.
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
    eventually(WAIT, "the policies type-checked", || async {
        let list = policies
            .list(&ListParams::default().labels(&format!("zerotrust.dev/baseline={name}")))
            .await
            .ok()?;
        list.items
            .iter()
            .all(|p| p.status.as_ref().and_then(|s| s.observed_generation) == p.metadata.generation)
            .then_some(())
    })
    .await;
}

fn pod(name: &str, privileged: bool) -> Pod {
    let security = if privileged {
        json!({"privileged": true})
    } else {
        json!({"runAsNonRoot": true, "allowPrivilegeEscalation": false,
               "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}})
    };
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox", "securityContext": security}]},
    }))
    .unwrap()
}

fn refused(result: &Result<impl std::fmt::Debug, kube::Error>, says: &str) -> bool {
    matches!(result, Err(kube::Error::Api(e)) if e.code == 403 && e.message.contains(says))
}

/// Refused by a baseline's tamper protection (`owned`, its message) or by the ownership
/// protection: both refuse a delete of our object or a change to our labels, and the API server
/// reports the first it evaluates.
fn refused_as_ours(result: &Result<impl std::fmt::Debug, kube::Error>, owned: &str) -> bool {
    refused(result, owned) || refused(result, zerotrust_operator::engine::OWNERSHIP_MESSAGE)
}

fn labelled_namespace(name: &str, tag: &str) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some([("zt-test".to_string(), tag.to_string())].into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}
