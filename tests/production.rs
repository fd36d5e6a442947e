//! Running it in production: metrics, health endpoints and JSON logs after a scenario, and leader
//! election between two operator processes (exactly one writes; the standby takes over when the
//! leader dies; a leader paused past its lease writes nothing when it wakes, and exits; candidates
//! racing for a free lease never lead together).
//!
//! The tests run one at a time (`SERIAL`): a repair or a write can then only come from the
//! processes the test started, and the lease timings do not compete with other operators.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Api;
use zerotrust_operator::controller::{LeaderElection, lease_manager};
use zerotrust_testkit::*;

const WAIT: Duration = Duration::from_secs(30);

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The lease the election tests use, and the longest a takeover may take: the lease's duration
/// plus room for a loaded 2-core machine.
const LEASE_SECONDS: u64 = 8;
const TAKEOVER_BOUND: Duration = Duration::from_secs(LEASE_SECONDS + 10);

/// A baseline with a default-deny and Pod Security, selecting `zt-test=<selector>`.
fn deny_all(name: &str, selector: &str) -> String {
    baseline(
        name,
        selector,
        "networkPolicy: {defaultDeny: [Ingress, Egress], allowDNS: true}\npodSecurity: {enforce: restricted}",
    )
}

async fn policy_exists(client: &kube::Client, ns: &str, name: &str) -> bool {
    let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), ns);
    matches!(api.get_opt(name).await, Ok(Some(_)))
}

#[tokio::test]
async fn metrics_health_and_json_logs_report_a_scenario() {
    let _serial = SERIAL.lock().await;
    let operator = OperatorProcess::start("metrics", &["--log-format", "json"]);
    let client = client().await;
    let tag = unique("metrics");
    let name = tag.clone();
    let _cleanup = Cleanup(vec![name.clone()]);
    eventually(WAIT, "/readyz", || async {
        (operator.get("/readyz")?.0 == 200).then_some(())
    })
    .await;
    assert_eq!(operator.get("/healthz").map(|r| r.0), Some(200));

    apply(&deny_all(&name, &tag));
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

    // --log-format json: every line of the log is one JSON object with a level and a message,
    // and the repair is among them.
    let log = operator.log_text();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    assert!(
        lines
            .iter()
            .all(|l| l["level"].is_string() && l["fields"]["message"].is_string()),
        "{log}"
    );
    assert!(
        lines.iter().any(|l| l["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("repaired") && m.contains(&deny))),
        "the repair is logged: {log}"
    );
}

/// Leader-election flags for a lease of `LEASE_SECONDS` named `lease` in `namespace`.
fn election(lease: &str, namespace: &str) -> Vec<String> {
    [
        "--leader-elect",
        "--lease-name",
        lease,
        "--lease-namespace",
        namespace,
        "--lease-duration-seconds",
        &LEASE_SECONDS.to_string(),
        "--lease-renew-grace-seconds",
        "3",
    ]
    .map(String::from)
    .to_vec()
}

/// `election` plus this process's identity, as arguments.
fn elected<'a>(election: &'a [String], identity: &'a str) -> Vec<&'a str> {
    election
        .iter()
        .map(String::as_str)
        .chain(["--identity", identity])
        .collect()
}

#[tokio::test]
async fn one_leader_writes_and_a_standby_takes_over_when_it_dies() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    let tag = unique("leader");
    let lease_ns = namespace(&client, &format!("{tag}-lease"), &[]).await;
    let election = election(&tag, &lease_ns.name);
    let a = OperatorProcess::start("leader-a", &elected(&election, "a"));
    let b = OperatorProcess::start("leader-b", &elected(&election, "b"));
    // Either may win the race for the lease; exactly one leads.
    let a_leads = eventually(WAIT, "one process leads", || async {
        match (a.metric("zerotrust_leader"), b.metric("zerotrust_leader")) {
            (Some(1.0), Some(0.0)) => Some(true),
            (Some(0.0), Some(1.0)) => Some(false),
            _ => None,
        }
    })
    .await;
    let (mut first, second) = if a_leads { (a, b) } else { (b, a) };
    let standby = if a_leads { "b" } else { "a" };

    let name = tag.clone();
    let _cleanup = Cleanup(vec![name.clone()]);
    apply(&deny_all(&name, &tag));
    let ns = namespace(&client, &format!("{tag}-work"), &[("zt-test", &tag)]).await;
    let deny = format!("zt-{name}-default-deny");
    eventually(WAIT, "onboarded by the leader", || async {
        policy_exists(&client, &ns.name, &deny).await.then_some(())
    })
    .await;
    assert_eq!(
        second.metric("zerotrust_reconciles_total{result=\"ok\"}"),
        Some(0.0),
        "the standby never reconciles (the counter is exported at zero from the start)"
    );
    assert_eq!(
        second.get("/readyz").map(|r| r.0),
        Some(200),
        "a waiting standby is ready"
    );

    // The leader dies without releasing its lease.
    first.signal("KILL");
    assert!(
        first.wait_exit(WAIT).is_some(),
        "the killed leader did not exit"
    );
    let killed = Instant::now();
    eventually(TAKEOVER_BOUND, "the standby takes over", || async {
        (second.metric("zerotrust_leader")? == 1.0).then_some(())
    })
    .await;
    let takeover = killed.elapsed();
    eprintln!("failover: {takeover:?}");
    let leases: Api<Lease> = Api::namespaced(client.clone(), &lease_ns.name);
    let holder = leases
        .get(&tag)
        .await
        .unwrap()
        .spec
        .unwrap()
        .holder_identity;
    assert_eq!(holder.as_deref(), Some(standby));

    // The new leader does the work: nothing else runs (SERIAL, and the old leader is dead), and
    // its own repair counter says it repaired.
    let repaired = "zerotrust_drift_repaired_total{kind=\"NetworkPolicy\"}";
    assert_eq!(second.metric(repaired), Some(0.0));
    let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns.name);
    // A repair is drift in a namespace this process has seen compliant: wait until its first
    // pass has (a deletion before it would be the new leader's first look, not a repair).
    let compliant = format!("zerotrust_namespaces{{baseline=\"{name}\",state=\"compliant\"}}");
    eventually(
        WAIT,
        "the new leader sees the namespace compliant",
        || async { (second.metric(&compliant)? == 1.0).then_some(()) },
    )
    .await;
    api.delete(&deny, &Default::default()).await.unwrap();
    eventually(WAIT, "repaired by the new leader", || async {
        (policy_exists(&client, &ns.name, &deny).await && second.metric(repaired)? >= 1.0)
            .then_some(())
    })
    .await;
}

