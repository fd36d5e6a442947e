//! Faults the operator must survive on the real control plane: SIGKILL at random moments while
//! onboarding, kube-apiserver and etcd restarts, a 30-second API outage, a stop while the API
//! server hangs, users editing an object while it is being repaired, and baselines that cannot be
//! decoded. Each fault is shown to hit
//! work in progress (some objects written, not all), and each scenario ends with the same check
//! (`assert_converged`): `check` finds every selected namespace compliant, each holds exactly the
//! objects the baseline renders, and the user's own objects are unchanged.
//!
//! The tests here stop parts of the shared control plane, so they run one at a time (`SERIAL`);
//! cargo runs test binaries one after another, so no other binary sees the faults.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{LimitRange, ResourceQuota};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use zerotrust_testkit::crd::install_crd;
use zerotrust_testkit::*;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Objects the restricted baseline makes in each namespace.
const OBJECTS_PER_NAMESPACE: usize = 6;

/// A number in `0..bound` that differs from run to run (std's hasher keys are random).
fn random_below(bound: u64) -> u64 {
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
        % bound
}

/// Waits until `check` says all `count` selected namespaces comply with `name`. The baseline's
/// status (one GET) is polled first; the full `check` (a list of every kind) then runs at most
/// every half second, so the wait itself does not load the 2-core machine.
async fn wait_all_compliant(name: &str, count: usize, timeout: Duration) {
    let client = client().await;
    let baselines: Api<zerotrust_operator::api::SecurityBaseline> = Api::all(client);
    eventually(
        timeout,
        &format!("{name}'s status: {count} compliant"),
        || async {
            let status = baselines.get(name).await.ok()?.status?;
            (status.compliant_namespaces as usize == count).then_some(())
        },
    )
    .await;
    let summary = format!("{count} namespace(s) checked: {count} compliant");
    let deadline = Instant::now() + timeout;
    loop {
        let out = check_baseline(name);
        if out.status.success() && stdout(&out).contains(&summary) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: `check` of {name}: {}",
            stdout(&out)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// How many objects of `name` exist per namespace, over every kind it generates.
async fn objects_per_namespace(client: &Client, name: &str) -> BTreeMap<String, usize> {
    let lp = ListParams::default().labels(&format!("zerotrust.dev/baseline={name}"));
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    macro_rules! count {
        ($kind:ty) => {
            for o in Api::<$kind>::all(client.clone())
                .list(&lp)
                .await
                .expect("list")
                .items
            {
                *counts.entry(o.namespace().unwrap_or_default()).or_default() += 1;
            }
        };
    }
    count!(NetworkPolicy);
    count!(Role);
    count!(RoleBinding);
    count!(ResourceQuota);
    count!(LimitRange);
    counts
}

/// How many objects of `name` exist, over every namespace and kind.
async fn objects_total(client: &Client, name: &str) -> usize {
    objects_per_namespace(client, name).await.values().sum()
}

/// Waits until `name` has written something (so a fault that follows hits work in progress) and
/// asserts it has not written everything yet: returns how many objects there were.
async fn mid_onboarding(client: &Client, name: &str, namespaces: usize) -> usize {
    let all = namespaces * OBJECTS_PER_NAMESPACE;
    let written = eventually(
        Duration::from_secs(60),
        "the first objects written",
        || async {
            let n = objects_total(client, name).await;
            (n > 0).then_some(n)
        },
    )
    .await;
    assert!(
        written < all,
        "the fault came after onboarding had finished ({written} of {all} objects)"
    );
    written
}

/// A NetworkPolicy of the user's in `namespace`; returns its resourceVersion.
async fn user_policy(client: &Client, namespace: &str) -> String {
    let policy: NetworkPolicy = serde_json::from_value(json!({
        "metadata": {"name": "user-allow-web"},
        // Within the namespace only: a policy that widened the default-deny would (rightly) keep
        // the namespace from compliance.
        "spec": {"podSelector": {"matchLabels": {"app": "web"}},
                 "ingress": [{"from": [{"podSelector": {}}]}]},
    }))
    .expect("a NetworkPolicy");
    Api::<NetworkPolicy>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &policy)
        .await
        .expect("user policy created")
        .resource_version()
        .expect("a resourceVersion")
}

async fn user_policy_version(client: &Client, namespace: &str) -> Option<String> {
    Api::<NetworkPolicy>::namespaced(client.clone(), namespace)
        .get("user-allow-web")
        .await
        .ok()?
        .resource_version()
}

/// The end state every fault scenario must reach: `check` finds all `namespaces` compliant with
/// `name`, each holds exactly the objects the baseline renders (none missing, none duplicated,
/// none elsewhere), and the user's policies in `untouched` (namespace, resourceVersion) are as
/// they were.
async fn assert_converged(
    client: &Client,
    name: &str,
    namespaces: &[String],
    untouched: &[(String, String)],
    timeout: Duration,
) {
    let start = Instant::now();
    wait_all_compliant(name, namespaces.len(), timeout).await;
    eprintln!(
        "{name}: {} namespaces compliant {:?} after the last fault",
        namespaces.len(),
        start.elapsed()
    );
    let counts = objects_per_namespace(client, name).await;
    let expected: std::collections::BTreeSet<&String> = namespaces.iter().collect();
    assert_eq!(
        counts.keys().collect::<std::collections::BTreeSet<_>>(),
        expected,
        "objects in every selected namespace and nowhere else"
    );
    for (ns, count) in &counts {
        assert_eq!(
            *count, OBJECTS_PER_NAMESPACE,
            "{ns}: no missing or duplicate objects"
        );
    }
    for (ns, version) in untouched {
        assert_eq!(
            user_policy_version(client, ns).await.as_ref(),
            Some(version),
            "{ns}: the user's policy is untouched"
        );
    }
}

/// A scenario's ground: namespaces selected by the baseline `tag` (applied by `apply_baseline`),
/// a NetworkPolicy of the user's in every hundredth, and the baseline deleted when it drops.
struct Scenario {
    _cleanup: Cleanup,
    tag: String,
    selected: LabelledNamespaces,
    untouched: Vec<(String, String)>,
}

impl Scenario {
    /// `count` namespaces `<tag>-<i>` for a new tag made from `prefix`.
    async fn new(client: &Client, prefix: &str, count: usize) -> Scenario {
        let tag = unique(prefix);
        let _cleanup = Cleanup(vec![tag.clone()]);
        let selected = namespaces(client, &tag, count, ("zt-test", &tag)).await;
        let mut untouched = Vec::new();
        for ns in selected.names.iter().step_by(100) {
            untouched.push((ns.clone(), user_policy(client, ns).await));
        }
        Scenario {
            _cleanup,
            tag,
            selected,
            untouched,
        }
    }

    /// Applies the restricted baseline `tag`, selecting the namespaces.
    fn apply_baseline(&self) {
        apply(&baseline(&self.tag, &self.tag, RESTRICTED));
    }

    /// The end state every scenario must reach, within `timeout`.
    async fn assert_converged(&self, client: &Client, timeout: Duration) {
        let names = &self.selected.names;
        assert_converged(client, &self.tag, names, &self.untouched, timeout).await;
    }
}

#[tokio::test]
async fn sigkill_at_random_moments_while_onboarding_500_namespaces() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    let scenario = Scenario::new(&client, "kill", 500).await;
    let tag = &scenario.tag;
    scenario.apply_baseline();

    // 20 kills, each at a random moment (0-300 ms) after the process was seen writing (a new
    // NetworkPolicy of the baseline's appeared): every kill hits onboarding in progress. (The
    // earlier loop killed after a fixed random lifetime and never looked: its processes were
    // refused at start for a duplicated flag, and all the work was the last restart's.)
    let policies: Api<NetworkPolicy> = Api::all(client.clone());
    let ours = ListParams::default().labels(&format!("zerotrust.dev/baseline={tag}"));
    let mut seen = 0;
    for round in 0..20 {
        let mut operator = OperatorProcess::start(&format!("kill-{round}"), &[]);
        seen = eventually(
            Duration::from_secs(60),
            &format!("round {round}: the restarted operator writing"),
            || async {
                let now = policies.list_metadata(&ours).await.ok()?.items.len();
                (now > seen).then_some(now)
            },
        )
        .await;
        let moment = Duration::from_millis(random_below(300));
        tokio::time::sleep(moment).await; // the moment of the kill, not a wait for a result
        operator.signal("KILL");
        assert!(
            operator.wait_exit(Duration::from_secs(30)).is_some(),
            "a killed operator did not exit"
        );
    }
    let written = objects_total(&client, tag).await;
    let all = scenario.selected.names.len() * OBJECTS_PER_NAMESPACE;
    eprintln!("after 20 kills: {written} of {all} objects written");
    assert!(
        0 < written && written < all,
        "the kills must hit onboarding in progress: {written} of {all} objects"
    );
    let _survivor = OperatorProcess::start("kill-final", &[]);
    scenario
        .assert_converged(&client, Duration::from_secs(120))
        .await;
}

