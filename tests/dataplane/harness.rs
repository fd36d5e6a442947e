//! The dataplane tests' harness: brings the test dataplane up once per test binary (the control
//! plane, `hack/dataplane.sh up` with kube-network-policies, the test node agent, the operator),
//! makes test pods that answer on real sockets, tenant namespaces under a copy of
//! examples/restricted-tenants.yaml, tenants acting through the built-in `admin` role, and paths
//! between pods whose state is asserted with real packets and deadlines:
//! [`Path::assert_open`] (a probe is answered) and [`Path::assert_closed`] (probes go unanswered,
//! and kube-network-policies counted the drops; only after the same path was seen open).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tokio::sync::OnceCell;

use crate::net::{Outcome, Probe, Servers, probe};
use crate::node_agent::{Network, NodeAgent};
use zerotrust_testkit::{control_plane, delete_baseline, eventually, http_get, operator, stderr};

/// How long a path may take to reach the expected state: the operator's write, the agent's watch.
pub const CONVERGE: Duration = Duration::from_secs(20);
/// A probe not answered within this is counted as dropped.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// Unanswered probes in a row that make a path closed.
pub const CLOSED_STREAK: u32 = 3;
/// For pods to be admitted and get their network endpoint.
const POD_WAIT: Duration = Duration::from_secs(60);

pub struct Dataplane {
    pub agent: NodeAgent,
    /// host:port of kube-network-policies' /metrics.
    pub metrics: String,
    /// kube-network-policies' log.
    pub log: PathBuf,
    /// How packets reach the agent's queue: `native` (its own nftables table) or `xt`.
    pub hook: String,
}

fn repo() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The dataplane, brought up (or found running) once per test binary. Fails, naming what is
/// missing, on a machine that cannot run it: the tests never pass without packets.
pub fn dataplane() -> &'static Dataplane {
    static DATAPLANE: OnceLock<Dataplane> = OnceLock::new();
    DATAPLANE.get_or_init(|| {
        let plane = control_plane();
        let out = Command::new(repo().join("hack/dataplane.sh"))
            .arg("up")
            .output()
            .expect("hack/dataplane.sh runs");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "this machine cannot run the NetworkPolicy dataplane: hack/dataplane.sh up failed:\n{}{stdout}",
            stderr(&out)
        );
        eprint!("{}", stderr(&out));
        let value = |key: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{key}=")))
                .unwrap_or_else(|| panic!("hack/dataplane.sh up prints {key}=:\n{stdout}"))
                .to_string()
        };
        let network = Network {
            node: value("node"),
            gateway: value("gateway").parse().expect("a gateway address"),
        };
        let agent = NodeAgent::start(plane.kubeconfig.clone(), network, || {
            let out = Command::new(repo().join("hack/dataplane.sh"))
                .arg("clean-pods")
                .output()
                .expect("hack/dataplane.sh runs");
            assert!(out.status.success(), "clean-pods: {}", stderr(&out));
        });
        operator();
        let dataplane = Dataplane {
            agent,
            metrics: value("metrics"),
            log: PathBuf::from(value("log")),
            hook: value("hook"),
        };
        eprintln!(
            "dataplane: kube-network-policies (hook {}), log {}",
            dataplane.hook,
            dataplane.log.display()
        );
        dataplane
    })
}

/// The agent's drop verdicts so far (all protocols), from its /metrics.
pub fn agent_drops() -> f64 {
    let (_, body) = http_get(&dataplane().metrics, "/metrics")
        .expect("kube-network-policies answers on /metrics");
    body.lines()
        .filter(|l| {
            l.starts_with("kube_network_policies_packet_count{") && l.contains("verdict=\"drop\"")
        })
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum()
}

/// A pod with a real network endpoint and servers answering on it (see net.rs). The pod is
/// force-deleted when this is dropped, and the test node agent removes its namespace.
pub struct TestPod {
    pub namespace: String,
    pub name: String,
    pub ip: Ipv4Addr,
    pub netns: String,
    _servers: Servers,
}

impl std::fmt::Display for TestPod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{} ({})", self.namespace, self.name, self.ip)
    }
}

impl Drop for TestPod {
    fn drop(&mut self) {
        control_plane().kubectl(
            &[
                "delete",
                "pod",
                &self.name,
                "-n",
                &self.namespace,
                "--grace-period=0",
                "--force",
                "--wait=false",
                "--ignore-not-found",
            ],
            None,
        );
    }
}

/// A pod bound to the test node that passes Pod Security "restricted" and any quota (it never
/// runs: no image is pulled, the node agent only gives it a network endpoint).
fn pod_manifest(name: &str, labels: &[(&str, &str)], node: &str) -> Pod {
    let labels: serde_json::Map<String, serde_json::Value> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "nodeName": node,
            "automountServiceAccountToken": false,
            "securityContext": {
                "runAsNonRoot": true, "runAsUser": 65534, "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [{
                "name": "app",
                "image": "test-fixture.invalid/never-pulled:0",
                "securityContext": {
                    "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]},
                },
                "resources": {
                    "requests": {"cpu": "10m", "memory": "16Mi"},
                    "limits": {"cpu": "100m", "memory": "64Mi"},
                },
            }],
        },
    }))
    .expect("a Pod")
}

