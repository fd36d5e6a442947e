//! PolicyReports (with `--policy-reports`): each selected namespace's report written when its
//! results change, deleted with the namespace's last baseline. Reports inform; they guard
//! nothing, so a failed write is logged and never fails a reconcile.

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
use crate::engine::{
    CONTENT_HASH_ANNOTATION, ControlResult, FIELD_MANAGER, MANAGED_SELECTOR, REPORT_NAME,
    ReportApi, ReportWarning, applied_by_us, policy_report,
};

/// Reports read per request at start-up.
const PAGE: u32 = 500;

/// What this process knows of the report in one namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Known {
    /// Ours, with this content hash.
    Ours { hash: u64, uid: Option<String> },
    /// A same-named report we did not create, found when our results had this hash: never
    /// written over, and looked at again only when the results change.
    Theirs { hash: u64 },
}

/// The reports this process keeps.
pub struct Reports {
    api: ReportApi,
    resource: ApiResource,
    /// False once the API server said it does not serve the kind.
    served: AtomicBool,
    /// Per namespace; at most one entry per namespace that exists (see `prune`).
    known: Mutex<HashMap<String, Known>>,
}

impl Reports {
    /// Reads which reports of ours exist (metadata only, in pages) so that unchanged ones are
    /// not written again. Where the kind is not served, says so once and writes none.
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
                if let Some((namespace, state)) = seen(&report.metadata) {
                    known.insert(namespace, state);
                }
            }
            match page.metadata.continue_ {
                Some(token) if !token.is_empty() => params = params.continue_token(&token),
                _ => break,
            }
        }
        info!(
            kind = api.kind(),
            existing = reports.known.lock().len(),
            "PolicyReports: writing one per selected namespace"
        );
        Ok(reports)
    }

    /// Puts `results` and `warnings` in the report of `namespace` if they changed; deletes our
    /// report when there are no results (no baseline selects the namespace any more).
    pub async fn record(
        &self,
        client: &Client,
        namespace: &str,
        results: &[ControlResult],
        warnings: &[ReportWarning],
    ) {
        if !self.served.load(Ordering::Relaxed) {
            return;
        }
        let known = self.known.lock().get(namespace).cloned();
        let outcome = if results.is_empty() {
            match known {
                None => return,
                Some(Known::Theirs { .. }) => Ok(None),
                Some(Known::Ours { uid, .. }) => self
                    .delete(client, namespace, uid.as_deref())
                    .await
                    .map(|()| None),
            }
        } else {
            let (report, hash) = policy_report(self.api, namespace, results, warnings);
            match known {
                Some(Known::Ours { hash: old, .. } | Known::Theirs { hash: old })
                    if old == hash =>
                {
                    return;
                }
                Some(Known::Ours { .. }) => self.apply(client, namespace, &report, hash).await,
                _ => self.create(client, namespace, &report, hash).await,
            }
            .map(Some)
        };
        let mut known = self.known.lock();
        match outcome {
            Ok(Some(state)) => {
                known.insert(namespace.to_string(), state);
            }
            Ok(None) => {
                known.remove(namespace);
            }
            Err(error) => {
                // Unknown now: the next pass of the namespace finds out again.
                known.remove(namespace);
                warn!(%error, "PolicyReport not written");
            }
        }
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

    /// Creates the report, never over someone else's: a same-named report we did not create is
    /// reported and left alone.
    async fn create(
        &self,
        client: &Client,
        namespace: &str,
        report: &serde_json::Value,
        hash: u64,
    ) -> Result<Known, Error> {
        let api = self.namespaced(client, namespace);
        let object: DynamicObject = serde_json::from_value(report.clone())
            .expect("a rendered report is an object with metadata");
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PostParams::default()
        };
        match api.create(&params, &object).await {
            Ok(created) => Ok(Known::Ours {
                hash,
                uid: created.uid(),
            }),
            Err(kube::Error::Api(status)) if status.code == 409 => {
                let found = api.get_metadata(REPORT_NAME).await.failed(
                    Operation::Read,
                    self.api.kind(),
                    namespace,
                    REPORT_NAME,
                )?;
                if applied_by_us(&found.metadata) {
                    self.apply(client, namespace, report, hash).await
                } else {
                    warn!(
                        namespace,
                        name = REPORT_NAME,
                        kind = self.api.kind(),
                        "PolicyReports: a report of this name exists and is not ours; leaving it"
                    );
                    Ok(Known::Theirs { hash })
                }
            }
            Err(e) => Err(e).failed(Operation::Create, self.api.kind(), namespace, REPORT_NAME),
        }
    }

    async fn apply(
        &self,
        client: &Client,
        namespace: &str,
        report: &serde_json::Value,
        hash: u64,
    ) -> Result<Known, Error> {
        let applied = self
            .namespaced(client, namespace)
            .patch(
                REPORT_NAME,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(report),
            )
            .await
            .failed(Operation::Apply, self.api.kind(), namespace, REPORT_NAME)?;
        Ok(Known::Ours {
            hash,
            uid: applied.uid(),
        })
    }

    async fn delete(
        &self,
        client: &Client,
        namespace: &str,
        uid: Option<&str>,
    ) -> Result<(), Error> {
        match self
            .namespaced(client, namespace)
            .delete(REPORT_NAME, &only_uid(uid))
            .await
        {
            Ok(_) => Ok(()),
            // Gone already, or replaced by a report that is not the one we wrote.
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
            Err(e) => Err(e).failed(Operation::Delete, self.api.kind(), namespace, REPORT_NAME),
        }
    }

    fn namespaced(&self, client: &Client, namespace: &str) -> Api<DynamicObject> {
        Api::namespaced_with(client.clone(), namespace, &self.resource)
    }
}

