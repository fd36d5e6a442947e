//! One namespace, one pass, in five steps: gather (validate, render, read the caches, diff) ->
//! classify missing objects -> repair (plan, carry out, note what RBAC refuses) -> remove the
//! objects of leaving baselines -> record (outcomes, metrics, Events). A compliant namespace costs
//! no API request at all.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use super::held_namespace::HeldNamespace;
use super::index::is_newer;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use tracing::{info, instrument, warn};

use super::apply::{self, Created, Written};
use super::context::{Context, until};
use super::error::Error;
use super::events;
use crate::api::{DeletionPolicy, SecurityBaseline};
use crate::engine::{
    DesiredState, Drift, DriftReason, Kind, LiveState, Object, Ownership, ValidBaseline, Write,
    diff, labels_wait_for_markers, markers_to_close, onboarding_write, ownership, plan,
    released_labels, render, repairable,
};
use record::{record, report};

mod record;

/// The safety-net resync; repair is driven by watch events, not by this.
pub const RESYNC: Duration = Duration::from_secs(600);

/// How soon a pass that came before the first full lists of baselines and objects is tried again.
const UNSYNCED_RETRY: Duration = Duration::from_millis(100);

/// How soon a namespace with writes refused by RBAC is tried again: an RBAC change, which no
/// watch of ours sees, may allow them.
pub const FORBIDDEN_RETRY: Duration = Duration::from_secs(10);

/// One reconcile as the work queue runs it: timed, counted, and a failure reported as an Event.
pub(super) async fn run(namespace: Arc<HeldNamespace>, ctx: Arc<Context>) -> Result<Action, Error> {
    if !ctx.synced() {
        // Unknown is not absent: before the first full lists, a pass would see no baseline (and
        // forget the namespace's outcomes, delete its report) or none of our objects (and create
        // them all again). The lists are moments away; their watches run beside this queue. Not
        // a pass: neither timed nor counted as one, and the namespace's back-off stays as it is;
        // `result="unsynced"` and `/readyz` show a wait that does not end.
        ctx.metrics.count_reconcile("unsynced");
        return Ok(Action::requeue(UNSYNCED_RETRY));
    }
    let _timer = ctx.metrics.time_reconcile();
    let result = reconcile(namespace.clone(), &ctx).await;
    match &result {
        Ok(_) => {
            ctx.metrics.count_reconcile("ok");
            ctx.succeeded(&namespace.name_any());
        }
        Err(error) => {
            ctx.metrics.count_reconcile(error.metric_label());
            // Only what the API server refused is about this namespace; a connection error is
            // everyone's, and is logged by the error policy.
            if error.status_code().is_some() {
                events::report_failure(&ctx, &namespace, error).await;
            }
        }
    }
    result
}

/// What one pass knows about one namespace.
struct Pass {
    namespace: Arc<HeldNamespace>,
    name: String,
    /// Every baseline as stored, for Events and generations.
    baselines: Vec<Arc<SecurityBaseline>>,
    desired: DesiredState,
    /// Baselines whose objects leave this namespace (`deletionPolicy: Delete`, and no longer
    /// selecting it or being deleted).
    leaving: Vec<ValidBaseline>,
    live: LiveState,
    drift: Vec<Drift>,
    /// The Pod Security label write was held back for the onboarding marker's
    /// ([`labels_wait_for_markers`]): `mark_onboarded` makes it, marker or not.
    labels_held_back: bool,
    /// The labels the leaving baselines give up ([`released_labels`]), read before the pass's
    /// first write: its last write (`mark_onboarded`) gives them up too.
    released: BTreeSet<String>,
}

impl Pass {
    /// The drift this pass leaves: what it may not repair, and what its writes failed to.
    fn unrepaired(&self) -> impl Iterator<Item = &Drift> {
        self.drift.iter().filter(|d| !repairable(&self.desired, d))
    }
}