/// Creates a pod on the test node, waits for its network endpoint, and starts its servers (echo
/// on net::ECHO_PORTS; DNS on 53 too when labelled `k8s-app=kube-dns`).
pub async fn pod(client: &Client, namespace: &str, name: &str, labels: &[(&str, &str)]) -> TestPod {
    let dp = dataplane();
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let manifest = pod_manifest(name, labels, dp.agent.node());
    let what = format!("pod {namespace}/{name}");
    // Retried: a new namespace's default ServiceAccount may not exist yet.
    let deadline = Instant::now() + POD_WAIT;
    let created = loop {
        let error = match api.create(&PostParams::default(), &manifest).await {
            Ok(pod) => break pod,
            Err(e) => e,
        };
        assert!(Instant::now() < deadline, "{what} not admitted: {error}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let uid = created.uid().expect("a uid");
    let ip: Ipv4Addr = eventually(POD_WAIT, &format!("{what} Running with an IP"), || async {
        assert!(
            dp.agent.is_running(),
            "the test node agent has stopped (see its panic above)"
        );
        let status = api.get(name).await.ok()?.status?;
        if status.phase.as_deref() == Some("Failed") {
            panic!("{what} failed: {:?}", status.message);
        }
        (status.phase.as_deref() == Some("Running")).then_some(())?;
        status.pod_ip?.parse().ok()
    })
    .await;
    let endpoint = dp
        .agent
        .endpoint(&uid)
        .unwrap_or_else(|| panic!("{what} has an endpoint from the test node agent"));
    assert_eq!(endpoint.ip, ip, "{what}: the reported IP is the endpoint's");
    let dns = labels.contains(&("k8s-app", "kube-dns")).then_some(ip);
    let servers = Servers::start(&endpoint.netns, dns)
        .unwrap_or_else(|e| panic!("{what}: servers in {}: {e}", endpoint.netns));
    TestPod {
        namespace: namespace.to_string(),
        name: name.to_string(),
        ip,
        netns: endpoint.netns,
        _servers: servers,
    }
}

/// The cluster DNS pod: `k8s-app=kube-dns` in kube-system, answering DNS on 53/UDP and 53/TCP
/// (and echo on the other ports), shared by every test of the binary.
pub async fn kube_dns(client: &Client) -> &'static TestPod {
    static KUBE_DNS: OnceCell<TestPod> = OnceCell::const_new();
    KUBE_DNS
        .get_or_init(|| async {
            let name = format!("kube-dns-ztdp-{}", std::process::id());
            pod(client, "kube-system", &name, &[("k8s-app", "kube-dns")]).await
        })
        .await
}

/// A copy of examples/restricted-tenants.yaml under a unique name, selecting namespaces labelled
/// `zt-dataplane=<its name>` instead of `tenant=true`, with `edits` (each `(from, to)` must match
/// the example's text exactly once). Deleted when dropped.
pub struct Baseline {
    pub name: String,
}

impl Baseline {
    pub fn restricted_tenants(prefix: &str, edits: &[(&str, &str)]) -> Baseline {
        let name = zerotrust_testkit::unique(prefix);
        let mut yaml = std::fs::read_to_string(repo().join("examples/restricted-tenants.yaml"))
            .expect("the example reads");
        let selector = format!("zt-dataplane: \"{name}\"");
        let own_name = format!("name: {name}");
        for (from, to) in [
            ("tenant: \"true\"", selector.as_str()),
            ("name: restricted-tenants", &own_name),
        ]
        .into_iter()
        .chain(edits.iter().copied())
        {
            assert_eq!(
                yaml.matches(from).count(),
                1,
                "the example has `{from}` once"
            );
            yaml = yaml.replace(from, to);
        }
        zerotrust_testkit::apply(&yaml);
        Baseline { name }
    }

    /// The name of one of its generated objects, e.g. `default-deny`.
    pub fn object(&self, what: &str) -> String {
        format!("zt-{}-{what}", self.name)
    }

    /// Labels the namespace so this baseline selects it, and waits for its default-deny there.
    pub async fn onboard(&self, client: &Client, namespace: &str) {
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
        let patch = json!({"metadata": {"labels": {"zt-dataplane": self.name}}});
        namespaces
            .patch(namespace, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("namespace labelled");
        let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), namespace);
        let deny = self.object("default-deny");
        eventually(CONVERGE, &format!("{deny} in {namespace}"), || async {
            policies.get_opt(&deny).await.ok().flatten()
        })
        .await;
    }
}

impl Drop for Baseline {
    fn drop(&mut self) {
        delete_baseline(&self.name);
    }
}

