use super::*;

fn rollout(name: &str, spec: Value) -> Rollout {
    serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
        "metadata": {"name": name, "namespace": "shop", "uid": name},
        "spec": spec
    }))
    .expect("rollout")
}

fn subset_level() -> Rollout {
    rollout(
        "web",
        json!({"strategy": {"canary": {
            "stableService": "web-stable", "canaryService": "web-canary",
            "trafficRouting": {
                "managedRoutes": [{"name": "beta"}],
                "istio": {"virtualService": {"name": "web"},
                    "destinationRule": {"name": "web", "stableSubsetName": "stable",
                        "canarySubsetName": "canary"}}}}}}),
    )
}

fn key(kind: TargetKind, name: &str) -> ObjectKey {
    (kind, "shop".to_string(), name.to_string())
}

#[test]
fn the_mark_names_the_rollout_and_its_routing() {
    let ro = subset_level();
    let mark = RoutedBy::of(&ro).expect("routed");
    assert!(mark.names("shop", "web"));
    assert!(!mark.names("other", "web"));
    let mut obj = json!({"metadata": {"name": "web"}, "spec": {}});
    assert!(set_mark(&mut obj, &mark.encode()));
    assert!(!set_mark(&mut obj, &mark.encode()), "already marked");
    assert_eq!(RoutedBy::read(&obj), Some(mark));
    assert!(clear_mark(&mut obj));
    assert!(!clear_mark(&mut obj));
    assert_eq!(obj["metadata"]["annotations"], json!({}));
    // Service selectors alone, no router: nothing to mark.
    let basic = rollout(
        "web",
        json!({"strategy": {"canary": {"stableService": "s"}}}),
    );
    assert!(RoutedBy::of(&basic).is_none());
}

/// Argo Rollouts: rollout/trafficrouting/istio/controller.go `syncDestinationRule` removes the
/// hash label from a DestinationRule its Rollout no longer names; Sluice gives the
/// VirtualService back too (all traffic on stable, managed routes gone).
#[test]
fn objects_left_behind_are_given_back_as_on_deletion() {
    let ro = subset_level();
    let mark = RoutedBy::of(&ro).expect("routed").encode();
    let mut vs = json!({"metadata": {"name": "web", "annotations": {
        ANNOTATION_ROUTED_BY: mark, "team": "shop"}},
        "spec": {"http": [
            {"name": "beta", "match": [{"headers": {"x-beta": {"exact": "1"}}}],
             "route": [{"destination": {"host": "web", "subset": "canary"}, "weight": 100}]},
            {"name": "primary", "route": [
                {"destination": {"host": "web", "subset": "stable"}, "weight": 70},
                {"destination": {"host": "web", "subset": "canary"}, "weight": 30}]}]}});
    assert!(give_back(&mut vs, &key(TargetKind::VirtualService, "web")));
    assert_eq!(
        vs,
        json!({"metadata": {"name": "web", "annotations": {"team": "shop"}},
        "spec": {"http": [
            {"name": "primary", "route": [
                {"destination": {"host": "web", "subset": "stable"}, "weight": 100},
                {"destination": {"host": "web", "subset": "canary"}, "weight": 0}]}]}})
    );
    let mut dr = json!({"metadata": {"name": "web", "annotations": {ANNOTATION_ROUTED_BY: mark}},
        "spec": {"host": "web", "subsets": [
            {"name": "stable", "labels": {"app": "web", LABEL_POD_TEMPLATE_HASH: "aaa"}},
            {"name": "canary", "labels": {"app": "web", LABEL_POD_TEMPLATE_HASH: "bbb"}}]}});
    assert!(give_back(&mut dr, &key(TargetKind::DestinationRule, "web")));
    assert_eq!(
        dr["spec"]["subsets"],
        json!([{"name": "stable", "labels": {"app": "web"}},
            {"name": "canary", "labels": {"app": "web"}}])
    );
    assert!(
        !give_back(&mut dr, &key(TargetKind::DestinationRule, "web")),
        "once"
    );
}

#[test]
fn an_object_any_rollout_still_routes_is_not_left_behind() {
    let ro = subset_level();
    let mark = RoutedBy::of(&ro).expect("routed");
    let routed = routed_now([&ro]);
    assert!(routed.contains(&key(TargetKind::VirtualService, "web")));
    assert!(routed.contains(&key(TargetKind::DestinationRule, "web")));
    let vs = key(TargetKind::VirtualService, "web");
    assert!(!is_left_behind(&mark, &vs, "shop", "web", &routed));
    // The Rollout drops the DestinationRule (host level now): the rule is left behind.
    let host_level = rollout(
        "web",
        json!({"strategy": {"canary": {
            "stableService": "web-stable", "canaryService": "web-canary",
            "trafficRouting": {"istio": {"virtualService": {"name": "web"}}}}}}),
    );
    let routed = routed_now([&host_level]);
    let dr = key(TargetKind::DestinationRule, "web");
    assert!(is_left_behind(&mark, &dr, "shop", "web", &routed));
    // ... but not by another Rollout, and not while another one routes it.
    assert!(!is_left_behind(&mark, &dr, "shop", "api", &routed));
    let spec = serde_json::to_value(subset_level().spec).expect("spec");
    let other = rollout("api", spec);
    let routed = routed_now([&host_level, &other]);
    assert!(!is_left_behind(&mark, &dr, "shop", "web", &routed));
}

/// Argo Rollouts: service/service.go `syncService` takes the pod-template-hash key out of a
/// Service no Rollout references (test/e2e/functional_test.go `TestBlueGreenToCanary`).
#[test]
fn services_keyed_to_the_rollouts_revisions_and_named_by_none_are_left_behind() {
    let svc = |name: &str, hash: Option<&str>| {
        let mut selector = json!({"app": "web"});
        if let Some(h) = hash {
            selector[LABEL_POD_TEMPLATE_HASH] = json!(h);
        }
        Arc::new(
            serde_json::from_value::<Service>(json!({
                "metadata": {"name": name, "namespace": "shop"},
                "spec": {"selector": selector}
            }))
            .expect("service"),
        )
    };
    let services = [
        svc("web-active", Some("aaa")),
        svc("web-preview", Some("bbb")),
        svc("web-stable", Some("aaa")),
        svc("plain", None),
        svc("theirs", Some("zzz")),
    ];
    let hashes: BTreeSet<String> = ["aaa", "bbb"].map(String::from).into();
    let named: BTreeSet<String> = ["web-stable", "web-canary"].map(String::from).into();
    assert_eq!(
        services_left_behind(&services, &hashes, &named),
        ["web-active", "web-preview"]
    );
}
