//! Installs the SecurityBaseline CRD through the API and waits until it is served: shared by the
//! fault tests and the scale benchmark (included there by path).

use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, CustomResourceExt};
use zerotrust_operator::api::SecurityBaseline;

/// Applies the CRD (with `permissive_spec`, a spec schema that takes anything, as after a hand
/// edit) and waits until the API server reports it Established.
pub async fn install_crd(client: &Client, permissive_spec: bool) {
    let mut crd = serde_json::to_value(SecurityBaseline::crd()).expect("the CRD serializes");
    if permissive_spec {
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"] =
            serde_json::json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
    }
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = "securitybaselines.zerotrust.dev";
    api.patch(
        name,
        &PatchParams::apply("zerotrust-test").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("the CRD applies");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let crd = api.get(name).await.expect("the CRD reads");
        let established = crd
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        if established {
            return;
        }
        assert!(Instant::now() < deadline, "the CRD was not established");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
