//! Watches what the cluster holds and judges whether a namespace is compliant: the benchmark's
//! clock stops on what an observer of the API server sees. The judgement is the benchmark's own,
//! not the operator's `diff`: each rendered object's content (its spec, or a Role's rules and a
//! RoleBinding's roleRef and subjects) must equal the live one's, quantities compared by value
//! with a parser written here; both ownership labels and the operator's field manager must be on
//! it; the rendered Pod Security labels and the ServiceAccount's automount must be as rendered.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;

use serde_json::Value;
use zerotrust_operator::engine::{
    DEFAULT_OPERATOR_NAMESPACE, Environment, Kind, MANAGED_SELECTOR, Object, ValidBaseline, render,
};

/// The operator's field manager and ownership labels, as the README documents them.
const FIELD_MANAGER: &str = "zerotrust-operator";
const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "zerotrust-operator");
const BASELINE_LABEL: &str = "zerotrust.dev/baseline";

/// The value of a Kubernetes quantity (`500m`, `2`, `1.5Gi`, `1e3`), or None if `text` is not one.
fn quantity(text: &str) -> Option<f64> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exponent => 10f64.powi(exponent.strip_prefix(['e', 'E'])?.parse().ok()?),
    };
    Some(number * factor)
}

/// `value` with every string that is a quantity replaced by its value, so `1000m` and `1` agree.
fn normalise(value: &Value) -> Value {
    match value {
        Value::String(s) => quantity(s).map_or_else(|| value.clone(), Value::from),
        Value::Array(items) => Value::Array(items.iter().map(normalise).collect()),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), normalise(v))).collect())
        }
        other => other.clone(),
    }
}

/// The part of an object a baseline decides: what must be equal between rendered and live.
fn content(kind: Kind, object: &Value) -> Value {
    let fields: &[&str] = match kind {
        Kind::Role => &["rules"],
        Kind::RoleBinding => &["roleRef", "subjects"],
        _ => &["spec"],
    };
    Value::Object(
        fields
            .iter()
            .map(|f| (f.to_string(), normalise(&object[*f])))
            .collect(),
    )
}

/// Whether `live` is `rendered` as the operator's own object: same content, both ownership labels,
/// applied by the operator's field manager.
fn same_object(rendered: &Object, live: &Object, baseline: &str) -> bool {
    let kind = rendered.kind();
    let (Ok(rendered), Ok(live)) = (serde_json::to_value(rendered), serde_json::to_value(live))
    else {
        return false;
    };
    let labels = &live["metadata"]["labels"];
    let ours = labels[MANAGED_BY.0] == MANAGED_BY.1 && labels[BASELINE_LABEL] == baseline;
    let applied = live["metadata"]["managedFields"]
        .as_array()
        .is_some_and(|entries| entries.iter().any(|e| e["manager"] == FIELD_MANAGER));
    ours && applied && content(kind, &rendered) == content(kind, &live)
}

/// Reflector stores of everything a baseline writes. They keep `managedFields`: ownership (which
/// field manager applied an object) is part of compliance.
pub struct Tracker {
    namespaces: Store<Namespace>,
    network_policies: Store<NetworkPolicy>,
    roles: Store<Role>,
    role_bindings: Store<RoleBinding>,
    quotas: Store<ResourceQuota>,
    limit_ranges: Store<LimitRange>,
    service_accounts: Store<ServiceAccount>,
    tasks: Vec<JoinHandle<()>>,
}

fn reflect<K>(client: &Client, config: watcher::Config, tasks: &mut Vec<JoinHandle<()>>) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync,
    K: 'static,
{
    let (store, writer) = reflector::store();
    let stream = watcher(Api::<K>::all(client.clone()), config)
        .default_backoff()
        .reflect(writer)
        .for_each(|_| futures::future::ready(()));
    tasks.push(tokio::spawn(stream));
    store
}

