//! Pod Security Admission, in one place: its labels, levels and versions, how two policies
//! compare and compose (the strictest level at the newest version), what a namespace's labels fall short of, and the same
//! rules in CEL for the admission policies, so the operator's diff and the API server agree.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use super::exemption::cel;
use super::validate::ValidBaseline;
use crate::api::PodSecurityLevel;

/// Prefix of the Pod Security Admission labels.
pub const PSA_LABEL_PREFIX: &str = "pod-security.kubernetes.io/";
/// The three PSA modes, each a label `pod-security.kubernetes.io/<mode>` plus `<mode>-version`.
pub const PSA_MODES: [&str; 3] = ["enforce", "audit", "warn"];
/// The oldest Pod Security version a baseline may pin (and a namespace's version label may hold
/// without counting as weakened): v1.34, the first whose `baseline` level refuses `host` in
/// probes and lifecycle hooks. Before it the kubelet could be sent to any address from the node's
/// network namespace, past every NetworkPolicy (the cloud metadata endpoint, node ports); older
/// versions also lack checks `restricted` gained since (at v1.0 it did not check privilege
/// escalation, capabilities or runAsUser). A pin below the floor is a way to weaken a namespace.
pub const PSA_VERSION_FLOOR: u32 = 34;

/// The label holding `mode`'s level: `pod-security.kubernetes.io/<mode>`.
pub fn level_label(mode: &str) -> String {
    format!("{PSA_LABEL_PREFIX}{mode}")
}

/// The label holding `mode`'s version: `pod-security.kubernetes.io/<mode>-version`.
pub fn version_label(mode: &str) -> String {
    format!("{PSA_LABEL_PREFIX}{mode}-version")
}

/// One Pod Security mode's policy: a level, checked at a version.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct PodSecurityPolicy {
    pub level: PodSecurityLevel,
    /// `latest` or `v1.NN`.
    pub version: String,
}

impl PodSecurityPolicy {
    /// Whether this policy refuses at least what `wanted` refuses: a level at least as strict
    /// *and* a version at least as new. Neither alone is enough: `restricted` pinned to an old
    /// version lacks checks that `baseline` at `latest` has, so neither of the two meets the
    /// other, and only their [`join`](Self::join) meets both.
    pub fn meets(&self, wanted: &PodSecurityPolicy) -> bool {
        self.level >= wanted.level && self.version_rank() >= wanted.version_rank()
    }

    /// The weakest policy that meets both: the stricter level, checked at the newer version.
    pub fn join(&self, other: &PodSecurityPolicy) -> PodSecurityPolicy {
        let version = if other.version_rank() > self.version_rank() {
            &other.version
        } else {
            &self.version
        };
        PodSecurityPolicy {
            level: self.level.max(other.level),
            version: version.clone(),
        }
    }

    /// The version's rank: `latest` above every `v1.NN`, a newer minor above an older one; one
    /// that is not a version ranks lowest (Pod Security admission ignores it).
    fn version_rank(&self) -> u32 {
        version_rank(&self.version).unwrap_or(0)
    }

    /// The policy a namespace's labels give `mode`: None without a valid level label. An absent
    /// version label means `latest`, as Pod Security admission reads it.
    pub fn from_labels(labels: &BTreeMap<String, String>, mode: &str) -> Option<Self> {
        let level = PodSecurityLevel::parse(labels.get(&level_label(mode))?)?;
        let version = labels
            .get(&version_label(mode))
            .cloned()
            .unwrap_or_else(|| "latest".to_string());
        Some(PodSecurityPolicy { level, version })
    }

    /// Its two labels: the level and the version.
    pub fn labels(&self, mode: &str) -> [(String, String); 2] {
        [
            (level_label(mode), self.level.as_str().to_string()),
            (version_label(mode), self.version.clone()),
        ]
    }
}

/// The rank of `latest`: above every `v1.NN`.
const LATEST_RANK: u32 = u32::MAX;

/// A version label's rank: `latest` above every `v1.NN`, a newer minor above an older one; None
/// when it is not a version.
pub fn version_rank(version: &str) -> Option<u32> {
    if version == "latest" {
        return Some(LATEST_RANK);
    }
    let minor = version.strip_prefix("v1.")?;
    minor
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| minor.parse().ok())
        .flatten()
}

