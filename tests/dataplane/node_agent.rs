//! TEST FIXTURE, not part of the product: the test node agent, a stand-in for the kubelet and CNI
//! plugin of the one test node, so that pods get real network endpoints without a container runtime.
//! It registers the Node, and for each pod bound to it (`spec.nodeName`; there is no scheduler)
//! creates a network namespace with a veth pair routed from the host (a /32 route per pod, the host
//! side holding the gateway address, as Calico's routed veths do, so pod-to-pod packets cross the
//! host's forward and postrouting hooks), assigns the next address of the test range, and reports it
//! in the pod's status (Running, podIP), which is what kube-network-policies reads. A deleted pod
//! loses its namespace and is removed, as a kubelet would. No container ever runs: the tests start
//! their programs in the namespace themselves (net.rs). Pods have no default route: their packets
//! cannot leave the test range, and the host drops any that try (hack/dataplane.sh).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use serde_json::json;

/// What hack/dataplane.sh set up: the node's name and the pods' address range.
#[derive(Clone, Debug)]
pub struct Network {
    pub node: String,
    /// The gateway on the host side of every veth: `<prefix>.1`; pods get `<prefix>.2` to `.254`.
    pub gateway: Ipv4Addr,
}

/// A pod's network endpoint.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    /// Its network namespace, under /run/netns.
    pub netns: String,
}

#[derive(Default)]
struct State {
    /// By pod UID.
    endpoints: HashMap<String, (u8, Endpoint)>,
    /// The last host number handed out; addresses are reused as late as possible, so a new pod
    /// does not inherit an address the NetworkPolicy agent may still map to a deleted one.
    last: u8,
}

/// The running agent: a thread with its own runtime, so it outlives any one test's runtime.
pub struct NodeAgent {
    network: Network,
    state: Arc<Mutex<State>>,
    thread: std::thread::JoinHandle<()>,
}

impl NodeAgent {
    /// Registers the Node, removes what an earlier run left (pods bound to the node, their
    /// namespaces and veths: `clean` runs `hack/dataplane.sh clean-pods`), and starts watching.
    /// Returns once the watch runs.
    pub fn start(
        kubeconfig: std::path::PathBuf,
        network: Network,
        clean: impl FnOnce() + Send + 'static,
    ) -> Self {
        let state = Arc::new(Mutex::new(State {
            last: 1,
            ..State::default()
        }));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (agent_network, agent_state) = (network.clone(), state.clone());
        let thread = std::thread::Builder::new()
            .name("ztdp-node-agent".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime for the node agent");
                runtime.block_on(async {
                    let client = client(&kubeconfig).await;
                    register_node(&client, &agent_network).await;
                    remove_leftover_pods(&client, &agent_network.node).await;
                    clean();
                    run(client, agent_network, agent_state, ready_tx).await;
                });
            })
            .expect("the node agent thread starts");
        ready_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the node agent registered the Node and watches its pods");
        NodeAgent {
            network,
            state,
            thread,
        }
    }

    /// The endpoint of the pod with this UID, once the agent has made it.
    pub fn endpoint(&self, uid: &str) -> Option<Endpoint> {
        let state = self.state.lock().unwrap();
        state.endpoints.get(uid).map(|(_, e)| e.clone())
    }

    /// False once its thread has ended (it panicked: the reason is in the test output).
    pub fn is_running(&self) -> bool {
        !self.thread.is_finished()
    }

    pub fn node(&self) -> &str {
        &self.network.node
    }
}

async fn client(kubeconfig: &std::path::Path) -> Client {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    let kubeconfig = Kubeconfig::read_from(kubeconfig).expect("kubeconfig reads");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig is usable");
    Client::try_from(config).expect("client")
}

async fn register_node(client: &Client, network: &Network) {
    let nodes: Api<Node> = Api::all(client.clone());
    let octets = network.gateway.octets();
    let node: Node = serde_json::from_value(json!({
        "metadata": {
            "name": network.node,
            "labels": {"kubernetes.io/hostname": network.node, "kubernetes.io/os": "linux"},
            "annotations": {"zerotrust.dev/test-fixture": "tests/dataplane/node_agent.rs"},
        },
        "spec": {"podCIDR": format!("{}.{}.{}.0/24", octets[0], octets[1], octets[2])},
    }))
    .expect("a Node");
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("registering Node {}: {e}", network.node),
    }
    let status = json!({"status": {
        "conditions": [{"type": "Ready", "status": "True", "reason": "TestNodeAgent",
                        "message": "test fixture: network endpoints only, no container runtime"}],
        "addresses": [{"type": "InternalIP", "address": network.gateway.to_string()},
                      {"type": "Hostname", "address": network.node}],
    }});
    nodes
        .patch_status(
            &network.node,
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await
        .expect("Node status");
}

/// Pods an earlier run left bound to the node: their namespaces are gone, so they go too.
async fn remove_leftover_pods(client: &Client, node: &str) {
    let pods: Api<Pod> = Api::all(client.clone());
    let lp = ListParams::default().fields(&format!("spec.nodeName={node}"));
    for pod in pods.list(&lp).await.expect("pods listed").items {
        let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
        let _ = api
            .delete(&pod.name_any(), &DeleteParams::default().grace_period(0))
            .await;
    }
}

