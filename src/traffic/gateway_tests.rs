use super::*;
use crate::traffic::MatchValue;
use serde_json::json;

fn route() -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "web"},
        "spec": {
            "parentRefs": [{"name": "shop-gateway"}],
            "hostnames": ["web.example.com"],
            "rules": [
                {"matches": [{"path": {"type": "PathPrefix", "value": "/static"}}],
                 "backendRefs": [{"name": "static", "port": 80}]},
                {"backendRefs": [
                    {"name": "web-stable", "port": 80, "weight": 100},
                    {"name": "web-canary", "port": 80, "weight": 0}],
                 "timeouts": {"request": "10s"}}
            ]
        }
    })
}

/// Sets the weights of HTTPRoute "web" between web-stable and web-canary.
fn weigh(r: &mut Value, canary: i32, managed: &[String]) -> Result<bool, RouteError> {
    set_weights(
        r,
        "web",
        "web-stable",
        "web-canary",
        Weights::canary(canary),
        managed,
    )
}

#[test]
fn weights_change_only_the_split_rule() {
    let mut r = route();
    let before = r.clone();
    assert!(weigh(&mut r, 40, &[]).expect("weights"));
    let mut expected = before;
    expected["spec"]["rules"][1]["backendRefs"][0]["weight"] = json!(60);
    expected["spec"]["rules"][1]["backendRefs"][1]["weight"] = json!(40);
    assert_eq!(r, expected);
    assert!(!weigh(&mut r, 40, &[]).expect("again"));
}

#[test]
fn a_route_without_both_services_is_named() {
    let mut r = route();
    let err = set_weights(
        &mut r,
        "web",
        "web-stable",
        "web-preview",
        Weights::canary(40),
        &[],
    )
    .expect_err("no rule");
    assert_eq!(
        err.to_string(),
        "HTTPRoute \"web\" has no rule with backendRefs to both \"web-stable\" and \"web-preview\""
    );
}

#[test]
fn header_rules_go_first_and_come_out_again() {
    let mut r = route();
    let before = r.clone();
    let managed = vec!["beta".to_string()];
    let routes = vec![(
        "beta".to_string(),
        vec![
            HeaderMatch {
                name: "x-beta".into(),
                value: MatchValue::Exact("1".into()),
            },
            HeaderMatch {
                name: "x-team".into(),
                value: MatchValue::Prefix("pay.".into()),
            },
        ],
    )];
    assert!(set_header_routes(&mut r, "web", "web-canary", &managed, &routes).expect("add"));
    let rules = r
        .pointer("/spec/rules")
        .and_then(Value::as_array)
        .expect("rules");
    assert_eq!(rules.len(), 3);
    assert_eq!(
        rules[0],
        json!({"name": "beta",
               "matches": [{"path": {"type": "PathPrefix", "value": "/"}, "headers": [
                   {"type": "Exact", "name": "x-beta", "value": "1"},
                   {"type": "RegularExpression", "name": "x-team", "value": "^pay\\..*"}]}],
               "backendRefs": [{"name": "web-canary", "port": 80, "weight": 1}]})
    );
    assert!(weigh(&mut r, 0, &managed).is_ok());
    assert!(set_header_routes(&mut r, "web", "web-canary", &managed, &[]).expect("remove"));
    assert_eq!(r, before);
}

#[test]
fn a_header_rule_keeps_the_split_rule_matches_and_filters_and_is_stable_once_written() {
    let mut r = json!({"spec": {"rules": [{
        "matches": [{"path": {"type": "PathPrefix", "value": "/api"}, "method": "GET"}],
        "filters": [{"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "x-env", "value": "prod"}]}}],
        "backendRefs": [
            {"group": "", "kind": "Service", "name": "web-stable", "port": 80, "weight": 100},
            {"group": "", "kind": "Service", "name": "web-canary", "port": 80, "weight": 0}]}]}});
    let managed = vec!["beta".to_string()];
    let routes = vec![(
        "beta".to_string(),
        vec![HeaderMatch {
            name: "x-beta".into(),
            value: MatchValue::Exact("1".into()),
        }],
    )];
    assert!(set_header_routes(&mut r, "web", "web-canary", &managed, &routes).expect("add"));
    let rule = &r["spec"]["rules"][0];
    assert_eq!(
        rule["matches"],
        json!([{"path": {"type": "PathPrefix", "value": "/api"}, "method": "GET",
                "headers": [{"type": "Exact", "name": "x-beta", "value": "1"}]}])
    );
    assert_eq!(rule["filters"], r["spec"]["rules"][1]["filters"]);
    // What the API server gives back is what was written: no change at the next reconcile.
    assert!(!set_header_routes(&mut r, "web", "web-canary", &managed, &routes).expect("again"));
}