/// Whether a baseline may pin `version`: `latest`, or `v1.NN` with at most three digits (what the
/// admission policies' CEL reads), without leading zeros, and no older than the floor.
pub fn is_valid_version(version: &str) -> bool {
    version == "latest"
        || version.strip_prefix("v1.").is_some_and(|minor| {
            minor.len() <= 3
                && !minor.starts_with('0')
                && version_rank(version).is_some_and(|m| m >= PSA_VERSION_FLOOR)
        })
}

/// One mode's composition of several baselines' policies, and whom each of its labels is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Composed<'a> {
    /// The join of every policy: the strictest level at the newest version.
    pub policy: PodSecurityPolicy,
    /// The baseline asking for that level (the first by name among equals).
    pub level_from: &'a str,
    /// The baseline asking for that version (the first by name among equals).
    pub version_from: &'a str,
}

/// The composition of `candidates` (a policy and the baseline asking for it): the strictest level
/// at the newest version, so the namespace meets every one of them. Choosing one whole policy
/// (level first, then version) would let a pinned `restricted` stand in for `baseline` at
/// `latest`, and admit what the latter refuses.
pub fn compose<'a>(
    candidates: impl Iterator<Item = (&'a PodSecurityPolicy, &'a str)>,
) -> Option<Composed<'a>> {
    let candidates: Vec<_> = candidates.collect();
    let strongest = |rank: fn(&PodSecurityPolicy) -> u32| {
        candidates
            .iter()
            .max_by(|a, b| rank(a.0).cmp(&rank(b.0)).then_with(|| b.1.cmp(a.1)))
            .map(|(_, name)| *name)
    };
    let level_from = strongest(|p| p.level as u32)?;
    let version_from = strongest(PodSecurityPolicy::version_rank)?;
    let policy = candidates
        .iter()
        .map(|(p, _)| (*p).clone())
        .reduce(|a, b| a.join(&b))?;
    Some(Composed {
        policy,
        level_from,
        version_from,
    })
}

/// What falls short in the namespace's labels for `mode` against `wanted`: the label and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shortfall {
    /// No level label.
    Missing(String),
    /// A level or version label that admits more than `wanted`, or is not valid at all.
    Weakened(String, String),
}

/// Whether the namespace's labels for `mode` hold at least `wanted`: a level at least as strict and
/// a version at least as new ([`PodSecurityPolicy::meets`]); a version label that is malformed or
/// older than the floor falls short whatever the level (Pod Security admission falls back to the cluster
/// default for a malformed one).
pub fn shortfall(
    mode: &str,
    wanted: &PodSecurityPolicy,
    labels: &BTreeMap<String, String>,
) -> Option<Shortfall> {
    let level_key = level_label(mode);
    let version_key = version_label(mode);
    let Some(raw_level) = labels.get(&level_key) else {
        return Some(Shortfall::Missing(level_key));
    };
    let Some(level) = PodSecurityLevel::parse(raw_level) else {
        let detail = format!("{raw_level:?} is not a Pod Security level");
        return Some(Shortfall::Weakened(level_key, detail));
    };
    let version = labels
        .get(&version_key)
        .map(String::as_str)
        .unwrap_or("latest");
    match version_rank(version) {
        None => {
            let detail = format!("{version:?} is not a Pod Security version");
            return Some(Shortfall::Weakened(version_key, detail));
        }
        Some(rank) if rank < PSA_VERSION_FLOOR => {
            let detail = format!("{version} is older than v1.{PSA_VERSION_FLOOR}");
            return Some(Shortfall::Weakened(version_key, detail));
        }
        Some(_) => {}
    }
    let have = PodSecurityPolicy {
        level,
        version: version.to_string(),
    };
    if have.meets(wanted) {
        return None;
    }
    if have.level < wanted.level {
        let detail = format!(
            "{} instead of {}",
            have.level.as_str(),
            wanted.level.as_str()
        );
        Some(Shortfall::Weakened(level_key, detail))
    } else {
        let detail = format!("{} instead of {}", have.version, wanted.version);
        Some(Shortfall::Weakened(version_key, detail))
    }
}

