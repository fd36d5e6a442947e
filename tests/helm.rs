//! The Helm chart (charts/zerotrust-operator) and the monitoring shipped with it, on the real
//! control plane: the chart is what hack/chart.py generates from config/ and renders config/ back
//! with its default values; `helm lint` passes and bad values fail with a clear message; every
//! toggle renders what it says and passes a server-side dry run; a Helm install of the chart's RBAC
//! runs the operator end to end; the dashboard's and alerts' PromQL parses and names only metrics
//! the operator exports.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use zerotrust_testkit::cluster::repo;
use zerotrust_testkit::helm::{
    CHART, RELEASE, RELEASE_NAMESPACE, helm, helm_template, monitoring_crds, objects,
};
use zerotrust_testkit::shipped_rbac::{kubectl_ok, the_operator_runs_as_its_service_account};
use zerotrust_testkit::*;

/// Operator processes in this binary run one at a time: the RBAC scenario needs its impersonated
/// operator to be the only one writing (another, with the admin's rights, would create the Roles
/// the ServiceAccount may not).
static ONE_OPERATOR: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The labels the chart's helper adds to every object beside config/'s own, with their values;
/// the chart's appVersion is the operator's version.
fn helm_labels() -> [(&'static str, String); 4] {
    let chart: Value =
        objects(&std::fs::read_to_string(repo().join(CHART).join("Chart.yaml")).unwrap()).remove(0);
    assert_eq!(
        chart["appVersion"],
        env!("CARGO_PKG_VERSION"),
        "Chart.yaml appVersion"
    );
    [
        (
            "helm.sh/chart",
            format!("zerotrust-operator-{}", chart["version"].as_str().unwrap()),
        ),
        ("app.kubernetes.io/instance", RELEASE.to_string()),
        (
            "app.kubernetes.io/version",
            env!("CARGO_PKG_VERSION").to_string(),
        ),
        ("app.kubernetes.io/managed-by", "Helm".to_string()),
    ]
}

/// `kind namespace/name` of an object.
fn key(object: &Value) -> String {
    let meta = &object["metadata"];
    format!(
        "{} {}/{}",
        object["kind"].as_str().unwrap_or("?"),
        meta["namespace"].as_str().unwrap_or(""),
        meta["name"].as_str().unwrap_or("?")
    )
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
}

/// Removes `metadata.<field>` when it is an empty map (or null).
fn drop_if_empty(object: &mut Value, field: &str) {
    let meta = object["metadata"].as_object_mut().expect("metadata");
    if meta
        .get(field)
        .is_some_and(|m| m.is_null() || m.as_object().is_some_and(|m| m.is_empty()))
    {
        meta.remove(field);
    }
}

/// The chart's objects with what Helm adds taken off (after checking it is there): the helper's
/// labels everywhere, the CRD's keep annotation.
fn normalised_chart(yaml: &str) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for mut object in objects(yaml) {
        let key = key(&object);
        let labels = object["metadata"]["labels"]
            .as_object_mut()
            .unwrap_or_else(|| panic!("{key} has no labels"));
        for (label, value) in helm_labels() {
            assert_eq!(
                labels.remove(label),
                Some(Value::String(value)),
                "{key}: label {label}"
            );
        }
        drop_if_empty(&mut object, "labels");
        if object["kind"] == "CustomResourceDefinition" {
            let annotations = object["metadata"]["annotations"].as_object_mut();
            let keep = annotations.and_then(|a| a.remove("helm.sh/resource-policy"));
            assert_eq!(keep, Some(json!("keep")), "{key}: helm.sh/resource-policy");
            drop_if_empty(&mut object, "annotations");
        }
        assert!(out.insert(key.clone(), object).is_none(), "{key} twice");
    }
    out
}

/// `kubectl kustomize` of each of `dirs`, by key; the Namespace of config/rbac is set aside (the
/// chart installs into the release namespace, which Helm needs to exist before it installs).
fn kustomized(dirs: &[&str]) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for dir in dirs {
        for object in objects(&kubectl_ok(&["kustomize", dir])) {
            if object["kind"] == "Namespace" {
                assert_eq!(
                    object["metadata"]["name"], RELEASE_NAMESPACE,
                    "the only Namespace in config/ is the release namespace"
                );
                continue;
            }
            let key = key(&object);
            assert!(out.insert(key.clone(), object).is_none(), "{key} twice");
        }
    }
    out
}

fn assert_same_objects(chart: &BTreeMap<String, Value>, config: &BTreeMap<String, Value>) {
    let hint = "the chart is not config/: run `hack/chart.py generate` (README, Deploying it)";
    let chart_keys: BTreeSet<&String> = chart.keys().collect();
    let config_keys: BTreeSet<&String> = config.keys().collect();
    assert_eq!(chart_keys, config_keys, "{hint}");
    for (key, object) in config {
        assert!(
            &chart[key] == object,
            "{hint}: {key} differs\nchart:  {}\nconfig: {}",
            chart[key],
            object
        );
    }
}

