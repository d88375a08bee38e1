use super::*;
use serde_json::json;

fn hosts() -> Split {
    Split::Hosts {
        stable: "web-stable".into(),
        canary: "web-canary".into(),
    }
}

fn vs_ref(routes: Option<&[&str]>) -> IstioVirtualService {
    IstioVirtualService {
        name: "web".into(),
        routes: routes.map(|r| r.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    }
}

fn virtual_service() -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "web"},
        "spec": {
            "hosts": ["web.example.com"],
            "gateways": ["shop-gateway"],
            "http": [
                {"name": "admin", "match": [{"uri": {"prefix": "/admin"}}],
                 "route": [{"destination": {"host": "admin"}}]},
                {"name": "primary", "retries": {"attempts": 3},
                 "route": [
                    {"destination": {"host": "web-stable.shop.svc.cluster.local", "port": {"number": 80}}, "weight": 100},
                    {"destination": {"host": "web-canary", "port": {"number": 80}}, "weight": 0}
                 ]}
            ],
            "tcp": [{"match": [{"port": 9000}], "route": [
                {"destination": {"host": "web-stable"}, "weight": 100},
                {"destination": {"host": "web-canary"}, "weight": 0}]}]
        }
    })
}

/// Sets the weights of the `routes` of VirtualService "web" between the two hosts.
fn weigh(vs: &mut Value, routes: Option<&[&str]>, canary: i32) -> Result<bool, RouteError> {
    set_weights(vs, &vs_ref(routes), &hosts(), Weights::canary(canary), &[])
}

#[test]
fn weights_change_only_the_named_route_and_nothing_else() {
    let mut vs = virtual_service();
    let before = vs.clone();
    let changed = weigh(&mut vs, Some(&["primary"]), 30).expect("weights");
    assert!(changed);
    assert_eq!(vs.pointer("/spec/http/1/route/0/weight"), Some(&json!(70)));
    assert_eq!(vs.pointer("/spec/http/1/route/1/weight"), Some(&json!(30)));
    // Everything else as written.
    let mut expected = before.clone();
    expected["spec"]["http"][1]["route"][0]["weight"] = json!(70);
    expected["spec"]["http"][1]["route"][1]["weight"] = json!(30);
    assert_eq!(vs, expected);
    // Again: nothing to change.
    assert!(!weigh(&mut vs, Some(&["primary"]), 30).expect("weights"));
}

#[test]
fn a_missing_route_or_destination_is_named() {
    let mut vs = virtual_service();
    let err = weigh(&mut vs, Some(&["nope"]), 10).expect_err("no route");
    assert_eq!(
        err,
        RouteError::Invalid("VirtualService \"web\" has no http route named \"nope\"".into())
    );
    let err = weigh(&mut vs, Some(&["admin"]), 10).expect_err("no destinations");
    assert!(
        err.to_string().contains(
            "http route \"admin\" of VirtualService \"web\" needs destinations for hosts"
        ),
        "{err}"
    );
    // Several routes and none named: ambiguous.
    let err = weigh(&mut vs, None, 10).expect_err("ambiguous");
    assert!(err.to_string().contains("has 2 http routes"), "{err}");
}

#[test]
fn tcp_routes_are_matched_by_port() {
    let mut vs = virtual_service();
    let r = IstioVirtualService {
        name: "web".into(),
        tcp_routes: Some(vec![IstioTcpRoute { port: Some(9000) }]),
        ..Default::default()
    };
    assert!(set_weights(&mut vs, &r, &hosts(), Weights::canary(50), &[]).expect("tcp"));
    assert_eq!(vs.pointer("/spec/tcp/0/route/1/weight"), Some(&json!(50)));
    assert_eq!(
        vs.pointer("/spec/http/1/route/1/weight"),
        Some(&json!(0)),
        "http untouched"
    );
    let r = IstioVirtualService {
        name: "web".into(),
        tcp_routes: Some(vec![IstioTcpRoute { port: Some(1) }]),
        ..Default::default()
    };
    assert!(set_weights(&mut vs, &r, &hosts(), Weights::canary(50), &[]).is_err());
}