impl Tracker {
    /// Starts the watches; namespaces are those matching `namespace_labels`.
    pub async fn start(client: &Client, namespace_labels: &str) -> Tracker {
        let mut tasks = Vec::new();
        let managed = || watcher::Config::default().labels(MANAGED_SELECTOR);
        let tracker = Tracker {
            namespaces: reflect(
                client,
                watcher::Config::default().labels(namespace_labels),
                &mut tasks,
            ),
            network_policies: reflect(client, managed(), &mut tasks),
            roles: reflect(client, managed(), &mut tasks),
            role_bindings: reflect(client, managed(), &mut tasks),
            quotas: reflect(client, managed(), &mut tasks),
            limit_ranges: reflect(client, managed(), &mut tasks),
            service_accounts: reflect(
                client,
                watcher::Config::default().fields("metadata.name=default"),
                &mut tasks,
            ),
            tasks,
        };
        for ready in [
            tracker.namespaces.wait_until_ready().await.is_ok(),
            tracker.network_policies.wait_until_ready().await.is_ok(),
            tracker.roles.wait_until_ready().await.is_ok(),
            tracker.role_bindings.wait_until_ready().await.is_ok(),
            tracker.quotas.wait_until_ready().await.is_ok(),
            tracker.limit_ranges.wait_until_ready().await.is_ok(),
            tracker.service_accounts.wait_until_ready().await.is_ok(),
        ] {
            assert!(ready, "a tracker watch stopped before its first list");
        }
        tracker
    }

    /// The watched namespace, if the watch has delivered it.
    pub fn namespace(&self, name: &str) -> Option<Arc<Namespace>> {
        self.namespaces.get(&ObjectRef::new(name))
    }

    /// Whether `namespace` has its default ServiceAccount yet (the controller-manager makes it).
    pub fn has_default_service_account(&self, namespace: &str) -> bool {
        self.service_accounts
            .get(&ObjectRef::new("default").within(namespace))
            .is_some()
    }

    /// The live object of `kind` named `name` in `namespace`.
    pub fn object(&self, kind: Kind, namespace: &str, name: &str) -> Option<Object> {
        fn get<K: Resource<DynamicType = ()> + Clone>(
            store: &Store<K>,
            namespace: &str,
            name: &str,
        ) -> Option<K> {
            store
                .get(&ObjectRef::new(name).within(namespace))
                .map(|o| (*o).clone())
        }
        Some(match kind {
            Kind::NetworkPolicy => {
                Object::NetworkPolicy(get(&self.network_policies, namespace, name)?)
            }
            Kind::Role => Object::Role(get(&self.roles, namespace, name)?),
            Kind::RoleBinding => Object::RoleBinding(get(&self.role_bindings, namespace, name)?),
            Kind::ResourceQuota => Object::ResourceQuota(get(&self.quotas, namespace, name)?),
            Kind::LimitRange => Object::LimitRange(get(&self.limit_ranges, namespace, name)?),
            Kind::Namespace
            | Kind::ServiceAccount
            | Kind::ValidatingAdmissionPolicy
            | Kind::ValidatingAdmissionPolicyBinding
            | Kind::MutatingAdmissionPolicy
            | Kind::MutatingAdmissionPolicyBinding => return None,
        })
    }

    /// True when the namespace is selected and holds what `baseline` renders for it, judged
    /// independently of the operator's engine (see the module's opening comment).
    pub fn compliant(&self, baseline: &ValidBaseline, namespace: &str) -> bool {
        self.shortfall(baseline, namespace).is_none()
    }

    /// What keeps `namespace` from being compliant with `baseline`, if anything.
    pub fn shortfall(&self, baseline: &ValidBaseline, namespace: &str) -> Option<String> {
        let Some(ns) = self.namespace(namespace) else {
            return Some("the namespace is not seen".to_string());
        };
        let labels: BTreeMap<String, String> = ns.labels().clone();
        let desired = render(
            std::slice::from_ref(baseline),
            namespace,
            &labels,
            &Environment::new(DEFAULT_OPERATOR_NAMESPACE),
        );
        if desired.is_empty() {
            return Some("the baseline does not select it".to_string());
        }
        for d in &desired.objects {
            let (kind, name) = (d.object.kind(), d.object.name());
            match self.object(kind, namespace, name) {
                None => return Some(format!("{} {name} missing", kind.as_str())),
                Some(live) if !same_object(&d.object, &live, baseline.name()) => {
                    return Some(format!("{} {name} differs", kind.as_str()));
                }
                Some(_) => {}
            }
        }
        for (key, wanted) in &desired.namespace_labels {
            if labels.get(key) != Some(&wanted.value) {
                return Some(format!("label {key} is {:?}", labels.get(key)));
            }
        }
        let token_off = self
            .service_accounts
            .get(&ObjectRef::new("default").within(namespace))
            .is_some_and(|sa| sa.automount_service_account_token == Some(false));
        if desired.disable_default_token_automount.is_some() && !token_off {
            return Some("the default ServiceAccount automounts its token".to_string());
        }
        None
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