/// A tenant of `namespace`: a user bound there to the built-in `admin` ClusterRole, as a team that
/// owns the namespace is. Returns the user name to act as, once the API server says it may write
/// NetworkPolicies there (the role's rules are aggregated by the controller-manager).
pub async fn tenant_admin(namespace: &str) -> String {
    let user = format!("tenant-of-{namespace}");
    let binding = format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: tenant-admin, namespace: {namespace}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: admin}}\nsubjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: {user}}}]\n"
    );
    zerotrust_testkit::apply(&binding);
    let can_i = [
        "auth",
        "can-i",
        "create",
        "networkpolicies",
        "-n",
        namespace,
        "--as",
        &user,
    ];
    eventually(
        CONVERGE,
        &format!("{user} may create NetworkPolicies"),
        || async {
            let out = control_plane().kubectl(&can_i, None);
            (zerotrust_testkit::stdout(&out).trim() == "yes").then_some(())
        },
    )
    .await;
    user
}

/// `kubectl apply` of `yaml` in `namespace` as `user`: what the API server answers.
pub fn apply_as(user: &str, namespace: &str, yaml: &str) -> Output {
    control_plane().kubectl(
        &["apply", "--as", user, "-n", namespace, "-f", "-"],
        Some(yaml),
    )
}

/// One probe, off the test's runtime (it blocks for up to `timeout`).
pub async fn probe_once(from: &TestPod, to: &TestPod, what: Probe, timeout: Duration) -> Outcome {
    let (netns, ip) = (from.netns.clone(), to.ip);
    tokio::task::spawn_blocking(move || probe(&netns, ip, what, timeout))
        .await
        .expect("the probe thread")
}

/// Can `from` reach `to` with `what` within `deadline`? Probes until one is answered.
/// Err carries the last outcome.
pub async fn reaches(
    from: &TestPod,
    to: &TestPod,
    what: Probe,
    deadline: Duration,
) -> Result<(), Outcome> {
    let end = Instant::now() + deadline;
    loop {
        let outcome = probe_once(from, to, what, PROBE_TIMEOUT).await;
        if outcome == Outcome::Answered {
            return Ok(());
        }
        if Instant::now() >= end {
            return Err(outcome);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Is `from` → `to` with `what` dropped within `deadline`? Probes until [`CLOSED_STREAK`] probes
/// in a row go unanswered. Err carries the last outcome.
pub async fn dropped(
    from: &TestPod,
    to: &TestPod,
    what: Probe,
    deadline: Duration,
) -> Result<(), Outcome> {
    let end = Instant::now() + deadline;
    let mut streak = 0;
    loop {
        let outcome = probe_once(from, to, what, PROBE_TIMEOUT).await;
        streak = if outcome == Outcome::NoAnswer {
            streak + 1
        } else {
            0
        };
        if streak >= CLOSED_STREAK {
            return Ok(());
        }
        if Instant::now() >= end {
            return Err(outcome);
        }
        if outcome == Outcome::Answered {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Traffic from one pod to another with one kind of probe. A path is asserted closed only after
/// it was seen open: a drop proves nothing unless the same probe got through before.
pub struct Path<'a> {
    pub from: &'a TestPod,
    pub to: &'a TestPod,
    pub probe: Probe,
    seen_open: bool,
}

impl std::fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} -> {} on {}", self.from, self.to, self.probe)
    }
}

pub fn path<'a>(from: &'a TestPod, to: &'a TestPod, probe: Probe) -> Path<'a> {
    Path {
        from,
        to,
        probe,
        seen_open: false,
    }
}

impl Path<'_> {
    pub async fn assert_open(&mut self) {
        if let Err(last) = reaches(self.from, self.to, self.probe, CONVERGE).await {
            panic!("{self}: not answered within {CONVERGE:?} (last probe: {last:?})");
        }
        self.seen_open = true;
    }

    pub async fn assert_closed(&mut self) {
        assert!(
            self.seen_open,
            "{self}: asserted closed before it was seen open, so a drop would prove nothing"
        );
        let before = agent_drops();
        if let Err(last) = dropped(self.from, self.to, self.probe, CONVERGE).await {
            panic!("{self}: still not dropped after {CONVERGE:?} (last probe: {last:?})");
        }
        let counted = agent_drops() - before;
        assert!(
            counted >= f64::from(CLOSED_STREAK),
            "{self}: {CLOSED_STREAK} probes went unanswered but kube-network-policies counted {counted} drops: the packets were lost elsewhere"
        );
    }
}

/// Asserts every path open, concurrently.
pub async fn assert_open(paths: &mut [Path<'_>]) {
    futures::future::join_all(paths.iter_mut().map(|p| p.assert_open())).await;
}

/// Asserts every path closed, concurrently.
pub async fn assert_closed(paths: &mut [Path<'_>]) {
    futures::future::join_all(paths.iter_mut().map(|p| p.assert_closed())).await;
}