#[test]
fn subset_level_splits_by_subset_and_labels_the_subsets() {
    let mut vs = json!({"spec": {"http": [{"name": "primary", "route": [
        {"destination": {"host": "web", "subset": "stable"}, "weight": 100},
        {"destination": {"host": "web", "subset": "canary"}, "weight": 0}]}]}});
    let split = Split::Subsets {
        stable: "stable".into(),
        canary: "canary".into(),
    };
    assert!(
        set_weights(&mut vs, &vs_ref(None), &split, Weights::canary(25), &[]).expect("subsets")
    );
    assert_eq!(vs.pointer("/spec/http/0/route/1/weight"), Some(&json!(25)));

    let mut dr = json!({"spec": {"host": "web", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}, "subsets": [
        {"name": "stable", "labels": {"app": "web"}},
        {"name": "canary", "labels": {"app": "web"}},
        {"name": "legacy", "labels": {"version": "0"}}]}});
    assert!(set_subsets(&mut dr, "web", "stable", "canary", "aaa", "bbb").expect("dr"));
    assert_eq!(
        dr.pointer("/spec/subsets/0/labels"),
        Some(&json!({"app": "web", "rollouts-pod-template-hash": "aaa"}))
    );
    assert_eq!(
        dr.pointer("/spec/subsets/1/labels"),
        Some(&json!({"app": "web", "rollouts-pod-template-hash": "bbb"}))
    );
    assert_eq!(
        dr.pointer("/spec/subsets/2/labels"),
        Some(&json!({"version": "0"}))
    );
    assert!(!set_subsets(&mut dr, "web", "stable", "canary", "aaa", "bbb").expect("dr"));
    assert!(clear_subsets(&mut dr, &["stable", "canary"]));
    assert_eq!(
        dr.pointer("/spec/subsets/0/labels"),
        Some(&json!({"app": "web"}))
    );
    let err = set_subsets(&mut dr, "web", "stable", "preview", "a", "b").expect_err("no subset");
    assert_eq!(
        err.to_string(),
        "DestinationRule \"web\" has no subset named \"preview\""
    );
}

#[test]
fn header_routes_go_first_and_come_out_again() {
    let mut vs = virtual_service();
    let before = vs.clone();
    let managed = vec!["beta-testers".to_string(), "mobile".to_string()];
    let routes = vec![
        (
            "mobile".to_string(),
            vec![HeaderMatch {
                name: "user-agent".into(),
                value: super::super::MatchValue::Regex(".*Mobile.*".into()),
            }],
        ),
        (
            "beta-testers".to_string(),
            vec![HeaderMatch {
                name: "x-beta".into(),
                value: super::super::MatchValue::Exact("1".into()),
            }],
        ),
    ];
    let r = vs_ref(Some(&["primary"]));
    assert!(set_header_routes(&mut vs, &r, &hosts(), &managed, &routes).expect("add"));
    let http = vs
        .pointer("/spec/http")
        .and_then(Value::as_array)
        .expect("http");
    assert_eq!(http.len(), 4);
    assert_eq!(
        http[0]["name"],
        json!("beta-testers"),
        "managedRoutes order, highest first"
    );
    assert_eq!(
        http[0]["match"],
        json!([{"headers": {"x-beta": {"exact": "1"}}}])
    );
    assert_eq!(
        http[0]["route"],
        json!([{"destination": {"host": "web-canary", "port": {"number": 80}}, "weight": 100}])
    );
    assert_eq!(
        http[1]["match"],
        json!([{"headers": {"user-agent": {"regex": ".*Mobile.*"}}}])
    );
    // Weights still find the one route among managed ones when routes are not named.
    assert!(set_weights(&mut vs, &r, &hosts(), Weights::canary(20), &managed).expect("weights"));
    // Removing every managed route gives the user's routes back.
    assert!(set_header_routes(&mut vs, &r, &hosts(), &managed, &[]).expect("remove"));
    let mut expected = before;
    expected["spec"]["http"][1]["route"][0]["weight"] = json!(80);
    expected["spec"]["http"][1]["route"][1]["weight"] = json!(20);
    assert_eq!(vs, expected);
}

fn split_to(host_stable: &str, host_canary: &str) -> Value {
    json!({"route": [
        {"destination": {"host": host_stable}, "weight": 100},
        {"destination": {"host": host_canary}, "weight": 0}]})
}

/// Argo Rollouts: rollout/trafficrouting/istio/istio.go reconcileVirtualService,
/// getTlsRouteIndexesToPatch, ValidateTlsRoutes: each section is split on its own, and a
/// Rollout naming no routes gets the only route of each.
#[test]
fn a_virtual_service_with_only_tls_or_only_tcp_routes_gets_the_weights() {
    for protocol in ["tls", "tcp"] {
        let mut route = split_to("web-stable", "web-canary");
        route["match"] = json!([{"port": 443, "sniHosts": ["web.example.com"]}]);
        let mut vs = json!({"spec": {"hosts": ["web"], protocol: [route]}});
        assert!(weigh(&mut vs, None, 20).expect(protocol));
        let w = |i: usize| {
            vs.pointer(&format!("/spec/{protocol}/0/route/{i}/weight"))
                .cloned()
        };
        assert_eq!(
            (w(0), w(1)),
            (Some(json!(80)), Some(json!(20))),
            "{protocol}"
        );
        assert!(
            !weigh(&mut vs, None, 20).expect(protocol),
            "nothing left to change"
        );
    }
}

