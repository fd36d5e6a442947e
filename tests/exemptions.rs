//! Exemptions on the real control plane: an exempt control is not enforced (not by the operator,
//! not by the admission policies) and is reported as exempt, alike in status, `check`, `render`
//! and Events; at its expiry it is enforced again within a second, with an Event; and nobody
//! without the right to edit cluster-scoped baselines can exempt anything.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use zerotrust_operator::api::{SecurityBaseline, SecurityBaselineStatus};
use zerotrust_testkit::*;

const WAIT: Duration = Duration::from_secs(30);
const ENFORCE_LABEL: &str = "pod-security.kubernetes.io/enforce";

/// Deletes the named baselines when the test ends, passed or failed.
struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for name in &self.0 {
            delete_baseline(name);
        }
    }
}

fn ready(s: &SecurityBaselineStatus) -> Option<&str> {
    condition(s, "Ready")
        .filter(|(status, _, _)| *status == "True")
        .map(|(_, reason, _)| reason)
}

async fn default_deny(client: &Client, ns: &str, name: &str) -> Option<NetworkPolicy> {
    Api::<NetworkPolicy>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .ok()
        .flatten()
}

async fn enforce_label(client: &Client, ns: &str) -> Option<String> {
    Api::<Namespace>::all(client.clone())
        .get(ns)
        .await
        .ok()?
        .labels()
        .get(ENFORCE_LABEL)
        .cloned()
}

/// A pod Pod Security's `restricted` level refuses.
fn privileged_pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox",
                                 "securityContext": {"privileged": true}}]},
    }))
    .unwrap()
}

