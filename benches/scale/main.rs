//! The scale benchmark (not a test): runs the operator against the local control plane and
//! measures bulk convergence beside a raw-writer baseline, onboarding and repair latency, idle API
//! requests, memory and status size. Prints a Markdown table and writes JSON.
//!
//! Run it with `hack/bench.sh [--namespaces N] ...`, which brings up a dedicated control plane;
//! `cargo bench --bench scale -- --help` lists the options.

mod raw_writer;
mod report;
mod tracker;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use k8s_openapi::api::core::v1::{Namespace, ResourceQuota};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;

use report::{Latency, MemoryBreakdown, Report, Startup};
use tracker::Tracker;
use zerotrust_operator::api::{SecurityBaseline, parse_baselines};
use zerotrust_operator::controller::DEFAULT_BREAK_GLASS_GROUP;
use zerotrust_operator::engine::{
    DEFAULT_OPERATOR_NAMESPACE, Environment, Kind, ValidBaseline, object_name, render, validate,
};
use zerotrust_testkit::audit::{AuditLog, writes};
use zerotrust_testkit::namespaces::{create_all as create_namespaces, labelled as namespace};
use zerotrust_testkit::poll::wait_until;
use zerotrust_testkit::{OperatorProcess, connect};

#[derive(Debug, Parser)]
#[command(about = "Scale benchmark of zerotrust-operator on a local control plane")]
struct Args {
    /// Namespaces in the bulk scenario (and present during the latency scenarios).
    #[arg(long, default_value_t = 1000)]
    namespaces: usize,
    /// Namespaces reconciled (operator) or written (raw writer) at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Namespaces created one at a time for the onboarding latency.
    #[arg(long, default_value_t = 50)]
    onboarding_samples: usize,
    /// Edits and deletions of generated objects for the repair latency.
    #[arg(long, default_value_t = 60)]
    repair_samples: usize,
    /// How long to count the operator's requests once everything is compliant.
    #[arg(long, default_value_t = 300)]
    idle_seconds: u64,
    /// The baseline to apply (its selector is replaced by the benchmark's).
    #[arg(long, default_value = "examples/restricted-tenants.yaml")]
    baseline: PathBuf,
    /// Admin kubeconfig of the control plane (hack/controlplane.sh up prints it).
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: PathBuf,
    /// Skip the raw-writer baseline (for a quicker run that measures the operator only).
    #[arg(long)]
    no_raw_writer: bool,
    /// Where the JSON results go.
    #[arg(long, default_value = "target/bench/scale.json")]
    json: PathBuf,
    /// Fail (exit 1) when the onboarding p99 is above this many milliseconds: a bound generous
    /// enough for a loaded 2-core machine (the published target is 250 ms).
    #[arg(long, default_value_t = 5000.0)]
    fail_onboarding_p99_ms: f64,
    /// Fail (exit 1) when the repair p99 is above this many milliseconds (the target is 500 ms).
    #[arg(long, default_value_t = 5000.0)]
    fail_repair_p99_ms: f64,
    /// After the idle window: this many NetworkPolicies of `--inflation-kib` each, labelled like
    /// ours but not ours, in one selected namespace, while namespaces keep being onboarded; the
    /// operator's RSS before and after (0: skip).
    #[arg(long, default_value_t = 0)]
    inflation_objects: usize,
    /// Size of each inflating object's padding annotation, in KiB.
    #[arg(long, default_value_t = 250)]
    inflation_kib: usize,
    /// At the end: stop the operator, start a new one over everything the run left, and measure
    /// how long until it is ready and has reconciled every namespace once, and its memory then.
    #[arg(long)]
    startup: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// One kind of drift a user causes, cycled through by the repair scenario.
#[derive(Clone, Copy, Debug)]
enum Edit {
    DeletePolicy,
    AddAllowRule,
    RaiseQuota,
    WeakenPodSecurity,
}

const EDITS: [Edit; 4] = [
    Edit::DeletePolicy,
    Edit::AddAllowRule,
    Edit::RaiseQuota,
    Edit::WeakenPodSecurity,
];

/// What the tracker must see before a repair counts: a new object, or one newer than our edit.
enum Repaired {
    /// The API server undid the edit in the same request (the baseline's mutating admission
    /// policy raises a lowered Pod Security label): compliant is all there is to see.
    InRequest,
    Recreated {
        kind: Kind,
        name: String,
        old_uid: String,
    },
    NewerThan {
        kind: Kind,
        name: String,
        version: u64,
    },
}

fn version(meta: &kube::api::ObjectMeta) -> u64 {
    // Resource versions are opaque to clients in general; on this etcd-backed API server they are
    // increasing revisions, which is all the benchmark needs to tell "after our edit".
    meta.resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

struct Bench {
    args: Args,
    client: Client,
    /// The edits' client: the admin acting in the break-glass group, which the baseline's
    /// admission policies let through, so an edit is drift for the operator to repair rather
    /// than tampering the API server refuses.
    editor: Client,
    run: String,
    baseline: SecurityBaseline,
    valid: ValidBaseline,
}

impl Bench {
    fn labels(&self, set: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("zt-bench-run".to_string(), self.run.clone()),
            ("zt-bench-set".to_string(), set.to_string()),
        ])
    }