/// Candidates that start together race for a free lease: the API server must refuse every
/// candidate's claim but the first, so at no moment do two of them lead. (Claims made as one
/// shared field manager are never refused: two processes led together for five seconds.)
#[tokio::test]
async fn candidates_racing_for_a_free_lease_never_lead_together() {
    const CANDIDATES: usize = 4;
    const ROUNDS: usize = 5;
    let _serial = SERIAL.lock().await;
    let client = client().await;
    let tag = unique("race");
    let lease_ns = namespace(&client, &format!("{tag}-lease"), &[]).await;
    for round in 0..ROUNDS {
        let mut candidates = Vec::new();
        for i in 0..CANDIDATES {
            let election = LeaderElection {
                lease_name: format!("{tag}-{round}"),
                lease_namespace: lease_ns.name.clone(),
                identity: format!("candidate-{i}"),
                lease_duration: LEASE_SECONDS,
                renew_grace: 3,
            };
            candidates.push(lease_manager(client.clone(), &election).await.unwrap());
        }
        // Each watch starts its candidate's loop at once: all claim the free lease together.
        let mut watches = Vec::new();
        for candidate in candidates {
            watches.push(candidate.watch().await);
        }
        // Sample past the first renewal (LEASE_SECONDS - grace): a second leader would only
        // learn it lost then.
        let sampled_until = Instant::now() + Duration::from_secs(LEASE_SECONDS - 2);
        let mut someone_led = false;
        while Instant::now() < sampled_until {
            let leaders = watches
                .iter()
                .filter(|(leading, _)| *leading.borrow())
                .count();
            assert!(
                leaders <= 1,
                "round {round}: {leaders} candidates lead at once"
            );
            someone_led |= leaders == 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            someone_led,
            "round {round}: no candidate took the free lease"
        );
        // Closing each channel releases its candidacy.
        for (leading, task) in watches {
            drop(leading);
            let _ = task.await;
        }
    }
}

/// Samples both processes' leader gauges in turn (A, B, A, B, ...) until `stop`; returns the
/// samples. Two leaders at once shows as 1, 1, 1 across three consecutive samples: the middle
/// process led while the other led both before and after.
fn sample_leaders(
    processes: [&OperatorProcess; 2],
    stop: &std::sync::atomic::AtomicBool,
) -> Vec<(usize, bool)> {
    let mut samples = Vec::new();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        for (i, p) in processes.iter().enumerate() {
            samples.push((i, p.metric("zerotrust_leader") == Some(1.0)));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    samples
}

#[tokio::test]
async fn never_two_leaders_across_handovers_by_sigterm_and_sigkill() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    let tag = unique("handover");
    let lease_ns = namespace(&client, &format!("{tag}-lease"), &[]).await;
    let election = election(&tag, &lease_ns.name);
    let start =
        |id: &str| OperatorProcess::start(&format!("handover-{id}"), &elected(&election, id));
    let mut pair = [start("a0"), start("b0")];
    let leader_of = |pair: &[OperatorProcess; 2]| {
        pair.iter()
            .position(|p| p.metric("zerotrust_leader") == Some(1.0))
    };
    for round in 0..4 {
        let leader = eventually(WAIT, "a leader", || async { leader_of(&pair) }).await;
        let stop = std::sync::atomic::AtomicBool::new(false);
        let (samples, takeover) = std::thread::scope(|scope| {
            let sampler = scope.spawn(|| sample_leaders([&pair[0], &pair[1]], &stop));
            // Even rounds end the leader gracefully (SIGTERM releases the lease), odd rounds
            // kill it (the standby waits for the lease to expire).
            let pid = pair[leader].child.id().to_string();
            let signal = if round % 2 == 0 { "-TERM" } else { "-KILL" };
            let stopped = Instant::now();
            std::process::Command::new("kill")
                .args([signal, &pid])
                .status()
                .expect("kill");
            let deadline = stopped + TAKEOVER_BOUND;
            while pair[1 - leader].metric("zerotrust_leader") != Some(1.0)
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            let takeover = stopped.elapsed();
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            (sampler.join().expect("sampler"), takeover)
        });
        let overlap = samples
            .windows(3)
            .any(|w| w[0].0 == w[2].0 && w[0].0 != w[1].0 && w[0].1 && w[1].1 && w[2].1);
        eprintln!(
            "round {round}: takeover after {takeover:?}, {} samples",
            samples.len()
        );
        assert!(!overlap, "round {round}: two processes led at once");
        assert!(
            takeover < TAKEOVER_BOUND,
            "round {round}: takeover took {takeover:?}"
        );
        assert!(
            pair[leader].wait_exit(WAIT).is_some(),
            "round {round}: the old leader did not exit"
        );
        pair[leader] = start(&format!("{}{}", ["a", "b"][leader], round + 1));
    }
}

