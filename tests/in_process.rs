//! The operator's reconcile called in-process against the real control plane, without an operator
//! process or a work queue: the writes one pass makes, the requeue it asks for, and what a failed
//! write leaves done.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, ResourceQuota};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::Role;
use kube::api::PostParams;
use kube::runtime::controller::Action;
use kube::{Api, Client, Config, ResourceExt};
use serde_json::json;
use zerotrust_operator::api::SecurityBaseline;
use zerotrust_operator::controller::{
    AdmissionIdentity, DEFAULT_BREAK_GLASS_GROUP, FORBIDDEN_RETRY, InProcess, RESYNC,
};
use zerotrust_operator::engine::{DEFAULT_OPERATOR_NAMESPACE, marker_value};
use zerotrust_testkit::*;

const WAIT: Duration = Duration::from_secs(30);

/// An in-process operator whose caches know `namespace` and generation `generation` of `baseline`.
async fn in_process(client: Client, namespace: &str, baseline: &str) -> InProcess {
    let identity = AdmissionIdentity {
        operator_user: None,
        break_glass_group: DEFAULT_BREAK_GLASS_GROUP.to_string(),
    };
    let operator = InProcess::start(client, DEFAULT_OPERATOR_NAMESPACE, &identity, WAIT)
        .await
        .expect("the caches fill");
    eventually(
        WAIT,
        "the caches to know the namespace and baseline",
        || async {
            (operator.knows_namespace(namespace)
                && operator.baseline_generation(baseline).is_some())
            .then_some(())
        },
    )
    .await;
    operator
}

async fn reconcile(operator: &InProcess, namespace: &str) -> Action {
    operator
        .reconcile(namespace)
        .await
        .expect("the namespace is cached")
        .unwrap_or_else(|e| panic!("reconcile failed: {e}"))
}

#[tokio::test]
async fn one_pass_writes_what_the_baseline_asks_and_requeues_for_the_resync() {
    let client = client().await;
    let tag = unique("inproc");
    let ns = namespace(&client, &tag, &[("zt-test", &tag)]).await;
    apply(&baseline(
        &tag,
        &tag,
        "networkPolicy: {defaultDeny: [Ingress, Egress]}\npodSecurity: {enforce: restricted}",
    ));
    let operator = in_process(client.clone(), &ns.name, &tag).await;
    let namespaces = Api::<Namespace>::all(client.clone());

    // The writes are made by the time reconcile returns: no polling for them.
    assert_eq!(
        reconcile(&operator, &ns.name).await,
        Action::requeue(RESYNC)
    );
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns.name);
    let deny = format!("zt-{tag}-default-deny");
    let policy = policies.get(&deny).await.expect("the default-deny exists");
    let namespace = namespaces.get(&ns.name).await.unwrap();
    let labels = namespace.labels();
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted");
    assert_eq!(
        labels[&format!("onboarded.zerotrust.dev/{tag}")],
        our_marker(&client, &ns.name, &tag).await
    );
    assert_eq!(operator.drift_count(&tag, &ns.name), Some(0));

    // Deleted behind its back: once the watch has told the caches, one pass repairs it.
    policies.delete(&deny, &Default::default()).await.unwrap();
    let repaired = eventually(WAIT, "a pass that recreates the default-deny", || async {
        reconcile(&operator, &ns.name).await;
        policies.get_opt(&deny).await.ok().flatten()
    })
    .await;
    assert_ne!(repaired.metadata.uid, policy.metadata.uid, "a new object");
    delete_baseline(&tag);
}

/// The versions `name` was written as, after resource version `from` up to `now`, as its watch
/// tells.
async fn namespace_writes(
    namespaces: &Api<Namespace>,
    name: &str,
    from: Option<&str>,
    now: &Namespace,
) -> Vec<Namespace> {
    use futures::{StreamExt, TryStreamExt};
    use kube::api::{WatchEvent, WatchParams};
    let params = WatchParams::default()
        .fields(&format!("metadata.name={name}"))
        .timeout(10);
    let mut events = namespaces
        .watch(&params, from.expect("a resource version"))
        .await
        .expect("a watch")
        .boxed();
    let mut writes = Vec::new();
    while let Some(event) = tokio::time::timeout(WAIT, events.try_next())
        .await
        .expect("the watch reaches the namespace as it is now")
        .expect("a watch event")
    {
        if let WatchEvent::Modified(seen) = event {
            let done = seen.resource_version() == now.resource_version();
            writes.push(seen);
            if done {
                return writes;
            }
        }
    }
    panic!(
        "the watch ended before resource version {:?}",
        now.resource_version()
    );
}

