//! PolicyReports (with `--policy-reports`): each selected namespace's report written when its
//! results change or when it shows anything else (someone edited or deleted it), deleted with the
//! namespace's last baseline; a same-named report we did not write is left alone and reported,
//! ours published beside it. Reports inform; they guard nothing, so a failed write is logged and
//! never fails a reconcile.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use kube::api::{
    ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use kube::core::ObjectMeta;
use kube::{Api, Client, ResourceExt};
use parking_lot::Mutex;
use tracing::{info, warn};

use super::apply::only_uid;
use super::error::{Error, Failed, Operation};
use crate::api::DriftRecord;
use crate::engine::{
    ControlResult, FIELD_MANAGER, MANAGED_BY_LABEL, MANAGED_BY_VALUE, MANAGED_SELECTOR,
    REPORT_NAME, ReportApi, ReportWarning, applied_by_us, fallback_report_name, policy_report,
    visible_hash,
};

/// Reports read per request at start-up.
const PAGE: u32 = 500;

/// What this process knows of the report in one namespace: a few strings and hashes, never the
/// report itself (a tenant who may write reports decides how large they are).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Entry {
    /// The uid of a report at [`REPORT_NAME`] that is not ours: our results go to its fallback.
    squatter: Option<String>,
    /// The uid of the report we last wrote or read back as ours, at [`Entry::name`].
    uid: Option<String>,
    /// What its readers saw when we last wrote or read it ([`visible_hash`]).
    shown: Option<u64>,
    /// The results' hash and the resource version they were published at: the report needs
    /// no request while the watch has seen no other version since.
    published: Option<(u64, String)>,
    /// The last version the watch saw of the report at [`Entry::name`] (`None`: deleted).
    seen: Option<Option<String>>,
}

impl Entry {
    /// Where our results go: our name, or its fallback while someone else's report holds it.
    fn name(&self) -> String {
        self.squatter
            .as_deref()
            .map_or_else(|| REPORT_NAME.to_string(), fallback_report_name)
    }

    /// Whether the report holds the results of `hash` as far as anything seen tells.
    fn current(&self, hash: u64) -> bool {
        match (&self.published, &self.seen) {
            (Some((h, _)), None) => *h == hash,
            (Some((h, rv)), Some(Some(seen))) => *h == hash && rv == seen,
            _ => false,
        }
    }
}

/// What a pass found about a namespace's report, beyond writing it: each is a Warning Event on
/// the namespace and its baselines and a metric.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReportFinding {
    /// Our report was edited by someone else, or deleted: written again.
    Reasserted { name: String, deleted: bool },
    /// A report we did not write holds our name: left alone, ours published as `published`.
    Squatted {
        squatter: String,
        published: Option<String>,
    },
}

impl ReportFinding {
    /// Every [`ReportFinding::reason`], for the metric's series from the first scrape.
    pub const REASONS: [&str; 3] = ["ReportEdited", "ReportDeleted", "ReportSquatted"];

    /// The Event reason and metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            ReportFinding::Reasserted { deleted: false, .. } => Self::REASONS[0],
            ReportFinding::Reasserted { deleted: true, .. } => Self::REASONS[1],
            ReportFinding::Squatted { .. } => Self::REASONS[2],
        }
    }

    /// The Event note, for `namespace`.
    pub fn note(&self, namespace: &str) -> String {
        match self {
            ReportFinding::Reasserted { name, deleted } => format!(
                "{namespace}: PolicyReport {name} was {} by someone else; written again",
                if *deleted { "deleted" } else { "edited" }
            ),
            ReportFinding::Squatted {
                squatter,
                published,
            } => format!(
                "{namespace}: a PolicyReport named {REPORT_NAME} (uid {squatter}) was not written \
                 by the operator and is left alone; the operator's results are in {}",
                published
                    .as_deref()
                    .unwrap_or("no report (its fallback name is taken too)")
            ),
        }
    }
}