    fn names(&self, set: &str, count: usize) -> Vec<String> {
        (0..count)
            .map(|i| format!("ztb-{}-{set}-{i}", self.run))
            .collect()
    }

    /// The benchmark's baseline, selecting the namespaces of `set`.
    fn baseline_for(&self, set: &str) -> SecurityBaseline {
        let mut baseline = self.baseline.clone();
        baseline.spec.namespace_selector = Some(LabelSelector {
            match_labels: Some(self.labels(set)),
            ..LabelSelector::default()
        });
        baseline
    }

    async fn apply_baseline(&self) {
        let api: Api<SecurityBaseline> = Api::all(self.client.clone());
        let mut manifest = serde_json::to_value(&self.baseline).expect("serializes");
        manifest["apiVersion"] = json!("zerotrust.dev/v1alpha1");
        manifest["kind"] = json!("SecurityBaseline");
        api.patch(
            &self.baseline.name_any(),
            &PatchParams::apply("zerotrust-bench").force(),
            &Patch::Apply(manifest),
        )
        .await
        .expect("the baseline applies");
    }

    async fn edit(&self, tracker: &Tracker, namespace: &str, edit: Edit) -> Repaired {
        let name = |kind| object_name(self.valid.name(), kind);
        let merge = |value| Patch::Merge(value);
        let params = PatchParams::default();
        match edit {
            Edit::DeletePolicy => {
                let policy = name("default-deny");
                let live = tracker
                    .object(Kind::NetworkPolicy, namespace, &policy)
                    .expect("the policy exists");
                let old_uid = live.meta().uid.clone().unwrap_or_default();
                Api::<NetworkPolicy>::namespaced(self.editor.clone(), namespace)
                    .delete(&policy, &DeleteParams::default())
                    .await
                    .expect("the policy deletes");
                Repaired::Recreated {
                    kind: Kind::NetworkPolicy,
                    name: policy,
                    old_uid,
                }
            }
            Edit::AddAllowRule => {
                let policy = name("default-deny");
                let edited = Api::<NetworkPolicy>::namespaced(self.editor.clone(), namespace)
                    .patch(&policy, &params, &merge(json!({"spec": {"ingress": [{}]}})))
                    .await
                    .expect("the policy patches");
                Repaired::NewerThan {
                    kind: Kind::NetworkPolicy,
                    name: policy,
                    version: version(edited.meta()),
                }
            }
            Edit::RaiseQuota => {
                let quota = name("quota");
                let edited = Api::<ResourceQuota>::namespaced(self.editor.clone(), namespace)
                    .patch(
                        &quota,
                        &params,
                        &merge(json!({"spec": {"hard": {"pods": "5000"}}})),
                    )
                    .await
                    .expect("the quota patches");
                Repaired::NewerThan {
                    kind: Kind::ResourceQuota,
                    name: quota,
                    version: version(edited.meta()),
                }
            }
            Edit::WeakenPodSecurity => {
                let labels = json!({"metadata": {"labels": {
                    "pod-security.kubernetes.io/enforce": "privileged"}}});
                let edited = Api::<Namespace>::all(self.editor.clone())
                    .patch(namespace, &params, &merge(labels))
                    .await
                    .expect("the namespace patches");
                let enforce = edited
                    .labels()
                    .get("pod-security.kubernetes.io/enforce")
                    .map(String::as_str);
                if enforce != Some("privileged") {
                    return Repaired::InRequest;
                }
                Repaired::NewerThan {
                    kind: Kind::Namespace,
                    name: namespace.to_string(),
                    version: version(edited.meta()),
                }
            }
        }
    }
}

