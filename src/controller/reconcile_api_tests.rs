//! One reconcile pass against a mocked API server that refuses its requests (403, 404, 409,
//! 500, a lost connection): what the pass records, asks for and reports for each.

use std::sync::Arc;

use http::Method;
use kube::runtime::controller::Action;
use serde_json::{Value, json};

use super::context::Context;
use super::error::Error;
use super::mock_api::{
    Answer, ApiServer, Expect, NAMESPACE, Served, baseline, context, counter, expect, held, left,
    namespace, ours, record, settings,
};
use super::reconcile::{self, FORBIDDEN_RETRY, RESYNC};
use crate::engine::{BASELINE_LABEL, Kind, MANAGED_BY_LABEL, MANAGED_BY_VALUE, Object};

const NAMESPACE_PATH: &str = "/api/v1/namespaces/team-a";
const POLICIES: &str = "/apis/networking.k8s.io/v1/namespaces/team-a/networkpolicies";
const DENY: &str = "/apis/networking.k8s.io/v1/namespaces/team-a/networkpolicies/zt-b-default-deny";
const ROLES: &str = "/apis/rbac.authorization.k8s.io/v1/namespaces/team-a/roles";
const BINDINGS: &str = "/apis/rbac.authorization.k8s.io/v1/namespaces/team-a/rolebindings";

/// One pass (as the work queue runs it) over `team-a`, unlabelled, under baseline `b` with `spec`
/// and the caches holding `objects`, its requests answered by `script`.
async fn pass(
    spec: Value,
    objects: Vec<Object>,
    script: Vec<Expect>,
) -> (Served<Result<Action, Error>>, Arc<Context>) {
    let (ctx, mut api): (_, ApiServer) = context(
        settings(false),
        vec![baseline("b", spec)],
        vec![namespace(NAMESPACE, json!({}))],
        objects,
    );
    let run = reconcile::run(held(&ctx, NAMESPACE), ctx.clone());
    (api.serve(run, script).await, ctx)
}

/// The drift the pass left for `b` in `team-a`: (kind, name, reason's first word).
fn drift(ctx: &Context) -> Vec<(String, String, String)> {
    left(ctx.outcomes.previous("b", NAMESPACE).expect("an outcome"))
}

fn deny() -> Value {
    json!({"networkPolicy": {"defaultDeny": ["Ingress"]}})
}

/// The drift record of the default-deny policy of `deny()`.
fn denial(reason: &str) -> (String, String, String) {
    record("NetworkPolicy", "zt-b-default-deny", reason)
}

/// The pass's error, which must be one the API server answered with `code` (or none at all).
fn failed(served: Served<Result<Action, Error>>, code: Option<u16>) -> Error {
    let error = served.result.expect_err("the pass fails");
    assert_eq!(error.status_code(), code, "{error}");
    error
}

