//! A default-deny teams can live with, on the real control plane: every example applies as it is,
//! every kind of allow rule is written as rendered and repaired when widened, a namespace that
//! labels itself like an allowed one gains nothing through a rule by name, and the allow to the
//! API server follows the API server's endpoints as they change.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Patch, PatchParams, PostParams};
use kube::core::{Selector, SelectorExt};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use zerotrust_operator::api::parse_baselines;
use zerotrust_operator::engine::{Endpoint, Environment, Kind, Object, compare, render, validate};
use zerotrust_testkit::*;

const WAIT: Duration = Duration::from_secs(30);

/// Deletes the named baselines when the test ends, passed or failed.
struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for name in &self.0 {
            delete_baseline(name);
        }
    }
}

fn compliant(s: &zerotrust_operator::api::SecurityBaselineStatus) -> bool {
    s.compliant_namespaces == 1 && condition(s, "Ready").is_some_and(|(st, _, _)| st == "True")
}

/// What the engine renders for `namespace` (with `labels`) from the baseline `yaml`.
fn rendered(
    yaml: &str,
    namespace: &str,
    labels: &[(&str, &str)],
    api_server: &[Endpoint],
) -> Vec<Object> {
    let valid: Vec<_> = parse_baselines(yaml)
        .expect("parses")
        .iter()
        .map(|b| validate(b, k8s_openapi::jiff::Timestamp::now().as_second()).expect("valid"))
        .collect();
    let mut labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    labels.insert("kubernetes.io/metadata.name".into(), namespace.into());
    let env = Environment {
        api_server: api_server.to_vec(),
        ..Environment::new("zerotrust-system")
    };
    render(&valid, namespace, &labels, &env)
        .objects
        .into_iter()
        .map(|d| d.object)
        .collect()
}

async fn live_policy(client: &Client, namespace: &str, name: &str) -> Option<Object> {
    let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), namespace);
    let found = api.get_opt(name).await.ok()??;
    Object::from_json(Kind::NetworkPolicy, &serde_json::to_vec(&found).ok()?).ok()
}

/// Waits until every NetworkPolicy in `wanted` is in `namespace` as rendered.
async fn wait_as_rendered(client: &Client, namespace: &str, wanted: &[Object], what: &str) {
    eventually(WAIT, what, || async {
        for object in wanted.iter().filter(|o| o.kind() == Kind::NetworkPolicy) {
            let live = live_policy(client, namespace, object.name()).await?;
            if compare(object, &live).is_some() {
                return None;
            }
        }
        Some(())
    })
    .await;
}

