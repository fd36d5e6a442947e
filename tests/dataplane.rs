//! Isolation proven with packets: the NetworkPolicies the operator generates from
//! examples/restricted-tenants.yaml, enforced by a real NetworkPolicy implementation
//! (kube-network-policies, hack/dataplane.sh) on pods with real network endpoints (the test node
//! agent), tested by sending TCP, UDP and DNS traffic between them with deadlines. Every drop is
//! asserted on a path first seen open, and counted by the agent. Needs root and the kernel features
//! hack/dataplane.sh checks; on a machine without them these tests fail, naming what is missing.
//!
//! A new test: namespaces (`zerotrust_testkit::namespace`), pods (`pod`), a baseline (`Baseline::
//! restricted_tenants` with text edits of the example), paths (`path(&from, &to, Probe::Tcp(7001))`)
//! asserted open, then the change under test, then asserted closed or open; `apply_as` with
//! `tenant_admin` for what a tenant may do. Ports 7000 and 7001 answer TCP and UDP on every pod.

#[path = "dataplane/harness.rs"]
mod harness;
#[path = "dataplane/net.rs"]
mod net;
#[path = "dataplane/node_agent.rs"]
mod node_agent;

use std::time::{Duration, Instant};

use harness::*;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::{Api, ResourceExt};
use net::{Outcome, Probe};
use zerotrust_testkit::{client, control_plane, eventually, namespace, stderr, unique};

/// A tenant's own policy that allows everything in and out of every pod of its namespace.
const ALLOW_ALL: &str = "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-all}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
  ingress: [{}]
  egress: [{}]
";

#[tokio::test]
async fn a_tenant_is_cut_off_from_other_tenants_and_from_outside_both_ways() {
    dataplane();
    let client = client().await;
    let tenants = Baseline::restricted_tenants("ztdp-iso", &[]);
    let (a_ns, b_ns, out_ns) = (unique("ztdp-a"), unique("ztdp-b"), unique("ztdp-out"));
    let _namespaces = [
        namespace(&client, &a_ns, &[]).await,
        namespace(&client, &b_ns, &[]).await,
        namespace(&client, &out_ns, &[]).await,
    ];
    let a = pod(&client, &a_ns, "a", &[("app", "web")]).await;
    let b = pod(&client, &b_ns, "b", &[("app", "web")]).await;
    let out = pod(&client, &out_ns, "out", &[("app", "web")]).await;
    let mut paths = [
        // between tenants, both ways: both sides' default-deny apply
        path(&a, &b, Probe::Tcp(7000)),
        path(&b, &a, Probe::Tcp(7000)),
        path(&a, &b, Probe::Udp(7000)),
        path(&b, &a, Probe::Udp(7001)),
        // with a namespace no baseline selects: only the tenant's own ingress, or egress, denies
        path(&out, &a, Probe::Tcp(7000)),
        path(&out, &a, Probe::Udp(7000)),
        path(&a, &out, Probe::Tcp(7001)),
        path(&a, &out, Probe::Udp(7001)),
    ];
    assert_open(&mut paths).await;

    tenants.onboard(&client, &a_ns).await;
    tenants.onboard(&client, &b_ns).await;
    assert_closed(&mut paths).await;
}

#[tokio::test]
async fn dns_reaches_the_kube_dns_pod_on_53_udp_and_tcp_and_nothing_else() {
    dataplane();
    let client = client().await;
    let tenants = Baseline::restricted_tenants("ztdp-dns", &[]);
    let (a_ns, other_ns) = (unique("ztdp-a"), unique("ztdp-other"));
    let _namespaces = [
        namespace(&client, &a_ns, &[]).await,
        namespace(&client, &other_ns, &[]).await,
    ];
    let dns = kube_dns(&client).await;
    // Labelled like the cluster DNS but outside kube-system: the allow must not reach it.
    let impostor = pod(&client, &other_ns, "dns", &[("k8s-app", "kube-dns")]).await;
    let a = pod(&client, &a_ns, "a", &[("app", "web")]).await;
    let mut answered = [path(&a, dns, Probe::DnsUdp), path(&a, dns, Probe::DnsTcp)];
    let mut closing = [
        path(&a, dns, Probe::Tcp(7000)),
        path(&a, dns, Probe::Udp(7000)),
        path(&a, &impostor, Probe::DnsUdp),
        path(&a, &impostor, Probe::DnsTcp),
    ];
    assert_open(&mut answered).await;
    assert_open(&mut closing).await;

    tenants.onboard(&client, &a_ns).await;
    assert_closed(&mut closing).await;
    // With the tenant's egress now denied, DNS to the real kube-dns pod still answers.
    assert_open(&mut answered).await;
}

