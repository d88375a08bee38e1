use serde_json::json;

use super::*;

const UID: &str = "uid-1";

fn template(image: &str) -> Value {
    json!({"metadata": {"labels": {"app": "web"}},
           "spec": {"containers": [{"name": "web", "image": image, "imagePullPolicy": "IfNotPresent",
                                    "ports": [{"containerPort": 8080}]}],
                    "initContainers": [{"name": "migrate", "image": "tools:1"}]}})
}

fn rollout(image: &str) -> Rollout {
    serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "web", "namespace": "shop", "uid": UID, "resourceVersion": "42"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": template(image),
                 "strategy": {"canary": {"steps": [{"setWeight": 50}]}}}
    }))
    .expect("rollout")
}

fn hash(image: &str) -> String {
    pod_template_hash(&serde_json::from_value(template(image)).expect("template"))
}

/// The ReplicaSet Sluice made for `image`, as the API server keeps it: defaults filled in, the
/// labels Sluice adds, and a role label put on for the canary.
fn replica_set(image: &str, created: &str) -> ReplicaSet {
    let h = hash(image);
    serde_json::from_value(json!({
        "metadata": {"name": format!("web-{h}"), "creationTimestamp": created,
                     "labels": {"app": "web", LABEL_POD_TEMPLATE_HASH: h, LABEL_ROLLOUT: "web"},
                     "annotations": {ANNOTATION_EPHEMERAL_METADATA: "{\"labels\":{\"role\":\"canary\"}}"},
                     "ownerReferences": [{"apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "name": "web", "uid": UID}]},
        "spec": {"selector": {"matchLabels": {"app": "web", LABEL_POD_TEMPLATE_HASH: h}},
                 "template": {"metadata": {"labels": {"app": "web", "role": "canary", LABEL_POD_TEMPLATE_HASH: h, LABEL_ROLLOUT: "web"}},
                              "spec": {"containers": [{"name": "web", "image": image, "imagePullPolicy": "IfNotPresent",
                                                       "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                                                       "terminationMessagePath": "/dev/termination-log",
                                                       "terminationMessagePolicy": "File", "resources": {}}],
                                       "initContainers": [{"name": "migrate", "image": "tools:1", "imagePullPolicy": "IfNotPresent",
                                                           "terminationMessagePath": "/dev/termination-log",
                                                           "terminationMessagePolicy": "File"}],
                                       "restartPolicy": "Always", "terminationGracePeriodSeconds": 30,
                                       "dnsPolicy": "ClusterFirst", "securityContext": {},
                                       "schedulerName": "default-scheduler"}}}
    }))
    .expect("replica set")
}

fn sets() -> Vec<ReplicaSet> {
    vec![
        replica_set("web:2", "2026-12-01T10:10:00Z"),
        replica_set("web:1", "2026-12-01T10:00:00Z"),
        replica_set("web:3", "2026-12-01T10:20:00Z"),
    ]
}

#[test]
fn pairs_are_container_equals_image() {
    let args = vec!["web=web:2".to_string(), "*=x:1".to_string()];
    assert_eq!(
        parse_pairs(&args),
        Ok(vec![
            ("web".into(), "web:2".into()),
            ("*".into(), "x:1".into())
        ])
    );
    for bad in ["web", "=x", "web="] {
        assert_eq!(
            parse_pairs(&[bad.to_string()]),
            Err(EditError::BadPair(bad.into()))
        );
    }
}

#[test]
fn set_image_replaces_only_what_changes_guarded_by_name_and_version() {
    let ro = rollout("web:1");
    let patch = set_image_patch(&ro, &[("web".into(), "web:2".into())])
        .expect("patch")
        .expect("a change");
    assert_eq!(
        patch,
        json!([
            {"op": "replace", "path": "/metadata/resourceVersion", "value": "42"},
            {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "web:2"},
        ])
    );
    let all = set_image_patch(&ro, &[("*".into(), "tools:2".into())])
        .expect("patch")
        .expect("a change");
    assert_eq!(
        all.as_array().map(Vec::len),
        Some(3),
        "both containers, init included: {all}"
    );
    assert_eq!(
        set_image_patch(&ro, &[("web".into(), "web:1".into())]),
        Ok(None),
        "no write that changes nothing"
    );
    let err = set_image_patch(&ro, &[("api".into(), "x".into())]).expect_err("unknown container");
    assert_eq!(
        err.to_string(),
        "web has no container named \"api\"; its containers: web, migrate"
    );
}

#[test]
fn workload_ref_rollouts_have_no_template_to_edit() {
    let mut ro = rollout("web:1");
    ro.spec.template = None;
    ro.spec.workload_ref = serde_json::from_value(
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "web-deploy"}),
    )
    .expect("ref");
    let err = set_image_patch(&ro, &[("web".into(), "x".into())]).expect_err("refused");
    assert!(err.to_string().contains("Deployment web-deploy"), "{err}");
    assert!(undo(&ro, &sets(), &Target::Previous).is_err());
}

#[test]
fn restart_writes_restart_at_rounded_up_to_the_second_with_the_version_read() {
    let now: Timestamp = "2026-12-02T03:04:05.678Z".parse().expect("now");
    assert_eq!(
        restart_patch(&rollout("web:1"), now),
        json!({"metadata": {"resourceVersion": "42"}, "spec": {"restartAt": "2026-12-02T03:04:06Z"}})
    );
    let whole: Timestamp = "2026-12-02T03:04:05Z".parse().expect("now");
    assert_eq!(
        restart_patch(&rollout("web:1"), whole)["spec"]["restartAt"],
        "2026-12-02T03:04:05Z"
    );
}

#[test]
fn undo_rebuilds_the_exact_template_of_the_previous_revision() {
    let ro = rollout("web:3");
    let u = undo(&ro, &sets(), &Target::Previous).expect("undo");
    assert_eq!(
        (u.revision, u.hash.clone(), u.exact),
        (2, hash("web:2"), true)
    );
    let written = &u.patch[1]["value"];
    assert_eq!(
        written,
        &template("web:2"),
        "defaults the user did not write come off, the one they wrote stays"
    );
    assert_eq!(
        u.patch[0],
        json!({"op": "replace", "path": "/metadata/resourceVersion", "value": "42"})
    );
}

#[test]
fn undo_to_a_revision_by_number_or_hash() {
    let ro = rollout("web:3");
    let by_number = undo(&ro, &sets(), &Target::Given("1".into())).expect("undo 1");
    let by_hash = undo(&ro, &sets(), &Target::Given(hash("web:1"))).expect("undo hash");
    assert_eq!(by_number, by_hash);
    assert_eq!(by_number.patch[1]["value"], template("web:1"));
    assert_eq!(
        undo(&ro, &sets(), &Target::Given("3".into())),
        Err(EditError::AlreadyCurrent("web".into(), "3".into()))
    );
    let err = undo(&ro, &sets(), &Target::Given("9".into())).expect_err("no such revision");
    assert!(
        err.to_string().contains(&format!(
            "1 ({}), 2 ({}), 3 ({})",
            hash("web:1"),
            hash("web:2"),
            hash("web:3")
        )),
        "{err}"
    );
}

#[test]
fn without_a_match_every_default_comes_off_and_says_so() {
    let mut rs = replica_set("web:2", "2026-12-01T10:10:00Z");
    // A label changed by hand on the ReplicaSet: no combination hashes back.
    if let Some(t) = rs.spec.as_mut().and_then(|s| s.template.as_mut()) {
        t.metadata
            .as_mut()
            .and_then(|m| m.labels.as_mut())
            .map(|l| l.insert("tier".into(), "x".into()));
    }
    let ro = rollout("web:3");
    let u = undo(&ro, &[rs], &Target::Previous).expect("undo");
    assert!(!u.exact);
    let c = &u.patch[1]["value"]["spec"]["containers"][0];
    assert!(
        c.get("terminationMessagePath").is_none() && c.get("imagePullPolicy").is_none(),
        "{c}"
    );
}

#[test]
fn undo_with_nothing_earlier_is_refused() {
    let ro = rollout("web:1");
    let only = vec![replica_set("web:1", "2026-12-01T10:00:00Z")];
    assert_eq!(
        undo(&ro, &only, &Target::Previous),
        Err(EditError::NoEarlier("web".into()))
    );
}

#[test]
fn the_note_names_the_gitops_tool_that_declares_the_rollout() {
    let mut ro = rollout("web:1");
    assert!(
        gitops_note(&ro, "change it in git").starts_with("note: this wrote the Rollout's spec")
    );
    ro.metadata.annotations = Some(
        [(
            "argocd.argoproj.io/tracking-id".to_string(),
            "shop:sluice.dev/Rollout:shop/web".to_string(),
        )]
        .into(),
    );
    assert_eq!(
        gitops_note(&ro, "change it in git"),
        "warning: web is declared in git through Argo CD, which will put git's spec back at its next sync: change it in git\n"
    );
    ro.metadata.annotations = None;
    ro.metadata.labels = Some(
        [(
            "kustomize.toolkit.fluxcd.io/name".to_string(),
            "shop".to_string(),
        )]
        .into(),
    );
    assert!(gitops_note(&ro, "x").contains("through Flux"));
}
