//! Operator processes for tests and benchmarks: `zerotrust-operator run` as cargo built it, its
//! HTTP endpoints and memory, and every wait on it bounded.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::cluster::control_plane;
use crate::http::http_get;

/// The operator binary cargo built beside the running test or benchmark (`target/<profile>/`).
pub fn operator_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let mut dir = exe.parent().expect("a directory").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let binary = dir.join("zerotrust-operator");
    assert!(
        binary.exists(),
        "{} is missing: build it with `cargo build`",
        binary.display()
    );
    binary
}

/// An operator process. It stops when the test process exits (its standard input closes), or
/// when dropped or killed.
pub struct OperatorProcess {
    pub child: Child,
    /// host:port of its /metrics, /healthz and /readyz.
    pub http: String,
    pub log: PathBuf,
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl OperatorProcess {
    /// Starts `zerotrust-operator run` against the test control plane with `extra` arguments,
    /// logging at info level.
    pub fn start(name: &str, extra: &[&str]) -> OperatorProcess {
        // `spawn` gives every process its own HTTP address; a second `--http-addr` makes the
        // process exit at once with a usage error, which a test that only kills it never sees.
        assert!(
            !extra.contains(&"--http-addr"),
            "OperatorProcess::start sets --http-addr itself"
        );
        let kubeconfig = control_plane().kubeconfig.clone();
        let mut args = vec!["--status-interval-ms", "200"];
        if !extra.contains(&"--kubeconfig") {
            args.extend(["--kubeconfig", kubeconfig.to_str().expect("a UTF-8 path")]);
        }
        args.extend(extra);
        let log = std::env::temp_dir().join(format!(
            "zerotrust-{name}-{}-{}.log",
            std::process::id(),
            free_port()
        ));
        let process =
            OperatorProcess::spawn(&args, &log, "info,kube=warn,kube_lease_manager=debug");
        eprintln!("{name} log: {}", log.display());
        process
    }

    /// Starts `zerotrust-operator run ARGS`, its output in `log`, logging with `rust_log`.
    pub fn spawn(args: &[&str], log: &Path, rust_log: &str) -> OperatorProcess {
        let port = free_port();
        let log_file = std::fs::File::create(log).expect("operator log file");
        let http = format!("127.0.0.1:{port}");
        let child = Command::new(operator_binary())
            .args(["run", "--stop-on-stdin-close", "--http-addr", &http])
            .args(args)
            .env("RUST_LOG", rust_log)
            .stdin(Stdio::piped())
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            .spawn()
            .expect("the operator starts");
        OperatorProcess {
            child,
            http,
            log: log.to_path_buf(),
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

    /// Waits (at most `timeout`) until `/readyz` answers 200; panics otherwise.
    pub fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.get("/readyz").map(|(status, _)| status) != Some(200) {
            assert!(
                Instant::now() < deadline,
                "the operator did not become ready within {timeout:?}; log: {}",
                self.log.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends a signal (`TERM`, `KILL`, `STOP`, `CONT`) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} {}", self.child.id());
    }

    /// Waits (at most `timeout`) for the process to exit: its status, or None if it did not.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for the operator") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
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
        operator.wait_ready(Duration::from_secs(120));
        operator
    })
}