#[tokio::test]
async fn api_server_and_etcd_restarts_and_a_30_second_outage_are_survived() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    let mut operator = OperatorProcess::start("outage", &[]);
    let ready = |operator: &OperatorProcess| operator.get("/readyz").map(|r| r.0);
    eventually(Duration::from_secs(30), "/readyz", || async {
        (ready(&operator) == Some(200)).then_some(())
    })
    .await;

    // kube-apiserver restarted mid-onboarding. Recovery is bounded at 20 s from the restart's
    // end: before the fix in RELIABILITY.md it took 32-52 s (once over 120 s).
    let mut restart = Scenario::new(&client, "restart", 100).await;
    restart.apply_baseline();
    mid_onboarding(&client, &restart.tag, 100).await;
    controlplane("restart-apiserver");
    restart
        .assert_converged(&client, Duration::from_secs(20))
        .await;

    // etcd restarted mid-onboarding (a fresh client: the old one's connections died with etcd).
    let etcd = Scenario::new(&client, "etcd", 100).await;
    etcd.apply_baseline();
    mid_onboarding(&client, &etcd.tag, 100).await;
    controlplane("restart-etcd");
    let client = zerotrust_testkit::client().await;
    etcd.assert_converged(&client, Duration::from_secs(30))
        .await;

    // The API server unreachable for 30 seconds: the operator stays up and says it is not ready.
    controlplane("stop-apiserver");
    let down = Instant::now();
    eventually(
        Duration::from_secs(30),
        "/readyz reports the outage",
        || async { (ready(&operator) == Some(503)).then_some(()) },
    )
    .await;
    let remaining = Duration::from_secs(30).saturating_sub(down.elapsed());
    tokio::time::sleep(remaining).await; // the outage itself, not a wait for a result
    assert!(
        operator.child.try_wait().expect("status").is_none(),
        "the operator did not exit during the outage"
    );
    controlplane("start-apiserver");
    let client = zerotrust_testkit::client().await;
    eventually(Duration::from_secs(90), "/readyz recovers", || async {
        (ready(&operator) == Some(200)).then_some(())
    })
    .await;
    // A namespace created after the outage is onboarded, and the scenario ends with the same
    // check as every other.
    let tag = restart.tag.clone();
    let late = namespace(&client, &format!("{tag}-late"), &[("zt-test", &tag)]).await;
    let late_policy = user_policy(&client, &late.name).await;
    restart.untouched.push((late.name.clone(), late_policy));
    let mut all = restart.selected.names.clone();
    all.push(late.name.clone());
    assert_converged(
        &client,
        &tag,
        &all,
        &restart.untouched,
        Duration::from_secs(60),
    )
    .await;
    drop(late);
}

