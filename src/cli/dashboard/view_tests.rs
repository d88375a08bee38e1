use super::*;
use serde_json::{Value, json};

const UID: &str = "uid-web";

fn now() -> Timestamp {
    Timestamp::from_second(1_800_000_000).expect("timestamp")
}

fn rollout_with(status: Value) -> Arc<Parsed<Rollout>> {
    let p: Parsed<Rollout> = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "web", "namespace": "shop", "uid": UID},
        "spec": {
            "replicas": 4,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "web:2"}]}},
            "strategy": {"canary": {"steps": [
                {"setWeight": 20}, {"pause": {}}, {"setWeight": 60}, {"pause": {"duration": "30s"}},
                {"analysis": {"templates": [{"templateName": "success-rate"}]}}
            ]}}
        },
        "status": status
    }))
    .expect("rollout");
    Arc::new(p)
}

/// Paused at step 1 of 5, canary `bbb` at 20% over stable `aaa`.
fn paused_canary() -> Arc<Parsed<Rollout>> {
    rollout_with(json!({
        "phase": "Paused", "message": "paused at step 1",
        "stableRS": "aaa", "currentPodHash": "bbb", "currentStepIndex": 1,
        "pauseConditions": [{"reason": "CanaryPauseStep", "startTime": "2027-01-15T08:00:00Z"}],
        "canary": {"weights": {"canary": {"weight": 20}, "stable": {"weight": 80}}}
    }))
}

fn owner() -> Value {
    json!([{"apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "name": "web", "uid": UID, "controller": true}])
}

fn replica_set(
    hash: &str,
    image: &str,
    replicas: i32,
    ready: i32,
    created: &str,
) -> Arc<ReplicaSet> {
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": format!("web-{hash}"), "namespace": "shop",
                "creationTimestamp": created,
                "labels": {LABEL_POD_TEMPLATE_HASH: hash, LABEL_ROLLOUT: "web"},
                "ownerReferences": owner()},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [{"name": "web", "image": image}]}}},
            "status": {"replicas": replicas, "readyReplicas": ready, "availableReplicas": ready}
        }))
        .expect("replica set"),
    )
}

fn run(name: &str, created: &str, measurements: Value) -> Arc<Parsed<AnalysisRun>> {
    Arc::new(
        serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisRun",
            "metadata": {"name": name, "namespace": "shop", "creationTimestamp": created,
                "labels": {LABEL_ROLLOUT: "web", "sluice.dev/analysis": "step", LABEL_POD_TEMPLATE_HASH: "bbb"},
                "ownerReferences": owner()},
            "spec": {"metrics": [{"name": "success-rate", "successCondition": "result[0] >= 0.95",
                "provider": {"web": {"url": "http://127.0.0.1:1/rate"}}}]},
            "status": {"phase": "Running", "metricResults": [
                {"name": "success-rate", "phase": "Running", "measurements": measurements}
            ]}
        }))
        .expect("run"),
    )
}

fn measurement(at: &str, value: &str, phase: &str) -> Value {
    json!({"phase": phase, "startedAt": at, "finishedAt": at, "value": value})
}

fn event(kind: &str, name: &str, reason: &str, at: &str) -> Arc<Event> {
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": format!("{name}.{reason}"), "namespace": "shop"},
            "eventTime": at, "reason": reason, "note": format!("{reason} happened"), "type": "Normal",
            "reportingController": "sluice.dev/controller", "reportingInstance": "a", "action": "x",
            "regarding": {"apiVersion": "sluice.dev/v1alpha1", "kind": kind, "name": name, "namespace": "shop"}
        }))
        .expect("event"),
    )
}

struct Fixture {
    rollouts: Vec<Arc<Parsed<Rollout>>>,
    runs: Vec<Arc<Parsed<AnalysisRun>>>,
    replica_sets: Vec<Arc<ReplicaSet>>,
    events: Vec<Arc<Event>>,
}

impl Fixture {
    fn snap(&self) -> Snapshot<'_> {
        Snapshot {
            rollouts: &self.rollouts,
            runs: &self.runs,
            replica_sets: &self.replica_sets,
            events: &self.events,
        }
    }
}

fn releasing() -> Fixture {
    Fixture {
        rollouts: vec![paused_canary()],
        runs: vec![],
        replica_sets: vec![
            replica_set("aaa", "web:1", 4, 4, "2027-01-15T07:00:00Z"),
            replica_set("bbb", "web:2", 1, 1, "2027-01-15T08:00:00Z"),
            replica_set("old", "web:0", 0, 0, "2027-01-14T07:00:00Z"),
        ],
        events: vec![],
    }
}