/// The policy to write for `mode`: `composed`, raised to the namespace's own level and version
/// where either is stricter (we never weaken a namespace). The namespace's version counts only
/// when it is valid and not older than the floor.
pub fn policy_to_apply(
    mode: &str,
    composed: &PodSecurityPolicy,
    labels: &BTreeMap<String, String>,
) -> PodSecurityPolicy {
    let level = labels
        .get(&level_label(mode))
        .and_then(|l| PodSecurityLevel::parse(l))
        .map_or(composed.level, |live| live.max(composed.level));
    let live_version = labels
        .get(&version_label(mode))
        .map(String::as_str)
        .unwrap_or("latest");
    let live = PodSecurityPolicy {
        level,
        version: live_version.to_string(),
    };
    let version = match version_rank(live_version) {
        Some(r) if r >= PSA_VERSION_FLOOR => live.join(composed).version,
        _ => composed.version.clone(),
    };
    PodSecurityPolicy { level, version }
}

/// The baseline's Pod Security policy per mode, as (mode, policy).
pub fn policies(baseline: &ValidBaseline) -> Vec<(&'static str, PodSecurityPolicy)> {
    let spec = &baseline.baseline.spec;
    let version = spec.pod_security_version();
    spec.pod_security
        .iter()
        .flat_map(|psa| {
            PSA_MODES
                .into_iter()
                .zip([psa.enforce, psa.audit, psa.warn])
        })
        .filter_map(|(mode, level)| {
            let policy = PodSecurityPolicy {
                level: level?,
                version: version.to_string(),
            };
            Some((mode, policy))
        })
        .collect()
}

// --- the same rules in CEL, for the admission policies ---------------------------------------

/// CEL's rank of `latest`: above every `v1.NN` the CEL below reads (at most three digits).
const CEL_LATEST_RANK: i64 = 1_000_000;
const _: () = assert!(CEL_LATEST_RANK > 999, "above every three-digit minor");

/// A level's rank in CEL: the order of [`PodSecurityLevel`].
pub fn level_rank(level: PodSecurityLevel) -> i64 {
    match level {
        PodSecurityLevel::Privileged => 0,
        PodSecurityLevel::Baseline => 1,
        PodSecurityLevel::Restricted => 2,
    }
}

/// A version's rank as the CEL computes it ([`cel_version_rank`]), -1 when it is not a version.
pub fn cel_rank_of_version(version: &str) -> i64 {
    match version_rank(version) {
        Some(LATEST_RANK) => CEL_LATEST_RANK,
        Some(minor) => i64::from(minor),
        None => -1,
    }
}

/// CEL: the rank of a version label's value, -1 when it is not a version.
pub fn cel_version_rank(version: &str) -> String {
    format!(
        "({version} == 'latest' ? {CEL_LATEST_RANK} : ({version}.matches(r'^v1\\.[0-9]{{1,3}}$') ? int({version}.substring(3)) : -1))"
    )
}

/// The CEL variable `ranks`: each level's name to its [`level_rank`].
pub fn cel_level_ranks() -> Value {
    let entries: Vec<String> = [
        PodSecurityLevel::Privileged,
        PodSecurityLevel::Baseline,
        PodSecurityLevel::Restricted,
    ]
    .into_iter()
    .map(|l| format!("'{}': {}", l.as_str(), level_rank(l)))
    .collect();
    json!({"name": "ranks", "expression": format!("{{{}}}", entries.join(", "))})
}

/// CEL variables reading one mode's labels from `labels` (a variable holding a label map):
/// `<prefix><Mode>Rank` (-1 without a valid level), `...Version`, `...VersionRank`.
pub fn mode_variables(prefix: &str, labels: &str, mode: &str) -> Vec<Value> {
    let key = cel(&level_label(mode));
    let version_key = cel(&version_label(mode));
    let name = mode_variable(prefix, mode);
    vec![
        json!({
            "name": format!("{name}Rank"),
            "expression": format!("{key} in {labels} && {labels}[{key}] in variables.ranks ? variables.ranks[{labels}[{key}]] : -1"),
        }),
        json!({
            "name": format!("{name}Version"),
            "expression": format!("{version_key} in {labels} ? {labels}[{version_key}] : 'latest'"),
        }),
        json!({
            "name": format!("{name}VersionRank"),
            "expression": cel_version_rank(&format!("variables.{name}Version")),
        }),
    ]
}

