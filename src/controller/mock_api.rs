//! A mocked API server for unit tests: a `Context` over a kube client whose requests a test
//! answers from a script (tower-test's mock service), with stores and caches the test fills.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use http::{Method, Request, Response, header};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::Client;
use kube::client::Body;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::watcher::Event;
use serde_json::{Value, json};
use tower_test::mock::{self, Handle, SendResponse};

use super::caches::CachedSummary;
use super::context::Context;
use super::held_namespace::HeldNamespace;
use super::status::Outcome;
use crate::api::SecurityBaseline;
use crate::engine::{AdmissionSettings, FIELD_MANAGER, Kind, Object};

/// How long a test waits for the code under test to make its next request or end.
const DEADLINE: Duration = Duration::from_secs(10);

/// The namespace every scenario reconciles.
pub const NAMESPACE: &str = "team-a";

/// What the mock answers to one request.
pub enum Answer {
    /// 200 with the request's body as the API server would store it (uid, resource version, our
    /// field manager): a create or apply that succeeds.
    Echo,
    /// 200 with this body.
    Json(Value),
    /// A `Status` failure with this code and reason, as the API server refuses a request.
    Refuse(u16, &'static str),
    /// No HTTP answer at all: the connection failed.
    Disconnect,
}

/// A request the code under test is expected to make next, and its answer.
pub struct Expect {
    method: Method,
    path: String,
    answer: Answer,
}

/// Expects `method` on `path` (without the query) next, answered with `answer`.
pub fn expect(method: Method, path: &str, answer: Answer) -> Expect {
    Expect {
        method,
        path: path.to_string(),
        answer,
    }
}

/// A request as the mock received it.
#[derive(Debug)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub content_type: String,
    pub body: Value,
}

impl Seen {
    /// A server-side apply with our field manager, forced (a repair takes fields back).
    pub fn assert_server_side_apply(&self) {
        assert_eq!(self.method, Method::PATCH, "{self:?}");
        assert_eq!(
            self.content_type, "application/apply-patch+yaml",
            "{self:?}"
        );
        assert_eq!(
            self.query_of("fieldManager"),
            Some(FIELD_MANAGER),
            "{self:?}"
        );
        assert_eq!(self.query_of("force"), Some("true"), "{self:?}");
    }

    /// A create under our field manager, which fails rather than overwrite.
    pub fn assert_create(&self) {
        assert_eq!(self.method, Method::POST, "{self:?}");
        assert_eq!(
            self.query_of("fieldManager"),
            Some(FIELD_MANAGER),
            "{self:?}"
        );
    }

    fn query_of(&self, key: &str) -> Option<&str> {
        self.query.get(key).map(String::as_str)
    }
}

/// What driving the code under test came to: its result, the requests it made (Events apart,
/// in order), and the Events it published.
pub struct Served<T> {
    pub result: T,
    pub requests: Vec<Seen>,
    published: Vec<(String, String)>,
}

impl<T> Served<T> {
    /// The Events published, in order, as (namespace, reason).
    pub fn events(&self) -> Vec<(&str, &str)> {
        self.published
            .iter()
            .map(|(namespace, reason)| (namespace.as_str(), reason.as_str()))
            .collect()
    }
}

/// A drift record as [`left`] gives it.
pub fn record(kind: &str, name: &str, reason: &str) -> (String, String, String) {
    (kind.to_string(), name.to_string(), reason.to_string())
}

/// The drift `outcome` records, as (kind, name, the reason's first word).
pub fn left(outcome: Outcome) -> Vec<(String, String, String)> {
    assert_eq!(outcome.drift_count, outcome.drift.len(), "none left out");
    outcome
        .drift
        .into_iter()
        .map(|(_, d)| {
            let word = d.reason.split(':').next().unwrap_or_default().to_string();
            (d.kind, d.name, word)
        })
        .collect()
}

/// The test's end of the mocked API server.
pub struct ApiServer(Handle<Request<Body>, Response<Body>>);

impl ApiServer {
    /// Drives `run` to its end, answering its requests in the order of `script` and every Event
    /// it publishes (created); fails on any other request, or when a scripted one is not made.
    pub async fn serve<T>(
        &mut self,
        run: impl Future<Output = T>,
        script: impl IntoIterator<Item = Expect>,
    ) -> Served<T> {
        let mut script: VecDeque<Expect> = script.into_iter().collect();
        let (mut requests, mut published) = (Vec::new(), Vec::new());
        let mut run = std::pin::pin!(run);
        let result = loop {
            let next = tokio::select! {
                result = &mut run => break result,
                next = tokio::time::timeout(DEADLINE, self.0.next_request()) => next,
            };
            let (request, reply) = next
                .expect("the code under test neither ended nor made a request in time")
                .expect("the client is gone");
            let seen = read(request).await;
            if let Some(namespace) = event_namespace(&seen.path) {
                let reason = seen.body["reason"].as_str().unwrap_or_default();
                published.push((namespace.to_string(), reason.to_string()));
                respond(reply, 201, stored(seen.body.clone()));
                continue;
            }
            let Some(expected) = script.pop_front() else {
                panic!("unexpected request: {seen:?}");
            };
            assert_eq!(
                (&seen.method, seen.path.as_str()),
                (&expected.method, expected.path.as_str()),
                "not the request expected next: {seen:?}"
            );
            answer(reply, expected.answer, &seen.body);
            requests.push(seen);
        };
        let left: Vec<String> = script
            .iter()
            .map(|e| format!("{} {}", e.method, e.path))
            .collect();
        assert!(left.is_empty(), "expected requests not made: {left:?}");
        self.assert_idle();
        Served {
            result,
            requests,
            published,
        }
    }