#[test]
fn a_paused_canary_row_shows_phase_step_weights_and_both_images() {
    let f = releasing();
    let v = list(f.snap(), "namespace shop", vec![]);
    assert_eq!(v.rollouts.len(), 1);
    let r = &v.rollouts[0];
    assert_eq!((r.namespace.as_str(), r.name.as_str()), ("shop", "web"));
    assert_eq!(r.strategy, "canary");
    assert_eq!(r.phase, "Paused");
    assert_eq!(r.step, Some(StepPosition { index: 1, total: 5 }));
    assert_eq!(
        r.weights,
        Some(Weights {
            canary: 20,
            stable: 80
        })
    );
    assert_eq!(
        r.images,
        vec![
            RoleImage {
                role: Role::Canary,
                image: "web:2".into()
            },
            RoleImage {
                role: Role::Stable,
                image: "web:1".into()
            },
        ],
        "the old revision's image is not a current one"
    );
    assert!(!r.aborted);
}

#[test]
fn a_rollout_under_an_exercise_says_its_release_is_a_drill() {
    let f = releasing();
    assert_eq!(
        list(f.snap(), "namespace shop", vec![]).rollouts[0].exercise,
        None
    );
    let drill = Fixture {
        rollouts: vec![rollout_with(json!({
            "phase": "Degraded", "abort": true, "stableRS": "aaa", "currentPodHash": "aaa",
            "exercise": {"name": "drill", "run": 2, "stableRevision": "aaa", "revision": "bbb",
                "fault": {"patch": {"spec": {"containers": [{"name": "web", "image": "bad:1"}]}}},
                "liveAt": "2027-01-15T08:00:00Z", "abortedAt": "2027-01-15T08:00:20Z",
                "abortCause": "AnalysisFailed"}
        }))],
        ..releasing()
    };
    let r = &list(drill.snap(), "namespace shop", vec![]).rollouts[0];
    assert_eq!(
        r.exercise.as_deref(),
        Some(
            "drill run 2 (a rehearsed rollback, not a real release): faulty revision bbb aborted (AnalysisFailed) at 2027-01-15T08:00:20Z"
        )
    );
    let page = rollout(drill.snap(), "shop", "web", now(), vec![]);
    assert_eq!(page.row.exercise, r.exercise, "the page says it too");
}

#[test]
fn a_rollout_not_yet_reconciled_shows_unknown_and_its_template_image() {
    let f = Fixture {
        rollouts: vec![rollout_with(json!(null))],
        runs: vec![],
        replica_sets: vec![],
        events: vec![],
    };
    let r = &list(f.snap(), "namespace shop", vec![]).rollouts[0];
    assert_eq!(r.phase, "Unknown");
    assert_eq!(r.weights, None);
    assert_eq!(r.step, Some(StepPosition { index: 0, total: 5 }));
    assert_eq!(
        r.images,
        vec![RoleImage {
            role: Role::Stable,
            image: "web:2".into()
        }]
    );

    let mut f = releasing();
    f.replica_sets.clear();
    let r = &list(f.snap(), "namespace shop", vec![]).rollouts[0];
    assert_eq!(
        r.images,
        vec![RoleImage {
            role: Role::Canary,
            image: "web:2".into()
        }],
        "while releasing, the template is the canary's"
    );
}

#[test]
fn rows_are_sorted_by_namespace_then_name_and_a_malformed_one_says_why() {
    let bad: Parsed<Rollout> = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "api", "namespace": "shop"},
        "spec": {"strategy": {"canary": {}}, "selector": {"matchLabels": {"app": "api"}},
            "template": {"spec": {"containers": [{"name": "api", "ports": [{"containerPort": "eighty"}]}]}}}
    }))
    .expect("parsed");
    let f = Fixture {
        rollouts: vec![paused_canary(), Arc::new(bad)],
        runs: vec![],
        replica_sets: vec![],
        events: vec![],
    };
    let v = list(
        f.snap(),
        "all namespaces",
        vec!["watching events: forbidden".into()],
    );
    let names: Vec<&str> = v.rollouts.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["api", "web"]);
    let why = v.rollouts[0].malformed.as_deref().expect("malformed");
    assert!(why.contains("containerPort"), "{why}");
    assert_eq!(v.problems, ["watching events: forbidden"]);
    assert_eq!(v.scope, "all namespaces");
}

