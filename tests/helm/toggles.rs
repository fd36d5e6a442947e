//! Every toggle of the chart, and every value at once: each renders what it says, and the API
//! server takes it in a server-side dry run.

use serde_json::Value;
use zerotrust_testkit::cluster::repo;
use zerotrust_testkit::helm::{RELEASE_NAMESPACE, helm_template, monitoring_crds, objects};
use zerotrust_testkit::shipped_rbac::kubectl_ok;
use zerotrust_testkit::*;

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
}

/// Installs the ServiceMonitor and PrometheusRule CRDs (as prometheus-operator ships them) and
/// the release namespace, as a cluster with the Prometheus Operator would have them.
fn monitoring_cluster() {
    for crd in ["servicemonitors", "prometheusrules"] {
        let path = monitoring_crds().join(format!("monitoring.coreos.com_{crd}.yaml"));
        kubectl_ok(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            path.to_str().unwrap(),
        ]);
        kubectl_ok(&[
            "wait",
            "--for",
            "condition=Established",
            "--timeout=60s",
            &format!("crd/{crd}.monitoring.coreos.com"),
        ]);
    }
    kubectl_ok(&["apply", "-f", "config/rbac/namespace.yaml"]);
}

fn container(objects: &[Value]) -> &Value {
    &find(objects, "Deployment", "zerotrust-operator").expect("the Deployment")["spec"]["template"]
        ["spec"]["containers"][0]
}