#[tokio::test]
async fn same_namespace_traffic_flows_only_where_the_baseline_allows_it() {
    dataplane();
    let client = client().await;
    let allows = Baseline::restricted_tenants("ztdp-same", &[]);
    let denies = Baseline::restricted_tenants(
        "ztdp-nosame",
        &[("allowSameNamespace: true", "allowSameNamespace: false")],
    );
    let (a_ns, b_ns, out_ns) = (unique("ztdp-a"), unique("ztdp-b"), unique("ztdp-out"));
    let _namespaces = [
        namespace(&client, &a_ns, &[]).await,
        namespace(&client, &b_ns, &[]).await,
        namespace(&client, &out_ns, &[]).await,
    ];
    let (a1, a2) = (
        pod(&client, &a_ns, "a1", &[("app", "web")]).await,
        pod(&client, &a_ns, "a2", &[("app", "db")]).await,
    );
    let (b1, b2) = (
        pod(&client, &b_ns, "b1", &[("app", "web")]).await,
        pod(&client, &b_ns, "b2", &[("app", "db")]).await,
    );
    let out = pod(&client, &out_ns, "out", &[("app", "web")]).await;
    let mut a_same = [
        path(&a1, &a2, Probe::Tcp(7000)),
        path(&a2, &a1, Probe::Udp(7001)),
    ];
    // Proof that a's namespace is isolated at the time its same-namespace traffic flows.
    let mut a_isolated = [
        path(&a1, &out, Probe::Tcp(7000)),
        path(&out, &a2, Probe::Tcp(7000)),
    ];
    let mut b_same = [
        path(&b1, &b2, Probe::Tcp(7000)),
        path(&b2, &b1, Probe::Udp(7001)),
    ];
    assert_open(&mut a_same).await;
    assert_open(&mut a_isolated).await;
    assert_open(&mut b_same).await;

    allows.onboard(&client, &a_ns).await;
    denies.onboard(&client, &b_ns).await;
    assert_closed(&mut a_isolated).await;
    assert_closed(&mut b_same).await;
    assert_open(&mut a_same).await;
}

#[tokio::test]
async fn a_tenants_allow_all_policy_opens_its_namespace() {
    dataplane();
    let client = client().await;
    let tenants = Baseline::restricted_tenants("ztdp-allowall", &[]);
    let (a_ns, out_ns) = (unique("ztdp-a"), unique("ztdp-out"));
    let _namespaces = [
        namespace(&client, &a_ns, &[]).await,
        namespace(&client, &out_ns, &[]).await,
    ];
    let a = pod(&client, &a_ns, "a", &[("app", "web")]).await;
    let out = pod(&client, &out_ns, "out", &[("app", "web")]).await;
    let mut paths = [
        path(&out, &a, Probe::Tcp(7000)),
        path(&out, &a, Probe::Udp(7001)),
        path(&a, &out, Probe::Tcp(7001)),
        path(&a, &out, Probe::Udp(7000)),
    ];
    assert_open(&mut paths).await;
    tenants.onboard(&client, &a_ns).await;
    assert_closed(&mut paths).await;

    // A tenant bound to the built-in admin role adds its own policy beside our default-deny.
    // NetworkPolicies are additive, so it opens the namespace without touching our objects: the
    // reason `refuseWidening` exists (the test after this one). Without it, the operator reports
    // the policy as Widened (tests/fail_open.rs), and the packets flow.
    let tenant = tenant_admin(&a_ns).await;
    let applied = apply_as(&tenant, &a_ns, ALLOW_ALL);
    assert!(
        applied.status.success(),
        "a tenant admin may create NetworkPolicies today: {}",
        stderr(&applied)
    );
    assert_open(&mut paths).await;
}