    /// Fails if a request is waiting for an answer.
    fn assert_idle(&mut self) {
        if let Some(Some((request, _))) = self.0.next_request().now_or_never() {
            panic!("unexpected request: {} {}", request.method(), request.uri());
        }
    }
}

async fn read(request: Request<Body>) -> Seen {
    let (parts, body) = request.into_parts();
    let bytes = body.collect_bytes().await.expect("a request body");
    let query = parts
        .uri
        .query()
        .map(|q| {
            q.split('&')
                .filter_map(|pair| pair.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .unwrap_or_default();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    Seen {
        method: parts.method,
        path: parts.uri.path().to_string(),
        query,
        content_type,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

/// The namespace of an Event the recorder publishes, if `path` is the Events API's.
fn event_namespace(path: &str) -> Option<&str> {
    path.strip_prefix("/apis/events.k8s.io/v1/namespaces/")?
        .strip_suffix("/events")
}

/// `object` as the API server stores it: with a uid, a resource version and our manager.
fn stored(mut object: Value) -> Value {
    let meta = &mut object["metadata"];
    meta["uid"] = json!("uid-stored");
    meta["resourceVersion"] = json!("100");
    meta["managedFields"] = json!([{"manager": FIELD_MANAGER, "operation": "Apply"}]);
    object
}

fn answer(reply: SendResponse<Response<Body>>, answer: Answer, body: &Value) {
    match answer {
        Answer::Echo => respond(reply, 200, stored(body.clone())),
        Answer::Json(value) => respond(reply, 200, value),
        Answer::Refuse(code, reason) => {
            let status = kube::core::Status::failure("refused by the mock", reason).with_code(code);
            respond(reply, code, serde_json::to_value(status).unwrap());
        }
        Answer::Disconnect => reply.send_error(std::io::Error::other("connection refused")),
    }
}

fn respond(reply: SendResponse<Response<Body>>, code: u16, body: Value) {
    let response = Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap();
    reply.send_response(response);
}

/// A context over a mocked API server whose stores hold `baselines` and `namespaces`, and whose
/// caches (all listed) hold `objects`: what the watches would have filled them with.
pub fn context(
    admission: AdmissionSettings,
    baselines: Vec<SecurityBaseline>,
    namespaces: Vec<Namespace>,
    objects: Vec<Object>,
) -> (Arc<Context>, ApiServer) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let (namespace_store, mut namespace_writer) = reflector::store::<HeldNamespace>();
    let (baseline_store, mut baseline_writer) = reflector::store::<SecurityBaseline>();
    namespace_writer.apply_watcher_event(&Event::Init);
    for namespace in namespaces {
        namespace_writer.apply_watcher_event(&Event::InitApply(HeldNamespace::from(namespace)));
    }
    namespace_writer.apply_watcher_event(&Event::InitDone);
    baseline_writer.apply_watcher_event(&Event::Init);
    for baseline in baselines {
        baseline_writer.apply_watcher_event(&Event::InitApply(baseline));
    }
    baseline_writer.apply_watcher_event(&Event::InitDone);
    let ctx = Context::over(client, admission, namespace_store, baseline_store);
    let kinds: Vec<Kind> = ctx.caches.kinds().collect();
    for kind in kinds {
        let of_kind = objects.iter().filter(|o| o.kind() == kind).cloned();
        ctx.caches.generated(kind).load(of_kind);
    }
    ctx.caches
        .service_accounts()
        .load(Vec::<ServiceAccount>::new());
    ctx.caches
        .network_policies()
        .load(Vec::<CachedSummary>::new());
    (Arc::new(ctx), ApiServer(handle))
}

/// The namespace `name` as the context's store holds it.
pub fn held(ctx: &Context, name: &str) -> Arc<HeldNamespace> {
    ctx.namespaces
        .get(&ObjectRef::new(name))
        .expect("the namespace is in the store")
}

/// Who the admission policies let through; which admission kinds the API server serves.
pub fn settings(validating: bool) -> AdmissionSettings {
    AdmissionSettings {
        operator_user: "system:serviceaccount:zerotrust-system:zerotrust-operator".to_string(),
        break_glass_group: "zerotrust:break-glass".to_string(),
        operator_namespace: "zerotrust-system".to_string(),
        validating,
        mutating: false,
    }
}

/// The stored baseline `name` with `spec`, at generation 1.
pub fn baseline(name: &str, spec: Value) -> SecurityBaseline {
    serde_json::from_value(json!({
        "apiVersion": "zerotrust.dev/v1alpha1",
        "kind": "SecurityBaseline",
        "metadata": {
            "name": name,
            "uid": format!("uid-{name}"),
            "generation": 1,
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": spec,
    }))
    .expect("a baseline")
}

/// The namespace `name` with `labels`, created long ago.
pub fn namespace(name: &str, labels: Value) -> Namespace {
    serde_json::from_value(json!({
        "metadata": {
            "name": name,
            "uid": format!("uid-{name}"),
            "resourceVersion": "1",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": labels,
        },
    }))
    .expect("a namespace")
}

/// `object` as one of ours the cache holds: written by our field manager, with a uid.
pub fn ours(kind: Kind, mut object: Value) -> Object {
    object["metadata"]["uid"] = json!("uid-live");
    object["metadata"]["resourceVersion"] = json!("7");
    object["metadata"]["managedFields"] = json!([{"manager": FIELD_MANAGER, "operation": "Apply"}]);
    Object::from_json(kind, &serde_json::to_vec(&object).unwrap()).expect("an object")
}

/// The value of the counter `series` (name and labels, as exported), 0 if it has none.
pub fn counter(ctx: &Context, series: &str) -> u64 {
    let text = ctx.metrics.encode();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0, |value| value.trim().parse().expect("a counter value"))
}
