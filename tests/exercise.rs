//! Rollback exercises on the local control plane, through the real `sluice` binary, with the
//! traffic simulator answering as the pods' annotations say, Istio's VirtualService carrying
//! the weights, and a real Prometheus scraping the simulator for the analysis and the request
//! counts. The stable revision is watched throughout: its ReplicaSet's size and selector are
//! polled from the API server while each exercise runs.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, ensure};
use common::exercise::{
    LIMIT, analysis_of, create, exercise, rollout, stable_hash, stack, stack_with, wait_back_on,
    wait_runs,
};
use common::fixture::{promote, set_template, wait_healthy, wait_paused_at};
use e2e::TestEnv;
use e2e::trafficsim::{ERROR_RATE_ANNOTATION, TrafficSim};
use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sluice::api::exercise::{ExerciseResult, RolloutExercise};

/// Polls the stable ReplicaSet (size and selector) until stopped; any change is an error.
fn watch_stable(
    env: &Arc<TestEnv>,
    hash: String,
) -> (
    Arc<AtomicBool>,
    tokio::task::JoinHandle<anyhow::Result<usize>>,
) {
    let stop = Arc::new(AtomicBool::new(false));
    let (env, flag) = (env.clone(), stop.clone());
    let task = tokio::spawn(async move {
        let api: Api<ReplicaSet> = env.api();
        let labels = format!("{}={hash}", sluice::api::constants::LABEL_POD_TEMPLATE_HASH);
        let found = api
            .list(&kube::api::ListParams::default().labels(&labels))
            .await?;
        let first = found
            .items
            .into_iter()
            .next()
            .context("the stable ReplicaSet")?;
        let name = first.metadata.name.clone().context("its name")?;
        let want = first.spec.context("stable spec")?;
        let mut polls = 0;
        while !flag.load(Ordering::SeqCst) {
            let spec = api.get(&name).await?.spec.context("stable spec")?;
            ensure!(
                spec.replicas == want.replicas && spec.selector == want.selector,
                "the stable ReplicaSet {name} changed: replicas {:?} -> {:?}, selector {:?} -> {:?}",
                want.replicas,
                spec.replicas,
                want.selector,
                spec.selector
            );
            polls += 1;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Ok(polls)
    });
    (stop, task)
}

/// Requests the simulator answered from `revision`: all, and 5xx.
fn simulated(sim: &TrafficSim, revision: &str) -> (u64, u64) {
    let mut all = 0;
    let mut failed = 0;
    for ((_, _, rev, code), n) in sim.stats() {
        if rev == revision {
            all += n;
            if code >= 500 {
                failed += n;
            }
        }
    }
    (all, failed)
}

fn within_5_percent(measured: i64, simulated: u64) -> bool {
    let s = simulated as f64;
    (measured as f64 - s).abs() <= 0.05 * s.max(1.0)
}

#[tokio::test]
async fn a_20_percent_error_fault_is_caught_rolled_back_and_passes_with_its_figures() {
    TestEnv::run("exercise-pass", |env| async move {
        let steps = json!([{"setWeight": 25}, analysis_of("web-canary"), {"setWeight": 50}, {"pause": {}}]);
        let stack = stack(&env, steps).await?;
        let stable = stable_hash(&env).await?;
        let generation = rollout(&env).await?.metadata.generation;
        let (stop, watcher) = watch_stable(&env, stable.clone());
        create(&env, &exercise("drill", &stack.prom.url(), json!({}))?).await?;
        let run = wait_runs(&env, "drill", 1, LIMIT).await?;
        stop.store(true, Ordering::SeqCst);
        let polls = watcher.await??;
        eprintln!("exercise run: {run:#?}");
        ensure!(run.result == Some(ExerciseResult::Passed), "the run did not pass: {run:?}");
        ensure!(run.abort_cause.as_deref() == Some("AnalysisFailed"), "{run:?}");
        ensure!(run.time_to_detect.is_some() && run.time_to_safe.is_some(), "{run:?}");
        ensure!(run.peak_weight == Some(25), "peak weight {:?}", run.peak_weight);
        let analysis = run.analysis.clone().context("the analysis that caught it")?;
        ensure!(analysis.metric.as_deref() == Some("success-rate"), "{analysis:?}");
        ensure!(polls > 10, "the stable ReplicaSet was polled only {polls} times");
        let revision = run.revision.clone().context("faulty revision")?;
        let (all, failed) = simulated(&stack.sim, &revision);
        let (counted, counted_failed) = (run.requests.context("requests")?, run.failed_requests.context("failed")?);
        eprintln!("figure: exercise requests {counted} (simulator {all}), failed {counted_failed} (simulator {failed}), detect {:?}, safe {:?}", run.time_to_detect, run.time_to_safe);
        ensure!(failed > 0, "the faulty revision failed no request");
        ensure!(within_5_percent(counted_failed, failed), "failed requests: Prometheus {counted_failed}, simulator {failed}");
        ensure!(within_5_percent(counted, all), "requests: Prometheus {counted}, simulator {all}");
        wait_back_on(&env, &stable).await?;
        ensure!(rollout(&env).await?.metadata.generation == generation, "the spec was written");
        let events = common::event_count(&env, "drill", "ExercisePassed").await?;
        ensure!(events == 1, "{events} ExercisePassed Events");
        stack.stop().await;
        Ok(())
    })
    .await;
}

/// A webhook receiver on loopback: the `trigger` of each notification it took.
async fn webhook() -> anyhow::Result<(String, Arc<std::sync::Mutex<Vec<String>>>)> {
    let got = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let seen = seen.clone();
            async move {
                let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                if let Ok(mut g) = seen.lock() {
                    g.push(v["trigger"].as_str().unwrap_or("?").to_string());
                }
                "ok"
            }
        }),
    );
    let base = common::analysis::serve(app).await?;
    Ok((format!("{base}/hook"), got))
}

