//! A baseline that exists keeps its last valid protection: an edit the operator cannot decode, or
//! one its validation refuses, followed by an operator restart, leaves every admission policy in
//! force (the API server still refuses a tenant admin's tamper), every generated object in place,
//! and a new namespace is still onboarded from the last valid generation, which the status
//! records. And `check` beside an operator running under another identity than the one `check`
//! would assume renders the policies for the identity the operator recorded.
//!
//! Each test runs its own operator process, restarted on purpose, so they run one at a time
//! (`SERIAL`): a second operator alive meanwhile would remember what a restarted one must not.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingAdmissionPolicy, MutatingAdmissionPolicyBinding, ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use zerotrust_operator::api::{SecurityBaseline, SecurityBaselineStatus};
use zerotrust_testkit::crd::install_crd;
use zerotrust_testkit::*;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const WAIT: Duration = Duration::from_secs(30);

/// A baseline whose admission policies refuse a tenant's tamper and gate new namespaces.
const SPEC: &str = "podSecurity: {enforce: restricted}\nnetworkPolicy: {defaultDeny: [Ingress, Egress], allowDNS: true}";

fn start_operator(name: &str) -> OperatorProcess {
    let operator = OperatorProcess::start(name, &[]);
    operator.wait_ready(Duration::from_secs(120));
    operator
}

/// Kind/name and uid of every admission policy and binding of baseline `name`.
async fn admission_objects(client: &Client, name: &str) -> BTreeSet<(String, String)> {
    async fn uids<K>(client: &Client, name: &str) -> Vec<(String, String)>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::ClusterResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let lp = ListParams::default().labels(&format!("zerotrust.dev/baseline={name}"));
        Api::<K>::all(client.clone())
            .list(&lp)
            .await
            .expect("list")
            .items
            .iter()
            .map(|o| {
                (
                    format!("{}/{}", K::kind(&()), o.name_any()),
                    o.uid().unwrap_or_default(),
                )
            })
            .collect()
    }
    let mut all = BTreeSet::new();
    all.extend(uids::<ValidatingAdmissionPolicy>(client, name).await);
    all.extend(uids::<ValidatingAdmissionPolicyBinding>(client, name).await);
    all.extend(uids::<MutatingAdmissionPolicy>(client, name).await);
    all.extend(uids::<MutatingAdmissionPolicyBinding>(client, name).await);
    all
}

/// The tenant admin's edit that opens our default-deny to all ingress is refused by the API
/// server's tamper protection, naming the baseline (a dry run: nothing changes either way; an edit
/// rather than a delete, which the ownership protection may be the first to refuse).
async fn assert_tamper_refused(tenant: &Client, namespace: &str, tag: &str) {
    let policies: Api<NetworkPolicy> = Api::namespaced(tenant.clone(), namespace);
    let dry_run = PatchParams {
        dry_run: true,
        ..Default::default()
    };
    let owned = format!("belongs to SecurityBaseline {tag}");
    let opened = policies
        .patch(
            &format!("zt-{tag}-default-deny"),
            &dry_run,
            &Patch::Merge(json!({"spec": {"ingress": [{}]}})),
        )
        .await;
    assert!(
        matches!(&opened, Err(kube::Error::Api(e)) if e.code == 403 && e.message.contains(&owned)),
        "the tenant's edit of our default-deny in {namespace}: {opened:?}"
    );
}

/// Applies the valid baseline `tag` and waits until it is compliant in `count` namespaces with
/// its admission policies in force for `tenant` in `namespace`.
async fn enforce_valid(client: &Client, tag: &str, namespace: &str, tenant: &Client) {
    apply(&baseline(tag, tag, SPEC));
    wait_status(client, tag, WAIT, "compliant", |s| {
        s.compliant_namespaces == 1
            && condition(s, "Ready").is_some_and(|(status, _, _)| status == "True")
    })
    .await;
    wait_tamper_refused(tenant, namespace, &format!("zt-{tag}-default-deny")).await;
}

/// The status of baseline `name`, read untyped: its spec may not decode.
async fn raw_status(client: &Client, name: &str) -> Option<SecurityBaselineStatus> {
    let raw: Api<DynamicObject> =
        Api::all_with(client.clone(), &ApiResource::erase::<SecurityBaseline>(&()));
    let object = raw.get(name).await.ok()?;
    serde_json::from_value(object.data.get("status")?.clone()).ok()
}