#[tokio::test]
async fn with_refuse_widening_a_tenants_allow_all_is_refused_and_its_namespace_stays_closed() {
    dataplane();
    let client = client().await;
    let tenants = Baseline::restricted_tenants(
        "ztdp-refuse",
        &[(
            "allowSameNamespace: true",
            "allowSameNamespace: true\n    refuseWidening: true",
        )],
    );
    let (a_ns, out_ns) = (unique("ztdp-a"), unique("ztdp-out"));
    let _namespaces = [
        namespace(&client, &a_ns, &[]).await,
        namespace(&client, &out_ns, &[]).await,
    ];
    let a = pod(&client, &a_ns, "a", &[("app", "web")]).await;
    let out = pod(&client, &out_ns, "out", &[("app", "web")]).await;
    let mut paths = [
        path(&out, &a, Probe::Tcp(7000)),
        path(&a, &out, Probe::Udp(7000)),
    ];
    assert_open(&mut paths).await;
    tenants.onboard(&client, &a_ns).await;
    assert_closed(&mut paths).await;

    let tenant = tenant_admin(&a_ns).await;
    // The refusal is in force once a server-side dry run is refused; then the real request.
    eventually(CONVERGE, "the allow-all refused", || async {
        let dry = control_plane().kubectl(
            &[
                "apply",
                "--dry-run=server",
                "--as",
                &tenant,
                "-n",
                &a_ns,
                "-f",
                "-",
            ],
            Some(ALLOW_ALL),
        );
        (!dry.status.success()).then_some(())
    })
    .await;
    let applied = apply_as(&tenant, &a_ns, ALLOW_ALL);
    assert!(!applied.status.success(), "the API server refuses it");
    assert!(
        stderr(&applied).contains(&tenants.name),
        "the refusal names the baseline: {}",
        stderr(&applied)
    );
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &a_ns);
    assert!(policies.get_opt("allow-all").await.unwrap().is_none());
    for p in paths.iter_mut() {
        p.assert_closed().await;
    }
}

