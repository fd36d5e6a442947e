//! Faults the operator must survive on the real control plane: SIGKILL at random moments while
//! onboarding, kube-apiserver and etcd restarts, a 30-second API outage, and users editing an
//! object while it is being repaired. Each ends with every selected namespace compliant, no
//! duplicate objects and no unmanaged object touched.
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

/// Waits until `check` says all `count` selected namespaces comply with `name`.
async fn wait_all_compliant(name: &str, count: usize, timeout: Duration) {
    let summary = format!("{count} namespace(s) checked: {count} compliant");
    eventually(
        timeout,
        &format!("{count} namespaces compliant with {name}"),
        || async {
            let out = check_baseline(name);
            (out.status.success() && stdout(&out).contains(&summary)).then_some(())
        },
    )
    .await;
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

/// The end state every fault scenario must reach.
async fn assert_converged(
    client: &Client,
    name: &str,
    namespaces: &LabelledNamespaces,
    timeout: Duration,
) {
    let start = Instant::now();
    wait_all_compliant(name, namespaces.names.len(), timeout).await;
    eprintln!(
        "{name}: {} namespaces compliant {:?} after the last fault",
        namespaces.names.len(),
        start.elapsed()
    );
    let counts = objects_per_namespace(client, name).await;
    assert_eq!(
        counts.len(),
        namespaces.names.len(),
        "objects only in selected namespaces"
    );
    for (ns, count) in &counts {
        assert_eq!(
            *count, OBJECTS_PER_NAMESPACE,
            "{ns}: no missing or duplicate objects"
        );
    }
}

#[tokio::test]
async fn sigkill_at_random_moments_while_onboarding_500_namespaces() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    let tag = unique("kill");
    let selected = namespaces(&client, &tag, 500, ("zt-test", &tag)).await;
    let mut untouched = Vec::new();
    for ns in selected.names.iter().step_by(100) {
        untouched.push((ns.clone(), user_policy(&client, ns).await));
    }
    apply(&baseline(&tag, &tag, RESTRICTED));

    for round in 0..20 {
        let mut operator =
            OperatorProcess::start(&format!("kill-{round}"), &["--http-addr", "none"]);
        let lifetime = Duration::from_millis(200 + random_below(1800));
        tokio::time::sleep(lifetime).await;
        operator.child.kill().expect("SIGKILL");
        operator.child.wait().expect("reaped");
    }
    let _survivor = OperatorProcess::start("kill-final", &[]);
    assert_converged(&client, &tag, &selected, Duration::from_secs(180)).await;
    for (ns, version) in &untouched {
        assert_eq!(
            user_policy_version(&client, ns).await.as_ref(),
            Some(version),
            "{ns}: the user's policy is untouched"
        );
    }
    delete_baseline(&tag);
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

    // kube-apiserver restarted mid-onboarding.
    let tag = unique("restart");
    let first = namespaces(&client, &format!("{tag}-a"), 100, ("zt-test", &tag)).await;
    apply(&baseline(&tag, &tag, RESTRICTED));
    controlplane("restart-apiserver");
    assert_converged(&client, &tag, &first, Duration::from_secs(120)).await;

    // etcd restarted mid-onboarding (a fresh client: the old one's connections died with etcd).
    let etcd_tag = unique("etcd");
    let second = namespaces(
        &client,
        &format!("{etcd_tag}-b"),
        100,
        ("zt-test", &etcd_tag),
    )
    .await;
    apply(&baseline(&etcd_tag, &etcd_tag, RESTRICTED));
    controlplane("restart-etcd");
    let client = zerotrust_testkit::client().await;
    assert_converged(&client, &etcd_tag, &second, Duration::from_secs(120)).await;

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
    let late = namespace(&client, &format!("{tag}-late"), &[("zt-test", &tag)]).await;
    let deny = format!("zt-{tag}-default-deny");
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &late.name);
    eventually(
        Duration::from_secs(60),
        "a namespace created after the outage is onboarded",
        || async { policies.get_opt(&deny).await.ok().flatten().map(|_| ()) },
    )
    .await;
    drop(late);
    delete_baseline(&tag);
    delete_baseline(&etcd_tag);
}

#[tokio::test]
async fn a_user_editing_an_object_under_repair_does_not_make_the_operator_loop() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    let operator = OperatorProcess::start("edits", &[]);
    let tag = unique("edits");
    let selected = namespaces(&client, &tag, 1, ("zt-test", &tag)).await;
    apply(&baseline(&tag, &tag, RESTRICTED));
    assert_converged(&client, &tag, &selected, Duration::from_secs(60)).await;

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
    let settled = || {
        eventually(Duration::from_secs(60), "reconciles settle", || async {
            let then = reconciles();
            tokio::time::sleep(Duration::from_secs(2)).await;
            (reconciles() == then).then_some(then)
        })
    };
    let before = settled().await;

    // 100 edits as fast as the API server takes them, racing the operator's repairs: merge
    // patches, and updates that carry a resourceVersion (and so fail with 409 when the operator
    // wrote in between).
    let ns = &selected.names[0];
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
    assert_converged(&client, &tag, &selected, Duration::from_secs(30)).await;

    let after = settled().await;
    // Quiet afterwards (no reconcile loop), and a bounded number of reconciles for 100 edits: one
    // per user edit and one per repair, with room for retries.
    let spent = after - before;
    eprintln!("reconciles for 100 edits: {spent}");
    assert!(
        spent < 400.0,
        "repairs of 100 edits took {spent} reconciles"
    );
    delete_baseline(&tag);
}

#[tokio::test]
async fn a_baseline_that_cannot_be_decoded_does_not_break_the_watch() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    let tag = unique("undecodable");
    let (early, late) = (format!("{tag}-early"), format!("{tag}-late"));
    let bad = |name: &str| {
        format!(
            "apiVersion: zerotrust.dev/v1alpha1\nkind: SecurityBaseline\nmetadata: {{name: {name}}}\nspec:\n  mode: 42\n  namespaceSelector: {{matchLabels: {{zt-test: {tag}}}}}\n"
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

    // Valid baselines are enforced all the same.
    let ns = namespace(&client, &tag, &[("zt-test", &tag)]).await;
    apply(&baseline(&tag, &tag, RESTRICTED));
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns.name);
    let deny = format!("zt-{tag}-default-deny");
    eventually(
        Duration::from_secs(30),
        "a valid baseline enforced",
        || async { policies.get_opt(&deny).await.ok().flatten().map(|_| ()) },
    )
    .await;
    // The undecodable ones are reported, naming the field, and write nothing.
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
    let names: Vec<String> = policies
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .iter()
        .map(|p| p.name_any())
        .collect();
    assert!(names.contains(&deny), "{names:?}");
    assert!(
        !names
            .iter()
            .any(|n| n.contains("-early-") || n.contains("-late-")),
        "an undecodable baseline wrote a policy: {names:?}"
    );
    for name in [&early, &late, &tag] {
        delete_baseline(name);
    }
}

/// Runs `f` if dropped while the test panics: puts things back for the tests that follow.
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if std::thread::panicking()
                && let Some(f) = self.0.take()
            {
                f()
            }
        }
    }
    Guard(Some(f))
}