#[tokio::test]
async fn a_label_apply_rbac_refuses_is_forbidden_drift_retried_soon() {
    let spec = json!({"podSecurity": {"enforce": "restricted"}});
    let script = vec![expect(
        Method::PATCH,
        NAMESPACE_PATH,
        Answer::Refuse(403, "Forbidden"),
    )];
    let (served, ctx) = pass(spec, vec![], script).await;
    let apply = &served.requests[0];
    apply.assert_server_side_apply();
    let labels = &apply.body["metadata"]["labels"];
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted");
    // Reported on the namespace and on the baseline; not a failed pass, so no failure Event.
    assert_eq!(
        served.events(),
        [("team-a", "Forbidden"), ("default", "Forbidden")]
    );
    assert_eq!(served.result.unwrap(), Action::requeue(FORBIDDEN_RETRY));
    let labels = drift(&ctx);
    assert!(!labels.is_empty());
    assert!(
        labels
            .iter()
            .all(|(kind, _, reason)| kind == "Namespace" && reason == "Forbidden")
    );
    assert_eq!(
        counter(&ctx, r#"zerotrust_reconciles_total{result="ok"}"#),
        1
    );
    assert_eq!(
        counter(&ctx, r#"zerotrust_drift_detected_total{kind="Namespace"}"#),
        labels.len() as u64
    );
}

#[tokio::test]
async fn a_role_rbac_refuses_and_a_binding_of_a_role_not_found_are_forbidden() {
    let spec = json!({"rbac": {"roles": [{
        "name": "viewer",
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
        "subjects": [{"kind": "Group", "name": "viewers"}],
    }]}});
    let script = vec![
        expect(Method::POST, ROLES, Answer::Refuse(403, "Forbidden")),
        // The authorizer looks the Role up to check we hold its permissions: NotFound.
        expect(Method::POST, BINDINGS, Answer::Refuse(404, "NotFound")),
    ];
    let (served, ctx) = pass(spec, vec![], script).await;
    for create in &served.requests {
        create.assert_create();
        assert_eq!(create.body["metadata"]["name"], "zt-b-viewer");
    }
    assert_eq!(
        served.events(),
        [("team-a", "Forbidden"), ("default", "Forbidden")]
    );
    assert_eq!(served.result.unwrap(), Action::requeue(FORBIDDEN_RETRY));
    let forbidden = |kind: &str| record(kind, "zt-b-viewer", "Forbidden");
    assert_eq!(drift(&ctx), [forbidden("Role"), forbidden("RoleBinding")]);
}

/// A create of the default-deny policy answered with `answer`: what the pass came to.
async fn create_answered(answer: Answer) -> (Served<Result<Action, Error>>, Arc<Context>) {
    pass(deny(), vec![], vec![expect(Method::POST, POLICIES, answer)]).await
}

#[tokio::test]
async fn a_create_that_fails_otherwise_fails_the_pass_and_is_reported() {
    // A 404 is an RBAC refusal only for a RoleBinding; for anything else it is a failure.
    for (code, reason) in [(500, "InternalError"), (404, "NotFound")] {
        let (served, ctx) = create_answered(Answer::Refuse(code, reason)).await;
        served.requests[0].assert_create();
        assert_eq!(
            served.events(),
            [
                ("team-a", "WriteFailed"),
                ("default", "WriteFailed"),
                ("team-a", "CreateFailed"),
            ],
            "{code}"
        );
        let error = failed(served, Some(code));
        assert_eq!(error.metric_label(), "create_failed");
        assert_eq!(drift(&ctx), [denial("WriteFailed")]);
        assert_eq!(
            counter(
                &ctx,
                r#"zerotrust_reconciles_total{result="create_failed"}"#
            ),
            1
        );
        assert_eq!(
            counter(&ctx, r#"zerotrust_reconciles_total{result="ok"}"#),
            0
        );
    }
}

#[tokio::test]
async fn a_lost_connection_fails_the_pass_without_a_failure_event() {
    let (served, ctx) = create_answered(Answer::Disconnect).await;
    // The drift is reported; the failure is everyone's, not this namespace's: no CreateFailed.
    assert_eq!(
        served.events(),
        [("team-a", "WriteFailed"), ("default", "WriteFailed")]
    );
    failed(served, None);
    assert_eq!(
        counter(
            &ctx,
            r#"zerotrust_reconciles_total{result="create_failed"}"#
        ),
        1
    );
}

/// Someone else's same-named NetworkPolicy, which our label-filtered caches cannot see.
fn theirs() -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "zt-b-default-deny", "namespace": "team-a", "uid": "uid-theirs"},
        "spec": {"podSelector": {}},
    })
}

#[tokio::test]
async fn a_create_that_finds_someone_elses_object_reports_a_conflict_and_writes_nothing() {
    let script = vec![
        expect(Method::POST, POLICIES, Answer::Refuse(409, "AlreadyExists")),
        expect(Method::GET, DENY, Answer::Json(theirs())),
    ];
    let (served, ctx) = pass(deny(), vec![], script).await;
    // The read is a quorum read: no resourceVersion.
    assert!(!served.requests[1].query.contains_key("resourceVersion"));
    assert_eq!(
        served.events(),
        [("team-a", "Conflict"), ("default", "Conflict")]
    );
    assert_eq!(served.result.unwrap(), Action::requeue(RESYNC));
    assert_eq!(drift(&ctx), [denial("Conflict")]);
    let outcome = ctx.outcomes.previous("b", NAMESPACE).unwrap();
    assert_eq!(outcome.conflicts, 1);
}

#[tokio::test]
async fn a_conflict_the_baseline_adopts_is_applied_over() {
    let spec = json!({"networkPolicy": {"defaultDeny": ["Ingress"]}, "conflictPolicy": "Adopt"});
    let script = vec![
        expect(Method::POST, POLICIES, Answer::Refuse(409, "AlreadyExists")),
        expect(Method::GET, DENY, Answer::Json(theirs())),
        expect(Method::PATCH, DENY, Answer::Echo),
    ];
    let (served, ctx) = pass(spec, vec![], script).await;
    served.requests[2].assert_server_side_apply();
    assert!(served.events().is_empty());
    assert_eq!(served.result.unwrap(), Action::requeue(RESYNC));
    assert_eq!(drift(&ctx), []);
    let live = ctx.caches.live_state(&held(&ctx, NAMESPACE));
    assert_eq!(live.objects.len(), 1, "the applied object is held");
}

