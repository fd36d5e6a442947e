//! Names that can be squatted (issue 24, item 6): a baseline that trusts a namespace by name that
//! does not exist hands what it grants to whoever creates that namespace. The status and `check`
//! say so, as a warning (Ready and the exit code do not change), until the namespace exists.

use zerotrust_testkit::*;

use super::{WAIT, ready};

#[tokio::test]
async fn a_trusted_name_no_namespace_holds_is_reported_until_it_exists() {
    operator();
    let client = client().await;
    let tag = unique("unclaimed");
    let _cleanup = Cleanup(vec![tag.clone()]);
    let _ns = namespace(&client, &tag, &[("zt-test", &tag)]).await;
    let monitoring = format!("{tag}-mon");
    apply(&baseline(
        &tag,
        &tag,
        &format!(
            "networkPolicy:\n  defaultDeny: [Ingress]\n  allow:\n  - name: monitoring\n    direction: Ingress\n    peers: [{{namespace: {monitoring}}}]"
        ),
    ));
    let s = wait_status(&client, &tag, WAIT, "the unclaimed name reported", |s| {
        condition(s, "UnclaimedNamespaces").is_some() && ready(s) == Some("True")
    })
    .await;
    let (status, reason, message) = condition(&s, "UnclaimedNamespaces").unwrap();
    assert_eq!((status, reason), ("True", "NamespaceNotFound"));
    assert!(
        message.contains(&format!("{monitoring} (networkPolicy.allow[monitoring])")),
        "{message}"
    );
    // `check` warns, and passes: a compliant namespace is not failed by a name.
    let out = check_baseline(&tag);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("WARNING")
            && l.contains(&tag)
            && l.contains(&format!("namespace {monitoring:?}"))),
        "{text}"
    );

    // Claimed by the platform: the notice goes.
    let _claimed = namespace(&client, &monitoring, &[]).await;
    wait_status(&client, &tag, WAIT, "the notice gone", |s| {
        condition(s, "UnclaimedNamespaces").is_none()
    })
    .await;
    let out = check_baseline(&tag);
    assert!(!stdout(&out).contains("WARNING"), "{}", stdout(&out));
}