fn args(objects: &[Value]) -> Vec<&str> {
    container(objects)["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect()
}

fn pod(objects: &[Value]) -> &Value {
    &find(objects, "Deployment", "zerotrust-operator").expect("the Deployment")["spec"]["template"]
}

type Check = fn(&[Value]);

/// Every toggle, and every value at once: each renders what it says, and the API server takes it.
#[test]
fn every_toggle_renders_and_passes_a_server_side_dry_run() {
    monitoring_cluster();
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("dashboards/zerotrust-operator.json")).unwrap(),
    )
    .unwrap();
    let variants: Vec<(&[&str], Check)> = vec![
        (&[], |o| {
            assert!(args(o).contains(&"--leader-elect"));
            assert!(args(o).contains(&"--log-format=json"));
            assert!(find(o, "NetworkPolicy", "zerotrust-operator").is_some());
            assert!(find(o, "PodDisruptionBudget", "zerotrust-operator").is_some());
            assert!(find(o, "Role", "zerotrust-operator-leader-election").is_some());
            for kind in ["ServiceMonitor", "PrometheusRule", "ConfigMap"] {
                assert!(!o.iter().any(|x| x["kind"] == kind), "{kind} is opt-in");
            }
            assert!(find(o, "ClusterRole", "zerotrust-operator-rbac-delegation").is_none());
        }),
        (&["crds.enabled=false"], |o| {
            assert!(!o.iter().any(|x| x["kind"] == "CustomResourceDefinition"));
        }),
        (&["crds.keep=false"], |o| {
            let crd = find(
                o,
                "CustomResourceDefinition",
                "securitybaselines.zerotrust.dev",
            );
            assert!(crd.unwrap()["metadata"]["annotations"].is_null());
        }),
        (&["leaderElection.enabled=false", "replicaCount=1"], |o| {
            assert!(!args(o).contains(&"--leader-elect"));
            assert!(find(o, "Role", "zerotrust-operator-leader-election").is_none());
            assert!(find(o, "RoleBinding", "zerotrust-operator-leader-election").is_none());
            let deployment = find(o, "Deployment", "zerotrust-operator").unwrap();
            assert_eq!(deployment["spec"]["replicas"], 1);
        }),
        (&["logFormat=text"], |o| {
            assert!(args(o).contains(&"--log-format=text"));
        }),
        (&["networkPolicy.enabled=false"], |o| {
            assert!(find(o, "NetworkPolicy", "zerotrust-operator").is_none());
        }),
        (&["podDisruptionBudget.enabled=false"], |o| {
            assert!(find(o, "PodDisruptionBudget", "zerotrust-operator").is_none());
        }),
        (&["rbac.delegation.enabled=true"], |o| {
            assert!(find(o, "ClusterRole", "zerotrust-operator-rbac-delegation").is_some());
            assert!(
                find(
                    o,
                    "ClusterRoleBinding",
                    "zerotrust-operator-rbac-delegation"
                )
                .is_some()
            );
        }),
        (
            &[
                "serviceMonitor.enabled=true",
                "serviceMonitor.interval=1m",
                "serviceMonitor.labels.release=prometheus",
            ],
            |o| {
                let monitor = find(o, "ServiceMonitor", "zerotrust-operator").unwrap();
                assert_eq!(monitor["spec"]["endpoints"][0]["interval"], "1m");
                assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
            },
        ),
        (
            &[
                "prometheusRule.enabled=true",
                "prometheusRule.labels.release=prometheus",
            ],
            |o| {
                let rule = find(o, "PrometheusRule", "zerotrust-operator").unwrap();
                assert_eq!(rule["metadata"]["labels"]["release"], "prometheus");
                let summary = &rule["spec"]["groups"][0]["rules"][0]["annotations"]["summary"];
                assert!(
                    summary.as_str().unwrap().contains("{{ $labels.baseline }}"),
                    "alert templates reach Prometheus unexpanded: {summary}"
                );
            },
        ),
        (&["dashboards.enabled=true"], |o| {
            let map = find(o, "ConfigMap", "zerotrust-operator-dashboard").unwrap();
            assert_eq!(map["metadata"]["labels"]["grafana_dashboard"], "1");
            assert_eq!(map["metadata"]["namespace"], RELEASE_NAMESPACE);
        }),
        (
            &[
                "image.repository=registry.example/zerotrust-operator",
                "image.tag=v9",
                "image.pullPolicy=Always",
                "imagePullSecrets[0].name=regcred",
                "replicaCount=3",
                "resources.limits.memory=512Mi",
                "podSecurityContext.fsGroup=65532",
                "securityContext.privileged=false",
                "podLabels.team=platform",
                "podAnnotations.note=hello",
                "nodeSelector.kubernetes\\.io/os=linux",
                "tolerations[0].key=dedicated",
                "tolerations[0].operator=Exists",
                "affinity=null",
                "podDisruptionBudget.minAvailable=50%",
            ],
            |o| {
                let c = container(o);
                assert_eq!(c["image"], "registry.example/zerotrust-operator:v9");
                assert_eq!(c["imagePullPolicy"], "Always");
                assert_eq!(c["resources"]["limits"]["memory"], "512Mi");
                assert_eq!(
                    c["resources"]["requests"]["cpu"], "50m",
                    "merged with defaults"
                );
                assert_eq!(c["securityContext"]["privileged"], false);
                let p = pod(o);
                assert_eq!(p["metadata"]["labels"]["team"], "platform");
                assert_eq!(
                    p["metadata"]["labels"]["app.kubernetes.io/name"],
                    "zerotrust-operator"
                );
                assert_eq!(p["metadata"]["annotations"]["note"], "hello");
                let spec = &p["spec"];
                assert_eq!(spec["imagePullSecrets"][0]["name"], "regcred");
                assert_eq!(spec["securityContext"]["fsGroup"], 65532);
                assert_eq!(spec["nodeSelector"]["kubernetes.io/os"], "linux");
                assert_eq!(spec["tolerations"][0]["key"], "dedicated");
                assert!(spec["affinity"].is_null(), "affinity=null drops it");
                let deployment = find(o, "Deployment", "zerotrust-operator").unwrap();
                assert_eq!(deployment["spec"]["replicas"], 3);
                let pdb = find(o, "PodDisruptionBudget", "zerotrust-operator").unwrap();
                assert_eq!(pdb["spec"]["minAvailable"], "50%");
            },
        ),
    ];
    for (sets, check) in variants {
        let yaml = helm_template(sets).unwrap_or_else(|e| panic!("{sets:?}: {e}"));
        let rendered = objects(&yaml);
        check(&rendered);
        if let Some(map) = find(&rendered, "ConfigMap", "zerotrust-operator-dashboard") {
            let shipped: Value =
                serde_json::from_str(map["data"]["zerotrust-operator.json"].as_str().unwrap())
                    .unwrap();
            assert_eq!(
                shipped, dashboard,
                "the chart ships dashboards/zerotrust-operator.json"
            );
        }
        // The test cluster may hold these objects already (tests/rbac.rs, the install below):
        // forcing conflicts makes the dry run check the objects, not who wrote them before.
        let out = control_plane().kubectl(
            &[
                "apply",
                "--server-side",
                "--dry-run=server",
                "--force-conflicts",
                "--field-manager=zerotrust-helm-test",
                "-f",
                "-",
            ],
            Some(&yaml),
        );
        assert!(
            out.status.success(),
            "{sets:?}: the API server refuses the chart: {}",
            stderr(&out)
        );
        let applied = stdout(&out);
        assert_eq!(
            applied.matches("(server dry run)").count(),
            rendered.len(),
            "{sets:?}: every object dry-run applied:\n{applied}"
        );
    }
}