/// The reports this process keeps.
pub struct Reports {
    api: ReportApi,
    resource: ApiResource,
    /// False once the API server said it does not serve the kind.
    served: AtomicBool,
    /// Per namespace; at most one entry per namespace that exists (see `prune`).
    known: Mutex<HashMap<String, Entry>>,
}

impl Reports {
    /// Finds out whether the kind is served (where it is not, says so once and writes none), and
    /// which namespaces hold a report that claims to be ours (metadata only, in pages): one
    /// left behind by a namespace no baseline selects any more is deleted on its next pass.
    /// What any of them shows is read on its namespace's first pass, never taken from its hash
    /// annotation.
    pub async fn start(client: &Client, api: ReportApi) -> Result<Reports, Error> {
        let gvk = GroupVersionKind::gvk(api.group(), api.version(), api.kind());
        let reports = Reports {
            api,
            resource: ApiResource::from_gvk_with_plural(&gvk, api.plural()),
            served: AtomicBool::new(true),
            known: Mutex::new(HashMap::new()),
        };
        let all: Api<DynamicObject> = Api::all_with(client.clone(), &reports.resource);
        let mut params = ListParams::default().labels(MANAGED_SELECTOR).limit(PAGE);
        loop {
            let page = match all.list_metadata(&params).await {
                Err(kube::Error::Api(status)) if status.code == 404 => {
                    warn!(
                        kind = api.kind(),
                        group = api.group(),
                        "PolicyReports: the API server does not serve this kind (its CRD is not installed); writing no reports"
                    );
                    reports.served.store(false, Ordering::Relaxed);
                    return Ok(reports);
                }
                page => page.failed(Operation::List, api.kind(), "", "")?,
            };
            let mut known = reports.known.lock();
            for report in &page.items {
                if let Some((namespace, entry)) = claimed(&report.metadata) {
                    known.insert(namespace, entry);
                }
            }
            match page.metadata.continue_ {
                Some(token) if !token.is_empty() => params = params.continue_token(&token),
                _ => break,
            }
        }
        info!(
            kind = api.kind(),
            "PolicyReports: writing one per selected namespace"
        );
        Ok(reports)
    }

    /// The resource the report watch lists.
    pub fn resource(&self) -> Option<&ApiResource> {
        self.served
            .load(Ordering::Relaxed)
            .then_some(&self.resource)
    }

    /// Whether a watched report event concerns what we published in its namespace: another
    /// version of our report (edited, deleted, or our own write coming back), or the squatter
    /// at our name gone. Remembers the version, so the next pass reads the report again.
    pub fn touched(&self, meta: &ObjectMeta, deleted: bool) -> bool {
        let (Some(namespace), Some(name)) = (&meta.namespace, &meta.name) else {
            return false;
        };
        let mut known = self.known.lock();
        let Some(entry) = known.get_mut(namespace) else {
            return false;
        };
        if *name == entry.name() {
            let version = (!deleted).then(|| meta.resource_version.clone().unwrap_or_default());
            let mine = entry
                .published
                .as_ref()
                .is_some_and(|(_, rv)| version.as_ref() == Some(rv));
            entry.seen = Some(version);
            return !mine;
        }
        if deleted && *name == REPORT_NAME && entry.squatter == meta.uid {
            // Our name is free again: the next pass moves our results back to it.
            entry.squatter = None;
            entry.published = None;
            return true;
        }
        false
    }