#[test]
fn the_chart_renders_config_default_with_its_default_values() {
    let defaults = normalised_chart(&helm_template(&[]).unwrap());
    assert_same_objects(&defaults, &kustomized(&["config/default"]));
    assert!(defaults.len() >= 10, "{:?}", defaults.keys());

    let opt_ins = [
        "rbac.delegation.enabled=true",
        "serviceMonitor.enabled=true",
        "prometheusRule.enabled=true",
    ];
    let all = normalised_chart(&helm_template(&opt_ins).unwrap());
    assert_same_objects(
        &all,
        &kustomized(&[
            "config/default",
            "config/rbac-delegation",
            "config/prometheus",
        ]),
    );
}

#[test]
fn the_chart_is_what_hack_chart_py_generates() {
    let mut check = Command::new(repo().join("hack/chart.py"));
    check.arg("check").env("ZT_NO_BUILD", "1");
    let out = run_bounded(&mut check, None, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "{}\n(hand edits of generated files belong in config/ or hack/chart.py)",
        stderr(&out)
    );
}

#[test]
fn helm_lint_passes_and_bad_values_fail_with_a_clear_message() {
    let out = helm(&["lint", "--strict", CHART]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    for (sets, message) in [
        (
            &["replicaCount=two"][..],
            "at '/replicaCount': got string, want integer",
        ),
        (
            &["replicas=3"],
            "additional properties 'replicas' not allowed",
        ),
        (
            &["logFormat=xml"],
            "at '/logFormat': value must be one of 'json', 'text'",
        ),
        (&["image.pullPolicy=Sometimes"], "at '/image/pullPolicy'"),
        (
            &["serviceMonitor.interval=often"],
            "at '/serviceMonitor/interval'",
        ),
        (
            &["leaderElection.enabled=false"],
            "replicaCount is 2 but leaderElection.enabled is false",
        ),
    ] {
        let error = helm_template(sets).expect_err(&format!("{sets:?} must be refused"));
        assert!(error.contains(message), "{sets:?}: {error}");
    }
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

/// `helm upgrade --install` of the chart into the release namespace, with `sets`.
fn helm_install(sets: &[&str]) {
    let mut args = vec![
        "upgrade",
        "--install",
        RELEASE,
        CHART,
        "--namespace",
        RELEASE_NAMESPACE,
        "--reset-values",
        // The test control plane's CRD stays the test's; tests/rbac.rs may have installed the
        // same objects with kustomize: take them over as someone moving to Helm would.
        "--set",
        "crds.enabled=false",
        "--take-ownership",
        "--force-conflicts",
    ];
    for set in sets {
        args.extend(["--set", set]);
    }
    let out = helm(&args);
    assert!(
        out.status.success(),
        "helm {args:?}: {}{}",
        stdout(&out),
        stderr(&out)
    );
}

#[tokio::test]
async fn the_charts_rbac_suffices_and_refuses_what_it_must() {
    let _alone = ONE_OPERATOR.lock().await;
    kubectl_ok(&["apply", "-f", "config/rbac/namespace.yaml"]);
    helm_install(&[]);
    let status = stdout(&helm(&["status", RELEASE, "-n", RELEASE_NAMESPACE]));
    assert!(status.contains("STATUS: deployed"), "{status}");
    let account = kubectl_ok(&[
        "get",
        "serviceaccount",
        "zerotrust-operator",
        "-n",
        RELEASE_NAMESPACE,
        "-o",
        "jsonpath={.metadata.labels.app\\.kubernetes\\.io/managed-by}",
    ]);
    assert_eq!(account, "Helm", "the ServiceAccount is the chart's");
    the_operator_runs_as_its_service_account(|delegate| {
        helm_install(&[&format!("rbac.delegation.enabled={delegate}")]);
    })
    .await;
    let out = helm(&["uninstall", RELEASE, "-n", RELEASE_NAMESPACE]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Every metric name in a PromQL expression; an error if it does not parse.
fn metric_names(expr: &str) -> Result<BTreeSet<String>, String> {
    use promql_parser::parser::Expr;
    fn walk(expr: &Expr, names: &mut BTreeSet<String>) {
        match expr {
            Expr::Aggregate(a) => {
                walk(&a.expr, names);
                if let Some(p) = &a.param {
                    walk(p, names);
                }
            }
            Expr::Unary(u) => walk(&u.expr, names),
            Expr::Binary(b) => {
                walk(&b.lhs, names);
                walk(&b.rhs, names);
            }
            Expr::Paren(p) => walk(&p.expr, names),
            Expr::Subquery(s) => walk(&s.expr, names),
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
            Expr::VectorSelector(v) => {
                names.insert(v.name.clone().expect("selectors name their metric"));
            }
            Expr::MatrixSelector(m) => {
                names.insert(m.vs.name.clone().expect("selectors name their metric"));
            }
            Expr::Call(c) => c.args.args.iter().for_each(|a| walk(a, names)),
        }
    }
    let parsed = promql_parser::parser::parse(expr)?;
    let mut names = BTreeSet::new();
    walk(&parsed, &mut names);
    Ok(names)
}

/// A Grafana query with its variables set as Grafana would before sending it.
fn grafana_to_promql(expr: &str) -> String {
    let expr = expr
        .replace("$__rate_interval", "5m")
        .replace("$__range", "6h")
        .replace("$baseline", ".*");
    assert!(!expr.contains('$'), "an unknown Grafana variable in {expr}");
    expr
}

/// Every `expr` of every panel target, rows' panels included.
fn panel_exprs(panels: &Value, out: &mut Vec<String>) {
    for panel in panels.as_array().into_iter().flatten() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            out.push(
                target["expr"]
                    .as_str()
                    .expect("a target's expr")
                    .to_string(),
            );
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{panel}");
        }
        if panel["type"] != "row" {
            assert_eq!(panel["datasource"]["uid"], "${datasource}", "{panel}");
        }
        panel_exprs(&panel["panels"], out);
    }
}

/// The metric names a /metrics page exports: its samples and, for families without samples yet,
/// the names their `# TYPE` lines promise.
fn exported(page: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut families = BTreeMap::new();
    for line in page.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (family, kind) = (parts.next().unwrap(), parts.next().unwrap());
            let names: BTreeSet<String> = match kind {
                "counter" => [format!("{family}_total")].into(),
                "histogram" => ["bucket", "sum", "count"]
                    .map(|s| format!("{family}_{s}"))
                    .into(),
                _ => [family.to_string()].into(),
            };
            families.insert(family.to_string(), names);
        }
    }
    for line in page.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap();
        assert!(
            families.values().any(|names| names.contains(name)),
            "{name} has no # TYPE line"
        );
    }
    families
}