#[tokio::test]
async fn a_conflict_on_an_apply_fails_the_pass() {
    let spec = json!({"podSecurity": {"enforce": "restricted"}});
    let script = vec![expect(
        Method::PATCH,
        NAMESPACE_PATH,
        Answer::Refuse(409, "Conflict"),
    )];
    let (served, ctx) = pass(spec, vec![], script).await;
    served.requests[0].assert_server_side_apply();
    assert_eq!(
        served.events(),
        [
            ("team-a", "WriteFailed"),
            ("default", "WriteFailed"),
            ("team-a", "ApplyFailed"),
        ]
    );
    let error = failed(served, Some(409));
    assert_eq!(error.metric_label(), "apply_failed");
    assert!(
        drift(&ctx)
            .iter()
            .all(|(_, _, reason)| reason == "WriteFailed")
    );
    assert_eq!(
        counter(&ctx, r#"zerotrust_reconciles_total{result="apply_failed"}"#),
        1
    );
}

/// A baseline that deletes its objects when it stops selecting a namespace, and selects only
/// tenants (team-a is not one), with its default-deny policy still in team-a.
fn leaving() -> (Value, Vec<Object>) {
    let spec = json!({
        "namespaceSelector": {"matchLabels": {"tenant": "true"}},
        "deletionPolicy": "Delete",
        "networkPolicy": {"defaultDeny": ["Ingress"]},
    });
    let policy = ours(
        Kind::NetworkPolicy,
        json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {
                "name": "zt-b-default-deny",
                "namespace": "team-a",
                "labels": {(MANAGED_BY_LABEL): MANAGED_BY_VALUE, (BASELINE_LABEL): "b"},
            },
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
        }),
    );
    (spec, vec![policy])
}

#[tokio::test]
async fn a_delete_of_an_object_already_gone_is_done() {
    let (spec, objects) = leaving();
    let script = vec![expect(
        Method::DELETE,
        DENY,
        Answer::Refuse(404, "NotFound"),
    )];
    let (served, ctx) = pass(spec, objects, script).await;
    // Only the object we saw: guarded by its uid.
    assert_eq!(served.requests[0].body["preconditions"]["uid"], "uid-live");
    assert_eq!(served.result.unwrap(), Action::requeue(RESYNC));
    let live = ctx.caches.live_state(&held(&ctx, NAMESPACE));
    assert!(live.objects.is_empty(), "forgotten: {:?}", live.objects);
    assert_eq!(
        counter(&ctx, r#"zerotrust_reconciles_total{result="ok"}"#),
        1
    );
}

#[tokio::test]
async fn a_delete_that_fails_fails_the_pass_and_keeps_the_object() {
    let (spec, objects) = leaving();
    let script = vec![expect(
        Method::DELETE,
        DENY,
        Answer::Refuse(500, "InternalError"),
    )];
    let (served, ctx) = pass(spec, objects, script).await;
    assert_eq!(served.events(), [("team-a", "DeleteFailed")]);
    let error = failed(served, Some(500));
    assert_eq!(error.metric_label(), "delete_failed");
    let live = ctx.caches.live_state(&held(&ctx, NAMESPACE));
    assert_eq!(live.objects.len(), 1, "still there, to delete again");
}

fn audit() -> Value {
    json!({"mode": "Audit", "networkPolicy": {"defaultDeny": ["Ingress"]}})
}

#[tokio::test]
async fn an_object_audit_reports_and_the_api_server_does_not_have_is_missing() {
    let script = vec![expect(Method::GET, DENY, Answer::Refuse(404, "NotFound"))];
    let (served, ctx) = pass(audit(), vec![], script).await;
    assert_eq!(
        served.events(),
        [("team-a", "DriftDetected"), ("default", "DriftDetected")]
    );
    assert_eq!(served.result.unwrap(), Action::requeue(RESYNC));
    assert_eq!(drift(&ctx), [denial("Missing")]);
    assert_eq!(
        counter(
            &ctx,
            r#"zerotrust_drift_detected_total{kind="NetworkPolicy"}"#
        ),
        1
    );
}

#[tokio::test]
async fn a_read_that_fails_fails_the_pass() {
    let script = vec![expect(Method::GET, DENY, Answer::Refuse(403, "Forbidden"))];
    let (served, ctx) = pass(audit(), vec![], script).await;
    assert_eq!(
        served.events(),
        [
            ("team-a", "DriftDetected"),
            ("default", "DriftDetected"),
            ("team-a", "ReadFailed"),
        ]
    );
    let error = failed(served, Some(403));
    assert_eq!(error.metric_label(), "read_failed");
    assert_eq!(
        counter(&ctx, r#"zerotrust_reconciles_total{result="read_failed"}"#),
        1
    );
}