/// Waits until the status reports the newest generation invalid, naming `field`; returns it.
async fn wait_invalid(client: &Client, tag: &str, field: &str) -> SecurityBaselineStatus {
    eventually(WAIT, "InvalidSpec", || async {
        let s = raw_status(client, tag).await?;
        condition(&s, "Ready")
            .is_some_and(|(_, reason, message)| reason == "InvalidSpec" && message.contains(field))
            .then_some(s)
    })
    .await
}

/// After a restart: the admission objects are the same objects (same uids), still in force,
/// the generated default-deny is the same object, and a new namespace is onboarded from the last
/// valid generation.
async fn assert_protection_kept(protected: &Protected) {
    let Protected {
        client,
        tag,
        ns,
        tenant,
        before,
        deny_uid,
        ..
    } = protected;
    // The new process's first admission pass is done once it has onboarded a namespace.
    let late = namespace(client, &format!("{tag}-late"), &[("zt-test", tag)]).await;
    let deny = format!("zt-{tag}-default-deny");
    let late_policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &late.name);
    eventually(
        WAIT,
        "a new namespace onboarded from the last valid generation",
        || async { late_policies.get_opt(&deny).await.ok().flatten() },
    )
    .await;
    assert_eq!(
        &admission_objects(client, tag).await,
        before,
        "the admission policies and bindings, neither deleted nor replaced"
    );
    assert_tamper_refused(tenant, ns, tag).await;
    let kept = Api::<NetworkPolicy>::namespaced(client.clone(), ns)
        .get(&deny)
        .await
        .expect("the default-deny is still there");
    assert_eq!(kept.uid().as_ref(), Some(deny_uid), "the same object");
}

/// A namespace under a valid Enforce baseline, its tenant admin, an operator, and what the
/// baseline's protection holds before the edit under test: its admission objects, and the uid of
/// its default-deny.
/// Dropped in field order, as the tests' locals were: the operator stopped first, then the
/// baseline deleted, then the namespace.
struct Protected {
    operator: OperatorProcess,
    client: Client,
    tag: String,
    ns: String,
    tenant: Client,
    before: BTreeSet<(String, String)>,
    deny_uid: String,
    _cleanup: Cleanup,
    _namespace: NamespaceGuard,
}

async fn protected(prefix: &str) -> Protected {
    let client = client().await;
    let tag = unique(prefix);
    let guard = namespace(&client, &tag, &[("zt-test", &tag)]).await;
    let ns = guard.name.clone();
    let _cleanup = Cleanup(vec![tag.clone()]);
    let (_, tenant) = tenant_admin(&ns).await;
    let operator = start_operator(prefix);
    enforce_valid(&client, &tag, &ns, &tenant).await;
    let before = admission_objects(&client, &tag).await;
    assert!(!before.is_empty(), "the baseline has admission policies");
    let deny_uid = Api::<NetworkPolicy>::namespaced(client.clone(), &ns)
        .get(&format!("zt-{tag}-default-deny"))
        .await
        .unwrap()
        .uid()
        .unwrap();
    Protected {
        client,
        tag,
        ns,
        tenant,
        operator,
        before,
        deny_uid,
        _cleanup,
        _namespace: guard,
    }
}

#[tokio::test]
async fn an_invalid_edit_and_a_restart_keep_the_last_valid_protection() {
    let _serial = SERIAL.lock().await;
    let mut protected = protected("lv-invalid").await;
    let (client, tag) = (protected.client.clone(), protected.tag.clone());

    // An edit the API server stores and the operator's validation refuses.
    apply(&baseline(
        &tag,
        &tag,
        &format!(
            "{SPEC}\nrbac: {{roles: [{{name: r, rules: [{{apiGroups: [''], resources: [pods], verbs: [get]}}], subjects: [{{kind: Group, name: '${{team}}'}}]}}]}}"
        ),
    ));
    wait_invalid(&client, &tag, "spec.rbac.roles[0].subjects[0].name").await;
    protected.operator = start_operator("lv-invalid-restarted");
    assert_protection_kept(&protected).await;
    let s = wait_invalid(&client, &tag, "spec.rbac.roles[0].subjects[0].name").await;
    let (_, _, message) = condition(&s, "Ready").unwrap();
    assert!(message.ends_with("enforcing generation 1"), "{message}");
    assert_eq!(s.last_valid.map(|l| l.generation), Some(1), "recorded");
    // `check` agrees: the newest generation is invalid (exit 1), the recorded one is checked.
    let out = check_baseline(&tag);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("checked at generation 1")
            && stdout(&out).contains(", 0 with drift or conflicts"),
        "{}",
        stdout(&out)
    );
}