/// A listed report's namespace and what it tells: ours (with the hash it holds) when it has our
/// name and our field manager. Anything else that carries our label is not remembered.
fn seen(meta: &ObjectMeta) -> Option<(String, Known)> {
    if meta.name.as_deref() != Some(REPORT_NAME) || !applied_by_us(meta) {
        return None;
    }
    let hash = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(CONTENT_HASH_ANNOTATION))
        .and_then(|h| h.parse().ok())
        // Without a readable hash it is rewritten on its namespace's first pass.
        .unwrap_or(0);
    Some((
        meta.namespace.clone()?,
        Known::Ours {
            hash,
            uid: meta.uid.clone(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;

    fn meta(name: &str, manager: &str, hash: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: Some("team-a".into()),
            uid: Some("u-1".into()),
            annotations: hash
                .map(|h| [(CONTENT_HASH_ANNOTATION.to_string(), h.to_string())].into()),
            managed_fields: Some(vec![ManagedFieldsEntry {
                manager: Some(manager.into()),
                operation: Some("Apply".into()),
                ..ManagedFieldsEntry::default()
            }]),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn a_listed_report_is_ours_only_with_our_name_and_field_manager() {
        assert_eq!(
            seen(&meta(REPORT_NAME, FIELD_MANAGER, Some("42"))),
            Some((
                "team-a".into(),
                Known::Ours {
                    hash: 42,
                    uid: Some("u-1".into())
                }
            ))
        );
        assert_eq!(seen(&meta("other", FIELD_MANAGER, Some("42"))), None);
        assert_eq!(seen(&meta(REPORT_NAME, "tenant", Some("42"))), None);
        // An unreadable hash is never equal to a real one: the report is rewritten.
        assert!(matches!(
            seen(&meta(REPORT_NAME, FIELD_MANAGER, Some("x"))),
            Some((_, Known::Ours { hash: 0, .. }))
        ));
    }

    #[test]
    fn pruning_keeps_existing_namespaces_once_more_are_known_than_exist() {
        let reports = Reports {
            api: ReportApi::OpenReports,
            resource: ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk("openreports.io", "v1alpha1", "Report"),
                "reports",
            ),
            served: AtomicBool::new(true),
            known: Mutex::new(HashMap::new()),
        };
        for ns in ["a", "b", "gone"] {
            reports
                .known
                .lock()
                .insert(ns.into(), Known::Theirs { hash: 1 });
        }
        reports.prune(3, |ns| ns != "gone");
        assert_eq!(reports.known.lock().len(), 3, "not more than exist: kept");
        reports.prune(2, |ns| ns != "gone");
        let mut left: Vec<String> = reports.known.lock().keys().cloned().collect();
        left.sort();
        assert_eq!(left, ["a", "b"]);
    }
}
