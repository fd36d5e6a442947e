//! The admission layer on the real API server, tried as the attackers of a namespace default
//! would: a user who creates a namespace and sends a privileged pod right behind it, a tenant bound
//! to the built-in `admin` role in its namespace, a user who can label namespaces, an Audit
//! baseline beside an Enforce one. Every assertion is about what the API server refuses or admits.

use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicy;
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use zerotrust_operator::api::{SecurityBaseline, SecurityBaselineStatus};
use zerotrust_testkit::*;

const WAIT: Duration = Duration::from_secs(30);
const ENFORCE_LABEL: &str = "pod-security.kubernetes.io/enforce";

async fn status(client: &Client, name: &str) -> SecurityBaselineStatus {
    let api: Api<SecurityBaseline> = Api::all(client.clone());
    api.get(name)
        .await
        .ok()
        .and_then(|b| b.status)
        .unwrap_or_default()
}

/// Waits until the baseline's admission policies are in place and it has reconciled `count`
/// namespaces compliant.
async fn wait_in_force(client: &Client, name: &str, count: i32) {
    eventually(
        WAIT,
        "the baseline and its admission policies in force",
        || async {
            let s = status(client, name).await;
            let installed = s
                .conditions
                .iter()
                .any(|c| c.type_ == "AdmissionPolicies" && c.status == "True");
            let ready = s
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            (installed && ready && s.compliant_namespaces == count).then_some(())
        },
    )
    .await;
    // The API server picks policies up from its own informer: wait until it evaluates them.
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
    eventually(WAIT, "the policies type-checked", || async {
        let list = policies
            .list(&ListParams::default().labels(&format!("zerotrust.dev/baseline={name}")))
            .await
            .ok()?;
        list.items
            .iter()
            .all(|p| p.status.as_ref().and_then(|s| s.observed_generation) == p.metadata.generation)
            .then_some(())
    })
    .await;
}

fn pod(name: &str, privileged: bool) -> Pod {
    let security = if privileged {
        json!({"privileged": true})
    } else {
        json!({"runAsNonRoot": true, "allowPrivilegeEscalation": false,
               "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}})
    };
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox", "securityContext": security}]},
    }))
    .unwrap()
}

fn refused(result: &Result<impl std::fmt::Debug, kube::Error>, says: &str) -> bool {
    matches!(result, Err(kube::Error::Api(e)) if e.code == 403 && e.message.contains(says))
}

/// Applies `manifest` (one NetworkPolicy named `name`) in `namespace` as `user`, deleting and
/// re-applying until it is admitted with a warning that names `baseline`: a freshly installed
/// Audit policy warns only once the API server's own informer has it.
async fn apply_until_warned(
    namespace: &str,
    user: &str,
    name: &str,
    manifest: &str,
    baseline: &str,
) {
    let says = format!("SecurityBaseline {baseline}");
    eventually(WAIT, "a warning naming the baseline", || async {
        control_plane().kubectl(
            &[
                "delete",
                "networkpolicy",
                name,
                "-n",
                namespace,
                "--ignore-not-found",
            ],
            None,
        );
        let out = control_plane().kubectl(
            &[
                "apply",
                "-n",
                namespace,
                "--as",
                user,
                "--as-group",
                "system:authenticated",
                "-f",
                "-",
            ],
            Some(manifest),
        );
        let said = stderr(&out);
        (out.status.success() && said.contains("Warning") && said.contains(&says)).then_some(())
    })
    .await
}

