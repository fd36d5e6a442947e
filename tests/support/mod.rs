//! Shared by the integration tests: the real control plane (started once per test binary by
//! `hack/controlplane.sh up`, reused if already running), the CRD installed from `crds/`, a client,
//! and unique names so tests run in parallel without seeing each other.
#![allow(dead_code)] // each test binary uses its own subset

pub mod crd;
pub mod http;
pub use http::http_get;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

pub struct ControlPlane {
    pub kubeconfig: PathBuf,
    pub kubectl: PathBuf,
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The control plane, brought up (or found running) once per test binary, with the CRD installed.
pub fn control_plane() -> &'static ControlPlane {
    static CONTROL_PLANE: OnceLock<ControlPlane> = OnceLock::new();
    CONTROL_PLANE.get_or_init(|| {
        let out = Command::new(repo().join("hack/controlplane.sh"))
            .arg("up")
            .stderr(Stdio::inherit())
            .output()
            .expect("hack/controlplane.sh runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "hack/controlplane.sh up failed:\n{stdout}"
        );
        let kubeconfig = stdout
            .lines()
            .last()
            .and_then(|l| l.strip_prefix("export KUBECONFIG="))
            .unwrap_or_else(|| panic!("`up` ends with an export line:\n{stdout}"))
            .to_string();
        let kubeconfig = PathBuf::from(kubeconfig);
        let kubectl = kubeconfig.with_file_name("kubectl");
        let plane = ControlPlane {
            kubeconfig,
            kubectl,
        };
        let out = plane.kubectl(
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "-f",
                "crds/securitybaseline.yaml",
            ],
            None,
        );
        assert!(out.status.success(), "installing the CRD: {}", stderr(&out));
        let out = plane.kubectl(
            &[
                "wait",
                "--for",
                "condition=Established",
                "--timeout=60s",
                "crd/securitybaselines.zerotrust.dev",
            ],
            None,
        );
        assert!(out.status.success(), "CRD established: {}", stderr(&out));
        plane
    })
}

impl ControlPlane {
    /// Runs kubectl against the test cluster from the repository root, with optional stdin.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write;
        let mut child = Command::new(&self.kubectl)
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .current_dir(repo())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        let mut input = child.stdin.take().expect("stdin");
        input
            .write_all(stdin.unwrap_or_default().as_bytes())
            .expect("stdin written");
        drop(input);
        child.wait_with_output().expect("kubectl finishes")
    }
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A client for this test's runtime (a kube Client belongs to the runtime that made it).
pub async fn client() -> Client {
    let plane = control_plane();
    let kubeconfig = Kubeconfig::read_from(&plane.kubeconfig).expect("kubeconfig reads");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig is usable");
    Client::try_from(config).expect("client")
}

/// A name no other test (or earlier run against the same cluster) uses: `<prefix>-<pid>-<n>`.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() % 100_000)
        .unwrap_or(0);
    format!("{prefix}-{}-{stamp}-{n}", std::process::id())
}

/// Creates a namespace with labels; it is deleted when the guard drops.
pub async fn namespace(client: &Client, name: &str, labels: &[(&str, &str)]) -> NamespaceGuard {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    api.create(&PostParams::default(), &ns)
        .await
        .expect("namespace created");
    NamespaceGuard {
        name: name.to_string(),
        kubeconfig: control_plane().kubeconfig.clone(),
    }
}

/// Deletes its namespace on drop (without waiting), so a failed test leaves nothing behind.
pub struct NamespaceGuard {
    pub name: String,
    kubeconfig: PathBuf,
}