async fn run(
    client: Client,
    network: Network,
    state: Arc<Mutex<State>>,
    ready: std::sync::mpsc::Sender<()>,
) {
    let pods: Api<Pod> = Api::all(client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", network.node));
    let mut events = watcher(pods, config).boxed();
    let mut ready = Some(ready);
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::InitDone) => {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(());
                }
            }
            Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => {
                handle(&client, &network, &state, &pod).await;
            }
            Ok(watcher::Event::Delete(pod)) => {
                remove_endpoint(&state, &pod.uid().unwrap_or_default());
            }
            Ok(watcher::Event::Init) => {}
            Err(e) => {
                eprintln!("test node agent: watch error (retrying): {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

async fn handle(client: &Client, network: &Network, state: &Mutex<State>, pod: &Pod) {
    let uid = pod.uid().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
    if pod.metadata.deletion_timestamp.is_some() {
        // What a kubelet does once the containers are gone: tear down, then remove for good.
        remove_endpoint(state, &uid);
        let dp = DeleteParams::default().grace_period(0);
        let _ = api.delete(&pod.name_any(), &dp).await;
        return;
    }
    let has_ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.as_ref())
        .is_some();
    if has_ip || state.lock().unwrap().endpoints.contains_key(&uid) {
        return;
    }
    let ready: Vec<_> = ["PodScheduled", "Initialized", "ContainersReady", "Ready"]
        .map(|t| json!({"type": t, "status": "True"}))
        .to_vec();
    let status = match add_endpoint(network, state, &uid) {
        Ok(endpoint) => json!({"status": {
            "phase": "Running",
            "hostIP": network.gateway.to_string(),
            "hostIPs": [{"ip": network.gateway.to_string()}],
            "podIP": endpoint.ip.to_string(),
            "podIPs": [{"ip": endpoint.ip.to_string()}],
            "startTime": k8s_openapi::jiff::Timestamp::now().to_string(),
            "conditions": ready,
        }}),
        Err(e) => json!({"status": {
            "phase": "Failed",
            "reason": "TestNodeAgentSetupFailed",
            "message": e,
        }}),
    };
    if let Err(e) = api
        .patch_status(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await
    {
        eprintln!("test node agent: status of {}: {e}", pod.name_any());
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn names(n: u8) -> (String, String) {
    (format!("ztdp-pod-{n}"), format!("ztdp-{n}"))
}

/// Makes the pod's namespace, veth pair, address and routes.
fn add_endpoint(network: &Network, state: &Mutex<State>, uid: &str) -> Result<Endpoint, String> {
    let n = {
        let mut state = state.lock().unwrap();
        let used: Vec<u8> = state.endpoints.values().map(|(n, _)| *n).collect();
        let n = (1..=253u16)
            .map(|i| ((state.last as u16 + i - 2) % 253 + 2) as u8)
            .find(|n| !used.contains(n))
            .ok_or("the test range is full (253 pods)")?;
        state.last = n;
        n
    };
    let [a, b, c, _] = network.gateway.octets();
    let pod_ip = Ipv4Addr::new(a, b, c, n);
    let (netns, host) = names(n);
    let (ip_s, gw) = (pod_ip.to_string(), network.gateway.to_string());
    let range = format!("{a}.{b}.{c}.0/24");
    let result = (|| {
        ip(&["netns", "add", &netns])?;
        ip(&[
            "link", "add", &host, "type", "veth", "peer", "name", "eth0", "netns", &netns,
        ])?;
        ip(&[
            "-n",
            &netns,
            "addr",
            "add",
            &format!("{ip_s}/32"),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", &netns, "link", "set", "lo", "up"])?;
        ip(&["-n", &netns, "link", "set", "eth0", "up"])?;
        ip(&[
            "-n", &netns, "route", "add", &gw, "dev", "eth0", "scope", "link",
        ])?;
        ip(&[
            "-n", &netns, "route", "add", &range, "via", &gw, "dev", "eth0", "src", &ip_s,
        ])?;
        ip(&["addr", "add", &format!("{gw}/32"), "dev", &host])?;
        // Forwarding for this interface only; the machine's ip_forward stays as it is.
        std::fs::write(format!("/proc/sys/net/ipv4/conf/{host}/forwarding"), "1")
            .map_err(|e| format!("enabling forwarding on {host}: {e}"))?;
        ip(&["link", "set", &host, "up"])?;
        ip(&[
            "route",
            "add",
            &format!("{ip_s}/32"),
            "dev",
            &host,
            "scope",
            "link",
            "src",
            &gw,
        ])
    })();
    if let Err(e) = result {
        teardown(n, pod_ip);
        return Err(e);
    }
    let endpoint = Endpoint { ip: pod_ip, netns };
    state
        .lock()
        .unwrap()
        .endpoints
        .insert(uid.to_string(), (n, endpoint.clone()));
    Ok(endpoint)
}

fn remove_endpoint(state: &Mutex<State>, uid: &str) {
    let removed = state.lock().unwrap().endpoints.remove(uid);
    if let Some((n, endpoint)) = removed {
        teardown(n, endpoint.ip);
    }
}

fn teardown(n: u8, pod_ip: Ipv4Addr) {
    let (netns, host) = names(n);
    let _ = ip(&["link", "del", &host]);
    let _ = ip(&["netns", "del", &netns]);
    // Flows of this address must not outlive it: a later pod may get it.
    for flag in ["-s", "-d"] {
        let _ = Command::new("conntrack")
            .args(["-D", flag, &pod_ip.to_string()])
            .output();
    }
}