#[test]
fn unnamed_sections_are_split_together_and_several_routes_must_be_named() {
    let mut vs = json!({"spec": {
        "http": [split_to("web-stable", "web-canary")],
        "tcp": [split_to("web-stable", "web-canary")]}});
    assert!(weigh(&mut vs, None, 40).expect("both"));
    assert_eq!(vs.pointer("/spec/http/0/route/1/weight"), Some(&json!(40)));
    assert_eq!(vs.pointer("/spec/tcp/0/route/1/weight"), Some(&json!(40)));

    let mut two = json!({"spec": {"tls": [
        split_to("web-stable", "web-canary"), split_to("web-stable", "web-canary")]}});
    let err = weigh(&mut two, None, 10).expect_err("ambiguous");
    assert_eq!(
        err.to_string(),
        "VirtualService \"web\" has 2 tls routes: name the ones to split in tlsRoutes"
    );
    let mut none = json!({"spec": {"hosts": ["web"], "http": []}});
    let err = weigh(&mut none, None, 10).expect_err("nothing to split");
    assert_eq!(
        err.to_string(),
        "VirtualService \"web\" has no http, tls or tcp routes"
    );
    // A tls route without the canary is named, as for http.
    let mut other = json!({"spec": {"tls": [split_to("web-stable", "elsewhere")]}});
    let err = weigh(&mut other, None, 10).expect_err("no canary");
    assert!(
        err.to_string().contains("the tls route of VirtualService"),
        "{err}"
    );
}

/// Argo Rollouts: rollout/trafficrouting/istio/istio.go `createMirrorRoute`,
/// `reconcileVirtualServiceMirrorRoutes`, `orderRoutes`: a mirror route copies the split
/// route's destinations and weights, mirrors to the canary, and managed routes go first in
/// `managedRoutes` order.
#[test]
fn mirror_routes_copy_the_split_route_and_mirror_to_the_canary() {
    let mut vs = virtual_service();
    let managed = vec!["mirror-1".to_string(), "mirror-2".to_string()];
    let step = |name: &str, pct: Option<i32>, path: &str| crate::api::rollout::SetMirrorRoute {
        name: name.into(),
        matches: Some(vec![crate::api::rollout::RouteMatch {
            path: Some(crate::api::rollout::StringMatch {
                prefix: Some(path.into()),
                ..Default::default()
            }),
            method: Some(crate::api::rollout::StringMatch {
                exact: Some("GET".into()),
                ..Default::default()
            }),
            headers: None,
        }]),
        percentage: pct,
    };
    let mirrors: Vec<MirrorRoute> = [
        step("mirror-2", Some(80), "/"),
        step("mirror-1", None, "/a"),
    ]
    .iter()
    .filter_map(MirrorRoute::from_api)
    .collect();
    let r = vs_ref(Some(&["primary"]));
    set_weights(&mut vs, &r, &hosts(), Weights::canary(20), &managed).expect("weights");
    assert!(set_managed_routes(&mut vs, &r, &hosts(), &managed, &[], &mirrors).expect("mirror"));
    let http = vs["spec"]["http"].clone();
    assert_eq!(http[0]["name"], json!("mirror-1"), "managedRoutes order");
    assert_eq!(
        http[0]["mirrorPercentage"],
        json!({"value": 100}),
        "default 100"
    );
    assert_eq!(
        http[0]["match"],
        json!([{"method": {"exact": "GET"}, "uri": {"prefix": "/a"}}])
    );
    assert_eq!(
        http[1]["mirror"],
        json!({"host": "web-canary", "port": {"number": 80}})
    );
    assert_eq!(http[1]["mirrorPercentage"], json!({"value": 80}));
    assert_eq!(
        http[1]["route"], http[3]["route"],
        "the split route's weights"
    );
    assert_eq!(http[1]["route"][0]["weight"], json!(80));
    // Weights move: the mirror routes follow.
    set_weights(&mut vs, &r, &hosts(), Weights::canary(40), &managed).expect("weights");
    assert!(set_managed_routes(&mut vs, &r, &hosts(), &managed, &[], &mirrors).expect("again"));
    assert_eq!(vs["spec"]["http"][0]["route"][1]["weight"], json!(40));
    // A step without matches removes its route.
    let gone = crate::api::rollout::SetMirrorRoute {
        name: "mirror-1".into(),
        ..Default::default()
    };
    assert_eq!(MirrorRoute::from_api(&gone), None);
    assert!(set_managed_routes(&mut vs, &r, &hosts(), &managed, &[], &mirrors[..1]).expect("one"));
    let names: Vec<Value> = vs["spec"]["http"]
        .as_array()
        .expect("http")
        .iter()
        .map(|r| r["name"].clone())
        .collect();
    assert_eq!(names, [json!("mirror-2"), json!("admin"), json!("primary")]);
}