/// Notifications of this namespace to `hook`: the release's triggers and the exercise's.
async fn notify_to(env: &TestEnv, hook: &str) -> anyhow::Result<String> {
    let ns = &env.namespace;
    let config = format!(
        "receivers:\n  - name: sre\n    webhook: {{url: {hook}}}\ndefaults:\n  {ns}:\n    on-release-started: [sre]\n    on-aborted: [sre]\n    on-recovered: [sre]\n    on-exercise-failed: [sre]\n"
    );
    let cm: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "notifications"}, "data": {"config.yaml": config}
    }))?;
    env.api::<k8s_openapi::api::core::v1::ConfigMap>()
        .create(&PostParams::default(), &cm)
        .await?;
    Ok(format!("{ns}/notifications"))
}

#[tokio::test]
async fn a_fault_the_analysis_cannot_see_fails_with_the_safety_stop_and_stable_untouched() {
    TestEnv::run("exercise-fail", |env| async move {
        // The analysis judges the stable Service: it never sees the canary's errors.
        let steps = json!([{"setWeight": 25}, analysis_of("web-stable"), {"setWeight": 50}, {"pause": {"duration": "3s"}}]);
        let (hook, told) = webhook().await?;
        let source = notify_to(&env, &hook).await?;
        let stack = stack_with(&env, steps, &["--notifications", &source]).await?;
        let stable = stable_hash(&env).await?;
        let (stop, watcher) = watch_stable(&env, stable.clone());
        create(&env, &exercise("blind", &stack.prom.url(), json!({}))?).await?;
        let run = wait_runs(&env, "blind", 1, LIMIT).await?;
        stop.store(true, Ordering::SeqCst);
        let polls = watcher.await??;
        eprintln!("exercise run: {run:#?}");
        ensure!(run.result == Some(ExerciseResult::Failed), "{run:?}");
        ensure!(run.abort_cause.as_deref() == Some("SafetyStop"), "{run:?}");
        let must = run.objectives.iter().find(|o| o.name == "mustDetect").context("mustDetect")?;
        ensure!(!must.met, "{must:?}");
        ensure!(run.peak_weight == Some(50), "it went through every step: {:?}", run.peak_weight);
        ensure!(polls > 10, "polled {polls} times");
        wait_back_on(&env, &stable).await?;
        let warnings = common::event_count(&env, "blind", "ExerciseFailed").await?;
        ensure!(warnings >= 1, "no ExerciseFailed Event");
        // The failure is told; the drill's own release, abort and recovery page nobody.
        e2e::wait_for("on-exercise-failed told", LIMIT, || async {
            let got = told.lock().map(|g| g.clone()).unwrap_or_default();
            Ok(got.iter().any(|t| t == "on-exercise-failed").then_some(()))
        })
        .await?;
        let got = told.lock().map(|g| g.clone()).unwrap_or_default();
        ensure!(got == ["on-exercise-failed"], "told: {got:?}");
        stack.stop().await;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_scheduled_exercise_is_skipped_during_a_real_release_and_runs_at_its_next_time() {
    TestEnv::run("exercise-schedule", |env| async move {
        let steps = json!([{"setWeight": 25}, analysis_of("web-canary"), {"pause": {}}]);
        let stack = stack(&env, steps).await?;
        // A real release, paused at its last step.
        set_template(
            &env,
            "web",
            "registry.example/web:2",
            json!({ERROR_RATE_ANNOTATION: "0"}),
        )
        .await?;
        wait_paused_at(&env, "web", 2, LIMIT).await?;
        create(
            &env,
            &exercise(
                "nightly",
                &stack.prom.url(),
                json!({"schedule": "* * * * *"}),
            )?,
        )
        .await?;
        let skipped = wait_runs(&env, "nightly", 1, Duration::from_secs(150)).await?;
        ensure!(
            skipped.result == Some(ExerciseResult::Skipped),
            "{skipped:?}"
        );
        ensure!(skipped.trigger == "Schedule", "{skipped:?}");
        let why = skipped.message.clone().unwrap_or_default();
        ensure!(
            why.contains("is releasing revision") || why.contains("is Paused"),
            "{why}"
        );
        promote(&env, "web").await?;
        let stable = wait_healthy(&env, "web", 4, LIMIT).await?;
        let ran = wait_runs(&env, "nightly", 2, Duration::from_secs(200)).await?;
        ensure!(
            ran.trigger == "Schedule" && ran.result == Some(ExerciseResult::Passed),
            "{ran:?}"
        );
        ensure!(
            ran.stable_revision.as_deref() == Some(stable.as_str()),
            "{ran:?}"
        );
        let due = ran.due_at.clone().context("due")?.0;
        let started = ran.started_at.clone().context("started")?.0;
        ensure!(due.as_second() % 60 == 0, "due at a whole minute: {due}");
        ensure!(
            started.duration_since(due).as_secs() < 10,
            "started {started}, due {due}"
        );
        wait_back_on(&env, &stable).await?;
        stack.stop().await;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_sigkill_of_the_controller_mid_exercise_ends_in_the_same_result() {
    TestEnv::run("exercise-kill", |env| async move {
        let steps =
            json!([{"setWeight": 25}, analysis_of("web-canary"), {"setWeight": 50}, {"pause": {}}]);
        let mut stack = stack(&env, steps).await?;
        let stable = stable_hash(&env).await?;
        let (stop, watcher) = watch_stable(&env, stable.clone());
        create(&env, &exercise("crash", &stack.prom.url(), json!({}))?).await?;
        // Killed once the faulty revision serves traffic, in the middle of its analysis.
        common::wait_status(&env, "web", "the faulty revision live", LIMIT, |s| {
            s.exercise.as_ref().is_some_and(|e| e.live_at.is_some())
        })
        .await?;
        stack.controller.kill();
        tokio::time::sleep(Duration::from_secs(3)).await;
        stack.controller.restart()?;
        let run = wait_runs(&env, "crash", 1, LIMIT).await?;
        stop.store(true, Ordering::SeqCst);
        watcher.await??;
        ensure!(run.result == Some(ExerciseResult::Passed), "{run:?}");
        ensure!(
            run.abort_cause.as_deref() == Some("AnalysisFailed"),
            "{run:?}"
        );
        wait_back_on(&env, &stable).await?;
        let ex = env.api::<RolloutExercise>().get("crash").await?;
        ensure!(
            ex.status.map(|s| s.history.len()) == Some(1),
            "one run, not two"
        );
        stack.stop().await;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn exercise_start_and_cancel_through_annotations() {
    TestEnv::run("exercise-cancel", |env| async move {
        let steps = json!([{"setWeight": 25}, {"pause": {"duration": "10m"}}, {"pause": {}}]);
        let stack = stack(&env, steps).await?;
        let stable = stable_hash(&env).await?;
        create(
            &env,
            &exercise(
                "manual",
                &stack.prom.url(),
                json!({"schedule": "0 0 1 1 *"}),
            )?,
        )
        .await?;
        let api = env.api::<RolloutExercise>();
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        let annotate = |key: &str, value: &str| json!({"metadata": {"annotations": {key: value}}});
        api.patch(
            "manual",
            &PatchParams::default(),
            &Patch::Merge(annotate(sluice::exercise::run::RUN_REQUESTED, &now)),
        )
        .await?;
        common::wait_status(&env, "web", "the faulty revision live", LIMIT, |s| {
            s.exercise.as_ref().is_some_and(|e| e.live_at.is_some())
        })
        .await?;
        let later = k8s_openapi::jiff::Timestamp::now().to_string();
        api.patch(
            "manual",
            &PatchParams::default(),
            &Patch::Merge(annotate(sluice::exercise::run::CANCEL_REQUESTED, &later)),
        )
        .await?;
        let run = wait_runs(&env, "manual", 1, LIMIT).await?;
        ensure!(
            run.result == Some(ExerciseResult::Cancelled) && run.trigger == "Request",
            "{run:?}"
        );
        wait_back_on(&env, &stable).await?;
        stack.stop().await;
        Ok(())
    })
    .await;
}
