//! `zerotrust-operator crd`: the CustomResourceDefinition, generated from the Rust types.

use std::process::ExitCode;

use kube::CustomResourceExt;

use crate::api::SecurityBaseline;

/// The CRD as YAML, exactly as committed in `crds/`.
pub fn crd_yaml() -> String {
    let crd = serde_json::to_value(SecurityBaseline::crd()).expect("the CRD serializes");
    serde_saphyr::to_string(&crd).expect("the CRD serializes to YAML")
}

pub fn run() -> ExitCode {
    print!("{}", crd_yaml());
    ExitCode::SUCCESS
}
