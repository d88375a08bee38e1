use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use super::*;

const UID: &str = "0f5e-uid";

fn rollout() -> Rollout {
    serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "web", "namespace": "shop", "uid": UID,
                     "creationTimestamp": "2026-12-01T10:00:00Z"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "web:2"}]}},
                 "strategy": {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 60}]}}},
        "status": {"phase": "Paused", "stableRS": "aaaa", "currentPodHash": "bbbb",
                   "currentStepIndex": 1,
                   "pauseConditions": [{"reason": "CanaryPauseStep", "startTime": "2026-12-01T10:05:00Z"}],
                   "canary": {"weights": {"canary": {"weight": 20}, "stable": {"weight": 80}}}}
    }))
    .expect("rollout")
}

fn owner(uid: &str) -> serde_json::Value {
    json!([{"apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "name": "web", "uid": uid, "controller": true}])
}

fn replica_set(hash: &str, created: &str, image: &str, replicas: i32, uid: &str) -> ReplicaSet {
    serde_json::from_value(json!({
        "metadata": {"name": format!("web-{hash}"), "namespace": "shop", "creationTimestamp": created,
                     "labels": {LABEL_POD_TEMPLATE_HASH: hash}, "ownerReferences": owner(uid)},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {LABEL_POD_TEMPLATE_HASH: hash}},
                 "template": {"spec": {"containers": [{"name": "web", "image": image}]}}},
        "status": {"replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas}
    }))
    .expect("replica set")
}

fn pod(name: &str, hash: &str, waiting: Option<&str>, restarts: i32) -> Pod {
    let state = match waiting {
        Some(r) => json!({"waiting": {"reason": r}}),
        None => json!({"running": {}}),
    };
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {LABEL_POD_TEMPLATE_HASH: hash}},
        "spec": {"containers": [{"name": "web", "image": "x"}]},
        "status": {"phase": "Running", "containerStatuses": [{"name": "web", "image": "x", "imageID": "",
            "ready": waiting.is_none(), "restartCount": restarts, "state": state}]}
    }))
    .expect("pod")
}

fn run(name: &str, created: &str, values: &[(&str, &str)]) -> AnalysisRun {
    let measurements: Vec<serde_json::Value> = values
        .iter()
        .map(|(phase, v)| {
            let msg = (*phase == "Failed")
                .then(|| format!("successCondition `result[0] >= 0.95` is false for result [{v}]"));
            json!({"phase": phase, "value": v, "message": msg})
        })
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisRun",
        "metadata": {"name": name, "namespace": "shop", "creationTimestamp": created, "ownerReferences": owner(UID)},
        "spec": {"metrics": [{"name": "success-rate", "provider": {"prometheus": {"address": "http://p", "query": "q"}}}]},
        "status": {"phase": "Failed", "message": "metric \"success-rate\" failed",
                   "metricResults": [{"name": "success-rate", "phase": "Failed", "measurements": measurements}]}
    }))
    .expect("analysis run")
}

struct Fixture {
    ro: Rollout,
    sets: Vec<ReplicaSet>,
    pods: Vec<Pod>,
    runs: Vec<AnalysisRun>,
}

fn fixture() -> Fixture {
    Fixture {
        ro: rollout(),
        sets: vec![
            replica_set("bbbb", "2026-12-01T10:04:00Z", "web:2", 1, UID),
            replica_set("aaaa", "2026-12-01T10:00:00Z", "web:1", 2, UID),
            replica_set("zzzz", "2026-12-01T09:00:00Z", "other:1", 1, "someone-else"),
        ],
        pods: vec![
            pod("web-aaaa-2", "aaaa", None, 0),
            pod("web-aaaa-1", "aaaa", None, 1),
            pod("web-bbbb-1", "bbbb", Some("CrashLoopBackOff"), 3),
        ],
        runs: (1..=7)
            .map(|i| {
                run(
                    &format!("web-bbbb-{i}-step2"),
                    &format!("2026-12-01T10:0{i}:00Z"),
                    &[
                        ("Successful", "0.99"),
                        ("Successful", "0.98"),
                        ("Successful", "0.97"),
                        ("Successful", "0.99"),
                        ("Successful", "0.96"),
                        ("Failed", "0.80"),
                    ],
                )
            })
            .collect(),
    }
}

fn view_of(f: &Fixture) -> RolloutView {
    view(&Parts {
        rollout: &f.ro,
        replica_sets: &f.sets,
        pods: &f.pods,
        runs: &f.runs,
    })
}

#[test]
fn revisions_are_numbered_oldest_first_with_their_roles_pods_and_images() {
    let v = view_of(&fixture());
    assert_eq!(
        (v.step, v.steps, v.weights),
        (
            Some(1),
            Some(3),
            Some(Weights {
                canary: 20,
                stable: 80
            })
        )
    );
    assert_eq!(v.pauses, vec!["CanaryPauseStep"]);
    let revs: Vec<(usize, &str, Vec<&str>, Vec<String>)> = v
        .revisions
        .iter()
        .map(|r| {
            (
                r.revision,
                r.hash.as_str(),
                r.roles.clone(),
                r.images.clone(),
            )
        })
        .collect();
    assert_eq!(
        revs,
        vec![
            (1, "aaaa", vec!["stable"], vec!["web:1".to_string()]),
            (2, "bbbb", vec!["canary"], vec!["web:2".to_string()])
        ],
        "the ReplicaSet owned by another Rollout is left out"
    );
    let stable_pods: Vec<&str> = v.revisions[0]
        .pods
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(stable_pods, ["web-aaaa-1", "web-aaaa-2"]);
    let crashing = &v.revisions[1].pods[0];
    assert_eq!(
        (
            crashing.status.as_str(),
            crashing.ready.as_str(),
            crashing.restarts
        ),
        ("CrashLoopBackOff", "0/1", 3)
    );
}