#[tokio::test]
async fn a_stop_while_its_requests_hang_exits_within_the_drain_limit() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    let mut operator = OperatorProcess::start("drain", &[]);
    operator.wait_ready(Duration::from_secs(60));
    let scenario = Scenario::new(&client, "drain", 100).await;
    scenario.apply_baseline();
    mid_onboarding(&client, &scenario.tag, 100).await;

    // The API server paused (SIGSTOP): the operator's requests in flight hang, neither answered
    // nor refused. A SIGTERM now must still end the process within the drain limit (10 s).
    let pid = std::fs::read_to_string(control_plane().kubeconfig.with_file_name("apiserver.pid"))
        .expect("the API server's pid");
    let signal = |name: &str| {
        let status = std::process::Command::new("kill")
            .args([name, pid.trim()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {name} the API server");
    };
    let resume = scopeguard(|| {
        let _ = std::process::Command::new("kill")
            .args(["-CONT", pid.trim()])
            .status();
    });
    signal("-STOP");
    let stopped = Instant::now();
    operator.signal("TERM");
    let exit = operator.wait_exit(Duration::from_secs(40));
    let took = stopped.elapsed();
    signal("-CONT");
    drop(resume);
    eprintln!("stop with hanging requests: exited after {took:?}");
    assert!(
        exit.is_some(),
        "the stopped operator did not exit within 40 s"
    );
    assert!(
        took < Duration::from_secs(15),
        "the stop waited {took:?}, past the 10 s drain limit"
    );

    // Onboarding finishes once an operator runs again, and ends with the same check as every
    // other scenario.
    let _next = OperatorProcess::start("drain-next", &[]);
    scenario
        .assert_converged(&client, Duration::from_secs(60))
        .await;
}

#[tokio::test]
async fn a_user_editing_an_object_under_repair_does_not_make_the_operator_loop() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    let operator = OperatorProcess::start("edits", &[]);
    let scenario = Scenario::new(&client, "edits", 1).await;
    let tag = &scenario.tag;
    scenario.apply_baseline();
    scenario
        .assert_converged(&client, Duration::from_secs(60))
        .await;

    // Reconciles over every result; the operator also serves the cluster's other namespaces, so
    // count from when it has gone quiet.
    let reconciles = || {
        ["ok", "api", "client", "lease"]
            .iter()
            .filter_map(|r| {
                operator.metric(&format!("zerotrust_reconciles_total{{result=\"{r}\"}}"))
            })
            .sum::<f64>()
    };
    // Settled: no reconcile for 5 s (a window a loaded machine cannot fake by being slow).
    let settled = || {
        eventually(Duration::from_secs(90), "reconciles settle", || async {
            let then = reconciles();
            tokio::time::sleep(Duration::from_secs(5)).await;
            (reconciles() == then).then_some(then)
        })
    };
    let before = settled().await;

    // 100 edits as fast as the API server takes them, racing the operator's repairs: merge
    // patches, and updates that carry a resourceVersion (and so fail with 409 when the operator
    // wrote in between).
    let ns = &scenario.selected.names[0];
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), ns);
    let deny = format!("zt-{tag}-default-deny");
    let mut conflicts = 0;
    for i in 0..100 {
        if i % 2 == 0 {
            let rule = json!({"spec": {"ingress": [{"ports": [{"port": 1000 + i}]}]}});
            policies
                .patch(&deny, &PatchParams::default(), &Patch::Merge(rule))
                .await
                .expect("merge patch");
        } else if let Ok(mut policy) = policies.get(&deny).await {
            policy.spec.get_or_insert_default().ingress = Some(vec![Default::default()]);
            match policies
                .replace(&deny, &PostParams::default(), &policy)
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => conflicts += 1,
                Err(e) => panic!("update: {e}"),
            }
        }
    }
    eprintln!("user updates refused with 409 because the operator wrote first: {conflicts}");
    scenario
        .assert_converged(&client, Duration::from_secs(30))
        .await;

    let after = settled().await;
    // Quiet afterwards (no reconcile loop), and a bounded number of reconciles for 100 edits: one
    // per user edit and one per repair, with room for retries.
    let spent = after - before;
    eprintln!("reconciles for 100 edits: {spent}");
    assert!(
        spent < 400.0,
        "repairs of 100 edits took {spent} reconciles"
    );
}

