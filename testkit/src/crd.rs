//! Installs the SecurityBaseline CRD (as committed in `crds/`) through the API and waits until it
//! is served.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};

use crate::cluster::repo;
use crate::poll::eventually;

/// The CRD as committed in `crds/securitybaseline.yaml`.
pub fn committed_crd() -> serde_json::Value {
    let path = repo().join("crds/securitybaseline.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Applies the CRD (with `permissive_spec`, a spec schema that takes anything, as after a hand
/// edit) and waits until the API server reports it Established.
pub async fn install_crd(client: &Client, permissive_spec: bool) {
    let mut crd = committed_crd();
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
    eventually(Duration::from_secs(60), "the CRD established", || async {
        let crd = api.get(name).await.ok()?;
        crd.status?
            .conditions?
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
            .then_some(())
    })
    .await;
}