/// The exempt controls `check` lists for `namespace`.
fn check_exempt(output: &str, namespace: &str) -> BTreeSet<String> {
    output
        .lines()
        .filter_map(|l| l.strip_prefix("EXEMPT   "))
        .filter_map(|l| {
            let mut cells = l.split("  ");
            (cells.next()? == namespace).then(|| {
                let _baseline = cells.next();
                cells
                    .next()
                    .unwrap_or_default()
                    .split(' ')
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
        })
        .collect()
}

/// The exempt controls `render` lists for `namespace` (with `labels`) from the baseline `yaml`.
fn render_exempt(yaml: &str, namespace: &str, labels: &[&str]) -> BTreeSet<String> {
    let mut render = std::process::Command::new(operator_binary());
    render.args(["render", "-f", "-", "-n", namespace]);
    for label in labels {
        render.args(["-l", label]);
    }
    let out = run_bounded(&mut render, Some(yaml), Duration::from_secs(60));
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
        .lines()
        .filter_map(|l| l.strip_prefix("# Exempt under "))
        .filter_map(|l| l.split(": ").nth(1)?.split(' ').next().map(String::from))
        .collect()
}

#[tokio::test]
async fn an_exemption_ends_at_its_expiry_within_a_second_with_an_event() {
    operator();
    let client = client().await;
    let tag = unique("expiry");
    let ns = format!("{tag}-legacy");
    let _ns = namespace(&client, &ns, &[("zt-test", &tag)]).await;
    let _cleanup = Cleanup(vec![tag.clone()]);
    // Far enough ahead to see the exemption in force, near enough to watch it end.
    let expiry = Timestamp::now().as_second() + 12;
    let expires_at = Timestamp::from_second(expiry).unwrap();
    apply(&baseline(
        &tag,
        &tag,
        &format!(
            "networkPolicy: {{defaultDeny: [Ingress, Egress], refuseWidening: true}}\npodSecurity: {{enforce: restricted}}\nexemptions:\n  - {{namespaces: [{ns}], controls: [NetworkPolicy, PodSecurity], reason: moving to the new network, expiresAt: '{expires_at}'}}"
        ),
    ));
    let deny = format!("zt-{tag}-default-deny");

    // In force: nothing of the two controls, the status says exempt, an Event says why.
    let s = wait_status(&client, &tag, WAIT, "exempt", |s| {
        s.exempt_namespaces == 1 && ready(s) == Some("CompliantWithExemptions")
    })
    .await;
    assert_eq!((s.compliant_namespaces, s.drifted_namespaces), (0, 0));
    assert!(default_deny(&client, &ns, &deny).await.is_none());
    assert_eq!(enforce_label(&client, &ns).await, None);
    let began = eventually(WAIT, "the Exempt event", || async {
        let found = events_for(&client, &ns, "Exempt").await;
        (!found.is_empty()).then_some(found)
    })
    .await;
    assert!(
        began[0].contains("NetworkPolicy") && began[0].contains("moving to the new network"),
        "{began:?}"
    );
    // The admission policies let the tenant do what the exemption allows.
    let (_, tenant) = tenant_admin(&ns).await;
    let pods: Api<Pod> = Api::namespaced(tenant.clone(), &ns);
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    eventually(WAIT, "a privileged pod admitted while exempt", || async {
        pods.create(&dry_run, &privileged_pod("p")).await.ok()
    })
    .await;

    // Expiry: enforced again within a second of it, by itself.
    let deadline = Duration::from_secs(expiry as u64) + Duration::from_secs(1);
    let since_epoch = || Duration::from_millis(Timestamp::now().as_millisecond() as u64);
    assert!(
        since_epoch() < Duration::from_secs(expiry as u64),
        "the exemption ended too early to watch"
    );
    let started = Instant::now();
    loop {
        let deny_back = default_deny(&client, &ns, &deny).await.is_some();
        let label_back = enforce_label(&client, &ns).await.as_deref() == Some("restricted");
        if deny_back && label_back {
            break;
        }
        assert!(
            since_epoch() <= deadline,
            "not enforced within a second of the expiry (deny {deny_back}, label {label_back})"
        );
        assert!(started.elapsed() < WAIT);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let late = since_epoch().saturating_sub(Duration::from_secs(expiry as u64));
    eprintln!("enforced {late:?} after the expiry");
    let ended = eventually(WAIT, "the ExemptionExpired event", || async {
        let found = events_for(&client, &ns, "ExemptionExpired").await;
        (!found.is_empty()).then_some(found)
    })
    .await;
    assert!(
        ended[0].contains("NetworkPolicy") && ended[0].contains("PodSecurity"),
        "{ended:?}"
    );
    wait_status(&client, &tag, WAIT, "compliant", |s| {
        s.compliant_namespaces == 1 && s.exempt_namespaces == 0 && ready(s) == Some("Compliant")
    })
    .await;
    // And the API server refuses again what it let through.
    eventually(
        WAIT,
        "a privileged pod refused after the expiry",
        || async { pods.create(&dry_run, &privileged_pod("p")).await.err() },
    )
    .await;
}

#[tokio::test]
async fn render_check_and_status_agree_on_every_exempt_control() {
    operator();
    let client = client().await;
    let tag = unique("agree");
    let (by_name, by_label, plain) = (format!("{tag}-a"), format!("{tag}-b"), format!("{tag}-c"));
    let _namespaces = [
        namespace(&client, &by_name, &[("zt-test", &tag)]).await,
        namespace(&client, &by_label, &[("zt-test", &tag), ("lab", "true")]).await,
        namespace(&client, &plain, &[("zt-test", &tag)]).await,
    ];
    let _cleanup = Cleanup(vec![tag.clone()]);
    let in_300_days = Timestamp::now() + std::time::Duration::from_secs(300 * 86_400);
    let yaml = baseline(
        &tag,
        &tag,
        &format!(
            "{RESTRICTED}exemptions:\n  - {{namespaces: [{by_name}], controls: [NetworkPolicy, PodSecurity, ResourceQuota, LimitRange, ServiceAccount], reason: r1, permanent: true}}\n  - {{namespaceSelector: {{matchLabels: {{lab: 'true'}}}}, roles: [viewer], reason: r2, expiresAt: '{in_300_days}'}}"
        ),
    );
    apply(&yaml);
    let s = wait_status(&client, &tag, WAIT, "two exempt, one compliant", |s| {
        s.exempt_namespaces == 2 && s.compliant_namespaces == 1
    })
    .await;
    assert_eq!(s.drift_count, 0, "{s:?}");
    assert_eq!(
        s.permanent_exemptions,
        [0],
        "the exemption without end, listed"
    );
    let check = check_baseline(&tag);
    assert!(
        check.status.success(),
        "exemptions fail nothing: {}",
        stdout(&check)
    );
    let output = stdout(&check);
    assert!(
        output.contains("1 compliant, 2 exempt, 0 with drift"),
        "{output}"
    );
    assert!(
        output.contains(&format!(
            "PERMANENT  SecurityBaseline {tag:?} spec.exemptions[0]: NetworkPolicy, PodSecurity, ResourceQuota, LimitRange, ServiceAccount (permanent: r1)"
        )),
        "{output}"
    );
    let every_control: BTreeSet<String> = [
        "NetworkPolicy",
        "PodSecurity",
        "ResourceQuota",
        "LimitRange",
        "ServiceAccount",
    ]
    .map(String::from)
    .into();
    let selector = format!("zt-test={tag}");
    assert_eq!(check_exempt(&output, &by_name), every_control);
    assert_eq!(render_exempt(&yaml, &by_name, &[&selector]), every_control);
    let one_role = BTreeSet::from(["Role/viewer".to_string()]);
    assert_eq!(check_exempt(&output, &by_label), one_role);
    assert_eq!(
        render_exempt(&yaml, &by_label, &[&selector, "lab=true"]),
        one_role
    );
    assert!(check_exempt(&output, &plain).is_empty());
    assert!(render_exempt(&yaml, &plain, &[&selector]).is_empty());
    // What is exempt is really not there; the rest is.
    let roles: Api<k8s_openapi::api::rbac::v1::Role> = Api::namespaced(client.clone(), &by_label);
    assert!(
        roles
            .get_opt(&format!("zt-{tag}-viewer"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        default_deny(&client, &by_label, &format!("zt-{tag}-default-deny"))
            .await
            .is_some()
    );
    assert!(
        default_deny(&client, &by_name, &format!("zt-{tag}-default-deny"))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn nobody_but_a_baseline_editor_can_exempt_anything() {
    operator();
    let client = client().await;
    let tag = unique("selfexempt");
    let _ns = namespace(&client, &tag, &[("zt-test", &tag)]).await;
    let _cleanup = Cleanup(vec![tag.clone()]);
    apply(&baseline(
        &tag,
        &tag,
        "networkPolicy: {defaultDeny: [Ingress]}",
    ));
    wait_status(&client, &tag, WAIT, "compliant", |s| {
        s.compliant_namespaces == 1
    })
    .await;
    let exemption = json!({"spec": {"exemptions": [{"namespaces": [tag], "controls": ["NetworkPolicy"], "reason": "mine", "permanent": true}]}});
    // The namespace's own admin, and someone who may label namespaces: neither may write the
    // cluster-scoped baseline, where the only exemptions live.
    let (_, tenant) = tenant_admin(&tag).await;
    let labeller = namespace_labeller(&format!("{tag}-labeller")).await;
    for (who, as_client) in [("tenant admin", tenant), ("namespace labeller", labeller)] {
        let api: Api<SecurityBaseline> = Api::all(as_client);
        let refused = api
            .patch(&tag, &PatchParams::default(), &Patch::Merge(&exemption))
            .await
            .expect_err(who);
        assert!(
            matches!(&refused, kube::Error::Api(e) if e.code == 403),
            "{who}: {refused}"
        );
    }
    let s = baseline_status(&client, &tag).await;
    assert_eq!(s.exempt_namespaces, 0);
    assert!(
        default_deny(&client, &tag, &format!("zt-{tag}-default-deny"))
            .await
            .is_some()
    );
}