    /// Puts `results` and `warnings` in the report of `namespace` unless it holds them already;
    /// report when there are none (no baseline selects the namespace any more).
    pub async fn record(
        &self,
        client: &Client,
        namespace: &str,
        results: &[ControlResult],
        warnings: &[ReportWarning],
    ) -> Option<ReportFinding> {
        if !self.served.load(Ordering::Relaxed) {
            return None;
        }
        let entry = self.known.lock().get(namespace).cloned();
        if results.is_empty() {
            let entry = entry?;
            if entry.uid.is_some()
                && let Err(error) = self
                    .delete(client, namespace, &entry.name(), entry.uid.as_deref())
                    .await
            {
                warn!(%error, "PolicyReport not deleted");
                return None;
            }
            self.known.lock().remove(namespace);
            return None;
        }
        let (report, hash) = policy_report(self.api, namespace, results, warnings);
        if entry.as_ref().is_some_and(|e| e.current(hash)) {
            return None;
        }
        let mut entry = entry.unwrap_or_default();
        let outcome = self
            .publish(client, namespace, &mut entry, report, hash)
            .await;
        let mut known = self.known.lock();
        // What the watch saw meanwhile stays, unless we moved to another name.
        let seen = known
            .get(namespace)
            .filter(|e| e.name() == entry.name())
            .and_then(|e| e.seen.clone());
        entry.seen = seen;
        match outcome {
            Ok(finding) => {
                known.insert(namespace.to_string(), entry);
                finding
            }
            Err(error) => {
                // Kept, unpublished: the next pass reads the report again.
                entry.published = None;
                known.insert(namespace.to_string(), entry);
                warn!(%error, "PolicyReport not written");
                None
            }
        }
    }

    /// The status record of a report at our name in `namespace` that we did not write: a
    /// conflict, since what readers find under our name is not what the operator found.
    pub fn squatted(&self, namespace: &str) -> Option<DriftRecord> {
        let known = self.known.lock();
        let entry = known.get(namespace)?;
        entry.squatter.as_ref()?;
        let published = match entry.uid {
            Some(_) => format!("results published as {}", entry.name()),
            None => "no results published: the fallback name is taken too".to_string(),
        };
        Some(DriftRecord {
            namespace: namespace.to_string(),
            kind: self.api.kind().to_string(),
            name: REPORT_NAME.to_string(),
            reason: format!("Conflict: not written by zerotrust-operator; left alone, {published}"),
        })
    }

    /// Forgets `namespace` (terminating: its report goes with it).
    pub fn forget(&self, namespace: &str) {
        self.known.lock().remove(namespace);
    }

    /// Keeps only namespaces for which `exists`, once more are known than `namespaces` exist:
    /// a namespace deleted while no pass saw it terminating leaves no entry behind for long.
    pub fn prune(&self, namespaces: usize, exists: impl Fn(&str) -> bool) {
        let mut known = self.known.lock();
        if known.len() > namespaces {
            known.retain(|namespace, _| exists(namespace));
        }
    }

    /// Reads the report where our results go and makes it hold `report`: created when missing,
    /// applied when ours and showing anything else, left alone when someone else's (our results
    /// then go to the fallback name, once).
    async fn publish(
        &self,
        client: &Client,
        namespace: &str,
        entry: &mut Entry,
        mut report: serde_json::Value,
        hash: u64,
    ) -> Result<Option<ReportFinding>, Error> {
        let api = self.namespaced(client, namespace);
        let before = entry.clone();
        let mut finding = None;
        loop {
            let name = entry.name();
            report["metadata"]["name"] = name.clone().into();
            let live = api.get_opt(&name).await.failed(
                Operation::Read,
                self.api.kind(),
                namespace,
                &name,
            )?;
            let written = match live {
                None => {
                    if entry.uid.is_some() && before.name() == name {
                        finding = Some(ReportFinding::Reasserted {
                            name: name.clone(),
                            deleted: true,
                        });
                    }
                    self.create(&api, namespace, &report).await?
                }
                Some(live) if ours(&live.metadata, entry.uid.as_deref()) => {
                    let live_shown = visible_hash(&serde_json::to_value(&live).unwrap_or_default());
                    if live_shown == visible_hash(&report) {
                        live
                    } else {
                        // Without what we last showed (after a restart) an edit cannot be told
                        // from results that changed meanwhile: written again all the same.
                        if before.shown.is_some_and(|s| s != live_shown) && before.name() == name {
                            finding = Some(ReportFinding::Reasserted {
                                name: name.clone(),
                                deleted: false,
                            });
                        }
                        self.apply(&api, namespace, &name, &report).await?
                    }
                }
                Some(live) if name == REPORT_NAME => {
                    warn!(
                        namespace,
                        name = REPORT_NAME,
                        kind = self.api.kind(),
                        "PolicyReports: a report of this name exists and is not ours; leaving it, publishing ours under another name"
                    );
                    *entry = Entry {
                        squatter: Some(live.uid().unwrap_or_default()),
                        ..Entry::default()
                    };
                    continue;
                }
                Some(_) => {
                    // The fallback name is taken too: nothing published until one frees up.
                    entry.published = Some((hash, String::new()));
                    break;
                }
            };
            entry.uid = written.uid();
            entry.shown = Some(visible_hash(&report));
            entry.published = Some((hash, written.resource_version().unwrap_or_default()));
            break;
        }
        let finding = squatted(&before, entry).or(finding);
        if before.uid.is_some() && before.name() != entry.name() && entry.squatter.is_none() {
            // Back at our name: the fallback report goes.
            self.delete(client, namespace, &before.name(), before.uid.as_deref())
                .await?;
        }
        Ok(finding)
    }