fn labelled_namespace(name: &str, tag: &str) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some([("zt-test".to_string(), tag.to_string())].into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

fn network_policy(name: &str, spec: serde_json::Value) -> NetworkPolicy {
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

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
async fn a_tenant_admin_cannot_touch_what_the_baseline_owns() {
    operator();
    let client = client().await;
    let tag = unique("tamper");
    let ns = namespace(&client, &tag, &[("zt-test", &tag)]).await;
    let _cleanup = Cleanup(vec![tag.clone()]);
    apply(&baseline(
        &tag,
        &tag,
        "podSecurity: {enforce: restricted}\nnetworkPolicy: {defaultDeny: [Ingress, Egress], allowDNS: true}\nserviceAccounts: {automountDefaultToken: false}",
    ));
    wait_in_force(&client, &tag, 1).await;
    let (_, tenant) = tenant_admin(&ns.name).await;
    let policies: Api<NetworkPolicy> = Api::namespaced(tenant.clone(), &ns.name);
    let deny = format!("zt-{tag}-default-deny");
    let owned = format!("belongs to SecurityBaseline {tag}");
    wait_tamper_refused(&tenant, &ns.name, &deny).await;

    // The tenant's role allows all of these; the API server refuses them.
    let deleted = policies.delete(&deny, &Default::default()).await;
    assert!(refused(&deleted, &owned), "delete: {deleted:?}");
    let opened = policies
        .patch(
            &deny,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"ingress": [{}]}})),
        )
        .await;
    assert!(refused(&opened, &owned), "edit: {opened:?}");
    let unlabelled = json!({"metadata": {"labels": {"app.kubernetes.io/managed-by": null}}});
    let unlabelled = policies
        .patch(&deny, &PatchParams::default(), &Patch::Merge(unlabelled))
        .await;
    assert!(refused(&unlabelled, &owned), "unlabel: {unlabelled:?}");
    // Nor can it dress its own object up as ours.
    let mut forged = network_policy("zt-forged", json!({"podSelector": {}, "ingress": [{}]}));
    forged.metadata.labels = Some(
        [
            (
                "app.kubernetes.io/managed-by".to_string(),
                "zerotrust-operator".to_string(),
            ),
            ("zerotrust.dev/baseline".to_string(), tag.clone()),
        ]
        .into(),
    );
    let forged = policies.create(&PostParams::default(), &forged).await;
    assert!(refused(&forged, &owned), "forge: {forged:?}");
    // Nor turn the token back on.
    let accounts: Api<ServiceAccount> = Api::namespaced(tenant.clone(), &ns.name);
    let token = json!({"automountServiceAccountToken": true});
    let token = accounts
        .patch("default", &PatchParams::default(), &Patch::Merge(token))
        .await;
    assert!(refused(&token, "automounting its token"), "{token:?}");
    // What is the tenant's own stays the tenant's.
    let own = network_policy(
        "mine",
        json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}),
    );
    policies.create(&PostParams::default(), &own).await.unwrap();
    policies.delete("mine", &Default::default()).await.unwrap();
    // The control is there, untouched.
    let admin: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns.name);
    assert!(
        admin
            .get(&deny)
            .await
            .unwrap()
            .spec
            .unwrap()
            .ingress
            .is_none()
    );
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

