use super::*;
use serde_json::json;

fn template() -> PodTemplateSpec {
    serde_json::from_value(json!({
        "metadata": {"labels": {"app": "web"}, "annotations": {"team": "shop"}},
        "spec": {
            "containers": [
                {"name": "web", "image": "web:1", "env": [
                    {"name": "MODE", "value": "normal"},
                    {"name": "LOG", "value": "info"}
                ], "ports": [{"containerPort": 8080}], "args": ["--fast"]},
                {"name": "proxy", "image": "proxy:1"}
            ]
        }
    }))
    .expect("template")
}

fn selector() -> BTreeMap<String, String> {
    BTreeMap::from([("app".to_string(), "web".to_string())])
}

fn strategic(p: Value) -> Fault {
    Fault {
        strategic_merge_patch: Some(p),
        ..Fault::default()
    }
}

fn as_json(t: &PodTemplateSpec) -> Value {
    serde_json::to_value(t).expect("json")
}

#[test]
fn a_strategic_patch_merges_containers_and_env_by_name() {
    let fault = strategic(json!({"spec": {"containers": [
        {"name": "web", "env": [{"name": "MODE", "value": "broken"}, {"name": "ERRORS", "value": "0.2"}]}
    ]}}));
    let out = as_json(&apply(&template(), &fault, &selector()).expect("applies"));
    let web = &out["spec"]["containers"][0];
    assert_eq!(web["image"], "web:1", "untouched fields stay");
    assert_eq!(
        web["env"],
        json!([
            {"name": "MODE", "value": "broken"},
            {"name": "LOG", "value": "info"},
            {"name": "ERRORS", "value": "0.2"}
        ])
    );
    assert_eq!(web["args"], json!(["--fast"]));
    assert_eq!(
        out["spec"]["containers"][1]["name"], "proxy",
        "the other container stays"
    );
}

#[test]
fn lists_without_a_merge_key_are_replaced_and_null_deletes() {
    let fault = strategic(json!({
        "metadata": {"annotations": {"team": null, "sim.sluice.dev/error-rate": "0.2"}},
        "spec": {"containers": [{"name": "web", "args": ["--slow"]}]}
    }));
    let out = as_json(&apply(&template(), &fault, &selector()).expect("applies"));
    assert_eq!(out["spec"]["containers"][0]["args"], json!(["--slow"]));
    assert_eq!(
        out["metadata"]["annotations"],
        json!({"sim.sluice.dev/error-rate": "0.2"})
    );
}

#[test]
fn patch_directives_delete_and_replace() {
    let fault = strategic(json!({"spec": {"containers": [
        {"name": "proxy", "$patch": "delete"},
        {"name": "web", "env": [{"name": "LOG", "$patch": "delete"}]}
    ]}}));
    let out = as_json(&apply(&template(), &fault, &selector()).expect("applies"));
    assert_eq!(out["spec"]["containers"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        out["spec"]["containers"][0]["env"],
        json!([{"name": "MODE", "value": "normal"}])
    );

    let fault =
        strategic(json!({"metadata": {"annotations": {"$patch": "replace", "only": "this"}}}));
    let out = as_json(&apply(&template(), &fault, &selector()).expect("applies"));
    assert_eq!(out["metadata"]["annotations"], json!({"only": "this"}));
}

#[test]
fn a_new_container_port_is_appended_by_its_key() {
    let fault = strategic(json!({"spec": {"containers": [
        {"name": "web", "ports": [{"containerPort": 9090, "name": "admin"}]}
    ]}}));
    let out = as_json(&apply(&template(), &fault, &selector()).expect("applies"));
    assert_eq!(
        out["spec"]["containers"][0]["ports"],
        json!([{"containerPort": 8080}, {"containerPort": 9090, "name": "admin"}])
    );
}

#[test]
fn a_json_patch_applies_as_rfc_6902_says() {
    let fault = Fault {
        json_patch: Some(json!([
            {"op": "replace", "path": "/spec/containers/0/image", "value": "web:broken"},
            {"op": "add", "path": "/spec/containers/0/env/-", "value": {"name": "X", "value": "1"}}
        ])),
        ..Fault::default()
    };
    let out = as_json(&apply(&template(), &fault, &selector()).expect("applies"));
    assert_eq!(out["spec"]["containers"][0]["image"], "web:broken");
    assert_eq!(out["spec"]["containers"][0]["env"][2]["name"], "X");
}

#[test]
fn faults_that_cannot_run_say_why() {
    let t = template();
    let none = Fault::default();
    assert_eq!(apply(&t, &none, &selector()), Err(FaultError::NotOne));
    let both = Fault {
        strategic_merge_patch: Some(json!({})),
        json_patch: Some(json!([])),
        ..Fault::default()
    };
    assert_eq!(apply(&t, &both, &selector()), Err(FaultError::NotOne));
    assert_eq!(
        apply(&t, &strategic(json!(["x"])), &selector()),
        Err(FaultError::NotAnObject)
    );
    assert_eq!(
        apply(&t, &strategic(json!({"spec": {}})), &selector()),
        Err(FaultError::NoChange)
    );
    let relabel = strategic(json!({"metadata": {"labels": {"app": "other"}}}));
    assert_eq!(
        apply(&t, &relabel, &selector()),
        Err(FaultError::SelectorLabel("app".into()))
    );
    let missing = Fault {
        json_patch: Some(json!([{"op": "remove", "path": "/spec/nothing"}])),
        ..Fault::default()
    };
    assert!(matches!(
        apply(&t, &missing, &selector()),
        Err(FaultError::JsonPatchFailed(_))
    ));
    let garbage = Fault {
        json_patch: Some(json!({"op": "add"})),
        ..Fault::default()
    };
    assert!(matches!(
        apply(&t, &garbage, &selector()),
        Err(FaultError::BadJsonPatch(_))
    ));
    let keyless = strategic(json!({"spec": {"containers": [{"image": "x"}]}}));
    assert!(matches!(
        apply(&t, &keyless, &selector()),
        Err(FaultError::BadDirective(m)) if m.contains("\"name\"")
    ));
    let not_pod = strategic(json!({"spec": {"containers": "web"}}));
    assert!(matches!(
        apply(&t, &not_pod, &selector()),
        Err(FaultError::NotATemplate(_))
    ));
}