impl Drop for NamespaceGuard {
    fn drop(&mut self) {
        let _ = Command::new(&control_plane().kubectl)
            .args([
                "delete",
                "namespace",
                &self.name,
                "--wait=false",
                "--ignore-not-found",
            ])
            .env("KUBECONFIG", &self.kubeconfig)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Deletes a cluster-scoped or namespaced object by name, ignoring NotFound.
pub async fn delete_ignoring_missing<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => panic!("deleting {name}: {e}"),
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// An operator process for tests. It stops when the test process exits (its standard input
/// closes), or when dropped or killed.
pub struct OperatorProcess {
    pub child: std::process::Child,
    /// host:port of its /metrics, /healthz and /readyz.
    pub http: String,
    pub log: PathBuf,
}

impl OperatorProcess {
    /// Starts `zerotrust-operator run` against the test cluster with `extra` arguments.
    pub fn start(name: &str, extra: &[&str]) -> OperatorProcess {
        let plane = control_plane();
        let port = free_port();
        let log = std::env::temp_dir().join(format!(
            "zerotrust-{name}-{}-{port}.log",
            std::process::id()
        ));
        let log_file = std::fs::File::create(&log).expect("operator log file");
        let child = Command::new(env!("CARGO_BIN_EXE_zerotrust-operator"))
            .args([
                "run",
                "--stop-on-stdin-close",
                "--status-interval-ms",
                "200",
            ])
            .arg("--http-addr")
            .arg(format!("127.0.0.1:{port}"))
            .args(if extra.contains(&"--kubeconfig") {
                vec![]
            } else {
                vec![
                    "--kubeconfig".to_string(),
                    plane.kubeconfig.display().to_string(),
                ]
            })
            .args(extra)
            .env("RUST_LOG", "info,kube=warn,kube_lease_manager=debug")
            .stdin(Stdio::piped())
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            .spawn()
            .expect("the operator starts");
        eprintln!("{name} log: {}", log.display());
        OperatorProcess {
            child,
            http: format!("127.0.0.1:{port}"),
            log,
        }
    }

    /// GETs a path from its HTTP endpoint: (status code, body), or None if it does not answer.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(&self.http, path)
    }

    /// The value of one metric sample (`name{labels}` exactly as exposed), if present.
    pub fn metric(&self, sample: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics")?;
        body.lines().find_map(|line| {
            line.strip_prefix(sample)?
                .strip_prefix(' ')?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The operator under test: one process per test binary, started on first use and returned once
/// `/readyz` says its caches are synced, so a test's deadlines measure the operator at work, not
/// its start-up on a control plane still busy with earlier tests.
pub fn operator() -> &'static OperatorProcess {
    static OPERATOR: OnceLock<OperatorProcess> = OnceLock::new();
    OPERATOR.get_or_init(|| {
        let operator = OperatorProcess::start("operator", &[]);
        let deadline = Instant::now() + Duration::from_secs(120);
        while operator.get("/readyz").map(|(status, _)| status) != Some(200) {
            assert!(
                Instant::now() < deadline,
                "the operator did not become ready"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        operator
    })
}

/// `kubectl apply -f -` of `yaml`; panics with kubectl's message if it fails.
pub fn apply(yaml: &str) {
    let out = control_plane().kubectl(&["apply", "-f", "-"], Some(yaml));
    assert!(out.status.success(), "kubectl apply: {}", stderr(&out));
}

/// Deletes a SecurityBaseline without waiting for its finalizers.
pub fn delete_baseline(name: &str) {
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

/// `zerotrust-operator check --baseline NAME` against the test cluster.
pub fn check_baseline(name: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_zerotrust-operator"))
        .args(["check", "--baseline", name, "--kubeconfig"])
        .arg(&control_plane().kubeconfig)
        .output()
        .expect("check runs")
}

/// Runs `hack/controlplane.sh COMMAND` (fault injection: restart-apiserver, restart-etcd, ...).
pub fn controlplane(command: &str) {
    let out = Command::new(repo().join("hack/controlplane.sh"))
        .arg(command)
        .current_dir(repo())
        .output()
        .expect("hack/controlplane.sh runs");
    assert!(
        out.status.success(),
        "hack/controlplane.sh {command}: {}",
        stderr(&out)
    );
}

/// Creates `count` namespaces `<prefix>-<i>` labelled `label=value`, 16 at a time. They are
/// deleted together, by that label, when the guard drops.
pub async fn namespaces(
    client: &Client,
    prefix: &str,
    count: usize,
    (label, value): (&str, &str),
) -> LabelledNamespaces {
    use futures::{StreamExt, TryStreamExt};
    let api: Api<Namespace> = Api::all(client.clone());
    let guard = LabelledNamespaces {
        selector: format!("{label}={value}"),
        names: (0..count).map(|i| format!("{prefix}-{i}")).collect(),
    };
    futures::stream::iter(&guard.names)
        .map(|name| {
            let ns = Namespace {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    labels: Some([(label.to_string(), value.to_string())].into()),
                    ..ObjectMeta::default()
                },
                ..Namespace::default()
            };
            let api = api.clone();
            async move { api.create(&PostParams::default(), &ns).await }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await
        .expect("namespaces created");
    guard
}

/// Namespaces made by [`namespaces`]; deleted by their label on drop.
pub struct LabelledNamespaces {
    pub selector: String,
    pub names: Vec<String>,
}

impl Drop for LabelledNamespaces {
    fn drop(&mut self) {
        // Waits (up to 5 minutes) until they are gone: deleting hundreds of namespaces keeps the
        // controller-manager and API server busy for minutes, which must not spill into the
        // tests that run next.
        control_plane().kubectl(
            &[
                "delete",
                "namespace",
                "-l",
                &self.selector,
                "--wait=true",
                "--timeout=300s",
            ],
            None,
        );
    }
}