fn repaired(tracker: &Tracker, valid: &ValidBaseline, namespace: &str, what: &Repaired) -> bool {
    let seen = match what {
        Repaired::InRequest => true,
        Repaired::Recreated {
            kind,
            name,
            old_uid,
        } => tracker
            .object(*kind, namespace, name)
            .is_some_and(|o| o.meta().uid.as_ref() != Some(old_uid)),
        Repaired::NewerThan {
            kind: Kind::Namespace,
            version: v,
            ..
        } => tracker
            .namespace(namespace)
            .is_some_and(|ns| version(&ns.metadata) > *v),
        Repaired::NewerThan {
            kind,
            name,
            version: v,
        } => tracker
            .object(*kind, namespace, name)
            .is_some_and(|o| version(o.meta()) > *v),
    };
    seen && tracker.compliant(valid, namespace)
}

/// A client of `kubeconfig`'s user acting in the break-glass group (and system:masters, to keep
/// its rights).
async fn break_glass(kubeconfig: &std::path::Path) -> Client {
    let file = kube::config::Kubeconfig::read_from(kubeconfig).expect("the kubeconfig reads");
    let mut config = kube::Config::from_custom_kubeconfig(file, &Default::default())
        .await
        .expect("the kubeconfig is usable");
    config.auth_info.impersonate = Some("zerotrust-bench-editor".to_string());
    config.auth_info.impersonate_groups = Some(vec![
        DEFAULT_BREAK_GLASS_GROUP.to_string(),
        "system:masters".to_string(),
    ]);
    Client::try_from(config).expect("a client")
}