#[tokio::test]
async fn an_undecodable_edit_and_a_restart_keep_the_last_valid_protection() {
    let _serial = SERIAL.lock().await;
    let mut protected = protected("lv-undecodable").await;
    let (client, tag) = (protected.client.clone(), protected.tag.clone());

    // A time the API server's `date-time` format takes and the operator cannot parse: the CRD
    // now refuses it, naming the field.
    let unparsable = baseline(
        &tag,
        &tag,
        &format!(
            "{SPEC}\nexemptions: [{{namespaces: [{tag}-other], controls: [NetworkPolicy], reason: r, expiresAt: '2027-01-01T00:00:00ZT'}}]"
        ),
    );
    let refused = control_plane().kubectl(&["apply", "-f", "-"], Some(&unparsable));
    assert!(
        !refused.status.success() && stderr(&refused).contains("expiresAt"),
        "the API server refuses it: {}",
        stderr(&refused)
    );

    // Stored all the same while the CRD's schema takes anything (a hand edit of the CRD).
    install_crd(&client, true).await;
    let restore = scopeguard(|| {
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
    // The CRD stays so until the end: stored under the real one, the exemption's CEL rule cannot
    // evaluate `timestamp()` on it and the API server refuses even the status writes.
    apply(&unparsable);
    wait_invalid(&client, &tag, "expiresAt").await;
    assert_eq!(
        admission_objects(&client, &tag).await,
        protected.before,
        "the admission policies stay while the edit cannot be read"
    );
    protected.operator = start_operator("lv-undecodable-restarted");
    assert_protection_kept(&protected).await;
    let s = wait_invalid(&client, &tag, "expiresAt").await;
    let (_, _, message) = condition(&s, "Ready").unwrap();
    assert!(message.ends_with("enforcing generation 1"), "{message}");

    // Only deleting the baseline takes its admission policies away.
    delete_baseline(&tag);
    eventually(WAIT, "the deleted baseline's policies gone", || async {
        admission_objects(&client, &tag)
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    install_crd(&client, false).await;
    drop(restore);
}

#[tokio::test]
async fn check_beside_an_operator_of_another_identity_renders_for_the_recorded_one() {
    let _serial = SERIAL.lock().await;
    let client = client().await;
    let tag = unique("lv-identity");
    let ns = namespace(&client, &tag, &[("zt-test", &tag)]).await;
    let _cleanup = Cleanup(vec![tag.clone()]);
    let (_, tenant) = tenant_admin(&ns.name).await;
    // The operator runs as the admin user (it asks the API server who it is); `check`, given no
    // `--operator-user`, would assume the in-cluster ServiceAccount.
    let operator = start_operator("lv-identity");
    enforce_valid(&client, &tag, &ns.name, &tenant).await;
    wait_status(&client, &tag, WAIT, "the identity recorded", |s| {
        s.admission_identity
            .as_ref()
            .is_some_and(|i| i.operator_user == ADMIN_USER)
    })
    .await;
    let check = || {
        let mut check = Command::new(operator_binary());
        check
            .args(["check", "--baseline", &tag, "--kubeconfig"])
            .arg(&control_plane().kubeconfig)
            .env_remove("ZT_OPERATOR_USER");
        run_bounded(&mut check, None, Duration::from_secs(60))
    };
    let out = check();
    assert_eq!(
        out.status.code(),
        Some(0),
        "no false drift: {}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(!stdout(&out).contains("Weakened"), "{}", stdout(&out));

    // A policy really weakened (while no operator repairs it) is still reported.
    drop(operator);
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
    let lp = ListParams::default().labels(&format!("zerotrust.dev/baseline={tag}"));
    let policy = policies.list(&lp).await.unwrap().items.remove(0);
    let name = policy.name_any();
    policies
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(json!([
                    {"op": "replace", "path": "/spec/validations/0/expression", "value": "true"}
                ]))
                .unwrap(),
            ),
        )
        .await
        .unwrap();
    let out = check();
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains(&name) && stdout(&out).contains("Weakened"),
        "{}",
        stdout(&out)
    );
}
