//! The shipped manifests on the real control plane: `config/default` installs, the operator runs end
//! to end with nothing but its own ServiceAccount's permissions (impersonated), it is refused what it
//! must not do, and spec.rbac.roles works only with the opt-in delegation. Also: the Dockerfile's
//! final stage is non-root with no shell.

use zerotrust_testkit::shipped_rbac::{kubectl_ok, the_operator_runs_as_its_service_account};

#[tokio::test]
async fn the_shipped_rbac_suffices_and_refuses_what_it_must() {
    kubectl_ok(&["apply", "-k", "config/default"]);
    the_operator_runs_as_its_service_account(|delegate| {
        let verb = if delegate { "apply" } else { "delete" };
        kubectl_ok(&[verb, "-k", "config/rbac-delegation"]);
    })
    .await;
}

#[test]
fn the_dockerfile_runs_as_non_root_with_no_shell() {
    let dockerfile =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile")).unwrap();
    let stages: Vec<&str> = dockerfile.split("\nFROM ").collect();
    assert!(
        stages.len() >= 3,
        "multi-stage: a build stage and a runtime stage"
    );
    assert!(
        stages[1].contains("cargo build --release --locked"),
        "the build stage builds what CI builds"
    );
    let runtime = stages.last().unwrap();
    let image = runtime.lines().next().unwrap();
    assert!(
        image.contains("distroless") && image.contains(":nonroot"),
        "a distroless non-root base: {image}"
    );
    let instructions: Vec<&str> = runtime
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert!(
        !instructions.iter().any(|l| l.starts_with("RUN ")),
        "no RUN in the runtime stage: it has no shell"
    );
    let user = instructions
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER line");
    let uid: u32 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("a numeric uid");
    assert_ne!(uid, 0, "not root");
    assert!(
        instructions.iter().any(|l| l.starts_with("ENTRYPOINT [")),
        "exec-form entrypoint (no shell)"
    );
}