/// A client of `kubeconfig`'s own user.
async fn client_of(kubeconfig: &std::path::Path) -> Client {
    let file = kube::config::Kubeconfig::read_from(kubeconfig).expect("the kubeconfig reads");
    let config = kube::Config::from_custom_kubeconfig(file, &Default::default())
        .await
        .expect("the kubeconfig is usable");
    Client::try_from(config).expect("a client")
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The operator's memory gauges from its `/metrics`: resident and allocated bytes as the
/// allocator sees them, and `zerotrust_cache_bytes` per cache.
fn memory_breakdown(operator: &OperatorProcess) -> MemoryBreakdown {
    let (_, text) = operator.get("/metrics").unwrap_or_default();
    let mut memory = MemoryBreakdown::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((sample, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let value = value / (1024.0 * 1024.0);
        if sample == "zerotrust_memory_resident_bytes" {
            memory.resident_mib = value;
        } else if sample == "zerotrust_memory_allocated_bytes" {
            memory.allocated_mib = value;
        } else if let Some(labels) = sample.strip_prefix("zerotrust_cache_bytes{") {
            let cache = labels.trim_end_matches('}').replace('"', "");
            memory.caches_mib.insert(cache, value);
        }
    }
    memory
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let text = std::fs::read_to_string(&args.baseline)
        .unwrap_or_else(|e| panic!("{}: {e}", args.baseline.display()));
    let mut baseline = parse_baselines(&text)
        .unwrap_or_else(|e| panic!("{}: {e}", args.baseline.display()))
        .remove(0);
    let run = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        % 100_000)
        .to_string();
    baseline.metadata.name = Some(format!("bench-{run}"));
    let client = connect(&args.kubeconfig).await;
    let editor = break_glass(&args.kubeconfig).await;
    let mut bench = Bench {
        client,
        editor,
        run,
        valid: validate(&baseline, k8s_openapi::jiff::Timestamp::now().as_second())
            .expect("the example baseline is valid"),
        baseline,
        args,
    };
    // From here on the baseline selects the benchmark's own namespaces, and only those.
    bench.baseline = bench.baseline_for("op");
    bench.valid = validate(
        &bench.baseline,
        k8s_openapi::jiff::Timestamp::now().as_second(),
    )
    .expect("the benchmark's baseline is valid");
    let report = run_all(&bench).await;

    let table = report.table();
    println!("\n{table}");
    let json = serde_json::to_string_pretty(&report).expect("serializes");
    if let Some(dir) = bench.args.json.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(&bench.args.json, format!("{json}\n"))
        .unwrap_or_else(|e| panic!("{}: {e}", bench.args.json.display()));
    println!("{json}");
    eprintln!("bench: JSON written to {}", bench.args.json.display());
    let failed = report.gate(
        bench.args.fail_onboarding_p99_ms,
        bench.args.fail_repair_p99_ms,
    );
    for failure in &failed {
        eprintln!("bench: FAILED: {failure}");
    }
    if !failed.is_empty() {
        std::process::exit(1);
    }
}

async fn run_all(bench: &Bench) -> Report {
    let args = &bench.args;
    let kubeconfig_dir = args
        .kubeconfig
        .parent()
        .expect("kubeconfig has a directory");
    let audit = AuditLog::new(kubeconfig_dir.join("audit.log"));
    zerotrust_testkit::crd::install_crd(&bench.client, false).await;
    let tracker = Tracker::start(&bench.client, &format!("zt-bench-run={}", bench.run)).await;
    let mut report = Report {
        namespaces: args.namespaces,
        concurrency: args.concurrency,
        idle_seconds: args.idle_seconds,
        ..Report::default()
    };

    // --- 1. Bulk convergence: the operator ---------------------------------------------------
    let bulk = bench.names("op", args.namespaces);
    let labels = bench.labels("op");
    let specs: Vec<Namespace> = bulk.iter().map(|n| namespace(n, &labels)).collect();
    eprintln!("bench: creating {} namespaces", bulk.len());
    create_namespaces(&bench.client, &specs, 32).await;
    wait_until(Duration::from_secs(600), "default ServiceAccounts", || {
        bulk.iter().all(|n| tracker.has_default_service_account(n))
    })
    .await;
    report.objects_per_namespace = render(
        std::slice::from_ref(&bench.valid),
        &bulk[0],
        &labels,
        &Environment::new(DEFAULT_OPERATOR_NAMESPACE),
    )
    .objects
    .len();

    let log = std::env::temp_dir().join(format!("zerotrust-bench-{}.log", bench.run));
    eprintln!("bench: operator log {}", log.display());
    let operator_kubeconfig = kubeconfig_dir.join("operator.kubeconfig");
    let concurrency = args.concurrency.to_string();
    let spawn_operator = |log: &std::path::Path| {
        OperatorProcess::spawn(
            &[
                "--kubeconfig",
                operator_kubeconfig.to_str().expect("a UTF-8 path"),
                "--concurrency",
                &concurrency,
            ],
            log,
            "warn",
        )
    };
    let operator = spawn_operator(&log);
    operator.wait_ready(Duration::from_secs(120));
    let mark = audit.mark();
    eprintln!("bench: applying the baseline");
    let start = Instant::now();
    bench.apply_baseline().await;
    let mut pending: Vec<&String> = bulk.iter().collect();
    let deadline = start + Duration::from_secs(120 + args.namespaces as u64);
    while !pending.is_empty() {
        pending.retain(|n| !tracker.compliant(&bench.valid, n));
        assert!(
            Instant::now() < deadline,
            "{} namespaces not compliant in time",
            pending.len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    report.bulk_operator_s = start.elapsed().as_secs_f64();
    report.bulk_requests = audit.since(mark);
    eprintln!(
        "bench: operator converged in {:.1} s",
        report.bulk_operator_s
    );

    // --- 2. Onboarding latency -----------------------------------------------------------------
    let mut samples = Vec::new();
    // When the controller-manager's default ServiceAccount arrived: the operator's last write of
    // an onboarding waits for it, so this part of each sample is not the operator's.
    let mut service_account_samples = Vec::new();
    for name in bench.names("new", args.onboarding_samples) {
        let start = Instant::now();
        create_namespaces(&bench.client, &[namespace(&name, &labels)], 1).await;
        let mut service_account = None;
        wait_until(Duration::from_secs(30), "onboarding", || {
            if service_account.is_none() && tracker.has_default_service_account(&name) {
                service_account = Some(start.elapsed());
            }
            tracker.compliant(&bench.valid, &name)
        })
        .await;
        samples.push(start.elapsed());
        service_account_samples.push(service_account.unwrap_or_else(|| start.elapsed()));
    }
    report.onboarding = Latency::of(&samples);
    report.onboarding_service_account = Latency::of(&service_account_samples);
    let after: Vec<Duration> = samples
        .iter()
        .zip(&service_account_samples)
        .map(|(total, sa)| total.saturating_sub(*sa))
        .collect();
    report.onboarding_after_service_account = Latency::of(&after);
    eprintln!(
        "bench: onboarding {:?}; default ServiceAccount seen {:?}; compliant after it {:?}",
        report.onboarding,
        report.onboarding_service_account,
        report.onboarding_after_service_account
    );

    // --- 2b. Gate-open latency: creation to the first pod the API server admits ------------------
    // Separate namespaces, so the probing requests do not slow the onboarding samples above.
    let mut samples = Vec::new();
    for name in bench.names("gate", args.onboarding_samples) {
        let start = Instant::now();
        create_namespaces(&bench.client, &[namespace(&name, &labels)], 1).await;
        first_pod_admitted(&bench.client, &name, Duration::from_secs(30)).await;
        samples.push(start.elapsed());
    }
    report.gate_open = Latency::of(&samples);
    eprintln!("bench: gate open {:?}", report.gate_open);

    // --- 3. Drift repair latency ---------------------------------------------------------------
    let mut samples = Vec::new();
    let mut by_edit: BTreeMap<String, Vec<Duration>> = BTreeMap::new();
    // Repairs the operator makes (the API server itself undoes a lowered Pod Security label).
    let mut operator_repairs = 0i64;
    for i in 0..args.repair_samples {
        let target = &bulk[(i * 7919) % bulk.len()];
        let edit = EDITS[i % EDITS.len()];
        let start = Instant::now();
        let what = bench.edit(&tracker, target, edit).await;
        if !matches!(what, Repaired::InRequest) {
            operator_repairs += 1;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while !repaired(&tracker, &bench.valid, target, &what) {
            assert!(
                Instant::now() < deadline,
                "{target}: not repaired within 30 s after {:?}: {:?}",
                EDITS[i % EDITS.len()],
                tracker.shortfall(&bench.valid, target)
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let took = start.elapsed();
        samples.push(took);
        by_edit.entry(format!("{edit:?}")).or_default().push(took);
    }
    report.repair = Latency::of(&samples);
    report.repair_by_edit = by_edit
        .iter()
        .map(|(edit, samples)| (edit.clone(), Latency::of(samples)))
        .collect();
    eprintln!("bench: repair {:?}", report.repair);

    // --- Status size, once every repair is counted (before the idle window) -----------------------
    let selected = (args.namespaces + 2 * args.onboarding_samples) as i32;
    let repairs = operator_repairs;
    let api: Api<SecurityBaseline> = Api::all(bench.client.clone());
    let mut stored = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    while stored.is_none() {
        let b = api.get(&bench.baseline.name_any()).await.expect("reads");
        if b.status
            .as_ref()
            .is_some_and(|s| s.compliant_namespaces == selected && s.repairs >= repairs)
        {
            stored = Some(b);
        } else {
            assert!(
                Instant::now() < deadline,
                "status never showed {selected} compliant"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let mut stored = stored.expect("set above");
    report.status_bytes = serde_json::to_vec(&stored.status).map_or(0, |v| v.len());
    stored.metadata.managed_fields = None;
    report.baseline_object_bytes = serde_json::to_vec(&stored).map_or(0, |v| v.len());
    // --- 4. Idle cost and 5. memory ------------------------------------------------------------
    let (peak, _) = operator.rss();
    eprintln!("bench: idle for {} s", args.idle_seconds);
    let mark = audit.mark();
    tokio::time::sleep(Duration::from_secs(args.idle_seconds)).await;
    report.idle_requests = audit.since(mark);
    report.idle_writes = writes(&report.idle_requests);
    let (peak_after, steady) = operator.rss();
    report.rss_peak_mib = mib(peak.max(peak_after));
    report.rss_steady_mib = mib(steady);

    // --- 6. Memory a tenant cannot inflate -------------------------------------------------------
    if args.inflation_objects > 0 {
        report.inflation = Some(inflate(bench, &operator, &tracker).await);
        eprintln!("bench: inflation {:?}", report.inflation);
    }

    report.memory = memory_breakdown(&operator);
    eprintln!("bench: memory gauges {:?}", report.memory);
    drop(operator);

    // --- 7. Start-up: a new process over everything the run left --------------------------------
    if args.startup {
        let namespaces = Api::<Namespace>::all(bench.client.clone())
            .list_metadata(&ListParams::default())
            .await
            .expect("namespaces")
            .items
            .len();
        let log = std::env::temp_dir().join(format!("zerotrust-bench-{}-startup.log", bench.run));
        let started = Instant::now();
        let operator = spawn_operator(&log);
        operator.wait_ready(Duration::from_secs(600));
        let ready_s = started.elapsed().as_secs_f64();
        let reconciled = || {
            operator
                .metric("zerotrust_reconciles_total{result=\"ok\"}")
                .unwrap_or(0.0)
        };
        wait_until(Duration::from_secs(600), "the first full pass", || {
            reconciled() >= namespaces as f64
        })
        .await;
        let first_pass_s = started.elapsed().as_secs_f64();
        let (rss_peak, rss) = operator.rss();
        report.startup = Some(Startup {
            namespaces,
            ready_s,
            first_pass_s,
            rss_peak_mib: mib(rss_peak),
            rss_mib: mib(rss),
            memory: memory_breakdown(&operator),
        });
        eprintln!("bench: start-up {:?}", report.startup);
    }
    if args.no_raw_writer {
        return report;
    }

    // --- 1b. Bulk convergence: the raw writer, on namespaces of its own ------------------------
    let raw = bench.names("raw", args.namespaces);
    let raw_labels = bench.labels("raw");
    let raw_specs: Vec<Namespace> = raw.iter().map(|n| namespace(n, &raw_labels)).collect();
    eprintln!(
        "bench: creating {} namespaces for the raw writer",
        raw.len()
    );
    create_namespaces(&bench.client, &raw_specs, 32).await;
    wait_until(Duration::from_secs(600), "default ServiceAccounts", || {
        raw.iter().all(|n| tracker.has_default_service_account(n))
    })
    .await;
    let raw_baseline = validate(
        &bench.baseline_for("raw"),
        k8s_openapi::jiff::Timestamp::now().as_second(),
    )
    .expect("valid");
    // Under the operator's own identity: the objects carry our ownership labels, which the API
    // server lets no one else write, and the same admission policies evaluate both writers.
    let as_operator = client_of(&operator_kubeconfig).await;
    let elapsed = raw_writer::write_all(&as_operator, &raw_baseline, &raw_specs, args.concurrency)
        .await
        .expect("the raw writer's applies succeed");
    report.bulk_raw_writer_s = elapsed.as_secs_f64();
    report.bulk_ratio = report.bulk_operator_s / report.bulk_raw_writer_s.max(1e-9);
    eprintln!(
        "bench: raw writer wrote in {:.1} s",
        report.bulk_raw_writer_s
    );
    report
}

/// Waits until the API server admits a pod (a server-side dry run: every admission policy, Pod
/// Security, quota and LimitRange run, nothing is stored) in `namespace`: the onboarding gate is
/// open. Sends the next attempt as soon as one is refused, so the figure is bounded by one round
/// trip.
async fn first_pod_admitted(client: &Client, namespace: &str, within: Duration) {
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), namespace);
    // Restricted Pod Security and the quota's required limits: admitted once the gate is open.
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "gate-probe"},
        "spec": {
            "securityContext": {"runAsNonRoot": true, "runAsUser": 1000,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "automountServiceAccountToken": false,
            "containers": [{
                "name": "app", "image": "registry.k8s.io/pause:3.10",
                "securityContext": {"allowPrivilegeEscalation": false,
                                    "capabilities": {"drop": ["ALL"]}},
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"},
                              "limits": {"cpu": "10m", "memory": "16Mi"}}
            }]
        }
    }))
    .expect("a pod");
    let params = kube::api::PostParams {
        dry_run: true,
        ..Default::default()
    };
    let deadline = Instant::now() + within;
    loop {
        match pods.create(&params, &pod).await {
            Ok(_) => return,
            Err(e) => assert!(
                Instant::now() < deadline,
                "{namespace}: no pod admitted within {within:?}; last refusal: {e}"
            ),
        }
    }
}

/// Objects labelled like the operator's (both ownership labels, the benchmark baseline's name) but
/// not its own (other names, another field manager), each with a large annotation, created in a
/// selected namespace while other namespaces are onboarded: what a tenant who can create
/// NetworkPolicies could try. In Enforce mode the tamper policy refuses such objects from tenants,
/// so they are written in the break-glass group, as a tenant could in Audit mode.
async fn inflate(
    bench: &Bench,
    operator: &OperatorProcess,
    tracker: &Tracker,
) -> report::Inflation {
    let args = &bench.args;
    let labels = bench.labels("op");
    let tenant = format!("ztb-{}-tenant", bench.run);
    create_namespaces(&bench.client, &[namespace(&tenant, &labels)], 1).await;
    wait_until(
        Duration::from_secs(30),
        "the tenant namespace onboarded",
        || tracker.compliant(&bench.valid, &tenant),
    )
    .await;
    let (_, before) = operator.rss();
    let padding = "x".repeat(args.inflation_kib * 1024);
    let baseline = bench.baseline.name_any();
    let policies: Api<NetworkPolicy> = Api::namespaced(bench.editor.clone(), &tenant);
    let count = args.inflation_objects;
    let writer = tokio::spawn(async move {
        for i in 0..count {
            let policy: NetworkPolicy = serde_json::from_value(json!({
                "metadata": {
                    "name": format!("tenant-large-{i}"),
                    "labels": {"app.kubernetes.io/managed-by": "zerotrust-operator",
                               "zerotrust.dev/baseline": baseline},
                    "annotations": {"bench.zerotrust.dev/padding": padding},
                },
                "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
            }))
            .expect("a policy");
            policies
                .create(&kube::api::PostParams::default(), &policy)
                .await
                .expect("the inflating policy is created");
        }
    });
    // Onboarding goes on while they arrive.
    let mut samples = Vec::new();
    for name in bench.names("inflation", 10) {
        let start = Instant::now();
        create_namespaces(&bench.client, &[namespace(&name, &labels)], 1).await;
        wait_until(Duration::from_secs(60), "onboarding while inflated", || {
            tracker.compliant(&bench.valid, &name)
        })
        .await;
        samples.push(start.elapsed());
    }
    writer.await.expect("the writer finishes");
    // Every object has reached the operator's watch well within this; RSS read after it.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (peak, after) = operator.rss();
    report::Inflation {
        objects: count,
        object_kib: args.inflation_kib,
        rss_before_mib: mib(before),
        rss_after_mib: mib(after),
        rss_peak_mib: mib(peak),
        onboarding: Latency::of(&samples),
    }
}