#[test]
fn the_sparkline_follows_the_newest_run_and_its_numeric_values() {
    let mut f = releasing();
    f.runs = vec![
        run(
            "web-bbb-1-step4",
            "2027-01-15T08:00:00Z",
            json!([measurement("2027-01-15T08:00:10Z", "[0.91]", "Failed")]),
        ),
        run(
            "web-bbb-2-step4",
            "2027-01-15T09:00:00Z",
            json!([
                measurement("2027-01-15T09:00:10Z", "[0.97]", "Successful"),
                measurement("2027-01-15T09:00:20Z", "[]", "Inconclusive"),
                measurement("2027-01-15T09:00:30Z", "0.99", "Successful"),
            ]),
        ),
    ];
    let r = &list(f.snap(), "namespace shop", vec![]).rollouts[0];
    let s = r.analysis.as_ref().expect("sparkline");
    assert_eq!(s.run, "web-bbb-2-step4");
    assert_eq!(s.metric, "success-rate");
    assert_eq!(s.values, vec![0.97, 0.99], "the empty vector is no value");
}

#[test]
fn numbers_are_read_from_scalars_vectors_and_json() {
    assert_eq!(numeric(Some("0.5")), Some(0.5));
    assert_eq!(numeric(Some(" [0.25, 3] ")), Some(0.25));
    assert_eq!(numeric(Some("[\"7\"]")), Some(7.0));
    assert_eq!(numeric(Some("12")), Some(12.0));
    assert_eq!(numeric(Some("[]")), None);
    assert_eq!(numeric(Some("NaN")), None);
    assert_eq!(numeric(Some("{\"ok\":true}")), None);
    assert_eq!(numeric(Some("true")), None);
    assert_eq!(numeric(None), None);
}

#[test]
fn the_page_marks_the_current_step_and_orders_revisions_by_role() {
    let f = releasing();
    let v = rollout(f.snap(), "shop", "web", now(), vec![]);
    assert!(v.found);
    let states: Vec<(&str, &str)> = v.steps.iter().map(|s| (s.text.as_str(), s.state)).collect();
    assert_eq!(
        states,
        [
            ("set weight 20%", "done"),
            ("pause until promoted", "current"),
            ("set weight 60%", "pending"),
            ("pause 30s", "pending"),
            ("analysis success-rate", "pending"),
        ]
    );
    let roles: Vec<(&str, Role, i32)> = v
        .revisions
        .iter()
        .map(|r| (r.hash.as_str(), r.role, r.ready))
        .collect();
    assert_eq!(
        roles,
        [
            ("bbb", Role::Canary, 1),
            ("aaa", Role::Stable, 4),
            ("old", Role::Old, 0)
        ]
    );
    assert_eq!(v.pauses.len(), 1);
    assert!(
        v.pauses[0].starts_with("CanaryPauseStep since 2027-01-15T08:00:00"),
        "{:?}",
        v.pauses
    );
}

#[test]
fn a_finished_release_marks_every_step_done() {
    let f = Fixture {
        rollouts: vec![rollout_with(json!({
            "phase": "Healthy", "stableRS": "bbb", "currentPodHash": "bbb", "currentStepIndex": 5
        }))],
        runs: vec![],
        replica_sets: vec![],
        events: vec![],
    };
    let v = rollout(f.snap(), "shop", "web", now(), vec![]);
    assert!(v.steps.iter().all(|s| s.state == "done"), "{:?}", v.steps);
}

#[test]
fn controls_say_which_apply_and_why_the_others_do_not() {
    let f = releasing();
    let v = rollout(f.snap(), "shop", "web", now(), vec![]);
    let by_name = |n: &str| v.controls.iter().find(|c| c.name == n).expect(n).clone();
    assert!(by_name("promote").applies);
    assert!(by_name("abort").applies);
    assert!(by_name("pause").applies);
    let retry = by_name("retry");
    assert!(!retry.applies);
    assert!(
        retry
            .why_not
            .as_deref()
            .is_some_and(|w| w.contains("nothing to retry")),
        "{retry:?}"
    );
    assert!(!by_name("resume").applies);

    let settled = Fixture {
        rollouts: vec![rollout_with(
            json!({"phase": "Healthy", "stableRS": "aaa", "currentPodHash": "aaa"}),
        )],
        runs: vec![],
        replica_sets: vec![],
        events: vec![],
    };
    let v = rollout(settled.snap(), "shop", "web", now(), vec![]);
    let abort = v
        .controls
        .iter()
        .find(|c| c.name == "abort")
        .expect("abort");
    assert_eq!(
        abort.why_not.as_deref(),
        Some("web is not releasing a new revision: nothing to abort")
    );
}

#[test]
fn control_names_are_the_buttons() {
    assert_eq!(control_named("abort"), Some(Control::Abort));
    assert_eq!(control_named("promote"), Some(Control::Promote));
    assert_eq!(
        control_named("promote-full"),
        None,
        "not offered on the page"
    );
    assert_eq!(control_named(""), None);
}

