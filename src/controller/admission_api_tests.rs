//! One pass of the admission keeper against a mocked API server that refuses its writes (403,
//! 404, 409, 500, a lost connection): what it writes anyway, records and returns for each.

use std::sync::Arc;

use http::Method;
use serde_json::json;

use super::admission;
use super::context::Context;
use super::error::Error;
use super::mock_api::{
    Answer, ApiServer, Expect, Served, baseline, context, expect, left, ours, record, settings,
};
use crate::api::SecurityBaseline;
use crate::engine::{Object, render_admission, validate};

const POLICIES: &str = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies";
const BINDINGS: &str = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings";
const POLICY: &str =
    "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies/zt-b-tamper";

/// An Audit baseline: its admission pairs are the tamper protection (policy and binding), on which
/// these tests script the API server's answers, and the ownership protection.
fn audit() -> SecurityBaseline {
    baseline(
        "b",
        json!({"mode": "Audit", "podSecurity": {"enforce": "restricted"}}),
    )
}

/// The ownership protection's policy and binding, created as asked: rendered after the tamper
/// protection's.
fn ownership_created() -> [Expect; 2] {
    [
        expect(Method::POST, POLICIES, Answer::Echo),
        expect(Method::POST, BINDINGS, Answer::Echo),
    ]
}

const OWNERSHIP: [&str; 2] = [
    "ValidatingAdmissionPolicy/zt-b-ownership",
    "ValidatingAdmissionPolicyBinding/zt-b-ownership",
];

/// The admission objects `b` renders, as the caches hold them once written.
fn rendered(b: &SecurityBaseline) -> Vec<Object> {
    let valid = validate(b, crate::engine::test_support::VALIDATED_AT).expect("a valid baseline");
    render_admission(&valid, &settings(true), 0)
        .into_iter()
        .map(|o| ours(o.kind(), serde_json::to_value(&o).unwrap()))
        .collect()
}

/// One keeper pass with `baselines` stored and `live` cached, its requests answered by `script`.
async fn keep(
    baselines: Vec<SecurityBaseline>,
    live: Vec<Object>,
    script: Vec<Expect>,
) -> (Served<Result<(), Error>>, Arc<Context>) {
    let (ctx, mut api): (_, ApiServer) = context(settings(true), baselines, vec![], live);
    let pass = admission::reconcile(&ctx);
    let served = api.serve(pass, script).await;
    assert!(served.events().is_empty(), "the keeper publishes no Events");
    (served, ctx)
}

/// What the pass left for `b`: (kind, name, reason's first word), and how many conflicts.
fn drift(ctx: &Context) -> (Vec<(String, String, String)>, usize) {
    let outcome = ctx.outcomes.cluster("b").expect("an outcome for b");
    let conflicts = outcome.conflicts;
    (left(outcome), conflicts)
}

fn policy(reason: &str) -> (String, String, String) {
    record("ValidatingAdmissionPolicy", "zt-b-tamper", reason)
}

