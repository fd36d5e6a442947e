//! Pods the tests send: one that meets Pod Security's `restricted` level, so that only the
//! onboarding gate (or another policy under test) can refuse it.

use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

/// A pod named `name` that meets the `restricted` level.
pub fn restricted_pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox", "securityContext": {
            "runAsNonRoot": true, "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}}]},
    }))
    .expect("a Pod")
}