/// One pass over `namespace`; the namespace's writes it made, as its watch tells.
async fn writes_of_a_pass(
    operator: &InProcess,
    namespaces: &Api<Namespace>,
    namespace: &str,
) -> Vec<Namespace> {
    let before = namespaces.get(namespace).await.unwrap().resource_version();
    reconcile(operator, namespace).await;
    let now = namespaces.get(namespace).await.unwrap();
    namespace_writes(namespaces, namespace, before.as_deref(), &now).await
}

/// The onboarding marker the operator writes on `namespace` for `baseline`: their uids.
async fn our_marker(client: &Client, namespace: &str, baseline: &str) -> String {
    let namespace = Api::<Namespace>::all(client.clone())
        .get(namespace)
        .await
        .unwrap();
    let baseline = Api::<SecurityBaseline>::all(client.clone())
        .get(baseline)
        .await
        .unwrap();
    marker_value(&namespace.uid().unwrap(), baseline.uid().as_deref())
}

#[tokio::test]
async fn onboarding_writes_the_namespace_once_unless_that_opens_the_gate_early() {
    let client = client().await;
    let tag = unique("inproc-once");
    let namespaces = Api::<Namespace>::all(client.clone());
    apply(&baseline(
        &tag,
        &tag,
        "networkPolicy: {defaultDeny: [Ingress]}\npodSecurity: {enforce: restricted}",
    ));
    let new = namespace(&client, &format!("{tag}-new"), &[("zt-test", &tag)]).await;
    let operator = in_process(client.clone(), &new.name, &tag).await;
    let enforce = "pod-security.kubernetes.io/enforce";
    let marker = format!("onboarded.zerotrust.dev/{tag}");

    // Held by the gate, without the mutating policy's labels (this in-process operator installs
    // no admission policy): a pod checked by PodSecurity before one write and by the gate after
    // it must not pass both, so Pod Security is raised first, and the marker comes after.
    let writes = writes_of_a_pass(&operator, &namespaces, &new.name).await;
    assert_eq!(writes.len(), 2, "labels first, then the marker");
    assert_eq!(writes[0].labels()[enforce], "restricted");
    assert!(
        !writes[0].labels().contains_key(&marker),
        "not yet onboarded"
    );
    assert_eq!(
        writes[1].labels()[&marker],
        our_marker(&client, &new.name, &tag).await
    );

    // Created with the Pod Security labels (as the mutating policy sets them at creation), the
    // write only takes them over and raises nothing: labels and marker go in one write.
    let mut labels: Vec<(&str, &str)> = writes[0]
        .labels()
        .iter()
        .filter(|(k, _)| k.starts_with("pod-security.kubernetes.io/"))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    labels.push(("zt-test", &tag));
    let labelled = namespace(&client, &format!("{tag}-labelled"), &labels).await;
    eventually(
        WAIT,
        "the caches to know the labelled namespace",
        || async { operator.knows_namespace(&labelled.name).then_some(()) },
    )
    .await;
    let writes = writes_of_a_pass(&operator, &namespaces, &labelled.name).await;
    assert_eq!(writes.len(), 1, "one namespace write for labels and marker");
    assert_eq!(writes[0].labels()[enforce], "restricted");
    assert_eq!(
        writes[0].labels()[&marker],
        our_marker(&client, &labelled.name, &tag).await
    );
    delete_baseline(&tag);
}

/// A client that acts as `user`.
async fn impersonating(user: &str) -> Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(&control_plane().kubeconfig).unwrap();
    let mut config =
        Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
            .await
            .unwrap();
    config.auth_info.impersonate = Some(user.to_string());
    Client::try_from(config).unwrap()
}

