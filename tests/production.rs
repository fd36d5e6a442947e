//! Running it in production: metrics and health endpoints after a scenario, and leader election
//! between two operator processes (exactly one writes; the standby takes over when the leader dies).

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Api;
use support::*;

const WAIT: Duration = Duration::from_secs(30);

fn baseline(name: &str, selector: &str) -> String {
    format!(
        "apiVersion: zerotrust.dev/v1alpha1\nkind: SecurityBaseline\nmetadata: {{name: {name}}}\nspec:\n  namespaceSelector: {{matchLabels: {{zt-test: {selector}}}}}\n  networkPolicy: {{defaultDeny: [Ingress, Egress], allowDNS: true}}\n  podSecurity: {{enforce: restricted}}\n"
    )
}

fn apply(yaml: &str) {
    let out = control_plane().kubectl(&["apply", "-f", "-"], Some(yaml));
    assert!(out.status.success(), "{}", stderr(&out));
}

fn delete_baseline(name: &str) {
    control_plane().kubectl(
        &[
            "delete",
            "securitybaseline",
            name,
            "--ignore-not-found",
            "--wait=false",
        ],
        None,
    );
}

async fn policy_exists(client: &kube::Client, ns: &str, name: &str) -> bool {
    let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), ns);
    matches!(api.get_opt(name).await, Ok(Some(_)))
}

#[tokio::test]
async fn metrics_and_health_report_a_scenario() {
    let operator = OperatorProcess::start("metrics", &[]);
    let client = client().await;
    let tag = unique("metrics");
    let name = tag.clone();
    eventually(WAIT, "/readyz", || async {
        (operator.get("/readyz")?.0 == 200).then_some(())
    })
    .await;
    assert_eq!(operator.get("/healthz").map(|r| r.0), Some(200));

    apply(&baseline(&name, &tag));
    let ns = namespace(&client, &tag, &[("zt-test", &tag)]).await;
    let deny = format!("zt-{name}-default-deny");
    eventually(WAIT, "onboarded", || async {
        policy_exists(&client, &ns.name, &deny).await.then_some(())
    })
    .await;
    // Wait for the first compliant outcome before causing drift, so the deletion is a repair.
    let compliant = format!("zerotrust_namespaces{{baseline=\"{name}\",state=\"compliant\"}}");
    eventually(WAIT, "compliant gauge", || async {
        (operator.metric(&compliant)? == 1.0).then_some(())
    })
    .await;
    let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns.name);
    api.delete(&deny, &Default::default()).await.unwrap();
    eventually(WAIT, "repaired", || async {
        (operator.metric("zerotrust_drift_repaired_total{kind=\"NetworkPolicy\"}")? >= 1.0)
            .then_some(())
    })
    .await;

    let (status, body) = operator.get("/metrics").expect("/metrics answers");
    assert_eq!(status, 200);
    for family in [
        "zerotrust_reconciles_total{result=\"ok\"}",
        "zerotrust_reconcile_duration_seconds_count",
        "zerotrust_drift_detected_total{kind=\"NetworkPolicy\"}",
        "zerotrust_onboarding_latency_seconds_count",
        "zerotrust_status_writes_total",
    ] {
        let value = operator
            .metric(family)
            .unwrap_or_else(|| panic!("{family} missing:\n{body}"));
        assert!(value >= 1.0, "{family} = {value}");
    }
    assert_eq!(operator.metric("zerotrust_leader"), Some(1.0));
    assert_eq!(operator.metric(&compliant), Some(1.0));
    delete_baseline(&name);
}

#[tokio::test]
async fn one_leader_writes_and_a_standby_takes_over_when_it_dies() {
    let client = client().await;
    let tag = unique("leader");
    let lease_ns = namespace(&client, &format!("{tag}-lease"), &[]).await;
    let election = [
        "--leader-elect",
        "--lease-name",
        &tag,
        "--lease-namespace",
        &lease_ns.name,
        "--lease-duration-seconds",
        "6",
        "--lease-renew-grace-seconds",
        "2",
    ];
    let mut first =
        OperatorProcess::start("leader-a", &[&election[..], &["--identity", "a"]].concat());
    let second =
        OperatorProcess::start("leader-b", &[&election[..], &["--identity", "b"]].concat());
    let leader_gauges = || {
        (
            first.metric("zerotrust_leader"),
            second.metric("zerotrust_leader"),
        )
    };
    eventually(WAIT, "first process leads", || async {
        (leader_gauges() == (Some(1.0), Some(0.0))).then_some(())
    })
    .await;

    let name = tag.clone();
    apply(&baseline(&name, &tag));
    let ns = namespace(&client, &format!("{tag}-work"), &[("zt-test", &tag)]).await;
    let deny = format!("zt-{name}-default-deny");
    eventually(WAIT, "onboarded by the leader", || async {
        policy_exists(&client, &ns.name, &deny).await.then_some(())
    })
    .await;
    assert!(
        second
            .metric("zerotrust_reconciles_total{result=\"ok\"}")
            .is_none(),
        "the standby never reconciles"
    );
    assert_eq!(
        second.get("/readyz").map(|r| r.0),
        Some(200),
        "a waiting standby is ready"
    );

    // The leader dies without releasing its lease.
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let killed = Instant::now();
    eventually(
        Duration::from_secs(20),
        "the standby takes over",
        || async { (second.metric("zerotrust_leader")? == 1.0).then_some(()) },
    )
    .await;
    let takeover = killed.elapsed();
    eprintln!("failover: {takeover:?}");
    assert!(
        takeover <= Duration::from_secs(15),
        "takeover took {takeover:?}"
    );
    let leases: Api<Lease> = Api::namespaced(client.clone(), &lease_ns.name);
    let holder = leases
        .get(&tag)
        .await
        .unwrap()
        .spec
        .unwrap()
        .holder_identity;
    assert_eq!(holder.as_deref(), Some("b"));

    // The new leader does the work.
    let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns.name);
    api.delete(&deny, &Default::default()).await.unwrap();
    eventually(WAIT, "repaired by the new leader", || async {
        policy_exists(&client, &ns.name, &deny).await.then_some(())
    })
    .await;
    delete_baseline(&name);
}
