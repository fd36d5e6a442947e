//! What can go wrong: a reconcile fails only on an API request, and says which one; running the
//! operator can also fail on leader election.

use std::fmt;

/// What the operator was doing when a request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Read,
    List,
    Create,
    Apply,
    /// A JSON patch replacing the baseline-defined part of one of our objects.
    Replace,
    Delete,
    WriteStatus,
    UpdateFinalizer,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::List => "list",
            Operation::Create => "create",
            Operation::Apply => "apply",
            Operation::Replace => "replace",
            Operation::Delete => "delete",
            Operation::WriteStatus => "write_status",
            Operation::UpdateFinalizer => "update_finalizer",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed API request: what, on which object, and the client's error.
#[derive(Debug, thiserror::Error)]
#[error("{operation} {kind} {}: {source}", target(.namespace, .name))]
pub struct Error {
    pub operation: Operation,
    /// The object's kind, e.g. NetworkPolicy or SecurityBaseline.
    pub kind: &'static str,
    /// Empty for cluster-scoped objects and lists across namespaces.
    pub namespace: String,
    /// Empty for lists.
    pub name: String,
    #[source]
    pub source: Box<kube::Error>,
}

fn target(namespace: &str, name: &str) -> String {
    match (namespace, name) {
        ("", "") => "(all)".to_string(),
        ("", name) => name.to_string(),
        (namespace, "") => format!("{namespace}/*"),
        (namespace, name) => format!("{namespace}/{name}"),
    }
}

impl Error {
    /// The HTTP status the API server answered with, if it answered.
    pub fn status_code(&self) -> Option<u16> {
        match self.source.as_ref() {
            kube::Error::Api(status) => Some(status.code),
            _ => None,
        }
    }

    /// The `result` label of `zerotrust_reconciles_total`: which operation failed.
    pub fn metric_label(&self) -> &'static str {
        match self.operation {
            Operation::Read => "read_failed",
            Operation::List => "list_failed",
            Operation::Create => "create_failed",
            Operation::Apply => "apply_failed",
            Operation::Replace => "replace_failed",
            Operation::Delete => "delete_failed",
            Operation::WriteStatus => "write_status_failed",
            Operation::UpdateFinalizer => "update_finalizer_failed",
        }
    }

    /// The reason of the Warning Event that reports this failure.
    pub fn event_reason(&self) -> &'static str {
        match self.operation {
            Operation::Read => "ReadFailed",
            Operation::List => "ListFailed",
            Operation::Create => "CreateFailed",
            Operation::Apply => "ApplyFailed",
            Operation::Replace => "ReplaceFailed",
            Operation::Delete => "DeleteFailed",
            Operation::WriteStatus => "WriteStatusFailed",
            Operation::UpdateFinalizer => "UpdateFinalizerFailed",
        }
    }
}

/// Attaches what was being done to a client error.
pub trait Failed<T> {
    fn failed(
        self,
        operation: Operation,
        kind: &'static str,
        namespace: &str,
        name: &str,
    ) -> Result<T, Error>;
}

impl<T> Failed<T> for Result<T, kube::Error> {
    fn failed(
        self,
        operation: Operation,
        kind: &'static str,
        namespace: &str,
        name: &str,
    ) -> Result<T, Error> {
        self.map_err(|source| Error {
            operation,
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
            source: Box::new(source),
        })
    }
}

/// Why the operator stopped other than by request.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("starting: {0}")]
    Start(#[from] Error),
    #[error("leader election: {0}")]
    Lease(String),
    #[error("lost the leader lease (or was paused past its write bound); restart to stand by")]
    LeadershipLost,
    #[error("cluster client: {0}")]
    Client(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure("refused", "Forbidden")
                .with_code(code)
                .boxed(),
        )
    }

    #[test]
    fn says_what_failed_and_where() {
        let e: Result<(), _> = Err(api_error(403));
        let e = e
            .failed(
                Operation::Apply,
                "NetworkPolicy",
                "team-a",
                "zt-b-default-deny",
            )
            .unwrap_err();
        assert_eq!(e.status_code(), Some(403));
        assert_eq!(e.metric_label(), "apply_failed");
        assert_eq!(e.event_reason(), "ApplyFailed");
        let text = e.to_string();
        assert!(
            text.starts_with("apply NetworkPolicy team-a/zt-b-default-deny: "),
            "{text}"
        );
        let list: Result<(), _> = Err(api_error(500));
        let list = list.failed(Operation::List, "Role", "", "").unwrap_err();
        assert!(list.to_string().starts_with("list Role (all): "), "{list}");
    }
}
