//! The dashboard's and alerts' PromQL parses and names only metrics the operator exports.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;
use zerotrust_testkit::cluster::repo;
use zerotrust_testkit::helm::objects;
use zerotrust_testkit::*;

use super::ONE_OPERATOR;

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
