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

#[cfg(test)]
mod tests {
    #[test]
    fn committed_crd_matches_the_types() {
        let committed = include_str!("../../crds/securitybaseline.yaml");
        assert!(
            committed == super::crd_yaml(),
            "crds/securitybaseline.yaml is stale: run `cargo run -- crd > crds/securitybaseline.yaml`"
        );
    }
}