/// The names of the admission objects the caches hold.
fn cached(ctx: &Context) -> Vec<String> {
    let mut names: Vec<String> = ctx
        .caches
        .admission_objects()
        .iter()
        .map(|o| format!("{}/{}", o.kind(), o.name()))
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_create_the_api_server_refuses_fails_the_pass_and_the_other_writes_go_on() {
    let mut script = vec![
        expect(Method::POST, POLICIES, Answer::Refuse(403, "Forbidden")),
        expect(Method::POST, BINDINGS, Answer::Echo),
    ];
    script.extend(ownership_created());
    let (served, ctx) = keep(vec![audit()], vec![], script).await;
    for create in &served.requests[..2] {
        create.assert_create();
        assert_eq!(create.body["metadata"]["name"], "zt-b-tamper");
    }
    let error = served.result.expect_err("the pass fails");
    assert_eq!(error.status_code(), Some(403));
    assert_eq!(error.metric_label(), "create_failed");
    // Refused by RBAC or not, the keeper retries with back-off: WriteFailed, never Forbidden.
    assert_eq!(drift(&ctx), (vec![policy("WriteFailed")], 0));
    assert_eq!(
        cached(&ctx),
        [
            OWNERSHIP[0],
            OWNERSHIP[1],
            "ValidatingAdmissionPolicyBinding/zt-b-tamper"
        ]
    );
}

#[tokio::test]
async fn an_apply_the_api_server_refuses_fails_the_pass() {
    let b = audit();
    let mut live = rendered(&b);
    // Someone loosened our policy: the repair is an apply.
    let mut changed = serde_json::to_value(&live[0]).unwrap();
    assert_eq!(changed["kind"], "ValidatingAdmissionPolicy");
    changed["spec"]["failurePolicy"] = json!("Ignore");
    live[0] = ours(live[0].kind(), changed);
    let script = vec![expect(
        Method::PATCH,
        POLICY,
        Answer::Refuse(403, "Forbidden"),
    )];
    let (served, ctx) = keep(vec![b], live, script).await;
    served.requests[0].assert_server_side_apply();
    assert_eq!(served.requests[0].body["spec"]["failurePolicy"], "Fail");
    let error = served.result.expect_err("the pass fails");
    assert_eq!(error.status_code(), Some(403));
    assert_eq!(error.metric_label(), "apply_failed");
    assert_eq!(drift(&ctx), (vec![policy("WriteFailed")], 0));
}

#[tokio::test]
async fn a_same_named_policy_someone_else_made_is_a_conflict_never_written_over() {
    // No read and no apply after the 409: the policy is reported, and the binding still written.
    let mut script = vec![
        expect(Method::POST, POLICIES, Answer::Refuse(409, "AlreadyExists")),
        expect(Method::POST, BINDINGS, Answer::Echo),
    ];
    script.extend(ownership_created());
    let (served, ctx) = keep(vec![audit()], vec![], script).await;
    served.result.expect("a conflict is no failed pass");
    assert_eq!(drift(&ctx), (vec![policy("Conflict")], 1));
    assert_eq!(
        cached(&ctx),
        [
            OWNERSHIP[0],
            OWNERSHIP[1],
            "ValidatingAdmissionPolicyBinding/zt-b-tamper"
        ]
    );
}

/// The tamper protection of a baseline `old` that no longer exists, still cached.
fn stale() -> Vec<Object> {
    rendered(&baseline(
        "old",
        json!({"mode": "Audit", "podSecurity": {"enforce": "restricted"}}),
    ))
    .into_iter()
    .filter(|o| o.name() == "zt-old-tamper")
    .collect()
}

#[tokio::test]
async fn stale_policies_already_gone_are_forgotten() {
    let script = vec![
        expect(
            Method::DELETE,
            &format!("{POLICIES}/zt-old-tamper"),
            Answer::Refuse(404, "NotFound"),
        ),
        expect(
            Method::DELETE,
            &format!("{BINDINGS}/zt-old-tamper"),
            Answer::Refuse(404, "NotFound"),
        ),
    ];
    let (served, ctx) = keep(vec![], stale(), script).await;
    for delete in &served.requests {
        // Only the object we saw: guarded by its uid.
        assert_eq!(delete.body["preconditions"]["uid"], "uid-live");
    }
    served.result.expect("already gone is deleted");
    assert!(cached(&ctx).is_empty(), "{:?}", cached(&ctx));
}

#[tokio::test]
async fn a_delete_that_fails_fails_the_pass_and_keeps_the_policy() {
    let script = vec![
        expect(
            Method::DELETE,
            &format!("{POLICIES}/zt-old-tamper"),
            Answer::Refuse(500, "InternalError"),
        ),
        expect(
            Method::DELETE,
            &format!("{BINDINGS}/zt-old-tamper"),
            Answer::Json(json!({"kind": "Status", "apiVersion": "v1", "status": "Success"})),
        ),
    ];
    let (served, ctx) = keep(vec![], stale(), script).await;
    let error = served.result.expect_err("the pass fails");
    assert_eq!(error.status_code(), Some(500));
    assert_eq!(error.metric_label(), "delete_failed");
    assert_eq!(cached(&ctx), ["ValidatingAdmissionPolicy/zt-old-tamper"]);
}

#[tokio::test]
async fn a_lost_connection_fails_the_pass() {
    let mut script = vec![
        expect(Method::POST, POLICIES, Answer::Disconnect),
        expect(Method::POST, BINDINGS, Answer::Disconnect),
    ];
    script.extend(ownership_created());
    let (served, ctx) = keep(vec![audit()], vec![], script).await;
    let error = served.result.expect_err("the pass fails");
    assert_eq!(error.status_code(), None, "{error}");
    let binding = record(
        "ValidatingAdmissionPolicyBinding",
        "zt-b-tamper",
        "WriteFailed",
    );
    assert_eq!(drift(&ctx), (vec![policy("WriteFailed"), binding], 0));
    assert_eq!(cached(&ctx), OWNERSHIP);
}

/// `b` edited (generation 2) into what the engine refuses: a selector operator it does not know.
fn invalid_edit(b: &SecurityBaseline) -> SecurityBaseline {
    let mut edited = b.clone();
    edited.metadata.generation = Some(2);
    edited.spec.namespace_selector = Some(
        serde_json::from_value(json!({"matchExpressions": [{"key": "a", "operator": "Has"}]}))
            .unwrap(),
    );
    edited
}

#[tokio::test]
async fn a_baseline_that_exists_but_was_never_seen_valid_keeps_its_policies_untouched() {
    // A new process: an invalid baseline with nothing recorded, its policies in the cluster.
    let b = audit();
    let (served, _) = keep(vec![invalid_edit(&b)], rendered(&b), vec![]).await;
    served.result.expect("nothing to do");
    assert!(
        served.requests.is_empty(),
        "no delete: {:?}",
        served.requests
    );
    // An unreadable stand-in alike.
    let mut stand_in = baseline("b", json!({}));
    stand_in.status = Some(crate::api::SecurityBaselineStatus {
        unreadable: Some(crate::api::Unreadable::default()),
        ..Default::default()
    });
    let (served, _) = keep(vec![stand_in], rendered(&b), vec![]).await;
    served.result.expect("nothing to do");
    assert!(
        served.requests.is_empty(),
        "no delete: {:?}",
        served.requests
    );
}

/// The delete of each of `objects`, in the order the keeper makes them: the order of its cache,
/// by kind, then name.
fn deletes(objects: &[Object]) -> Vec<Expect> {
    let mut sorted: Vec<&Object> = objects.iter().collect();
    sorted.sort_by_key(|o| (o.kind(), o.name().to_string()));
    sorted
        .iter()
        .map(|o| {
            let plural = o.kind().api_resource().plural;
            let path = format!(
                "/apis/admissionregistration.k8s.io/v1/{plural}/{}",
                o.name()
            );
            expect(Method::DELETE, &path, Answer::Echo)
        })
        .collect()
}

#[tokio::test]
async fn after_a_restart_an_invalid_edit_keeps_the_recorded_generations_policies() {
    let b = audit();
    let mut edited = invalid_edit(&b);
    let valid = validate(&b, crate::engine::test_support::VALIDATED_AT).unwrap();
    let recorded = super::enforced::record(&valid).unwrap();
    edited.status = Some(crate::api::SecurityBaselineStatus {
        last_valid: Some(recorded),
        ..Default::default()
    });
    // Kept as rendered: nothing to write, nothing deleted.
    let (served, _) = keep(vec![edited], rendered(&b), vec![]).await;
    served.result.expect("nothing to do");
    assert!(served.requests.is_empty(), "{:?}", served.requests);
}

#[tokio::test]
async fn only_a_baseline_gone_from_the_cluster_has_its_policies_deleted() {
    let live = rendered(&audit());
    let (served, _) = keep(vec![], live.clone(), deletes(&live)).await;
    served.result.expect("deleted");
    assert_eq!(served.requests.len(), live.len());
}