#[tokio::test]
async fn a_leader_paused_past_its_lease_writes_nothing_when_it_wakes_and_exits() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    let tag = unique("paused");
    let lease_ns = namespace(&client, &format!("{tag}-lease"), &[]).await;
    let election = election(&tag, &lease_ns.name);
    // The leader runs as `zerotrust-operator`, the identity the audit log records, so every
    // request it makes is on record; the standby runs as the admin.
    let plane = control_plane();
    let operator_kubeconfig = plane.operator_kubeconfig();
    let mut leader_args = elected(&election, "paused");
    leader_args.extend(["--kubeconfig", operator_kubeconfig.to_str().unwrap()]);
    let mut old = OperatorProcess::start("paused-leader", &leader_args);
    eventually(WAIT, "the first process leads", || async {
        (old.metric("zerotrust_leader")? == 1.0).then_some(())
    })
    .await;
    let standby = OperatorProcess::start("paused-standby", &elected(&election, "standby"));
    eventually(WAIT, "the standby waits", || async {
        (standby.metric("zerotrust_leader")? == 0.0).then_some(())
    })
    .await;
    let name = tag.clone();
    let _cleanup = Cleanup(vec![name.clone()]);
    apply(&deny_all(&name, &tag));
    let first = namespace(&client, &format!("{tag}-1"), &[("zt-test", &tag)]).await;
    let deny = format!("zt-{name}-default-deny");
    eventually(WAIT, "onboarded by the first leader", || async {
        policy_exists(&client, &first.name, &deny)
            .await
            .then_some(())
    })
    .await;

    // Paused (SIGSTOP) past its lease: it cannot renew, and the standby takes over. The new
    // leader rewrites the baseline's admission policies for its own identity and onboards a new
    // namespace: work the old leader, if it still acted as leader when it woke, would redo.
    old.signal("STOP");
    let paused = Instant::now();
    eventually(TAKEOVER_BOUND, "the standby takes over", || async {
        (standby.metric("zerotrust_leader")? == 1.0).then_some(())
    })
    .await;
    eprintln!("takeover from a paused leader: {:?}", paused.elapsed());
    let second = namespace(&client, &format!("{tag}-2"), &[("zt-test", &tag)]).await;
    eventually(WAIT, "onboarded by the new leader", || async {
        (policy_exists(&client, &second.name, &deny).await
            && standby.metric("zerotrust_reconciles_total{result=\"ok\"}")? >= 1.0)
            .then_some(())
    })
    .await;
    let tamper = format!("zt-{name}-tamper");
    let policies: Api<k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicy> =
        Api::all(client.clone());
    eventually(
        WAIT,
        "the admission policy rewritten by the new leader",
        || async {
            let policy = policies.get_opt(&tamper).await.ok()??;
            serde_json::to_string(&policy.spec)
                .ok()?
                .contains(ADMIN_USER)
                .then_some(())
        },
    )
    .await;

    // It wakes: it must notice that the lease is gone, write nothing, and exit (a process that
    // lost its lease stops, to be restarted as a standby).
    let audit = plane.audit_log();
    let mark = audit.mark();
    old.signal("CONT");
    let status = old.wait_exit(TAKEOVER_BOUND);
    let writes = audit.writes_done_since(mark);
    assert!(
        writes.is_empty(),
        "the old leader wrote after it woke: {writes:?}\nlog: {}",
        old.log.display()
    );
    let status = status.unwrap_or_else(|| {
        panic!(
            "the old leader did not exit after losing its lease; log: {}",
            old.log.display()
        )
    });
    assert!(!status.success(), "losing the lease is an error: {status}");
    assert!(
        old.log_text().contains("lost"),
        "its log says why it stopped: {}",
        old.log.display()
    );
    assert_eq!(standby.metric("zerotrust_leader"), Some(1.0));
}
