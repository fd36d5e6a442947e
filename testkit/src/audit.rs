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

    /// Requests logged after `mark`, by verb.
    pub fn since(&self, mark: u64) -> Requests {
        let mut requests = Requests::new();
        let Ok(mut file) = std::fs::File::open(&self.path) else {
            return requests;
        };
        if file.seek(SeekFrom::Start(mark)).is_err() {
            return requests;
        }
        for line in std::io::BufReader::new(file).lines().map_while(Result::ok) {
            let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
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