#[test]
fn dashboard_and_alerts_parse_and_name_only_exported_metrics() {
    let page = {
        let _alone = ONE_OPERATOR.blocking_lock();
        // The per-baseline gauges exist once a baseline does: one, selecting nothing.
        let name = unique("metric-names");
        let _cleanup = Cleanup(vec![name.clone()]);
        apply(&baseline(&name, &name, "mode: Audit"));
        let operator = OperatorProcess::start("metric-names", &[]);
        operator.wait_ready(Duration::from_secs(60));
        let sample = format!("zerotrust_namespaces{{baseline=\"{name}\",state=\"compliant\"}}");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let page = operator.get("/metrics").expect("/metrics answers").1;
            if page.lines().any(|l| l.starts_with(&sample)) {
                break page;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{sample} never exported:\n{page}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let families = exported(&page);
    let names: BTreeSet<&String> = families.values().flatten().collect();
    assert!(names.contains(&"zerotrust_drift_repaired_total".to_string()));

    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("dashboards/zerotrust-operator.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let mut exprs = vec![];
    panel_exprs(&dashboard["panels"], &mut exprs);
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(query) = variable["query"]["query"].as_str() {
            let inner = query
                .strip_prefix("label_values(")
                .and_then(|q| q.strip_suffix(')'))
                .expect("label_values(METRIC, LABEL)");
            exprs.push(inner.split(',').next().unwrap().trim().to_string());
        }
    }
    let dashboard_exprs = exprs.len();
    let alerts: Value =
        objects(&std::fs::read_to_string(repo().join("config/prometheus/alerts.yaml")).unwrap())
            .remove(0);
    for group in alerts["spec"]["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            exprs.push(rule["expr"].as_str().expect("an alert's expr").to_string());
        }
    }
    assert!(dashboard_exprs >= 20 && exprs.len() >= dashboard_exprs + 4);

    let mut used = BTreeSet::new();
    for expr in &exprs {
        let promql = grafana_to_promql(expr);
        let referenced =
            metric_names(&promql).unwrap_or_else(|e| panic!("{expr} does not parse: {e}"));
        assert!(!referenced.is_empty(), "{expr} names no metric");
        for name in referenced {
            assert!(
                names.contains(&name),
                "{expr} names {name}, which the operator does not export:\n{page}"
            );
            used.insert(name);
        }
    }
    for (family, names) in &families {
        assert!(
            names.iter().any(|n| used.contains(n)),
            "{family} is exported but no dashboard panel or alert shows it"
        );
    }
    // A misspelt metric is caught: the check above is not vacuous.
    assert!(!names.contains(&"zerotrust_drift_repairs_total".to_string()));
    assert!(metric_names("sum(rate(zerotrust_x_total[5m])) by").is_err());
}
