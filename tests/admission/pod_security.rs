//! Pod Security against a namespace's creator and its labellers: a privileged pod sent right
//! behind its namespace is refused every time, and a labeller can neither weaken Pod Security nor
//! fake onboarding.

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use zerotrust_testkit::*;

use super::{ENFORCE_LABEL, WAIT, labelled_namespace, pod, refused, wait_in_force};

#[tokio::test]
async fn a_privileged_pod_sent_right_behind_its_namespace_is_refused_every_time() {
    operator();
    let client = client().await;
    let tag = unique("behind");
    let _cleanup = Cleanup(vec![tag.clone()]);
    let applied = std::time::Instant::now();
    apply(&baseline(
        &tag,
        &tag,
        "podSecurity: {enforce: restricted}\nnetworkPolicy: {defaultDeny: [Ingress]}",
    ));
    let written = eventually(WAIT, "the mutating policy written", || async {
        let policies: Api<
            k8s_openapi::api::admissionregistration::v1::MutatingAdmissionPolicyBinding,
        > = Api::all(client.clone());
        policies
            .get_opt(&format!("zt-{tag}-pod-security"))
            .await
            .ok()?
            .map(|_| applied.elapsed())
    })
    .await;
    wait_mutation_in_force(&client, &tag).await;
    eprintln!(
        "admission: mutating policy written {written:?} after the baseline, in force {:?} after it",
        applied.elapsed()
    );
    wait_in_force(&client, &tag, 0).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());

    // The operator's own label applies are left as it composed them, so that a label it releases
    // stays released: the same namespace created as the operator (the shared test operator runs as
    // this client's identity) with its field manager gets no label from the policy.
    let as_operator = PostParams {
        dry_run: true,
        field_manager: Some("zerotrust-operator".to_string()),
    };
    let created = namespaces
        .create(
            &as_operator,
            &labelled_namespace(&format!("{tag}-op"), &tag),
        )
        .await
        .unwrap();
    assert!(
        !created.labels().contains_key(ENFORCE_LABEL),
        "{:?}",
        created.labels()
    );

    // One client, one connection: the namespace, then at once the pod, 20 times.
    let guard = LabelledNamespaces {
        selector: format!("zt-test={tag}"),
        names: Vec::new(),
    };
    let mut refusals = Vec::new();
    for i in 0..20 {
        let name = format!("{tag}-{i}");
        namespaces
            .create(&PostParams::default(), &labelled_namespace(&name, &tag))
            .await
            .unwrap();
        let pods: Api<Pod> = Api::namespaced(client.clone(), &name);
        let result = pods.create(&PostParams::default(), &pod("p", true)).await;
        refusals.push(refused(
            &result,
            "violates PodSecurity \"restricted:latest\"",
        ));
    }
    assert_eq!(
        refusals.iter().filter(|r| **r).count(),
        20,
        "every privileged pod refused by Pod Security: {refusals:?}"
    );
    drop(guard);
}