#[tokio::test]
async fn a_write_rbac_refuses_is_reported_and_retried_sooner() {
    let client = client().await;
    let tag = unique("inproc-rbac");
    let user = format!("{tag}-operator");
    // What the operator needs, except creating Roles and RoleBindings.
    apply(&format!(
        r#"apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: {tag}}}
rules:
  - apiGroups: [""]
    resources: [namespaces, serviceaccounts, resourcequotas, limitranges]
    verbs: [get, list, watch, patch]
  - apiGroups: [""]
    resources: [services]
    verbs: [get, list, watch]
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [get, list, watch]
  - apiGroups: [networking.k8s.io]
    resources: [networkpolicies]
    verbs: [get, list, watch, create, patch]
  - apiGroups: [rbac.authorization.k8s.io]
    resources: [roles, rolebindings]
    verbs: [get, list, watch]
  - apiGroups: [zerotrust.dev]
    resources: [securitybaselines]
    verbs: [get, list, watch]
  - apiGroups: [admissionregistration.k8s.io]
    resources: [validatingadmissionpolicies, validatingadmissionpolicybindings, mutatingadmissionpolicies, mutatingadmissionpolicybindings]
    verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: {tag}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {tag}}}
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: {user}}}]
"#
    ));
    let ns = namespace(&client, &tag, &[("zt-test", &tag)]).await;
    apply(&baseline(
        &tag,
        &tag,
        r#"networkPolicy: {defaultDeny: [Ingress]}
rbac:
  roles:
    - name: viewer
      rules: [{apiGroups: [""], resources: [pods], verbs: [get]}]
"#,
    ));
    let operator = in_process(impersonating(&user).await, &ns.name, &tag).await;

    assert_eq!(
        reconcile(&operator, &ns.name).await,
        Action::requeue(FORBIDDEN_RETRY),
        "a refused write is retried sooner than the resync"
    );
    // What RBAC allowed was written; what it refused is drift, not an error.
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns.name);
    assert!(
        policies
            .get_opt(&format!("zt-{tag}-default-deny"))
            .await
            .unwrap()
            .is_some()
    );
    let roles: Api<Role> = Api::namespaced(client.clone(), &ns.name);
    assert!(
        roles
            .get_opt(&format!("zt-{tag}-viewer"))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(operator.drift_count(&tag, &ns.name), Some(2));
    delete_baseline(&tag);
    control_plane().kubectl(
        &[
            "delete",
            "clusterrole,clusterrolebinding",
            &tag,
            "--ignore-not-found",
        ],
        None,
    );
}

#[tokio::test]
async fn one_failed_write_leaves_the_others_done_and_pod_security_in_place() {
    let client = client().await;
    let tag = unique("failing-write");
    // The API server refuses every ResourceQuota in the test's namespace (422, not RBAC).
    apply(&format!(
        r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {{name: {tag}}}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
      - {{apiGroups: [""], apiVersions: [v1], operations: [CREATE, UPDATE], resources: [resourcequotas]}}
  validations: [{{expression: "false", message: "quotas are refused here", reason: Invalid}}]
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {{name: {tag}}}
spec:
  policyName: {tag}
  validationActions: [Deny]
  matchResources: {{namespaceSelector: {{matchLabels: {{zt-test: {tag}}}}}}}
"#
    ));
    let ns = namespace(&client, &tag, &[("zt-test", &tag)]).await;
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), &ns.name);
    let probe: ResourceQuota = serde_json::from_value(
        json!({"metadata": {"name": "probe"}, "spec": {"hard": {"pods": "1"}}}),
    )
    .unwrap();
    eventually(WAIT, "the admission policy in force", || async {
        let refused = quotas.create(&PostParams::default(), &probe).await;
        matches!(refused, Err(kube::Error::Api(e)) if e.code == 422).then_some(())
    })
    .await;
    apply(&baseline(
        &tag,
        &tag,
        "podSecurity: {enforce: restricted}\nnetworkPolicy: {defaultDeny: [Ingress]}\nresourceQuota: {hard: {pods: '10'}}",
    ));
    let operator = in_process(client.clone(), &ns.name, &tag).await;

    let error = operator
        .reconcile(&ns.name)
        .await
        .expect("cached")
        .expect_err("the refused quota fails the pass");
    assert_eq!(
        (error.operation.as_str(), error.kind, error.status_code()),
        ("create", "ResourceQuota", Some(422))
    );
    // Everything else is in place, the Pod Security label above all: it waited for the
    // onboarding marker, which the missing quota keeps back, and was written all the same.
    let namespace = Api::<Namespace>::all(client.clone())
        .get(&ns.name)
        .await
        .unwrap();
    assert_eq!(
        namespace.labels()["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    assert!(
        !namespace
            .labels()
            .contains_key(&format!("onboarded.zerotrust.dev/{tag}")),
        "not onboarded without its quota"
    );
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns.name);
    assert!(
        policies
            .get_opt(&format!("zt-{tag}-default-deny"))
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        operator.drift_count(&tag, &ns.name),
        Some(1),
        "the quota, as drift"
    );
    delete_baseline(&tag);
    control_plane().kubectl(
        &[
            "delete",
            "validatingadmissionpolicy,validatingadmissionpolicybinding",
            &tag,
            "--ignore-not-found",
        ],
        None,
    );
}
