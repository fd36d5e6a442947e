//! The real control plane: brought up once per test binary by `hack/controlplane.sh up` (reused if
//! already running) with the CRD installed, or connected to from a kubeconfig; kubectl against it
//! with a deadline; unique names so tests run in parallel without seeing each other.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// How long any one kubectl or script run may take before the test fails instead of hanging.
pub const COMMAND_DEADLINE: Duration = Duration::from_secs(360);

pub struct ControlPlane {
    pub kubeconfig: PathBuf,
    pub kubectl: PathBuf,
}

/// The repository root.
pub fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// The control plane, brought up (or found running) once per test binary, with the CRD installed.
/// It is never built from here: a missing build fails at once, saying how to build it, instead of
/// starting a build of several minutes inside `cargo test`.
pub fn control_plane() -> &'static ControlPlane {
    static CONTROL_PLANE: OnceLock<ControlPlane> = OnceLock::new();
    CONTROL_PLANE.get_or_init(|| {
        let mut up = Command::new(repo().join("hack/controlplane.sh"));
        up.arg("up").env("ZT_NO_BUILD", "1");
        let out = run_bounded(&mut up, None, COMMAND_DEADLINE);
        assert!(
            out.status.success(),
            "the test control plane is not available:\n{}\nBuild it once with \
             `hack/controlplane.sh build` (needs Go; about 11 minutes on 2 cores), or run the \
             whole suite with `hack/test.sh`, which builds it.",
            stderr(&out)
        );
        let stdout = stdout(&out);
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
    /// A kubeconfig of the user `zerotrust-operator` (in system:masters), the one identity the
    /// audit log records: an operator run with it has every request it makes logged.
    pub fn operator_kubeconfig(&self) -> PathBuf {
        self.kubeconfig.with_file_name("operator.kubeconfig")
    }

    /// The API server's audit log (requests of `zerotrust-operator` only).
    pub fn audit_log(&self) -> crate::audit::AuditLog {
        crate::audit::AuditLog::new(self.kubeconfig.with_file_name("audit.log"))
    }

    /// Runs kubectl against the test cluster from the repository root, with optional stdin.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut kubectl = Command::new(&self.kubectl);
        kubectl
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .current_dir(repo());
        run_bounded(&mut kubectl, stdin, COMMAND_DEADLINE)
    }
}

/// Runs `command` to completion with `stdin`, capturing its output; a command still running after
/// `deadline` is killed and fails the test.
pub fn run_bounded(command: &mut Command, stdin: Option<&str>, deadline: Duration) -> Output {
    use std::io::Write;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{command:?} does not start: {e}"));
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.unwrap_or_default().as_bytes())
        .expect("stdin written");
    drop(input);
    // Output is read on threads so a chatty command cannot block on a full pipe.
    let read = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buffer = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut buffer);
            }
            buffer
        })
    };
    let out = read(child.stdout.take().map(|p| Box::new(p) as _));
    let err = read(child.stderr.take().map(|p| Box::new(p) as _));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for a command") {
            break status;
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} did not finish within {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A client from `kubeconfig`.
pub async fn connect(kubeconfig: &Path) -> Client {
    let file = Kubeconfig::read_from(kubeconfig)
        .unwrap_or_else(|e| panic!("{}: {e}", kubeconfig.display()));
    let config = Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", kubeconfig.display()));
    Client::try_from(config).expect("a client")
}

/// A client of the test control plane for this test's runtime (a kube Client belongs to the
/// runtime that made it).
pub async fn client() -> Client {
    connect(&control_plane().kubeconfig).await
}

/// Runs `hack/controlplane.sh COMMAND` (fault injection: restart-apiserver, restart-etcd, ...).
pub fn controlplane(command: &str) {
    let mut script = Command::new(repo().join("hack/controlplane.sh"));
    script
        .arg(command)
        .env("ZT_NO_BUILD", "1")
        .current_dir(repo());
    let out = run_bounded(&mut script, None, COMMAND_DEADLINE);
    assert!(
        out.status.success(),
        "hack/controlplane.sh {command}: {}",
        stderr(&out)
    );
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

/// A control plane of a test's own, apart from the shared one, started with extra kube-apiserver
/// flags (to look like an older or differently configured API server); stopped and removed when
/// dropped.
pub struct SeparateControlPlane {
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub kubectl: PathBuf,
}

impl SeparateControlPlane {
    /// Brings up a control plane in a fresh directory named after `name`, its API server started
    /// with `apiserver_args`.
    pub fn up(name: &str, apiserver_args: &str) -> SeparateControlPlane {
        let dir =
            std::env::temp_dir().join(format!("zt-controlplane-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut up = Command::new(repo().join("hack/controlplane.sh"));
        up.arg("up")
            .env("ZT_NO_BUILD", "1")
            .env("ZT_CONTROLPLANE_DIR", &dir)
            .env("ZT_APISERVER_ARGS", apiserver_args);
        let out = run_bounded(&mut up, None, COMMAND_DEADLINE);
        assert!(
            out.status.success(),
            "a separate control plane: {}",
            stderr(&out)
        );
        SeparateControlPlane {
            kubeconfig: dir.join("kubeconfig"),
            kubectl: dir.join("kubectl"),
            dir,
        }
    }

    /// Runs kubectl against this control plane, with optional stdin.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut kubectl = Command::new(&self.kubectl);
        kubectl
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .current_dir(repo());
        run_bounded(&mut kubectl, stdin, COMMAND_DEADLINE)
    }
}

impl Drop for SeparateControlPlane {
    fn drop(&mut self) {
        let mut down = Command::new(repo().join("hack/controlplane.sh"));
        down.arg("down").env("ZT_CONTROLPLANE_DIR", &self.dir);
        run_bounded(&mut down, None, COMMAND_DEADLINE);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