#[tokio::test]
async fn a_baseline_that_cannot_be_decoded_does_not_break_the_watch() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    let scenario = Scenario::new(&client, "undecodable", 1).await;
    let tag = scenario.tag.clone();
    let (early, late) = (format!("{tag}-early"), format!("{tag}-late"));
    let _cleanup = Cleanup(vec![early.clone(), late.clone()]);
    // Undecodable (`mode: 42`), yet asking for every control: decoded leniently, they would
    // write objects of every kind, labels and admission policies.
    let bad = |name: &str| {
        baseline(
            name,
            &tag,
            "mode: 42\nnetworkPolicy: {defaultDeny: [Ingress, Egress], allowDNS: true}\npodSecurity: {enforce: restricted, audit: restricted}\nrbac: {roles: [{name: viewer, rules: [{apiGroups: [''], resources: [pods], verbs: [get]}], subjects: [{kind: Group, name: viewers}]}]}\nresourceQuota: {hard: {pods: '5'}}\nlimitRange: {limits: [{type: Container, default: {cpu: 200m}}]}\nserviceAccounts: {automountDefaultToken: false}",
        )
    };
    // Stored while the CRD's schema takes anything, as after a hand edit of the CRD: one before
    // the operator starts (its first list) and one while it runs (a watch event).
    install_crd(&client, true).await;
    let restore = scopeguard(|| {
        // Best effort if the test fails before restoring: put the real schema back.
        control_plane().kubectl(
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager",
                "zerotrust-test",
                "-f",
                "crds/securitybaseline.yaml",
            ],
            None,
        );
    });
    apply(&bad(&early));
    let operator = OperatorProcess::start("undecodable", &[]);
    eventually(Duration::from_secs(30), "/readyz", || async {
        (operator.get("/readyz")?.0 == 200).then_some(())
    })
    .await;
    apply(&bad(&late));
    install_crd(&client, false).await;
    drop(restore);

    // Valid baselines are enforced all the same, and the scenario ends with the same check as
    // every other.
    scenario.apply_baseline();
    scenario
        .assert_converged(&client, Duration::from_secs(30))
        .await;
    let ns = &scenario.selected.names[0];
    // Nothing of theirs anywhere: no object of any kind, no label, no admission policy (the
    // valid baseline's pass above, after both were seen, is what would have written them).
    for name in [&early, &late] {
        let objects = objects_per_namespace(&client, name).await;
        assert!(objects.is_empty(), "{name} wrote {objects:?}");
        let admission = control_plane().kubectl(
            &[
                "get",
                "validatingadmissionpolicies,mutatingadmissionpolicies",
                "-l",
                &format!("zerotrust.dev/baseline={name}"),
                "-o",
                "name",
            ],
            None,
        );
        assert_eq!(stdout(&admission).trim(), "", "{name}'s admission policies");
    }
    let labels = Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .get(ns)
        .await
        .unwrap()
        .labels()
        .clone();
    assert!(
        !labels.contains_key("pod-security.kubernetes.io/audit")
            && !labels
                .keys()
                .any(|k| k.contains("-early") || k.contains("-late")),
        "only the valid baseline's labels: {labels:?}"
    );
    // Each is reported in its status, naming the field.
    let api: Api<zerotrust_operator::api::SecurityBaseline> = Api::all(client.clone());
    let raw: Api<kube::api::DynamicObject> = Api::all_with(
        client.clone(),
        &kube::api::ApiResource::erase::<zerotrust_operator::api::SecurityBaseline>(&()),
    );
    for name in [&early, &late] {
        let message = eventually(Duration::from_secs(30), "InvalidSpec reported", || async {
            let object = raw.get(name).await.ok()?;
            let conditions = object.data["status"]["conditions"].as_array()?.clone();
            let ready = conditions.iter().find(|c| c["type"] == "Ready")?;
            (ready["reason"] == "InvalidSpec").then(|| ready["message"].to_string())
        })
        .await;
        assert!(message.contains("spec.mode"), "{name}: {message}");
    }
    assert!(
        api.list(&ListParams::default()).await.is_err(),
        "a typed list fails on these objects, which is why the operator does not use one"
    );
    // `check` reports each of them: exit 1, an INVALID line naming it and the field.
    for name in [&early, &late] {
        let out = check_baseline(name);
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
        assert!(
            text.lines().any(|l| l.starts_with("INVALID")
                && l.contains(name.as_str())
                && l.contains("spec.mode")),
            "{text}"
        );
    }
}