#[tokio::test]
async fn every_example_applies_as_it_is() {
    let dir = zerotrust_testkit::cluster::repo().join("examples");
    let mut applied = 0;
    for entry in std::fs::read_dir(&dir).expect("examples/") {
        let path = entry.expect("an entry").path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        // The API server's own validation (schema and CEL rules), without changing the cluster.
        let out = control_plane().kubectl(
            &[
                "apply",
                "--server-side",
                "--dry-run=server",
                "-f",
                path.to_str().unwrap(),
            ],
            None,
        );
        assert!(out.status.success(), "{}: {}", path.display(), stderr(&out));
        // And the operator's: valid as it is.
        let text = std::fs::read_to_string(&path).unwrap();
        for b in parse_baselines(&text).unwrap() {
            validate(&b, k8s_openapi::jiff::Timestamp::now().as_second())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
        applied += 1;
    }
    assert!(applied >= 6, "{applied} examples");
}

const ALLOWS: &str = r#"networkPolicy:
  defaultDeny: [Ingress, Egress]
  allowDNS: true
  dns: {provider: NodeLocalDNSCache}
  allow:
    - name: ingress
      direction: Ingress
      peers:
        - namespace: ingress-nginx
          pods: {matchLabels: {app: controller}}
        - namespaceSelector: {matchLabels: {team: platform}}
        - pods: {matchLabels: {role: frontend}}
      ports: [{port: 8080}, {port: http}, {protocol: UDP, port: 9000, endPort: 9100}]
    - name: databases
      direction: Egress
      peers: [{cidr: 10.20.0.0/16, except: [10.20.5.0/24]}]
      ports: [{protocol: TCP, port: 5432}]"#;

#[tokio::test]
async fn every_allow_rule_kind_is_written_as_rendered_and_widening_edits_are_repaired() {
    operator();
    let client = client().await;
    let tag = unique("allows");
    let _ns = namespace(&client, &tag, &[("zt-test", &tag)]).await;
    let _cleanup = Cleanup(vec![tag.clone()]);
    let yaml = baseline(&tag, &tag, ALLOWS);
    apply(&yaml);
    let wanted = rendered(&yaml, &tag, &[("zt-test", &tag)], &[]);
    assert_eq!(
        wanted
            .iter()
            .filter(|o| o.kind() == Kind::NetworkPolicy)
            .count(),
        4,
        "default-deny, dns and two allows"
    );
    wait_as_rendered(&client, &tag, &wanted, "the allow policies as rendered").await;
    wait_status(&client, &tag, WAIT, "compliant", compliant).await;

    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &tag);
    let ingress = format!("zt-{tag}-allow-ingress");
    let databases = format!("zt-{tag}-allow-databases");
    let edits = [
        // Another peer: every namespace.
        (
            &ingress,
            json!([{"op": "add", "path": "/spec/ingress/0/from/-", "value": {"namespaceSelector": {}}}]),
        ),
        // A wider block.
        (
            &databases,
            json!([{"op": "replace", "path": "/spec/egress/0/to/0/ipBlock/cidr", "value": "10.0.0.0/8"}]),
        ),
        // Another port.
        (
            &ingress,
            json!([{"op": "replace", "path": "/spec/ingress/0/ports/0/port", "value": 22}]),
        ),
    ];
    for (name, patch) in edits {
        policies
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Json::<()>(serde_json::from_value(patch.clone()).unwrap()),
            )
            .await
            .unwrap_or_else(|e| panic!("{name} {patch}: {e}"));
        wait_as_rendered(
            &client,
            &tag,
            &wanted,
            &format!("{name} repaired after {patch}"),
        )
        .await;
    }
    let status = wait_status(
        &client,
        &tag,
        WAIT,
        "compliant, with the three repairs counted",
        // The count is written with the next status, which may come after compliance shows.
        |s| compliant(s) && s.repairs >= 3,
    )
    .await;
    assert!(status.drift.is_empty(), "{status:?}");
    let check = check_baseline(&tag);
    assert!(check.status.success(), "{}", stdout(&check));
}

#[tokio::test]
async fn a_namespace_labelled_like_an_allowed_one_gains_nothing_through_a_rule_by_name() {
    operator();
    let client = client().await;
    let tag = unique("spoof");
    let (ingress, evil) = (format!("{tag}-ing"), format!("{tag}-evil"));
    let _namespaces = [
        namespace(&client, &tag, &[("zt-test", &tag)]).await,
        namespace(&client, &ingress, &[("team", "ingress")]).await,
    ];
    let _cleanup = Cleanup(vec![tag.clone()]);
    apply(&baseline(
        &tag,
        &tag,
        &format!(
            "networkPolicy:\n  defaultDeny: [Ingress]\n  allow:\n    - {{name: by-name, direction: Ingress, peers: [{{namespace: {ingress}}}]}}\n    - {{name: by-label, direction: Ingress, peers: [{{namespaceSelector: {{matchLabels: {{team: ingress}}}}}}]}}"
        ),
    ));
    wait_status(&client, &tag, WAIT, "compliant", compliant).await;

    // Someone who may create and label namespaces copies every label of the allowed one,
    // its name label included.
    let labeller = namespace_labeller(&format!("{tag}-labeller")).await;
    let copied = Api::<Namespace>::all(client.clone())
        .get(&ingress)
        .await
        .unwrap()
        .labels()
        .clone();
    let impostor: Namespace = serde_json::from_value(json!({
        "metadata": {"name": evil, "labels": copied},
    }))
    .unwrap();
    let namespaces: Api<Namespace> = Api::all(labeller.clone());
    let _evil_guard = NamespaceGuard { name: evil.clone() };
    namespaces
        .create(&PostParams::default(), &impostor)
        .await
        .expect("a labeller may create namespaces");
    let patch = json!({"metadata": {"labels": {"kubernetes.io/metadata.name": ingress}}});
    let relabel = namespaces
        .patch(&evil, &PatchParams::default(), &Patch::Merge(&patch))
        .await;
    let labels = namespaces.get(&evil).await.unwrap().labels().clone();
    // The API server keeps the name label true to the name, whatever was asked.
    assert_eq!(
        labels.get("kubernetes.io/metadata.name"),
        Some(&evil),
        "{relabel:?}"
    );

    let peer_selector = |policy: &NetworkPolicy| -> Selector {
        let from = policy.spec.as_ref().unwrap().ingress.as_ref().unwrap()[0]
            .from
            .as_ref()
            .unwrap()[0]
            .namespace_selector
            .clone()
            .unwrap();
        Selector::try_from(from).unwrap()
    };
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &tag);
    let by_name = policies
        .get(&format!("zt-{tag}-allow-by-name"))
        .await
        .unwrap();
    let by_label = policies
        .get(&format!("zt-{tag}-allow-by-label"))
        .await
        .unwrap();
    assert!(
        !peer_selector(&by_name).matches(&labels),
        "by name: not the impostor"
    );
    assert!(
        peer_selector(&by_name).matches(&copied),
        "by name: the real one"
    );
    // What the documentation warns of: a selector on labels others can set is spoofable.
    assert!(peer_selector(&by_label).matches(&labels));
    // The packets themselves: tests/dataplane.rs, allow rules.
}