/// One pass over `namespace`. The caller makes sure the caches are synced (`Context::synced`).
#[instrument(skip_all, fields(namespace = %namespace.name_any()))]
pub(super) async fn reconcile(
    namespace: Arc<HeldNamespace>,
    ctx: &Context,
) -> Result<Action, Error> {
    let namespace = ctx.caches.newest_namespace(namespace);
    if namespace.metadata.deletion_timestamp.is_some() {
        // A terminating namespace only affects itself: nothing to write, nothing to count.
        ctx.outcomes.forget_namespace(&namespace.name_any(), &[]);
        if let Some(reports) = &ctx.reports {
            reports.forget(&namespace.name_any());
        }
        return Ok(Action::await_change());
    }
    if !ctx.api_server.synced() && wants_api_server(ctx) {
        // Unknown is not absent: rendering now would take the allow away. The watch's first
        // list, moments away, requeues every namespace.
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    // One failed request does not stop the rest of the pass: every other control is still put
    // in place, the failure is recorded as drift, and the pass ends in an error (so the back-off
    // retries it) only once the outcome is recorded.
    let mut pass = gather(ctx, namespace);
    let mut failure = classify_missing(ctx, &mut pass).await;
    failure = failure.or(repair(ctx, &mut pass).await);
    failure = failure.or(remove_leaving_objects(ctx, &pass).await);
    if ctx.admission.validating {
        failure = failure.or(mark_onboarded(ctx, &mut pass).await);
    }
    // The report first: a report at our name someone else holds is a finding of this pass.
    report(ctx, &pass).await;
    record(ctx, &pass).await;
    match failure {
        Some(error) => Err(error),
        None => Ok(next_pass(&pass.drift, &pass.desired)),
    }
}

/// Some baseline lets pods reach the API server, so renderings depend on its addresses. Read
/// from what each enforces, which is the last valid generation while an edit is invalid.
fn wants_api_server(ctx: &Context) -> bool {
    ctx.baselines.state().iter().any(|b| {
        ctx.last_valid.enforced(b).valid.is_some_and(|v| {
            v.baseline
                .spec
                .network_policy
                .as_ref()
                .is_some_and(|np| np.allow_api_server)
        })
    })
}

/// Step 1: what the namespace must hold, what it holds, and how they differ. No request.
fn gather(ctx: &Context, namespace: Arc<HeldNamespace>) -> Pass {
    let name = namespace.name_any();
    let baselines = ctx.baselines.state();
    // An invalid edit keeps its last valid generation enforced.
    let (valid, deleting): (Vec<ValidBaseline>, Vec<ValidBaseline>) = baselines
        .iter()
        .filter_map(|b| ctx.last_valid.enforced(b).valid)
        .partition(|v| v.baseline.metadata.deletion_timestamp.is_none());
    let env = ctx.environment();
    let desired = render(&valid, &name, namespace.labels(), &env);
    // An invalid baseline's objects stay: we cannot tell what it meant.
    let leaving = valid
        .iter()
        .chain(&deleting)
        .filter(|v| v.baseline.spec.deletion_policy == DeletionPolicy::Delete)
        .filter(|v| desired.baseline(v.name()).is_none())
        .cloned()
        .collect();
    let live = ctx.caches.live_state(&namespace);
    let drift = diff(&desired, &live);
    Pass {
        namespace,
        name,
        baselines,
        desired,
        leaving,
        live,
        drift,
        labels_held_back: false,
        released: BTreeSet::new(),
    }
}

/// Step 2: our caches see only labelled objects, so a "missing" object may be someone else's,
/// or ours with its labels taken off. What we will write is found out by creating it (step 3);
/// what we only report is looked up.
async fn classify_missing(ctx: &Context, pass: &mut Pass) -> Option<Error> {
    let mut failure = None;
    for d in pass
        .drift
        .iter_mut()
        .filter(|d| d.reason == DriftReason::Missing && !repairable(&pass.desired, d))
        .filter(|d| !matches!(d.kind, Kind::Namespace | Kind::ServiceAccount))
    {
        match apply::get(&ctx.client, &pass.name, d.kind, &d.name).await {
            Ok(None) => {}
            Ok(Some(found)) => d.reason = ctx.caches.found_reason(&pass.name, &found),
            Err(error) => {
                failure.get_or_insert(error);
            }
        }
    }
    failure
}

/// Step 3: carries out the plan, Pod Security labels first (at onboarding they wait for the
/// marker, step 4b). A write RBAC refuses is reported as unrepaired drift, rather than retried at
/// once; any other failed write is reported too, and the rest go on. Returns the first failure.
async fn repair(ctx: &Context, pass: &mut Pass) -> Option<Error> {
    pass.released = released_labels(&pass.desired, &pass.leaving, &pass.live);
    let mut failure = close_gate(ctx, pass).await;
    for write in plan(&pass.desired, &pass.live, &pass.drift, &pass.released) {
        if let Write::ApplyNamespaceLabels(labels) = &write
            && ctx.admission.validating
            && labels_wait(pass, labels)
        {
            pass.labels_held_back = true;
            continue;
        }
        let Some(result) = carry_out(ctx, &pass.desired, &write, &mut pass.drift).await else {
            continue;
        };
        match result {
            Ok(written) => ctx.caches.write_through(&pass.name, written),
            Err(error) => {
                if !note_failed_write(&pass.desired, &mut pass.drift, &write, &error) {
                    failure.get_or_insert(error);
                }
            }
        }
    }
    failure
}

/// The pass's Pod Security labels may wait for its onboarding marker
/// ([`labels_wait_for_markers`]).
fn labels_wait(pass: &Pass, labels: &BTreeMap<String, String>) -> bool {
    let remaining: Vec<&Drift> = pass.unrepaired().collect();
    labels_wait_for_markers(&pass.desired, &pass.live, &remaining, labels)
}

/// Step 3a, before any repair: the onboarding markers that may not stay while the namespace's
/// drift is unrepaired ([`markers_to_close`]) are removed first, so the gate is closed while
/// controls are put back (and stays closed if a repair fails); `mark_onboarded` sets them again.
/// Markers someone else set go too. A new namespace has none: no write on the onboarding path.
async fn close_gate(ctx: &Context, pass: &mut Pass) -> Option<Error> {
    let removed = markers_to_close(&pass.desired, &pass.drift, &pass.live);
    if removed.is_empty() {
        return None;
    }
    let write = Write::RemoveNamespaceLabels(removed.clone());
    match apply::execute(&ctx.client, &pass.desired, &write).await {
        Ok(written) => {
            info!(markers = ?removed, "onboarding markers removed");
            ctx.caches.write_through(&pass.name, written);
            // What the rest of the pass reads: the markers are gone, and an apply of our labels
            // must not bring back one we owned.
            for key in &removed {
                pass.live.namespace_labels.remove(key);
                pass.live.owned_namespace_labels.remove(key);
            }
            pass.released.retain(|k| !removed.contains(k));
            None
        }
        Err(error) => {
            warn!(%error, "onboarding markers not removed");
            Some(error)
        }
    }
}

/// Marks the drift `write` was to repair as unrepaired: refused by RBAC, or failed. Returns true
/// when RBAC refused it (retried on its own schedule, not as a failed pass).
fn note_failed_write(
    desired: &DesiredState,
    drift: &mut [Drift],
    write: &Write,
    error: &Error,
) -> bool {
    let forbidden = refused_by_rbac(error, write);
    warn!(%error, forbidden, "write failed");
    for d in drift
        .iter_mut()
        .filter(|d| write.repairs(d) && repairable(desired, d))
    {
        let was = Box::new(std::mem::replace(&mut d.reason, DriftReason::Missing));
        d.reason = if forbidden {
            DriftReason::Forbidden(was)
        } else {
            DriftReason::WriteFailed(was)
        };
    }
    forbidden
}

/// RBAC refused the write. (Binding a Role we may not create fails as NotFound: the authorizer
/// looks the Role up to check we hold its permissions.)
fn refused_by_rbac(error: &Error, write: &Write) -> bool {
    match error.status_code() {
        Some(403) => true,
        Some(404) => matches!(write, Write::Apply(Object::RoleBinding(_))),
        _ => false,
    }
}

/// Carries out `write`, or nothing (None) when it turns out to be a conflict to report. A missing
/// object is created, not applied: a create that finds a same-named object marks its drift as a
/// conflict (and applies over it only if the baseline adopts conflicts), so nothing of someone
/// else's is written over, not even an object made a moment ago.
async fn carry_out(
    ctx: &Context,
    desired: &DesiredState,
    write: &Write,
    drift: &mut [Drift],
) -> Option<Result<Written, Error>> {
    let missing = match write {
        Write::Apply(object) => drift
            .iter()
            .any(|d| write.repairs(d) && d.reason == DriftReason::Missing)
            .then_some(object),
        _ => None,
    };
    let Some(object) = missing else {
        return Some(apply::execute(&ctx.client, desired, write).await);
    };
    match apply::create_unless_taken(&ctx.client, &desired.namespace, object).await {
        Ok(Created::Taken) => {
            // Ours with our labels taken off, or someone else's.
            let reason = match apply::get(
                &ctx.client,
                &desired.namespace,
                object.kind(),
                object.name(),
            )
            .await
            {
                Ok(Some(found)) => ctx.caches.found_reason(&desired.namespace, &found),
                Ok(None) => DriftReason::Conflict,
                Err(error) => return Some(Err(error)),
            };
            for d in drift.iter_mut().filter(|d| write.repairs(d)) {
                d.reason = reason.clone();
            }
            let repair = drift
                .iter()
                .any(|d| write.repairs(d) && repairable(desired, d));
            if repair {
                Some(apply::execute(&ctx.client, desired, write).await)
            } else {
                None
            }
        }
        Ok(Created::Object(created)) => Some(Ok(Written::Object(created))),
        Err(error) => Some(Err(error)),
    }
}

/// Step 4: deletes exactly the objects the leaving baselines created here. Returns the first
/// failure, after trying every object.
async fn remove_leaving_objects(ctx: &Context, pass: &Pass) -> Option<Error> {
    let mut failure = None;
    for object in &pass.live.objects {
        let Ownership::Baseline(owner) = ownership(object.meta()) else {
            continue;
        };
        if !pass.leaving.iter().any(|b| b.name() == owner) {
            continue;
        }
        let (kind, name) = (object.kind(), object.name().to_string());
        let uid = object.meta().uid.as_deref();
        if let Err(error) = apply::delete(&ctx.client, &pass.name, kind, &name, uid).await {
            failure.get_or_insert(error);
            continue;
        }
        info!(%kind, object = %name, baseline = owner, "deleted (deletionPolicy: Delete)");
        ctx.caches
            .write_through(&pass.name, Written::Deleted { kind, name });
    }
    failure
}

/// Step 4b: once an Enforce baseline's controls are all in place, the namespace gets its
/// onboarding marker, which opens the admission gate for its pods. The marker comes last, after
/// every other write of the pass, and only the operator may set it. Pod Security labels held back
/// for it (step 3) come with it, and without it when it is not due (another write failed).
async fn mark_onboarded(ctx: &Context, pass: &mut Pass) -> Option<Error> {
    let remaining: Vec<&Drift> = pass.unrepaired().collect();
    // The newest read there is: a label someone raised during the pass stays raised.
    let stored = ctx
        .namespaces
        .get(&ObjectRef::new(&pass.name))
        .filter(|s| is_newer(&s.metadata, &pass.namespace.metadata))
        .unwrap_or_else(|| pass.namespace.clone());
    let fresh = ctx.caches.latest_namespace(stored);
    let live = LiveState {
        namespace_labels: fresh.labels().clone(),
        namespace_uid: fresh.metadata.uid.clone(),
        owned_namespace_labels: fresh.owned_label_keys(),
        ..LiveState::default()
    };
    let writes = onboarding_write(
        &pass.desired,
        &pass.released,
        &live,
        &remaining,
        pass.labels_held_back,
    );
    for write in writes {
        match apply::execute(&ctx.client, &pass.desired, &write).await {
            Ok(written) => ctx.caches.write_through(&pass.name, written),
            Err(error) => {
                if pass.labels_held_back && matches!(write, Write::ApplyNamespaceLabels(_)) {
                    note_failed_write(&pass.desired, &mut pass.drift, &write, &error);
                }
                // A marker that was not removed is not set after it either.
                return Some(error);
            }
        }
    }
    None
}

/// When to look at the namespace again without a watch event: soon after a write RBAC refused,
/// just after the first exemption here expires (enforcement resumes then, not at the resync),
/// and at the resync otherwise.
fn next_pass(drift: &[Drift], desired: &DesiredState) -> Action {
    let mut wait = RESYNC;
    if drift
        .iter()
        .any(|d| matches!(d.reason, DriftReason::Forbidden(_)))
    {
        wait = FORBIDDEN_RETRY;
    }
    if let Some(expiry) = desired.exempt.iter().filter_map(|e| e.expires_at).min() {
        wait = wait.min(until(expiry));
    }
    Action::requeue(wait)
}