#[tokio::test]
async fn a_namespace_labeller_can_neither_weaken_pod_security_nor_fake_onboarding() {
    operator();
    let client = client().await;
    let tag = unique("labeller");
    let ns = namespace(&client, &tag, &[("zt-test", &tag)]).await;
    let _cleanup = Cleanup(vec![tag.clone()]);
    apply(&baseline(&tag, &tag, "podSecurity: {enforce: restricted}"));
    wait_in_force(&client, &tag, 1).await;
    wait_mutation_in_force(&client, &tag).await;
    let labeller = namespace_labeller(&format!("{tag}-labeller")).await;
    let namespaces: Api<Namespace> = Api::all(labeller.clone());
    let marker = format!("onboarded.zerotrust.dev/{tag}");
    eventually(
        WAIT,
        "the labeller's role and the marker's protection in force",
        || async {
            let removed = json!({"metadata": {"labels": {marker.clone(): null}}});
            let dry_run = PatchParams {
                dry_run: true,
                ..Default::default()
            };
            let refused = namespaces
                .patch(&ns.name, &dry_run, &Patch::Merge(removed))
                .await;
            matches!(refused, Err(kube::Error::Api(e)) if e.message.contains("is set only by"))
                .then_some(())
        },
    )
    .await;

    // Lowering or removing the level is undone in the same request.
    for labels in [
        json!({ENFORCE_LABEL: "privileged"}),
        json!({ENFORCE_LABEL: null}),
    ] {
        let patch = json!({"metadata": {"labels": labels}});
        namespaces
            .patch(&ns.name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .expect("the request itself is admitted");
        let now = Api::<Namespace>::all(client.clone())
            .get(&ns.name)
            .await
            .unwrap();
        assert_eq!(now.labels()[ENFORCE_LABEL], "restricted");
    }
    // The onboarding marker is the operator's alone: it cannot be removed or forged.
    let removed = json!({"metadata": {"labels": {marker.clone(): null}}});
    let removed = namespaces
        .patch(&ns.name, &PatchParams::default(), &Patch::Merge(removed))
        .await;
    assert!(
        refused(&removed, "is set only by zerotrust-operator"),
        "{removed:?}"
    );
    let mut early = labelled_namespace(&format!("{tag}-early"), &tag);
    early
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert(marker.clone(), "true".into());
    let early = namespaces.create(&PostParams::default(), &early).await;
    assert!(
        refused(&early, "is set only by zerotrust-operator"),
        "{early:?}"
    );
    control_plane().kubectl(
        &[
            "delete",
            "clusterrole,clusterrolebinding",
            &format!("{tag}-labeller"),
        ],
        None,
    );
}

/// Issue 24, item 5: `restricted` pinned to an old version beside `baseline` at `latest`. On main
/// the pin counted as the stricter policy, so the namespace was labelled `restricted` at the pin,
/// and a labeller could lower the version to it: both admit what `baseline@latest` refuses (its
/// newer checks, such as `host` in probes, are missing from older versions). Now the namespace
/// holds the stricter level at the newer version, and a labeller cannot take either back.
#[tokio::test]
async fn a_pinned_version_beside_baseline_at_latest_yields_both_the_level_and_the_version() {
    operator();
    let client = client().await;
    let tag = unique("pinned");
    let latest = format!("{tag}-latest");
    let _cleanup = Cleanup(vec![tag.clone(), latest.clone()]);
    let ns = namespace(&client, &tag, &[("zt-test", &tag)]).await;
    apply(&baseline(
        &tag,
        &tag,
        "podSecurity: {enforce: restricted, version: v1.34}",
    ));
    apply(&baseline(&latest, &tag, "podSecurity: {enforce: baseline}"));
    wait_in_force(&client, &tag, 1).await;
    wait_in_force(&client, &latest, 1).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let version_label = format!("{ENFORCE_LABEL}-version");
    let held = || async {
        let labels = namespaces.get(&ns.name).await.unwrap().labels().clone();
        (
            labels[ENFORCE_LABEL].clone(),
            labels[&version_label].clone(),
        )
    };
    eventually(WAIT, "restricted at latest", || async {
        (held().await == ("restricted".into(), "latest".into())).then_some(())
    })
    .await;

    let labeller = namespace_labeller(&format!("{tag}-labeller")).await;
    let as_labeller: Api<Namespace> = Api::all(labeller);
    let lower = json!({"metadata": {"labels": {version_label.clone(): "v1.34"}}});
    // The API server loads admission policies from its own informer: wait until a dry run of the
    // lowering is refused or raised back, then try it for real.
    eventually(WAIT, "baseline@latest's protection in force", || async {
        let dry_run = PatchParams {
            dry_run: true,
            ..Default::default()
        };
        match as_labeller
            .patch(&ns.name, &dry_run, &Patch::Merge(lower.clone()))
            .await
        {
            Err(kube::Error::Api(e)) if e.code == 403 => Some(()),
            Ok(n) => (n.labels()[&version_label] == "latest").then_some(()),
            Err(_) => None,
        }
    })
    .await;
    for version in ["v1.34", "v1.36"] {
        let patch = json!({"metadata": {"labels": {version_label.clone(): version}}});
        // Refused, or raised back in the same request: either way the label holds.
        let _ = as_labeller
            .patch(&ns.name, &PatchParams::default(), &Patch::Merge(patch))
            .await;
        assert_eq!(
            held().await,
            ("restricted".into(), "latest".into()),
            "after a labeller set {version}"
        );
    }
    // What `baseline` at `latest` refuses is refused: a probe sent from the node to another host.
    let mut probing = pod("probing", false);
    probing.spec.as_mut().unwrap().containers[0].liveness_probe = Some(
        serde_json::from_value(
            json!({"httpGet": {"host": "169.254.169.254", "path": "/", "port": 80}}),
        )
        .unwrap(),
    );
    let probing = Api::<Pod>::namespaced(client.clone(), &ns.name)
        .create(&PostParams::default(), &probing)
        .await;
    assert!(refused(&probing, "169.254.169.254"), "{probing:?}");
    control_plane().kubectl(
        &[
            "delete",
            "clusterrole,clusterrolebinding",
            &format!("{tag}-labeller"),
        ],
        None,
    );
}
