//! The command line as a user runs it: the offline preview and the CRD printer.

use std::process::{Command, Output};

fn operator(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_zerotrust-operator"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn render_previews_the_restricted_example() {
    let out = operator(&[
        "render",
        "-f",
        "examples/restricted-tenants.yaml",
        "--namespace",
        "team-a",
        "--label",
        "tenant=true",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = stdout(&out);
    for expected in [
        "kind: NetworkPolicy",
        "name: zt-restricted-tenants-default-deny",
        "kind: Role",
        "kind: RoleBinding",
        "name: team-a-viewers",
        "kind: ResourceQuota",
        "kind: LimitRange",
        "pod-security.kubernetes.io/enforce: restricted",
        "automountServiceAccountToken: false",
        "app.kubernetes.io/managed-by: zerotrust-operator",
    ] {
        assert!(
            yaml.contains(expected),
            "render output lacks {expected:?}:\n{yaml}"
        );
    }
}

#[test]
fn render_of_an_unselected_namespace_says_so() {
    let out = operator(&[
        "render",
        "-f",
        "examples/restricted-tenants.yaml",
        "--namespace",
        "team-a",
    ]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(text.contains("No baseline selects namespace \"team-a\""));
    // Nothing for the namespace; the baseline's cluster-scoped admission policies still show.
    let (namespaced, cluster) = text
        .split_once("# Cluster-scoped")
        .expect("the admission policies section");
    assert!(!namespaced.contains("kind:"), "{namespaced}");
    assert!(cluster.contains("kind: ValidatingAdmissionPolicy"));
}

#[test]
fn render_of_an_invalid_baseline_names_the_field_and_fails() {
    let dir = std::env::temp_dir().join(format!("zt-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        ("spec:\n  mode: Enforcee\n", "spec.mode"),
        (
            "spec:\n  networkPolicy: {defaultDeny: [Ingress], allowDNS: true}\n",
            "spec.networkPolicy.allowDNS",
        ),
        (
            "spec:\n  rbac: {roles: [{name: r, rules: [{apiGroups: [''], resources: [pods], verbs: ['*']}]}]}\n",
            "spec.rbac.roles[0].rules[0].verbs",
        ),
        (
            "spec:\n  resourceQuota: {hard: {cpu: lots}}\n",
            "spec.resourceQuota.hard",
        ),
        (
            "spec:\n  podSecuirty: {enforce: restricted}\n",
            "spec.podSecuirty",
        ),
    ];
    for (i, (spec, field)) in cases.iter().enumerate() {
        let file = dir.join(format!("bad-{i}.yaml"));
        std::fs::write(&file, format!("apiVersion: zerotrust.dev/v1alpha1\nkind: SecurityBaseline\nmetadata: {{name: bad}}\n{spec}")).unwrap();
        let out = operator(&["render", "-f", file.to_str().unwrap(), "--namespace", "x"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{spec} should fail");
        assert!(
            stderr.contains(field),
            "{spec}: error should name {field}: {stderr}"
        );
        assert!(
            stdout(&out).is_empty(),
            "nothing is printed for an invalid baseline"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn every_subcommand_explains_itself() {
    for args in [
        vec!["--help"],
        vec!["render", "--help"],
        vec!["crd", "--help"],
    ] {
        let out = operator(&args);
        assert!(out.status.success(), "{args:?}");
        assert!(stdout(&out).len() > 100, "{args:?} help is substantial");
    }
}

#[test]
fn crd_command_prints_the_committed_crd() {
    let out = operator(&["crd"]);
    assert!(out.status.success());
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crds/securitybaseline.yaml"
    ))
    .unwrap();
    assert_eq!(stdout(&out), committed);
}

#[test]
fn check_json_without_a_readable_cluster_exits_2_with_nothing_on_stdout() {
    // No cluster needed: the kubeconfig does not exist, so the check stops before any request.
    let missing = std::env::temp_dir().join("zt-cli-no-such-kubeconfig");
    for format in ["json", "yaml"] {
        let out = operator(&[
            "check",
            "-o",
            format,
            "--kubeconfig",
            missing.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{format}: {stderr}");
        assert!(stderr.starts_with("error:"), "{format}: {stderr}");
        assert!(out.stdout.is_empty(), "{format}: {}", stdout(&out));
    }
}

#[test]
fn check_output_is_text_json_or_yaml() {
    let out = operator(&["check", "-o", "xml"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("text") && stderr.contains("json") && stderr.contains("yaml"),
        "{stderr}"
    );
}