/// The stem of [`mode_variables`]' names: `<prefix><Mode>`.
pub fn mode_variable(prefix: &str, mode: &str) -> String {
    format!("{prefix}{}{}", &mode[..1].to_uppercase(), &mode[1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(level: PodSecurityLevel, version: &str) -> PodSecurityPolicy {
        PodSecurityPolicy {
            level,
            version: version.to_string(),
        }
    }

    #[test]
    fn a_pinnable_version_is_latest_or_a_canonical_minor_from_the_floor() {
        assert!(
            is_valid_version("v1.35") && is_valid_version("latest") && !is_valid_version("v1.")
        );
        assert!(is_valid_version("v1.34") && is_valid_version("v1.100"));
        assert!(
            !is_valid_version("v1.33") && !is_valid_version("v1.30") && !is_valid_version("v1.0")
        );
        assert!(!is_valid_version("v1.034"));
        assert!(!is_valid_version("v1.1000") && !is_valid_version("v1.+33"));
    }

    /// A policy meets another only with a level at least as strict and a version at least as new;
    /// the composition of any set meets each of them and is the weakest that does.
    #[test]
    fn composition_is_the_stricter_level_at_the_newer_version() {
        use PodSecurityLevel::{Baseline, Privileged, Restricted};
        let all: Vec<PodSecurityPolicy> = [Privileged, Baseline, Restricted]
            .into_iter()
            .flat_map(|l| ["v1.34", "v1.35", "latest"].map(|v| policy(l, v)))
            .collect();
        let pinned = policy(Restricted, "v1.34");
        let latest = policy(Baseline, "latest");
        assert!(!pinned.meets(&latest) && !latest.meets(&pinned));
        assert_eq!(pinned.join(&latest), policy(Restricted, "latest"));
        for a in &all {
            for b in &all {
                let joined = a.join(b);
                assert!(joined.meets(a) && joined.meets(b), "{a:?} {b:?}");
                // The weakest that meets both: anything meeting both meets the join.
                for c in all.iter().filter(|c| c.meets(a) && c.meets(b)) {
                    assert!(c.meets(&joined), "{c:?} meets {a:?} and {b:?}");
                }
                assert_eq!(joined, b.join(a));
            }
        }
        let composed = compose([(&pinned, "b"), (&latest, "a")].into_iter()).unwrap();
        assert_eq!(composed.policy, policy(Restricted, "latest"));
        assert_eq!((composed.level_from, composed.version_from), ("b", "a"));
        let tie = policy(Restricted, "latest");
        let composed = compose([(&tie, "z"), (&tie, "y")].into_iter()).unwrap();
        assert_eq!((composed.level_from, composed.version_from), ("y", "y"));
    }

    /// A namespace's own stricter level or newer version is kept; neither excuses the other.
    #[test]
    fn the_policy_to_apply_raises_level_and_version_each_on_its_own() {
        use PodSecurityLevel::{Baseline, Restricted};
        let labels = |l: &str, v: &str| {
            BTreeMap::from([
                (level_label("enforce"), l.to_string()),
                (version_label("enforce"), v.to_string()),
            ])
        };
        let apply =
            |composed: &PodSecurityPolicy, live| policy_to_apply("enforce", composed, &live);
        let latest = policy(Baseline, "latest");
        assert_eq!(
            apply(&latest, labels("restricted", "v1.34")),
            policy(Restricted, "latest")
        );
        let pinned = policy(Restricted, "v1.34");
        assert_eq!(
            apply(&pinned, labels("baseline", "v1.36")),
            policy(Restricted, "v1.36")
        );
        assert_eq!(
            apply(&pinned, labels("baseline", "v1.20")),
            pinned,
            "below the floor"
        );
        assert_eq!(
            apply(&pinned, labels("baseline", "v1.x")),
            pinned,
            "malformed"
        );
        assert_eq!(
            shortfall("enforce", &latest, &labels("restricted", "v1.35")),
            Some(Shortfall::Weakened(
                version_label("enforce"),
                "v1.35 instead of latest".into()
            ))
        );
    }

    /// The Rust ranks and the CEL's agree on every version the CEL reads.
    #[test]
    fn rust_and_cel_rank_versions_alike() {
        assert_eq!(cel_rank_of_version("latest"), CEL_LATEST_RANK);
        assert_eq!(cel_rank_of_version("v1.33"), 33);
        assert_eq!(cel_rank_of_version("v1.x"), -1);
        let ranks = cel_level_ranks();
        assert_eq!(
            ranks["expression"],
            "{'privileged': 0, 'baseline': 1, 'restricted': 2}"
        );
    }
}
