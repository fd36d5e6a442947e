//! The benchmark's side of the cluster: connecting, installing the CRD, creating namespaces, the
//! operator process (its readiness and memory), and the API server's audit log of its requests.

use std::collections::BTreeMap;
use std::io::{BufRead, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

#[path = "../../tests/support/crd.rs"]
pub mod crd;
#[path = "../../tests/support/http.rs"]
mod http;

pub async fn connect(kubeconfig: &Path) -> Client {
    let file = Kubeconfig::read_from(kubeconfig)
        .unwrap_or_else(|e| panic!("{}: {e}", kubeconfig.display()));
    let config = Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", kubeconfig.display()));
    Client::try_from(config).expect("a client")
}

/// Polls `check` every few milliseconds until it holds; panics with `what` after `timeout`.
pub async fn wait_until(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

pub fn namespace(name: &str, labels: &BTreeMap<String, String>) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(labels.clone()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

/// Creates namespaces, `concurrency` at a time.
pub async fn create_namespaces(client: &Client, namespaces: &[Namespace], concurrency: usize) {
    let api: Api<Namespace> = Api::all(client.clone());
    futures::stream::iter(namespaces)
        .map(|ns| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), ns).await }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await
        .expect("namespaces are created");
}

/// `zerotrust-operator run`, as built next to this benchmark, with its own identity.
pub struct Operator {
    child: Child,
    http: String,
}

impl Operator {
    pub fn start(kubeconfig: &Path, concurrency: usize, log: &Path) -> Operator {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let http = format!("127.0.0.1:{port}");
        let log = std::fs::File::create(log).expect("the operator's log file");
        let child = Command::new(env!("CARGO_BIN_EXE_zerotrust-operator"))
            .args(["run", "--stop-on-stdin-close", "--http-addr", &http])
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--concurrency", &concurrency.to_string()])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("the operator starts");
        Operator { child, http }
    }

    /// Waits until `/readyz` says its caches are synced.
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while http_status(&self.http, "/readyz") != Some(200) {
            assert!(
                Instant::now() < deadline,
                "the operator did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// (peak, current) resident set size in bytes, from /proc.
    pub fn rss(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                .map_or(0, |kib| kib * 1024)
        };
        (field("VmHWM:"), field("VmRSS:"))
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_status(host_port: &str, path: &str) -> Option<u16> {
    http::http_get(host_port, path).map(|(status, _)| status)
}

/// The API server's audit log, which holds only the operator identity's requests.
pub struct AuditLog {
    path: PathBuf,
}

/// Requests by verb (`get`, `list`, `watch`), writes by verb and resource (`patch networkpolicies`).
pub type Requests = BTreeMap<String, u64>;

pub const WRITE_VERBS: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];

pub fn writes(requests: &Requests) -> u64 {
    requests
        .iter()
        .filter(|(key, _)| {
            WRITE_VERBS
                .iter()
                .any(|v| key.starts_with(&format!("{v} ")))
        })
        .map(|(_, n)| n)
        .sum()
}

impl AuditLog {
    pub fn new(path: PathBuf) -> AuditLog {
        AuditLog { path }
    }

    /// Where the log ends now: count from here with [`AuditLog::since`].
    pub fn mark(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
    }

    /// Requests logged after `mark`, by verb.
    pub fn since(&self, mark: u64) -> Requests {
        let mut requests = Requests::new();
        let Ok(mut file) = std::fs::File::open(&self.path) else {
            return requests;
        };
        if file.seek(SeekFrom::Start(mark)).is_err() {
            return requests;
        }
        for line in std::io::BufReader::new(file).lines().map_while(Result::ok) {
            let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let field = |key: &str| entry["objectRef"][key].as_str().unwrap_or_default();
            if let Some(verb) = entry.get("verb").and_then(|v| v.as_str()) {
                // Writes name what they wrote, so an unexpected one can be traced.
                let key = if WRITE_VERBS.contains(&verb) {
                    match field("subresource") {
                        "" => format!("{verb} {}", field("resource")),
                        sub => format!("{verb} {}/{sub}", field("resource")),
                    }
                } else {
                    verb.to_string()
                };
                *requests.entry(key).or_default() += 1;
            }
        }
        requests
    }
}