#[tokio::test]
async fn the_api_server_allow_follows_its_endpoints_as_they_change() {
    operator();
    let client = client().await;
    let tag = unique("apisrv");
    let _ns = namespace(&client, &tag, &[("zt-test", &tag)]).await;
    let _cleanup = Cleanup(vec![tag.clone()]);
    // The test API server runs without its endpoint reconciler: the `kubernetes` Service's
    // slice is ours to write, as a cloud's API server endpoints would move.
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let slice_name = format!("kubernetes-{tag}");
    let slice = |address: &str| -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"name": slice_name, "labels": {"kubernetes.io/service-name": "kubernetes", "zt-test": "api-server-slice"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [address], "conditions": {"ready": true}}],
            "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}],
        }))
        .unwrap()
    };
    struct SliceGuard(String);
    impl Drop for SliceGuard {
        fn drop(&mut self) {
            control_plane().kubectl(
                &[
                    "delete",
                    "endpointslice",
                    "-n",
                    "default",
                    &self.0,
                    "--ignore-not-found",
                ],
                None,
            );
        }
    }
    // A run that died before its cleanup leaves a slice behind: its address would be allowed too.
    control_plane().kubectl(
        &[
            "delete",
            "endpointslice",
            "-n",
            "default",
            "-l",
            "zt-test=api-server-slice",
        ],
        None,
    );
    slices
        .create(&PostParams::default(), &slice("192.0.2.10"))
        .await
        .expect("slice created");
    let _slice = SliceGuard(slice_name.clone());
    let yaml = baseline(
        &tag,
        &tag,
        "networkPolicy: {defaultDeny: [Egress], allowAPIServer: true}",
    );
    apply(&yaml);
    let service_ip =
        Api::<k8s_openapi::api::core::v1::Service>::namespaced(client.clone(), "default")
            .get("kubernetes")
            .await
            .unwrap()
            .spec
            .unwrap()
            .cluster_ip
            .unwrap();
    let endpoints = |address: &str| {
        vec![
            Endpoint {
                address: service_ip.clone(),
                port: 443,
            },
            Endpoint {
                address: address.to_string(),
                port: 6443,
            },
        ]
    };
    let first = rendered(&yaml, &tag, &[("zt-test", &tag)], &endpoints("192.0.2.10"));
    wait_as_rendered(
        &client,
        &tag,
        &first,
        "the allow to the API server's addresses",
    )
    .await;
    wait_status(&client, &tag, WAIT, "compliant", compliant).await;

    // The API server moves: the policy follows, without any change to the baseline.
    slices
        .replace(&slice_name, &PostParams::default(), &{
            let mut moved = slice("192.0.2.11");
            moved.metadata.resource_version = slices
                .get(&slice_name)
                .await
                .unwrap()
                .metadata
                .resource_version;
            moved
        })
        .await
        .expect("slice moved");
    let moved = rendered(&yaml, &tag, &[("zt-test", &tag)], &endpoints("192.0.2.11"));
    wait_as_rendered(
        &client,
        &tag,
        &moved,
        "the allow to the API server's new address",
    )
    .await;
    let check = check_baseline(&tag);
    assert!(check.status.success(), "{}", stdout(&check));
}
