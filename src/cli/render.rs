//! `zerotrust-operator render`: the offline preview. It runs the operator's own engine, so what it
//! prints is what the operator would apply.

use k8s_openapi::jiff::Timestamp;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::api::parse_baselines;
use crate::controller::{DEFAULT_BREAK_GLASS_GROUP, DEFAULT_OPERATOR_USER};
use crate::engine::{
    AdmissionSettings, DEFAULT_OPERATOR_NAMESPACE, Endpoint, Environment, ValidBaseline, render,
    render_admission, validate,
};

#[derive(Debug, Args)]
#[command(
    about = "Preview, without a cluster, the objects a namespace would get",
    long_about = "Reads one or more SecurityBaselines from a YAML file and prints, as multi-document \
YAML, the objects the operator would create in the given namespace: NetworkPolicies, Roles, \
RoleBindings, ResourceQuota and LimitRange, plus the partial Namespace (its Pod Security labels) and \
the partial default ServiceAccount it would apply, then each baseline's cluster-scoped admission \
policies and bindings. Several baselines in one file render their composition. No cluster is contacted. An invalid baseline exits with status 1 and a message that \
names the field."
)]
pub struct RenderArgs {
    /// YAML file with one or more SecurityBaselines ('-' reads standard input).
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub file: PathBuf,

    /// The namespace to render for.
    #[arg(short, long, value_name = "NAME")]
    pub namespace: String,

    /// A label the namespace carries, for namespaceSelector matching (repeatable).
    #[arg(short, long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,

    /// The operator's namespace, which no baseline ever selects.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_OPERATOR_NAMESPACE)]
    pub operator_namespace: String,

    /// An address and port the API server answers at, ADDRESS:PORT (repeatable), for
    /// `allowAPIServer`; the operator reads them from the cluster.
    #[arg(long = "api-server", value_name = "ADDRESS:PORT", value_parser = parse_endpoint)]
    pub api_server: Vec<Endpoint>,

    /// The operator's user name, which the admission policies let change what baselines own.
    #[arg(long, value_name = "USER", default_value = DEFAULT_OPERATOR_USER)]
    pub operator_user: String,

    /// The break-glass group the admission policies let through.
    #[arg(long, value_name = "GROUP", default_value = DEFAULT_BREAK_GLASS_GROUP)]
    pub break_glass_group: String,
}

fn parse_endpoint(text: &str) -> Result<Endpoint, String> {
    let (address, port) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("{text:?} is not ADDRESS:PORT"))?;
    let address = address.trim_start_matches('[').trim_end_matches(']');
    address
        .parse::<std::net::IpAddr>()
        .map_err(|e| format!("{address:?}: {e}"))?;
    let port = port.parse().map_err(|e| format!("{port:?}: {e}"))?;
    Ok(Endpoint {
        address: address.to_string(),
        port,
    })
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))
}

pub fn run(args: RenderArgs) -> ExitCode {
    match render_to_yaml(&args) {
        Ok(yaml) => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Reads, validates and renders; every error is a message for the user.
pub fn render_to_yaml(args: &RenderArgs) -> Result<String, String> {
    let text = if args.file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("reading standard input: {e}"))?;
        text
    } else {
        std::fs::read_to_string(&args.file)
            .map_err(|e| format!("reading {}: {e}", args.file.display()))?
    };
    let file = args.file.display();
    let baselines = parse_baselines(&text).map_err(|e| format!("{file}: {e}"))?;
    let valid: Vec<ValidBaseline> = baselines
        .iter()
        .map(|b| validate(b, Timestamp::now().as_second()).map_err(|e| format!("{file}: {e}")))
        .collect::<Result<_, _>>()?;
    let mut labels: BTreeMap<String, String> = args.labels.iter().cloned().collect();
    // The API server sets this label on every namespace; selectors may rely on it.
    labels.insert(
        "kubernetes.io/metadata.name".to_string(),
        args.namespace.clone(),
    );
    let env = Environment {
        api_server: args.api_server.clone(),
        ..Environment::new(&args.operator_namespace)
    };
    let desired = render(&valid, &args.namespace, &labels, &env);
    let names: Vec<&str> = desired.baselines.iter().map(|b| b.name.as_str()).collect();
    let mut out = if names.is_empty() {
        format!("# No baseline selects namespace {:?}.\n", args.namespace)
    } else {
        format!(
            "# Namespace {:?} under SecurityBaseline(s) {}.\n",
            args.namespace,
            names.join(", ")
        )
    };
    // Exempt controls are left out of what follows; say which, and why.
    for e in &desired.exempt {
        out.push_str(&format!("# Exempt under {}: {e}\n", e.baseline));
    }
    let manifests = desired.manifests();
    if !manifests.is_empty() {
        let yaml = serde_saphyr::to_string_multiple(&manifests)
            .map_err(|e| format!("writing YAML: {e}"))?;
        out.push_str("---\n");
        out.push_str(&yaml);
    }
    // The cluster-scoped admission policies of each baseline, for an API server that serves them.
    let settings = AdmissionSettings {
        operator_user: args.operator_user.clone(),
        break_glass_group: args.break_glass_group.clone(),
        operator_namespace: args.operator_namespace.clone(),
        validating: true,
        mutating: true,
    };
    let admission: Vec<serde_json::Value> = valid
        .iter()
        .flat_map(|b| render_admission(b, &settings, env.now))
        .map(|o| serde_json::to_value(o).expect("k8s objects serialize"))
        .collect();
    if !admission.is_empty() {
        let yaml = serde_saphyr::to_string_multiple(&admission)
            .map_err(|e| format!("writing YAML: {e}"))?;
        out.push_str(
            "---\n# Cluster-scoped: the baselines' admission policies and bindings.\n---\n",
        );
        out.push_str(&yaml);
    }
    Ok(out)
}