#[test]
fn metrics_carry_points_conditions_and_the_last_failure() {
    let mut f = releasing();
    f.runs = vec![run(
        "web-bbb-1-step4",
        "2027-01-15T08:00:00Z",
        json!([
            measurement("2027-01-15T08:00:10Z", "[0.97]", "Successful"),
            {"phase": "Failed", "startedAt": "2027-01-15T08:00:20Z", "finishedAt": "2027-01-15T08:00:20Z",
             "value": "[0.5]", "message": "successCondition `result[0] >= 0.95` is false for result [0.5]"},
        ]),
    )];
    let v = rollout(f.snap(), "shop", "web", now(), vec![]);
    assert_eq!(v.runs.len(), 1);
    let r = &v.runs[0];
    assert_eq!(r.kind.as_deref(), Some("step"));
    assert_eq!(r.revision.as_deref(), Some("bbb"));
    let m = &r.metrics[0];
    assert_eq!(m.success_condition.as_deref(), Some("result[0] >= 0.95"));
    let values: Vec<Option<f64>> = m.points.iter().map(|p| p.value).collect();
    assert_eq!(values, [Some(0.97), Some(0.5)]);
    let at: Timestamp = "2027-01-15T08:00:10Z".parse().expect("time");
    assert_eq!(m.points[0].at, Some(at.as_millisecond()));
    assert_eq!(m.points[1].at, Some(at.as_millisecond() + 10_000));
    assert_eq!(m.points[1].phase, "Failed");
    assert_eq!(
        m.failing.as_deref(),
        Some("successCondition `result[0] >= 0.95` is false for result [0.5]")
    );
    let mut unexplained = f.runs[0].as_ref().clone();
    if let Ok(run) = unexplained.0.as_mut()
        && let Some(st) = run.status.as_mut()
    {
        st.metric_results[0].measurements[1].message = None;
    }
    f.runs = vec![Arc::new(unexplained)];
    let v = rollout(f.snap(), "shop", "web", now(), vec![]);
    assert_eq!(
        v.runs[0].metrics[0].failing.as_deref(),
        Some("Failed (value [0.5])"),
        "without a message, the phase and the value"
    );
}

#[test]
fn events_are_the_rollouts_and_its_runs_newest_first() {
    let mut f = releasing();
    f.runs = vec![run("web-bbb-1-step4", "2027-01-15T08:00:00Z", json!([]))];
    f.events = vec![
        event(
            "Rollout",
            "web",
            "StepCompleted",
            "2027-01-15T08:00:05.000000Z",
        ),
        event(
            "AnalysisRun",
            "web-bbb-1-step4",
            "MetricFailed",
            "2027-01-15T08:00:30.000000Z",
        ),
        event("Rollout", "api", "Paused", "2027-01-15T08:00:40.000000Z"),
        event(
            "AnalysisRun",
            "api-ccc-1-step0",
            "MetricFailed",
            "2027-01-15T08:00:50.000000Z",
        ),
    ];
    let v = rollout(f.snap(), "shop", "web", now(), vec![]);
    let seen: Vec<(&str, &str)> = v
        .events
        .iter()
        .map(|e| (e.object.as_str(), e.reason.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("AnalysisRun/web-bbb-1-step4", "MetricFailed"),
            ("Rollout/web", "StepCompleted")
        ]
    );
    assert_eq!(v.events[1].note, "StepCompleted happened");
}

#[test]
fn a_rollout_out_of_the_snapshot_is_not_found() {
    let f = releasing();
    let v = rollout(f.snap(), "other", "web", now(), vec![]);
    assert!(!v.found);
    assert_eq!(v.row.namespace, "other");
    assert!(v.controls.is_empty());
}

#[test]
fn a_blue_green_rollout_names_active_and_preview() {
    let p: Parsed<Rollout> = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "web", "namespace": "shop", "uid": UID},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
            "template": {"spec": {"containers": [{"name": "web", "image": "web:2"}]}},
            "strategy": {"blueGreen": {"activeService": "web", "previewService": "web-preview"}}},
        "status": {"phase": "Paused", "blueGreen": {"activeSelector": "aaa", "previewSelector": "bbb"}}
    }))
    .expect("rollout");
    let mut f = releasing();
    f.rollouts = vec![Arc::new(p)];
    let v = rollout(f.snap(), "shop", "web", now(), vec![]);
    let roles: Vec<Role> = v.revisions.iter().map(|r| r.role).collect();
    assert_eq!(roles, [Role::Preview, Role::Active, Role::Old]);
    assert_eq!(v.row.strategy, "blueGreen");
    assert_eq!(v.row.step, None);
    assert!(v.steps.is_empty());
}
