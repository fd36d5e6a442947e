//! Helm for tests: the helm binary `hack/helm.sh build` cached (never built from here), the
//! Prometheus Operator CRDs it fetched, `helm template` of the chart, and the objects of rendered
//! multi-document YAML.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::cluster::{COMMAND_DEADLINE, control_plane, repo, run_bounded, stderr, stdout};

/// The chart, relative to the repository root.
pub const CHART: &str = "charts/zerotrust-operator";
/// The release name and namespace the README installs with (config/default's names).
pub const RELEASE: &str = "zerotrust-operator";
pub const RELEASE_NAMESPACE: &str = "zerotrust-system";

/// Runs `hack/helm.sh COMMAND` with ZT_NO_BUILD=1: the path it prints, or a failure that says how
/// to build what is missing instead of starting a build inside `cargo test`.
fn cached(command: &str) -> PathBuf {
    let mut script = Command::new(repo().join("hack/helm.sh"));
    script.arg(command).env("ZT_NO_BUILD", "1");
    let out = run_bounded(&mut script, None, COMMAND_DEADLINE);
    assert!(
        out.status.success(),
        "{}\nBuild it once with `hack/helm.sh build` (needs Go; about 2 minutes on 2 cores), or run \
         the whole suite with `hack/test.sh`, which builds it.",
        stderr(&out)
    );
    PathBuf::from(stdout(&out).trim())
}

/// The helm binary.
pub fn helm_binary() -> &'static Path {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| cached("path"))
}

/// The directory holding the ServiceMonitor and PrometheusRule CRDs.
pub fn monitoring_crds() -> PathBuf {
    cached("crds")
}

/// Runs helm with `args` from the repository root, against the test control plane, with its
/// configuration and caches in a directory of this test process's own.
pub fn helm(args: &[&str]) -> Output {
    let home = std::env::temp_dir().join(format!("zerotrust-helm-{}", std::process::id()));
    let mut helm = Command::new(helm_binary());
    helm.args(args)
        .env("KUBECONFIG", &control_plane().kubeconfig)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .current_dir(repo());
    run_bounded(&mut helm, None, COMMAND_DEADLINE)
}

/// `helm template` of the chart as the README installs it, with `--set` for each of `sets`: the
/// rendered YAML, or helm's error message.
pub fn helm_template(sets: &[&str]) -> Result<String, String> {
    let mut args = vec!["template", RELEASE, CHART, "--namespace", RELEASE_NAMESPACE];
    for set in sets {
        args.extend(["--set", set]);
    }
    let out = helm(&args);
    if out.status.success() {
        Ok(stdout(&out))
    } else {
        Err(stderr(&out))
    }
}

/// The objects in multi-document YAML (empty documents skipped).
pub fn objects(yaml: &str) -> Vec<serde_json::Value> {
    serde_saphyr::from_multiple::<serde_json::Value>(yaml)
        .unwrap_or_else(|e| panic!("not YAML: {e}\n{yaml}"))
        .into_iter()
        .filter(|o| !o.is_null())
        .collect()
}
