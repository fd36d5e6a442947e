//! Pod Security Admission, in one place: its labels, levels and versions, how two policies
//! compare and compose (the strictest wins), what a namespace's labels fall short of, and the same
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
/// without counting as weakened): v1.30. Older pins leave out checks the restricted level has
/// since gained (at v1.0 it did not check privilege escalation, capabilities or runAsUser), so a
/// pin is a way to weaken a namespace; v1.30 is the oldest minor still under a major provider's
/// extended support in 2026, and the first with GA admission policies.
pub const PSA_VERSION_FLOOR: u32 = 30;

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
    /// How strict the policy is: the level first, then the version (`latest` above every
    /// `v1.NN`, a newer minor above an older one), so a pin cannot beat a stricter level.
    pub fn strictness(&self) -> (PodSecurityLevel, u32) {
        (
            self.level,
            version_rank(&self.version).unwrap_or(LATEST_RANK),
        )
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

/// The strictest of `candidates` (a policy and the baseline asking for it): level first, then
/// version; ties go to the first baseline by name.
pub fn strictest<'a>(
    candidates: impl Iterator<Item = (&'a PodSecurityPolicy, &'a str)>,
) -> Option<(&'a PodSecurityPolicy, &'a str)> {
    candidates.max_by(|a, b| {
        a.0.strictness()
            .cmp(&b.0.strictness())
            .then_with(|| b.1.cmp(a.1))
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

/// Whether the namespace's labels for `mode` hold at least `wanted`. A level is compared first;
/// for the same level a version at least as new; a version label that is malformed or older than
/// the floor falls short whatever the level (Pod Security admission falls back to the cluster
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
    if have.strictness() >= wanted.strictness() {
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

/// The policy to write for `mode`: `composed`, or the namespace's own where that is stricter (we
/// never weaken a namespace). A stricter level is kept with its version when that version is
/// valid and not older than the floor, else with the composed version.
pub fn policy_to_apply(
    mode: &str,
    composed: &PodSecurityPolicy,
    labels: &BTreeMap<String, String>,
) -> PodSecurityPolicy {
    let live_level = labels
        .get(&level_label(mode))
        .and_then(|l| PodSecurityLevel::parse(l));
    let Some(level) = live_level.filter(|l| *l >= composed.level) else {
        return composed.clone();
    };
    let live_version = labels
        .get(&version_label(mode))
        .map(String::as_str)
        .unwrap_or("latest");
    let rank = |v: &str| version_rank(v).filter(|r| *r >= PSA_VERSION_FLOOR);
    let version = match rank(live_version) {
        Some(_) if level > composed.level => live_version,
        Some(r) if rank(&composed.version).is_none_or(|c| r > c) => live_version,
        _ => composed.version.as_str(),
    };
    PodSecurityPolicy {
        level,
        version: version.to_string(),
    }
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

    #[test]
    fn a_pinnable_version_is_latest_or_a_canonical_minor_from_the_floor() {
        assert!(
            is_valid_version("v1.33") && is_valid_version("latest") && !is_valid_version("v1.")
        );
        assert!(is_valid_version("v1.30") && is_valid_version("v1.100"));
        assert!(
            !is_valid_version("v1.29") && !is_valid_version("v1.0") && !is_valid_version("v1.030")
        );
        assert!(!is_valid_version("v1.1000") && !is_valid_version("v1.+33"));
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