    async fn create(
        &self,
        api: &Api<DynamicObject>,
        namespace: &str,
        report: &serde_json::Value,
    ) -> Result<DynamicObject, Error> {
        let object: DynamicObject = serde_json::from_value(report.clone())
            .expect("a rendered report is an object with metadata");
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PostParams::default()
        };
        // A 409 (created meanwhile) fails this pass; the watch brings the namespace back.
        api.create(&params, &object).await.failed(
            Operation::Create,
            self.api.kind(),
            namespace,
            &object.name_any(),
        )
    }

    async fn apply(
        &self,
        api: &Api<DynamicObject>,
        namespace: &str,
        name: &str,
        report: &serde_json::Value,
    ) -> Result<DynamicObject, Error> {
        api.patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(report),
        )
        .await
        .failed(Operation::Apply, self.api.kind(), namespace, name)
    }

    async fn delete(
        &self,
        client: &Client,
        namespace: &str,
        name: &str,
        uid: Option<&str>,
    ) -> Result<(), Error> {
        match self
            .namespaced(client, namespace)
            .delete(name, &only_uid(uid))
            .await
        {
            Ok(_) => Ok(()),
            // Gone already, or replaced by a report that is not the one we wrote.
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
            Err(e) => Err(e).failed(Operation::Delete, self.api.kind(), namespace, name),
        }
    }

    fn namespaced(&self, client: &Client, namespace: &str) -> Api<DynamicObject> {
        Api::namespaced_with(client.clone(), namespace, &self.resource)
    }
}

/// A listed report's namespace and what that tells, when it claims to be ours at our name.
fn claimed(meta: &ObjectMeta) -> Option<(String, Entry)> {
    if meta.name.as_deref() != Some(REPORT_NAME) || !ours(meta, None) {
        return None;
    }
    let entry = Entry {
        uid: meta.uid.clone(),
        ..Entry::default()
    };
    Some((meta.namespace.clone()?, entry))
}

/// A squatter at our name found by this pass (not one already known).
fn squatted(before: &Entry, entry: &Entry) -> Option<ReportFinding> {
    let squatter = entry.squatter.clone()?;
    (before.squatter != entry.squatter).then(|| ReportFinding::Squatted {
        squatter,
        published: entry.uid.is_some().then(|| entry.name()),
    })
}

