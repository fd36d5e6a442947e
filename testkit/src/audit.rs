//! The test control plane's audit log, which holds only the requests of the `zerotrust-operator`
//! identity (`operator.kubeconfig`): what the operator asked of the API server, by verb.

use std::collections::BTreeMap;
use std::io::{BufRead, Seek, SeekFrom};
use std::path::PathBuf;

/// Requests by verb (`get`, `list`, `watch`), writes by verb and resource (`patch networkpolicies`).
pub type Requests = BTreeMap<String, u64>;

pub const WRITE_VERBS: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];

/// How many of `requests` are writes.
pub fn writes(requests: &Requests) -> u64 {
    requests
        .iter()
        .filter(|(key, _)| {
            WRITE_VERBS
                .iter()
                .any(|v| key.starts_with(&format!("{v} ")))
        })
        .map(|(_, n)| n)
        .sum()
}

/// An audit log file, read from marks.
pub struct AuditLog {
    path: PathBuf,
}

impl AuditLog {
    pub fn new(path: PathBuf) -> AuditLog {
        AuditLog { path }
    }

    /// Where the log ends now: count from here with [`AuditLog::since`].
    pub fn mark(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
    }

    /// The log's entries after `mark`.
    fn entries(&self, mark: u64) -> Vec<serde_json::Value> {
        let Ok(mut file) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        if file.seek(SeekFrom::Start(mark)).is_err() {
            return Vec::new();
        }
        std::io::BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .filter_map(|line| serde_json::from_str(&line).ok())
            .collect()
    }

    /// Writes the API server carried out (answered below 400) after `mark`, each as
    /// `verb resource namespace/name code`: what the identity changed, not what it only tried.
    pub fn writes_done_since(&self, mark: u64) -> Vec<String> {
        self.entries(mark)
            .iter()
            .filter(|entry| {
                let verb = entry["verb"].as_str().unwrap_or_default();
                let code = entry["responseStatus"]["code"].as_u64().unwrap_or(0);
                WRITE_VERBS.contains(&verb) && code < 400
            })
            .map(|entry| {
                let field = |key: &str| entry["objectRef"][key].as_str().unwrap_or_default();
                format!(
                    "{} {} {}/{} {}",
                    entry["verb"].as_str().unwrap_or_default(),
                    field("resource"),
                    field("namespace"),
                    field("name"),
                    entry["responseStatus"]["code"]
                )
            })
            .collect()
    }

    /// Requests logged after `mark`, by verb.
    pub fn since(&self, mark: u64) -> Requests {
        let mut requests = Requests::new();
        for entry in self.entries(mark) {
            let field = |key: &str| entry["objectRef"][key].as_str().unwrap_or_default();
            if let Some(verb) = entry.get("verb").and_then(|v| v.as_str()) {
                // Writes name what they wrote, so an unexpected one can be traced.
                let key = if WRITE_VERBS.contains(&verb) {
                    match field("subresource") {
                        "" => format!("{verb} {}", field("resource")),
                        sub => format!("{verb} {}/{sub}", field("resource")),
                    }
                } else {
                    verb.to_string()
                };
                *requests.entry(key).or_default() += 1;
            }
        }
        requests
    }
}
