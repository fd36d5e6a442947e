//! What the admission policies need to know of the cluster: which kinds of admission policy the
//! API server serves (older servers lack the mutating one), and the operator's own user name, the
//! one identity allowed to change what a baseline owns.

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::api::PostParams;
use kube::{Api, Client};
use tracing::info;

use super::error::{Error, Failed, Operation};
use crate::engine::AdmissionSettings;

/// How the operator is known to the admission policies.
#[derive(Clone, Debug)]
pub struct AdmissionIdentity {
    /// The operator's user name; `None`: ask the API server who we are (SelfSubjectReview).
    pub operator_user: Option<String>,
    /// Members of this group may change what baselines own, on purpose.
    pub break_glass_group: String,
}

/// The default break-glass group: nobody is in it unless an administrator acts as it on purpose
/// (`kubectl --as <user> --as-group zerotrust:break-glass`).
pub const DEFAULT_BREAK_GLASS_GROUP: &str = "zerotrust:break-glass";

/// The default operator user: the ServiceAccount the shipped manifests run it as.
pub const DEFAULT_OPERATOR_USER: &str = "system:serviceaccount:zerotrust-system:zerotrust-operator";

/// Which admission policy kinds are served: (validating, mutating).
pub async fn served(client: &Client) -> Result<(bool, bool), Error> {
    match client
        .list_api_group_resources("admissionregistration.k8s.io/v1")
        .await
    {
        Ok(list) => {
            let has = |name: &str| list.resources.iter().any(|r| r.name == name);
            Ok((
                has("validatingadmissionpolicies"),
                has("mutatingadmissionpolicies"),
            ))
        }
        Err(kube::Error::Api(status)) if status.code == 404 => Ok((false, false)),
        Err(e) => Err(e).failed(
            Operation::Read,
            "APIResourceList",
            "",
            "admissionregistration.k8s.io/v1",
        ),
    }
}

/// The settings the policies are rendered with.
pub async fn admission_settings(
    client: &Client,
    identity: &AdmissionIdentity,
    operator_namespace: &str,
) -> Result<AdmissionSettings, Error> {
    let (validating, mutating) = served(client).await?;
    let operator_user = match &identity.operator_user {
        Some(user) => user.clone(),
        None => whoami(client).await?,
    };
    info!(
        operator_user,
        validating, mutating, "admission policies: rendered for this identity"
    );
    Ok(AdmissionSettings {
        operator_user,
        break_glass_group: identity.break_glass_group.clone(),
        operator_namespace: operator_namespace.to_string(),
        validating,
        mutating,
    })
}

/// Our user name as the API server authenticates us.
async fn whoami(client: &Client) -> Result<String, Error> {
    let review = SelfSubjectReview::default();
    let answer = Api::<SelfSubjectReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .failed(Operation::Create, "SelfSubjectReview", "", "")?;
    Ok(answer
        .status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username)
        .unwrap_or_default())
}