/// Whether a report we read where our results go is ours to write: the one we wrote (by uid),
/// or one that claims to be ours (our label and field manager, as every report we write carries).
/// A claim is forgeable, but taking a forged claim at its word only makes us write the true
/// results over it; a report that does not claim to be ours is someone else's and never written.
fn ours(meta: &ObjectMeta, uid: Option<&str>) -> bool {
    let labelled = meta
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY_LABEL))
        .is_some_and(|v| v == MANAGED_BY_VALUE);
    (uid.is_some() && meta.uid.as_deref() == uid) || (labelled && applied_by_us(meta))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;

    fn meta(name: &str, manager: &str, labelled: bool, uid: &str, rv: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: Some("team-a".into()),
            uid: Some(uid.into()),
            resource_version: Some(rv.into()),
            labels: labelled
                .then(|| [(MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string())].into()),
            managed_fields: Some(vec![ManagedFieldsEntry {
                manager: Some(manager.into()),
                operation: Some("Apply".into()),
                ..ManagedFieldsEntry::default()
            }]),
            ..ObjectMeta::default()
        }
    }

    fn reports(entry: Entry) -> Reports {
        let reports = Reports {
            api: ReportApi::OpenReports,
            resource: ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk("openreports.io", "v1alpha1", "Report"),
                "reports",
            ),
            served: AtomicBool::new(true),
            known: Mutex::new(HashMap::new()),
        };
        reports.known.lock().insert("team-a".into(), entry);
        reports
    }

    #[test]
    fn a_report_is_ours_by_the_uid_we_wrote_or_by_its_claim() {
        assert!(ours(
            &meta(REPORT_NAME, "tenant", false, "u-1", "1"),
            Some("u-1")
        ));
        assert!(ours(
            &meta(REPORT_NAME, FIELD_MANAGER, true, "u-2", "1"),
            None
        ));
        assert!(!ours(
            &meta(REPORT_NAME, "tenant", true, "u-2", "1"),
            Some("u-1")
        ));
        assert!(!ours(
            &meta(REPORT_NAME, FIELD_MANAGER, false, "u-2", "1"),
            None
        ));
    }

    #[test]
    fn another_version_of_our_report_is_read_again_our_own_is_not() {
        let published = Entry {
            uid: Some("u-1".into()),
            shown: Some(7),
            published: Some((1, "5".into())),
            ..Entry::default()
        };
        let r = reports(published.clone());
        assert!(r.known.lock()["team-a"].current(1));
        assert!(!r.touched(&meta(REPORT_NAME, FIELD_MANAGER, true, "u-1", "5"), false));
        assert!(
            r.known.lock()["team-a"].current(1),
            "our own write came back"
        );
        assert!(!r.known.lock()["team-a"].current(2), "other results");
        assert!(r.touched(&meta(REPORT_NAME, "tenant", true, "u-1", "6"), false));
        assert!(!r.known.lock()["team-a"].current(1), "edited: read again");
        let r = reports(published);
        assert!(r.touched(&meta(REPORT_NAME, FIELD_MANAGER, true, "u-1", "5"), true));
        assert!(
            !r.known.lock()["team-a"].current(1),
            "deleted: written again"
        );
        assert!(!r.touched(&meta("other", "tenant", true, "u-9", "1"), false));
    }

    #[test]
    fn the_squatter_gone_frees_our_name() {
        let r = reports(Entry {
            squatter: Some("u-9".into()),
            uid: Some("u-1".into()),
            published: Some((1, "5".into())),
            ..Entry::default()
        });
        assert_eq!(r.known.lock()["team-a"].name(), fallback_report_name("u-9"));
        // The squatter edited: no concern of ours.
        assert!(!r.touched(&meta(REPORT_NAME, "tenant", true, "u-9", "8"), false));
        assert!(r.touched(&meta(REPORT_NAME, "tenant", true, "u-9", "8"), true));
        let entry = r.known.lock()["team-a"].clone();
        assert_eq!(entry.name(), REPORT_NAME);
        assert!(!entry.current(1));
    }

    #[test]
    fn pruning_keeps_existing_namespaces_once_more_are_known_than_exist() {
        let reports = reports(Entry::default());
        for ns in ["a", "b", "gone"] {
            reports.known.lock().insert(ns.into(), Entry::default());
        }
        reports.prune(4, |ns| ns != "gone");
        assert_eq!(reports.known.lock().len(), 4, "not more than exist: kept");
        reports.prune(3, |ns| ns != "gone");
        let mut left: Vec<String> = reports.known.lock().keys().cloned().collect();
        left.sort();
        assert_eq!(left, ["a", "b", "team-a"]);
    }
}
