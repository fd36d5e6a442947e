//! Where the Kubernetes API server answers, for `allowAPIServer`: the `kubernetes` Service's
//! cluster IPs and port, and the addresses and ports of its EndpointSlices, read from the cluster
//! (never typed into a baseline) and kept current by a watch of namespace `default` only.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::stream::BoxStream;
use futures::{StreamExt, future};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::ListParams;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use parking_lot::Mutex;

use super::error::{Error, Failed, Operation};
use super::watches::watch_backoff;
use crate::engine::Endpoint;

const NAMESPACE: &str = "default";
const SERVICE: &str = "kubernetes";
const SLICES: &str = "kubernetes.io/service-name=kubernetes";

/// The API server's endpoints as last read.
#[derive(Default)]
pub struct ApiServerAddresses {
    endpoints: Mutex<Vec<Endpoint>>,
    /// Both the Service and its slices have been listed: until then the endpoints are unknown,
    /// not absent, and nothing is rendered from them.
    synced: AtomicBool,
}

impl ApiServerAddresses {
    pub fn get(&self) -> Vec<Endpoint> {
        self.endpoints.lock().clone()
    }

    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// Replaces the endpoints; true when they changed.
    fn set(&self, now: Vec<Endpoint>) -> bool {
        let mut endpoints = self.endpoints.lock();
        let changed = *endpoints != now;
        *endpoints = now;
        changed
    }
}

/// The endpoints of the `kubernetes` Service: its cluster IPs on its ports (what pods connect
/// to), and its EndpointSlices' ready addresses on their ports (what that is translated to).
pub fn endpoints<'a>(
    service: Option<&Service>,
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
) -> Vec<Endpoint> {
    let mut found = Vec::new();
    if let Some(spec) = service.and_then(|s| s.spec.as_ref()) {
        let ips = spec
            .cluster_ips
            .clone()
            .or_else(|| spec.cluster_ip.clone().map(|ip| vec![ip]))
            .unwrap_or_default();
        for ip in ips
            .iter()
            .filter(|ip| ip.parse::<std::net::IpAddr>().is_ok())
        {
            for port in spec.ports.iter().flatten() {
                found.push(Endpoint {
                    address: ip.clone(),
                    port: port.port,
                });
            }
        }
    }
    for slice in slices {
        let ports: Vec<i32> = slice
            .ports
            .iter()
            .flatten()
            .filter_map(|p| p.port)
            .collect();
        let ready = slice
            .endpoints
            .iter()
            .flatten()
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true));
        for address in ready.flat_map(|e| &e.addresses) {
            if address.parse::<std::net::IpAddr>().is_err() {
                continue;
            }
            for port in &ports {
                found.push(Endpoint {
                    address: address.clone(),
                    port: *port,
                });
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

/// Reads the endpoints once (for `check`).
pub async fn read(client: &Client) -> Result<Vec<Endpoint>, Error> {
    let services: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    let service =
        services
            .get_opt(SERVICE)
            .await
            .failed(Operation::Read, "Service", NAMESPACE, SERVICE)?;
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), NAMESPACE);
    let slices = slices
        .list(&ListParams::default().labels(SLICES))
        .await
        .failed(Operation::List, "EndpointSlice", NAMESPACE, "")?;
    Ok(endpoints(service.as_ref(), &slices.items))
}

/// Keeps `addresses` current; yields each time the endpoints change. Reflector stores hold
/// the Service and slices, so a relist after a dropped watch forgets what vanished meanwhile.
pub fn watch(client: &Client, addresses: Arc<ApiServerAddresses>) -> BoxStream<'static, ()> {
    let (services, service_writer) = reflector::store::<Service>();
    let (slices, slice_writer) = reflector::store::<EndpointSlice>();
    let service_events = reflector::reflector(
        service_writer,
        watcher(
            Api::<Service>::namespaced(client.clone(), NAMESPACE),
            watcher::Config::default().fields(&format!("metadata.name={SERVICE}")),
        ),
    )
    .backoff(watch_backoff())
    .map(|event| (true, matches!(event, Ok(watcher::Event::InitDone))));
    let slice_events = reflector::reflector(
        slice_writer,
        watcher(
            Api::<EndpointSlice>::namespaced(client.clone(), NAMESPACE),
            watcher::Config::default().labels(SLICES),
        ),
    )
    .backoff(watch_backoff())
    .map(|event| (false, matches!(event, Ok(watcher::Event::InitDone))));
    let (mut service_listed, mut slices_listed) = (false, false);
    futures::stream::select(service_events, slice_events)
        .filter_map(move |(service, listed)| {
            if listed {
                if service {
                    service_listed = true;
                } else {
                    slices_listed = true;
                }
            }
            let changed = addresses.set(current(&services, &slices));
            let now_synced = service_listed && slices_listed && !addresses.synced();
            if now_synced {
                addresses.synced.store(true, Ordering::Release);
            }
            future::ready((addresses.synced() && changed || now_synced).then_some(()))
        })
        .boxed()
}

fn current(services: &Store<Service>, slices: &Store<EndpointSlice>) -> Vec<Endpoint> {
    let service = services.state().into_iter().next();
    let slices = slices.state();
    endpoints(service.as_deref(), slices.iter().map(|s| s.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_service_and_its_ready_slice_addresses() {
        let service: Service = serde_json::from_value(json!({
            "metadata": {"name": "kubernetes"},
            "spec": {"clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1"], "ports": [{"port": 443}]},
        }))
        .unwrap();
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "kubernetes"},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["192.0.2.10"], "conditions": {"ready": true}},
                {"addresses": ["192.0.2.11"], "conditions": {"ready": false}},
            ],
            "ports": [{"port": 6443}],
        }))
        .unwrap();
        let found = endpoints(Some(&service), [&slice]);
        let pairs: Vec<(&str, i32)> = found.iter().map(|e| (e.address.as_str(), e.port)).collect();
        assert_eq!(pairs, [("10.0.0.1", 443), ("192.0.2.10", 6443)]);
        assert!(endpoints(None, []).is_empty());
        let addresses = ApiServerAddresses::default();
        assert!(addresses.set(found.clone()));
        assert!(!addresses.set(found), "no change");
        assert_eq!(addresses.get().len(), 2);
    }
}