#[tokio::test]
async fn each_allow_rule_admits_what_it_names_and_a_rule_by_name_cannot_be_spoofed() {
    dataplane();
    let client = client().await;
    let (a_ns, ing_ns, evil_ns) = (unique("ztdp-a"), unique("ztdp-ing"), unique("ztdp-evil"));
    let team = format!("ingress-{a_ns}");
    let _namespaces = [
        namespace(&client, &a_ns, &[]).await,
        namespace(&client, &ing_ns, &[("team", &team)]).await,
    ];
    // Someone who may create namespaces makes one with every label of the allowed one, the
    // name label included (which the API server sets to the real name regardless).
    let labeller = zerotrust_testkit::namespace_labeller(&format!("{evil_ns}-labeller")).await;
    let impostor: k8s_openapi::api::core::v1::Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": evil_ns, "labels": {"team": team, "kubernetes.io/metadata.name": ing_ns}},
    }))
    .unwrap();
    let _evil = zerotrust_testkit::NamespaceGuard {
        name: evil_ns.clone(),
    };
    Api::<k8s_openapi::api::core::v1::Namespace>::all(labeller)
        .create(&kube::api::PostParams::default(), &impostor)
        .await
        .expect("a labeller creates namespaces");
    let a = pod(&client, &a_ns, "a", &[("app", "web")]).await;
    let ctrl = pod(&client, &ing_ns, "ctrl", &[("app", "ctrl")]).await;
    let other = pod(&client, &ing_ns, "other", &[("app", "web")]).await;
    let fake = pod(&client, &evil_ns, "ctrl", &[("app", "ctrl")]).await;
    // By name (pods labelled app=ctrl, TCP 7000), by namespace label (TCP 7001), and egress to
    // one address (UDP 7001).
    let allow = format!(
        "allowSameNamespace: true\n    allow:\n      - {{name: by-name, direction: Ingress, peers: [{{namespace: {ing_ns}, pods: {{matchLabels: {{app: ctrl}}}}}}], ports: [{{port: 7000}}]}}\n      - {{name: by-label, direction: Ingress, peers: [{{namespaceSelector: {{matchLabels: {{team: {team}}}}}}}], ports: [{{port: 7001}}]}}\n      - {{name: to-one-address, direction: Egress, peers: [{{cidr: {}/32}}], ports: [{{protocol: UDP, port: 7001}}]}}",
        other.ip
    );
    let tenants =
        Baseline::restricted_tenants("ztdp-allow", &[("allowSameNamespace: true", &allow)]);
    let mut allowed = [
        path(&ctrl, &a, Probe::Tcp(7000)),
        // The label rule admits whoever carries the label: the real namespace, and the copy.
        path(&ctrl, &a, Probe::Tcp(7001)),
        path(&fake, &a, Probe::Tcp(7001)),
        path(&a, &other, Probe::Udp(7001)),
    ];
    let mut closing = [
        path(&fake, &a, Probe::Tcp(7000)),
        path(&other, &a, Probe::Tcp(7000)),
        path(&ctrl, &a, Probe::Udp(7000)),
        path(&a, &other, Probe::Tcp(7001)),
        path(&a, &ctrl, Probe::Udp(7001)),
    ];
    assert_open(&mut allowed).await;
    assert_open(&mut closing).await;

    tenants.onboard(&client, &a_ns).await;
    assert_closed(&mut closing).await;
    assert_open(&mut allowed).await;
}

/// Delete-and-repair rounds measured.
const REPAIR_ROUNDS: usize = 5;
/// Probes sent this often while the default-deny is deleted and repaired.
const REPAIR_PROBE_EVERY: Duration = Duration::from_millis(5);
/// A repair probe not answered within this is a dropped packet.
const REPAIR_PROBE_TIMEOUT: Duration = Duration::from_millis(250);
/// Probing stops this long after the operator's new default-deny is seen.
const REPAIR_TAIL: Duration = Duration::from_secs(1);
const REPAIR_DEADLINE: Duration = Duration::from_secs(20);

/// One delete-and-repair round, in times since the delete request was sent.
#[derive(Debug)]
struct Repair {
    /// When the first probe of the unanswered run that lasts to the end was sent: traffic is
    /// closed again from here on. With no probe answered, the first probe after the delete.
    first_dropped: Duration,
    /// Probes answered (the hole the deletion opened) and sent.
    through: usize,
    sent: usize,
    /// When the re-created default-deny was first seen through the API.
    recreated: Duration,
}