#[tokio::test]
async fn a_tenants_allow_all_policy_is_refused_when_the_baseline_asks_and_reported_when_not() {
    operator();
    let client = client().await;
    let tag = unique("refuse");
    let strict = namespace(
        &client,
        &format!("{tag}-strict"),
        &[("zt-test", &format!("{tag}-strict"))],
    )
    .await;
    let lenient = namespace(
        &client,
        &format!("{tag}-lenient"),
        &[("zt-test", &format!("{tag}-lenient"))],
    )
    .await;
    let (s, l) = (format!("{tag}-s"), format!("{tag}-l"));
    let _cleanup = Cleanup(vec![s.clone(), l.clone()]);
    apply(&baseline(
        &s,
        &strict.name,
        "networkPolicy: {defaultDeny: [Ingress, Egress], allowDNS: true, refuseWidening: true}",
    ));
    apply(&baseline(
        &l,
        &lenient.name,
        "networkPolicy: {defaultDeny: [Ingress, Egress], allowDNS: true}",
    ));
    wait_in_force(&client, &s, 1).await;
    wait_in_force(&client, &l, 1).await;

    let allow_all = network_policy(
        "allow-all",
        json!({"podSelector": {}, "ingress": [{}], "egress": [{}], "policyTypes": ["Ingress", "Egress"]}),
    );
    let (_, tenant) = tenant_admin(&strict.name).await;
    wait_tamper_refused(&tenant, &strict.name, &format!("zt-{s}-default-deny")).await;
    wait_widening_refused(&tenant, &strict.name, &allow_all).await;
    let strict_policies: Api<NetworkPolicy> = Api::namespaced(tenant, &strict.name);
    let created = strict_policies
        .create(&PostParams::default(), &allow_all)
        .await;
    assert!(
        refused(&created, "traffic through that SecurityBaseline"),
        "{created:?}"
    );
    for (name, spec) in [
        (
            "to-the-world",
            json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]}),
        ),
        (
            "from-another-team",
            json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "b"}}}]}]}),
        ),
        (
            "dns-all-ports",
            json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}]}]}),
        ),
    ] {
        let result = strict_policies
            .create(&PostParams::default(), &network_policy(name, spec))
            .await;
        assert!(refused(&result, "traffic through"), "{name}: {result:?}");
    }
    // Within the namespace, or within what the baseline allows itself, is the tenant's business.
    for (name, spec) in [
        (
            "same-namespace",
            json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}),
        ),
        (
            "self-by-name",
            json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": strict.name}}}]}]}),
        ),
        (
            "dns",
            json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}], "ports": [{"protocol": "UDP", "port": 53}]}]}),
        ),
    ] {
        strict_policies
            .create(&PostParams::default(), &network_policy(name, spec))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // Without the option: admitted, and reported.
    let (_, tenant) = tenant_admin(&lenient.name).await;
    Api::<NetworkPolicy>::namespaced(tenant, &lenient.name)
        .create(&PostParams::default(), &allow_all)
        .await
        .expect("admitted without refuseWidening");
    eventually(WAIT, "the widening reported", || async {
        let st = status(&client, &l).await;
        st.drift
            .iter()
            .any(|d| d.name == "allow-all" && d.reason.starts_with("Widened"))
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn audit_mode_warns_and_refuses_nothing() {
    operator();
    let client = client().await;
    let tag = unique("audit-warn");
    let ns = namespace(&client, &tag, &[("zt-test", &tag)]).await;
    let _cleanup = Cleanup(vec![tag.clone()]);
    apply(&baseline(
        &tag,
        &tag,
        "mode: Audit\nnetworkPolicy: {defaultDeny: [Ingress], refuseWidening: true}",
    ));
    eventually(WAIT, "the Audit policies in place", || async {
        let s = status(&client, &tag).await;
        s.conditions
            .iter()
            .any(|c| c.type_ == "AdmissionPolicies" && c.status == "True")
            .then_some(())
    })
    .await;
    let (user, _) = tenant_admin(&ns.name).await;
    let allow_all = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: allow-all}\nspec: {podSelector: {}, ingress: [{}]}\n";
    apply_until_warned(&ns.name, &user, "allow-all", allow_all, &tag).await;
    // Nothing was refused and nothing was written by us: the tenant's policy stands, unchanged.
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns.name);
    assert!(policies.get("allow-all").await.is_ok());
    let ours = policies
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=zerotrust-operator"))
        .await
        .unwrap();
    assert!(
        ours.items.is_empty(),
        "Audit writes nothing into the namespace"
    );
}

#[tokio::test]
async fn namespace_deletion_completes_and_a_deleted_baseline_leaves_nothing_blocking() {
    operator();
    let client = client().await;
    let tag = unique("lifecycle");
    let doomed = namespace(&client, &format!("{tag}-doomed"), &[("zt-test", &tag)]).await;
    let _cleanup = Cleanup(vec![tag.clone()]);
    apply(&baseline(
        &tag,
        &tag,
        "podSecurity: {enforce: restricted}\nnetworkPolicy: {defaultDeny: [Ingress]}\nresourceQuota: {hard: {pods: '5'}}\nserviceAccounts: {automountDefaultToken: false}",
    ));
    wait_in_force(&client, &tag, 1).await;

    // The namespace controller deletes our objects in a namespace being deleted.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .delete(&doomed.name, &Default::default())
        .await
        .unwrap();
    eventually(Duration::from_secs(90), "the namespace gone", || async {
        matches!(namespaces.get_opt(&doomed.name).await, Ok(None)).then_some(())
    })
    .await;

    // The baseline's policies go with it, so nothing keeps refusing.
    let kept = namespace(&client, &format!("{tag}-kept"), &[("zt-test", &tag)]).await;
    eventually(WAIT, "onboarded", || async {
        let ns = namespaces.get(&kept.name).await.ok()?;
        ns.labels()
            .contains_key(&format!("onboarded.zerotrust.dev/{tag}"))
            .then_some(())
    })
    .await;
    delete_baseline(&tag);
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
    eventually(WAIT, "the baseline's admission policies gone", || async {
        let list = policies
            .list(&ListParams::default().labels(&format!("zerotrust.dev/baseline={tag}")))
            .await
            .ok()?;
        list.items.is_empty().then_some(())
    })
    .await;
    let later = namespace(&client, &format!("{tag}-later"), &[("zt-test", &tag)]).await;
    let (_, tenant) = tenant_admin(&kept.name).await;
    let deny = format!("zt-{tag}-default-deny");
    eventually(WAIT, "the orphaned policy the tenant's again", || async {
        Api::<NetworkPolicy>::namespaced(tenant.clone(), &kept.name)
            .delete(&deny, &Default::default())
            .await
            .ok()
    })
    .await;
    // No gate any more (a restricted pod: a namespace created while the API server still held
    // the mutating policy may have got Pod Security labels, which under Orphan stay).
    eventually(
        WAIT,
        "a pod admitted in a namespace created after",
        || async {
            Api::<Pod>::namespaced(client.clone(), &later.name)
                .create(&PostParams::default(), &pod("p", false))
                .await
                .ok()
        },
    )
    .await;
}

#[tokio::test]
async fn an_enforce_and_an_audit_baseline_on_one_namespace_each_do_their_part() {
    operator();
    let client = client().await;
    let tag = unique("two-modes");
    let ns = namespace(&client, &tag, &[("zt-test", &tag)]).await;
    let (enforce, audit) = (format!("{tag}-e"), format!("{tag}-a"));
    let _cleanup = Cleanup(vec![enforce.clone(), audit.clone()]);
    apply(&baseline(
        &enforce,
        &tag,
        "podSecurity: {enforce: baseline}\nnetworkPolicy: {defaultDeny: [Ingress]}",
    ));
    apply(&baseline(
        &audit,
        &tag,
        "mode: Audit\npodSecurity: {enforce: restricted}\nnetworkPolicy: {defaultDeny: [Ingress], refuseWidening: true}",
    ));
    wait_in_force(&client, &enforce, 1).await;
    let (user, tenant) = tenant_admin(&ns.name).await;
    // Enforce's object is protected...
    let deny = format!("zt-{enforce}-default-deny");
    wait_tamper_refused(&tenant, &ns.name, &deny).await;
    let deleted = Api::<NetworkPolicy>::namespaced(tenant, &ns.name)
        .delete(&deny, &Default::default())
        .await;
    assert!(
        refused(&deleted, &format!("SecurityBaseline {enforce}")),
        "{deleted:?}"
    );
    // ...the Audit baseline's refusal only warns, and its stricter level is not written.
    let allow_all = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: allow-all}\nspec: {podSelector: {}, ingress: [{}]}\n";
    // The Audit baseline's policies reach the API server's admission informer on their own
    // schedule: repeat the tenant's apply until it is warned.
    apply_until_warned(&ns.name, &user, "allow-all", allow_all, &audit).await;
    let labels = Api::<Namespace>::all(client.clone())
        .get(&ns.name)
        .await
        .unwrap();
    assert_eq!(labels.labels()[ENFORCE_LABEL], "baseline");
}

#[tokio::test]
async fn every_policy_passes_the_api_servers_type_checking() {
    operator();
    let client = client().await;
    let tag = unique("typed");
    let _cleanup = Cleanup(vec![tag.clone()]);
    apply(&baseline(
        &tag,
        &tag,
        "podSecurity: {enforce: restricted, audit: restricted, warn: baseline, version: v1.33}\nnetworkPolicy: {defaultDeny: [Ingress, Egress], allowDNS: true, allowSameNamespace: true, refuseWidening: true}\nserviceAccounts: {automountDefaultToken: false}",
    ));
    wait_in_force(&client, &tag, 0).await;
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
    let list = policies
        .list(&ListParams::default().labels(&format!("zerotrust.dev/baseline={tag}")))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 3, "gate, tamper, network policies");
    for policy in list.items {
        let name = policy.name_any();
        let warnings = policy
            .status
            .and_then(|s| s.type_checking)
            .and_then(|t| t.expression_warnings)
            .unwrap_or_default();
        assert!(warnings.is_empty(), "{name}: {warnings:?}");
    }
}
