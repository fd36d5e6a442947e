//! `check`'s look at the published PolicyReports: a report named `zerotrust-operator` that
//! shows anything other than what `check` found is a finding, whoever wrote it and whatever its
//! labels and annotations say (edited, forged, or someone else's under our name).

use std::collections::BTreeMap;

use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::{Api, Client};

use super::error::{Error, Failed, Operation};
use crate::engine::{
    ControlResult, REPORT_NAME, ReportApi, ReportWarning, TrustedName, policy_report,
    unclaimed_message, visible_hash,
};

/// Reports read per request: few, since whoever writes a report decides how large it is.
const PAGE: u32 = 25;

/// A report at our name that says something other than `check`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FalseReport {
    pub namespace: String,
    /// `Report` or `PolicyReport`.
    pub kind: &'static str,
}

impl std::fmt::Display for FalseReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: the {} {REPORT_NAME} shows other results than this check (edited, or not written by the operator)",
            self.namespace, self.kind
        )
    }
}

/// The reports named [`REPORT_NAME`], of either API the API server serves, in namespaces
/// `controls` covers, whose shown content differs from the report those results make, with the
/// warnings of `unclaimed` (baseline, name) for each baseline with results there, as the
/// operator writes them. Reports are read a page at a time and only hashed, never kept.
pub async fn false_reports(
    client: &Client,
    controls: &[(String, ControlResult)],
    unclaimed: &[(String, TrustedName)],
) -> Result<Vec<FalseReport>, Error> {
    let mut by_namespace: BTreeMap<&str, Vec<ControlResult>> = BTreeMap::new();
    for (ns, result) in controls {
        by_namespace.entry(ns).or_default().push(result.clone());
    }
    let warnings = unclaimed_warnings(unclaimed);
    let mut found = Vec::new();
    for api in [ReportApi::OpenReports, ReportApi::WgPolicy] {
        let gvk = GroupVersionKind::gvk(api.group(), api.version(), api.kind());
        let resource = ApiResource::from_gvk_with_plural(&gvk, api.plural());
        let all: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        let mut params = ListParams::default()
            .fields(&format!("metadata.name={REPORT_NAME}"))
            .limit(PAGE);
        loop {
            let page = match all.list(&params).await {
                // Not served: no report of this kind to lie.
                Err(kube::Error::Api(status)) if status.code == 404 => break,
                page => page.failed(Operation::List, api.kind(), "", "")?,
            };
            for live in &page.items {
                let ns = live.metadata.namespace.as_deref().unwrap_or_default();
                let Some(results) = by_namespace.get(ns) else {
                    continue;
                };
                let mut selecting: Vec<&str> =
                    results.iter().map(|r| r.baseline.as_str()).collect();
                selecting.dedup();
                let warned: Vec<ReportWarning> = selecting
                    .iter()
                    .filter_map(|b| warnings.get(*b).cloned())
                    .collect();
                let (truth, _) = policy_report(api, ns, results, &warned);
                let shown = serde_json::to_value(live).unwrap_or_default();
                if visible_hash(&shown) != visible_hash(&truth) {
                    found.push(FalseReport {
                        namespace: ns.to_string(),
                        kind: api.kind(),
                    });
                }
            }
            match page.metadata.continue_ {
                Some(token) if !token.is_empty() => params = params.continue_token(&token),
                _ => break,
            }
        }
    }
    Ok(found)
}

/// Each baseline's warning about the names it trusts that no namespace holds, as the operator
/// puts it in the report of every namespace the baseline selects.
fn unclaimed_warnings(unclaimed: &[(String, TrustedName)]) -> BTreeMap<&str, ReportWarning> {
    let mut by_baseline: BTreeMap<&str, Vec<TrustedName>> = BTreeMap::new();
    for (baseline, name) in unclaimed {
        by_baseline.entry(baseline).or_default().push(name.clone());
    }
    by_baseline
        .into_iter()
        .filter_map(|(baseline, names)| {
            let message = unclaimed_message(&names)?;
            let warning = ReportWarning {
                baseline: baseline.to_string(),
                rule: "UnclaimedNamespaces",
                message,
            };
            Some((baseline, warning))
        })
        .collect()
}