/// Deletes `deny` in `policies` and probes `from` -> `to` every [`REPAIR_PROBE_EVERY`], each probe
/// a new flow, until [`REPAIR_TAIL`] after the operator's re-created policy is seen.
async fn delete_and_probe(
    policies: &Api<NetworkPolicy>,
    deny: &str,
    from: &TestPod,
    to: &TestPod,
) -> Repair {
    let old_uid = policies.get(deny).await.expect("default-deny").uid();
    let deleted = Instant::now();
    policies
        .delete(deny, &Default::default())
        .await
        .expect("default-deny deleted");
    let mut probes = Vec::new();
    let mut recreated = None;
    while deleted.elapsed() < REPAIR_DEADLINE {
        let sent = deleted.elapsed();
        let (netns, ip) = (from.netns.clone(), to.ip);
        probes.push((
            sent,
            tokio::task::spawn_blocking(move || {
                net::probe(&netns, ip, Probe::Udp(7000), REPAIR_PROBE_TIMEOUT)
            }),
        ));
        if recreated.is_none() && probes.len() % 4 == 0 {
            let now = policies.get_opt(deny).await.ok().flatten();
            if now.is_some_and(|p| p.uid() != old_uid) {
                recreated = Some(deleted.elapsed());
            }
        }
        if recreated.is_some_and(|at| sent > at + REPAIR_TAIL) {
            break;
        }
        tokio::time::sleep(REPAIR_PROBE_EVERY).await;
    }
    let mut outcomes = Vec::new();
    for (sent, probe) in probes {
        outcomes.push((sent, probe.await.expect("probe thread")));
    }
    let recreated =
        recreated.unwrap_or_else(|| panic!("{deny} not re-created within {REPAIR_DEADLINE:?}"));
    let failed: Vec<_> = outcomes
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Failed(_)))
        .collect();
    assert!(failed.is_empty(), "probes failed: {failed:?}");
    let through = outcomes
        .iter()
        .filter(|(_, o)| *o == Outcome::Answered)
        .count();
    let last_through = outcomes.iter().rposition(|(_, o)| *o == Outcome::Answered);
    let closed_from = last_through.map_or(0, |i| i + 1);
    assert!(
        outcomes.len() - closed_from >= CLOSED_STREAK as usize,
        "traffic did not close again: of {} probes, the last answered was the {}th; the policy was re-created at {recreated:?}",
        outcomes.len(),
        closed_from
    );
    Repair {
        first_dropped: outcomes[closed_from].0,
        through,
        sent: outcomes.len(),
        recreated,
    }
}

#[tokio::test]
async fn a_deleted_default_deny_is_repaired_and_closes_traffic_again() {
    dataplane();
    let client = client().await;
    // Only the default-deny: in the full example, the allow-DNS and same-namespace policies also
    // isolate every pod (a policy isolates each direction it names), so deleting the default-deny
    // alone would open nothing to measure.
    let deny_only = Baseline::restricted_tenants(
        "ztdp-repair",
        &[
            ("allowDNS: true", "allowDNS: false"),
            ("allowSameNamespace: true", "allowSameNamespace: false"),
        ],
    );
    let (a_ns, out_ns) = (unique("ztdp-a"), unique("ztdp-out"));
    let _namespaces = [
        namespace(&client, &a_ns, &[]).await,
        namespace(&client, &out_ns, &[]).await,
    ];
    let a = pod(&client, &a_ns, "a", &[("app", "web")]).await;
    let out = pod(&client, &out_ns, "out", &[("app", "web")]).await;
    // Open without the policy: a deleted default-deny opens this path until it is repaired.
    let mut ingress = path(&out, &a, Probe::Udp(7000));
    ingress.assert_open().await;
    deny_only.onboard(&client, &a_ns).await;
    ingress.assert_closed().await;

    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &a_ns);
    let deny = deny_only.object("default-deny");
    let mut rounds = Vec::new();
    for _ in 0..REPAIR_ROUNDS {
        let round = delete_and_probe(&policies, &deny, &out, &a).await;
        eprintln!("repair round: {round:?}");
        rounds.push(round);
        // Fresh probes after the round: still closed.
        ingress.assert_closed().await;
    }
    let mut closing: Vec<u128> = rounds.iter().map(|r| r.first_dropped.as_millis()).collect();
    closing.sort();
    let mut recreated: Vec<u128> = rounds.iter().map(|r| r.recreated.as_millis()).collect();
    recreated.sort();
    eprintln!(
        "repair: delete -> first dropped packet (closed for good) in ms, {REPAIR_ROUNDS} rounds, probes every {REPAIR_PROBE_EVERY:?}: min {} median {} max {}; probes through the hole per round: {:?} of {:?}; re-created default-deny seen (polled) at ms: {recreated:?}",
        closing[0],
        closing[closing.len() / 2],
        closing[closing.len() - 1],
        rounds.iter().map(|r| r.through).collect::<Vec<_>>(),
        rounds.iter().map(|r| r.sent).collect::<Vec<_>>(),
    );
}