#[test]
fn runs_newest_first_with_the_latest_measurements_and_the_failing_condition() {
    let v = view_of(&fixture());
    let names: Vec<&str> = v.analysis_runs.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "web-bbbb-7-step2",
            "web-bbbb-6-step2",
            "web-bbbb-5-step2",
            "web-bbbb-4-step2",
            "web-bbbb-3-step2"
        ]
    );
    let m = &v.analysis_runs[0].metrics[0];
    let values: Vec<&str> = m
        .measurements
        .iter()
        .filter_map(|x| x.value.as_deref())
        .collect();
    assert_eq!(values, ["0.98", "0.97", "0.99", "0.96", "0.80"]);
    assert_eq!(
        m.failing.as_deref(),
        Some("successCondition `result[0] >= 0.95` is false for result [0.80]")
    );
}

#[test]
fn plain_text_has_no_escape_codes_and_draws_the_tree() {
    let f = fixture();
    let v = view_of(&f);
    let text = render(&f.ro, &v, Style::PLAIN);
    assert!(!text.contains('\x1b'), "{text}");
    assert!(text.contains("Step:       1/3"), "{text}");
    assert!(text.contains("Rollout web  Rollout  Paused\n"), "{text}");
    assert!(
        text.contains("├── revision 2 (canary)  bbbb  web:2  1/1 ready, desired 1\n"),
        "{text}"
    );
    assert!(
        text.contains("│   └── pod web-bbbb-1  CrashLoopBackOff  ready 0/1  restarts 3\n"),
        "{text}"
    );
    assert!(
        text.contains("├── revision 1 (stable)  aaaa  web:1  2/2 ready, desired 2\n"),
        "{text}"
    );
    assert!(
        text.contains("└── AnalysisRun web-bbbb-3-step2  Failed: metric \"success-rate\" failed\n"),
        "{text}"
    );
    assert!(text.contains("    └── metric success-rate  Failed  [0.98 0.97 0.99 0.96 0.80(failed)]  successCondition"), "{text}");
}

#[test]
fn on_a_terminal_phases_and_verdicts_are_coloured_with_symbols() {
    let f = fixture();
    let v = view_of(&f);
    let text = render(&f.ro, &v, Style { color: true });
    assert!(
        text.contains("Phase:      \x1b[33m⏸ Paused\x1b[0m"),
        "{text}"
    );
    assert!(text.contains("\x1b[31m✖0.80\x1b[0m"), "{text}");
    assert!(text.contains("\x1b[31mCrashLoopBackOff\x1b[0m"), "{text}");
}

#[test]
fn the_view_serializes_with_camel_case_fields() {
    let v = view_of(&fixture());
    let json = serde_json::to_value(&v).expect("json");
    assert_eq!(
        json["analysisRuns"][0]["metrics"][0]["measurements"][4]["value"],
        "0.80"
    );
    assert_eq!(json["revisions"][1]["roles"][0], "canary");
    assert_eq!(json["phase"], "Paused");
}

#[test]
fn list_rows_sort_and_align_with_a_namespace_column_for_all_namespaces() {
    let mut other = rollout();
    other.metadata.name = Some("api".into());
    other.metadata.namespace = Some("auth".into());
    other.status = None;
    let now: Timestamp = "2026-12-01T13:00:00Z".parse().expect("now");
    let rows = list_rows(&[rollout(), other], now);
    assert_eq!(rows[0].name, "api");
    assert_eq!(
        (
            rows[1].step.as_str(),
            rows[1].weight.as_str(),
            rows[1].revision.as_str()
        ),
        ("1/3", "20", "bbbb")
    );
    let text = render_list(&rows, true, Style::PLAIN);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "NAMESPACE   NAME   STRATEGY   PHASE     STEP   CANARY WEIGHT   REVISION   AGE"
    );
    assert_eq!(
        lines[1],
        "auth        api    canary     Unknown   -      -               -          3h"
    );
    assert_eq!(
        lines[2],
        "shop        web    canary     Paused    1/3    20              bbbb       3h"
    );
    assert!(!render_list(&rows, false, Style::PLAIN).contains("NAMESPACE"));
}

#[test]
fn ages_read_like_kubectl() {
    let t = |s: i64| Timestamp::from_second(s).expect("ts");
    assert_eq!(age(t(1000), t(955)), "45s");
    assert_eq!(age(t(10_000), t(10_000 - 12 * 60)), "12m");
    assert_eq!(age(t(100_000), t(100_000 - 5 * 3600)), "5h");
    assert_eq!(age(t(1_000_000), t(1_000_000 - 3 * 86_400)), "3d");
    assert_eq!(
        age(t(0), t(10)),
        "0s",
        "a clock behind the server's is not negative"
    );
}
