//! Canary releases through the real `sluice` controller on the local control plane, as a user
//! would run them: Services selected by pod-template-hash, steps, pause and promote, and a
//! crash-looping release aborted on its own.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use common::fixture::{
    create_rollout, delete_rollout, promote, replicas_by_hash, set_abort, set_image, set_template,
    wait_healthy, web_canary,
};
use common::{
    ControllerProcess, canary_weight, create_services, events_for, kstatus, phase, rollouts,
    selector_hash, wait_condition, wait_event, wait_selector, wait_status,
};
use e2e::nodesim::BEHAVIOUR_ANNOTATION;
use e2e::{TestEnv, wait_for};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::json;
use sluice::api::constants::{LABEL_ROLLOUT, condition};
use sluice::api::rollout::{Rollout, RolloutPhase};

const LIMIT: Duration = Duration::from_secs(90);

/// Rollout `web`: 4 pods, a canary over the Services `web-stable` and `web-canary` with `steps`.
fn rollout(steps: serde_json::Value) -> anyhow::Result<Rollout> {
    web_canary(
        4,
        json!({"maxSurge": 1, "maxUnavailable": 0, "abortScaleDownDelaySeconds": 3, "steps": steps}),
    )
}

/// Starts the controller, creates the stable and canary Services and `ro`, and waits until the
/// first revision is Healthy with every pod available. Returns the controller and v1's hash.
async fn healthy_v1(env: &TestEnv, ro: Rollout) -> anyhow::Result<(ControllerProcess, String)> {
    let controller = ControllerProcess::start(env)?;
    create_services(env, &["web-stable", "web-canary"]).await?;
    create_rollout(env, &ro).await?;
    let v1 = wait_healthy(env, "web", ro.spec.replicas(), LIMIT).await?;
    Ok((controller, v1))
}

/// The pods `web`'s ReplicaSets are sized for, by revision.
async fn sizes(env: &TestEnv) -> anyhow::Result<BTreeMap<String, i32>> {
    replicas_by_hash(env, "web").await
}

/// Waits until the ReplicaSets of `web` have exactly the sizes `want` (revision, replicas).
async fn wait_sizes(env: &TestEnv, what: &str, want: &[(&str, i32)]) -> anyhow::Result<()> {
    e2e::wait_for(what, LIMIT, || async {
        let sets = sizes(env).await?;
        Ok(want
            .iter()
            .all(|(hash, n)| sets.get(*hash) == Some(n))
            .then_some(()))
    })
    .await
}

#[tokio::test]
async fn canary_walks_every_step_pauses_and_is_promoted() {
    TestEnv::run("canary-happy", |env| async move {
        let steps = json!([{"setWeight": 25}, {"pause": {"duration": "2s"}}, {"setWeight": 50}, {"pause": {}}]);
        let (mut controller, v1) = healthy_v1(&env, rollout(steps)?).await?;
        ensure!(selector_hash(&env, "web-stable").await?.as_deref() == Some(v1.as_str()), "stable Service selects v1");
        let flux = kstatus(&env, "web").await?;
        ensure!(flux == "Current", "Flux's kstatus reads a Healthy Rollout as {flux}");

        set_image(&env, "web", "registry.example/web:2").await?;
        let at_25 = wait_status(&env, "web", "the timed pause after weight 25", LIMIT, |s| {
            s.current_step_index == Some(1) && canary_weight(s) == Some(25)
        })
        .await?;
        let v2 = at_25.current_pod_hash.clone().context("currentPodHash")?;
        ensure!(v2 != v1, "a new revision");
        ensure!(selector_hash(&env, "web-canary").await?.as_deref() == Some(v2.as_str()), "canary Service selects v2");
        ensure!(selector_hash(&env, "web-stable").await?.as_deref() == Some(v1.as_str()), "stable Service still v1");
        // Killed during the timed pause (once its Event is out) and started again: the pause
        // still ends once.
        wait_event(&env, "web", "the Paused Event", |e| e.1 == "Paused").await?;
        controller.restart()?;

        let at_50 = wait_status(&env, "web", "the indefinite pause at weight 50", LIMIT, |s| {
            s.current_step_index == Some(3) && canary_weight(s) == Some(50) && phase(s) == Some(RolloutPhase::Paused)
        })
        .await?;
        ensure!(at_50.pause_conditions.len() == 1, "{:?}", at_50.pause_conditions);
        let flux = kstatus(&env, "web").await?;
        ensure!(flux == "InProgress", "Flux's kstatus reads a paused release as {flux}");
        let sets = sizes(&env).await?;
        ensure!(sets == BTreeMap::from([(v1.clone(), 2), (v2.clone(), 2)]), "2 + 2 pods at weight 50: {sets:?}");

        // It stays paused until promoted: a reconcile after it paused leaves it where it is; the
        // promotion clears the pause through the status.
        common::poke_and_wait(&env, &controller, "web").await?;
        let still = rollouts(&env).get("web").await?.status.context("status")?;
        ensure!(still.current_step_index == Some(3), "still paused: {:?}", still.current_step_index);
        promote(&env, "web").await?;

        let done = wait_status(&env, "web", "v2 promoted and Healthy", LIMIT, |s| {
            phase(s) == Some(RolloutPhase::Healthy) && s.stable_rs.as_deref() == Some(v2.as_str()) && s.available_replicas == Some(4)
        })
        .await?;
        ensure!(done.current_step_index == Some(4), "{:?}", done.current_step_index);
        ensure!(selector_hash(&env, "web-stable").await?.as_deref() == Some(v2.as_str()), "stable Service selects v2");
        let sets = sizes(&env).await?;
        ensure!(sets.get(&v1) == Some(&0) && sets.get(&v2) == Some(&4), "{sets:?}");

        let reasons: Vec<String> = events_for(&env, "web").await?.into_iter().map(|e| e.1).collect();
        for r in ["FirstRevision", "RolloutStarted", "StepCompleted", "Paused", "PauseEnded", "Promoted", "RolloutCompleted"] {
            ensure!(reasons.iter().any(|x| x == r), "no {r} Event in {reasons:?}");
        }
        // The same story in the metrics, with bounded labels.
        let (code, metrics) = common::http_get(&controller, "/metrics").await?;
        ensure!(code == 200, "/metrics answered {code}");
        let ns = &env.namespace;
        for line in [
            format!(r#"sluice_rollout_phase{{namespace="{ns}",rollout="web",phase="Healthy"}} 1"#),
            format!(r#"sluice_rollout_phase{{namespace="{ns}",rollout="web",phase="Paused"}} 0"#),
            format!(r#"sluice_rollout_decisions_total{{namespace="{ns}",rollout="web",reason="RolloutCompleted"}} 1"#),
            // The restarted controller saw the promotion, not the release's start: it does not
            // time a release it did not see begin.
            format!(r#"sluice_rollout_promotions_total{{namespace="{ns}",rollout="web",cause="Manual"}} 1"#),
            format!(r#"sluice_rollout_aborts_total{{namespace="{ns}",rollout="web",cause="Request"}} 0"#),
            "sluice_leader 1".to_string(),
        ] {
            ensure!(metrics.lines().any(|l| l == line), "no `{line}` in /metrics:\n{metrics}");
        }
        ensure!(!metrics.contains(&v1) && !metrics.contains(&v2), "no revision hash in metric labels");
        // Replicas by role: all four on the (new) stable revision, none on a canary.
        wait_for("replicas by role in /metrics", LIMIT, || async {
            let (_, metrics) = common::http_get(&controller, "/metrics").await?;
            let want = [
                format!(r#"sluice_rollout_desired_replicas{{namespace="{ns}",rollout="web",role="stable"}} 4"#),
                format!(r#"sluice_rollout_available_replicas{{namespace="{ns}",rollout="web",role="stable"}} 4"#),
                format!(r#"sluice_rollout_desired_replicas{{namespace="{ns}",rollout="web",role="canary"}} 0"#),
                format!(r#"sluice_rollout_available_replicas{{namespace="{ns}",rollout="web",role="canary"}} 0"#),
            ];
            Ok(want.iter().all(|w| metrics.lines().any(|l| l == w)).then_some(()))
        })
        .await?;
        ensure!(!metrics.contains("sluice_rollout_release_duration_seconds"), "no release seen start, none timed");
        // Nothing left waiting in the work queue once the release is over.
        wait_for("an empty work queue", LIMIT, || async {
            let (_, metrics) = common::http_get(&controller, "/metrics").await?;
            Ok(metrics.lines().any(|l| l == "sluice_workqueue_depth 0").then_some(()))
        })
        .await?;
        ensure!(common::http_get(&controller, "/readyz").await?.0 == 200, "the leader is ready");
        for (reason, times) in [("StepCompleted", 2), ("PauseEnded", 1), ("Promoted", 1)] {
            let seen = common::event_count(&env, "web", reason).await?;
            ensure!(seen == times, "{reason} recorded {seen} times, not {times}: a step skipped or repeated ({reasons:?})");
        }

        // Nothing to do: a reconcile writes nothing. A change to the Rollout's metadata wakes the
        // controller; afterwards no resourceVersion moves (Rollout, ReplicaSets, Services).
        let rv = |env: std::sync::Arc<TestEnv>| async move {
            let ro = rollouts(&env).get("web").await?.metadata.resource_version;
            let rs: Api<ReplicaSet> = env.api();
            let sets: Vec<Option<String>> = rs
                .list(&ListParams::default().labels(&format!("{LABEL_ROLLOUT}=web")))
                .await?
                .items
                .into_iter()
                .map(|r| r.metadata.resource_version)
                .collect();
            let svc: Api<Service> = env.api();
            let s = (svc.get("web-stable").await?.metadata.resource_version, svc.get("web-canary").await?.metadata.resource_version);
            anyhow::Ok((ro, sets, s))
        };
        let (_, sets_before, services_before) = rv(env.clone()).await?;
        let touched = rollouts(&env)
            .patch("web", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"annotations": {"touched": "1"}}})))
            .await?;
        let touched_rv = touched.metadata.resource_version.clone().context("resourceVersion")?;
        // The reconcile of exactly this change, found in the log by the resourceVersion it read.
        let line = common::wait_log_line(
            &controller,
            "the reconcile of the touched Rollout",
            &["reconciled", &format!("resource_version={touched_rv} ")],
        )
        .await?;
        ensure!(line.contains(" writes=0 "), "a reconcile with nothing to do wrote: {line}");
        let (ro_after, sets_after, services_after) = rv(env.clone()).await?;
        ensure!(
            ro_after.as_deref() == Some(touched_rv.as_str()) && sets_after == sets_before && services_after == services_before,
            "a reconcile with nothing to do wrote to the API server"
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn crash_looping_release_is_aborted_with_its_diagnosis() {
    TestEnv::run("canary-crashloop", |env| async move {
        let (mut controller, v1) =
            healthy_v1(&env, rollout(json!([{"setWeight": 50}, {"pause": {}}]))?).await?;

        set_template(
            &env,
            "web",
            "registry.example/web:broken",
            json!({BEHAVIOUR_ANNOTATION: "crashloop"}),
        )
        .await?;
        let started = Instant::now();
        // Killed as the bad release starts, started again: it still aborts, as fast.
        wait_status(&env, "web", "the bad release started", LIMIT, |s| {
            s.current_pod_hash.as_deref().is_some_and(|h| h != v1)
        })
        .await?;
        controller.restart()?;
        let aborted = wait_status(
            &env,
            "web",
            "the release aborted",
            Duration::from_secs(60),
            |s| s.abort == Some(true),
        )
        .await?;
        let took = started.elapsed();
        ensure!(
            took < Duration::from_secs(30),
            "aborted {took:?} after the release started"
        );
        ensure!(
            phase(&aborted) == Some(RolloutPhase::Degraded),
            "{:?}",
            aborted.phase
        );
        let flux = kstatus(&env, "web").await?;
        ensure!(
            flux == "Failed",
            "Flux's kstatus reads an aborted release as {flux}"
        );
        let cond = aborted
            .conditions
            .iter()
            .find(|c| c.type_ == condition::PROGRESSING)
            .context("Progressing condition")?;
        ensure!(
            cond.reason == "RolloutAborted"
                && cond.message.contains("CrashLoopBackOff")
                && cond.message.contains("container web"),
            "{cond:?}"
        );
        ensure!(
            selector_hash(&env, "web-canary").await?.as_deref() == Some(v1.as_str()),
            "canary Service back on stable"
        );

        wait_event(&env, "web", "a RolloutAborted Event", |(t, r, m)| {
            t == "Warning" && r == "RolloutAborted" && m.contains("CrashLoopBackOff")
        })
        .await?;
        let canary = aborted.current_pod_hash.clone().context("currentPodHash")?;
        common::wait_status(&env, "web", "status kept", LIMIT, |s| s.abort == Some(true)).await?;
        wait_sizes(
            &env,
            "the canary scaled to zero after abortScaleDownDelaySeconds",
            &[(&canary, 0), (&v1, 4)],
        )
        .await?;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn abort_retry_and_fast_track_rollback_survive_a_controller_kill() {
    TestEnv::run("canary-abort-retry", |env| async move {
        let (mut controller, v1) =
            healthy_v1(&env, rollout(json!([{"setWeight": 50}, {"pause": {}}]))?).await?;

        set_image(&env, "web", "registry.example/web:2").await?;
        // Killed in the middle of the release, started again: it resumes where it was.
        controller.restart()?;
        let paused = wait_status(&env, "web", "paused at weight 50", LIMIT, |s| {
            s.current_step_index == Some(1) && phase(s) == Some(RolloutPhase::Paused)
        })
        .await?;
        let v2 = paused.current_pod_hash.clone().context("currentPodHash")?;
        // Killed while paused. (It waits for the pause's Event first: an Event is published
        // after the status write, so a kill in between loses that one Event; see README.)
        wait_event(&env, "web", "the Paused Event", |e| e.1 == "Paused").await?;
        controller.restart()?;
        common::wait_first_reconcile(&controller).await?;
        let after_restart = rollouts(&env).get("web").await?.status.context("status")?;
        ensure!(
            after_restart.current_step_index == Some(1),
            "no step skipped across a restart"
        );

        // Abort: traffic back to stable first; without a router the canary then rolls back
        // within maxSurge/maxUnavailable, as Argo Rollouts does (no abort delay applies).
        set_abort(&env, "web", true).await?;
        wait_selector(&env, "web-canary", &v1, LIMIT).await?;
        // The reconcile that moved the Service writes the status after it: wait for the abort
        // in the status too, with the Service still on stable.
        e2e::wait_for(
            "the abort in status, the canary Service on stable",
            LIMIT,
            || async {
                let s = rollouts(&env).get("web").await?.status.unwrap_or_default();
                let on_stable =
                    selector_hash(&env, "web-canary").await?.as_deref() == Some(v1.as_str());
                Ok((phase(&s) == Some(RolloutPhase::Degraded)
                    && s.abort == Some(true)
                    && on_stable)
                    .then_some(()))
            },
        )
        .await?;
        wait_sizes(
            &env,
            "the canary scaled to zero, the stable back to 4",
            &[(&v2, 0), (&v1, 4)],
        )
        .await?;

        // Retry: the release starts again from its first step.
        set_abort(&env, "web", false).await?;
        wait_status(&env, "web", "paused at weight 50 again", LIMIT, |s| {
            s.current_step_index == Some(1)
                && phase(s) == Some(RolloutPhase::Paused)
                && canary_weight(s) == Some(50)
        })
        .await?;

        // The template goes back to v1: fast-track rollback, no steps.
        set_image(&env, "web", "registry.example/web:1").await?;
        let back = wait_status(&env, "web", "back on v1 and Healthy", LIMIT, |s| {
            phase(s) == Some(RolloutPhase::Healthy)
                && s.current_pod_hash.as_deref() == Some(v1.as_str())
                && s.available_replicas == Some(4)
        })
        .await?;
        ensure!(back.stable_rs.as_deref() == Some(v1.as_str()));
        ensure!(sizes(&env).await?.get(&v2) == Some(&0), "canary at zero");
        let reasons: Vec<String> = events_for(&env, "web")
            .await?
            .into_iter()
            .map(|e| e.1)
            .collect();
        for r in ["RolloutAborted", "RolloutRetried", "FastTrackRollback"] {
            ensure!(
                reasons.iter().any(|x| x == r),
                "no {r} Event in {reasons:?}"
            );
        }
        let completed = common::event_count(&env, "web", "StepCompleted").await?;
        ensure!(
            completed == 2,
            "step 0 completed once per attempt (2 attempts), saw {completed}: {reasons:?}"
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_release_that_never_gets_ready_is_aborted_at_its_progress_deadline() {
    TestEnv::run("canary-deadline", |env| async move {
        let mut ro = rollout(json!([{"setWeight": 25}, {"pause": {}}]))?;
        ro.spec.progress_deadline_seconds = Some(5);
        ro.spec.progress_deadline_abort = Some(true);
        let (_controller, v1) = healthy_v1(&env, ro).await?;
        // Pods that run but never turn ready: no crash to diagnose, only a lack of progress.
        set_template(
            &env,
            "web",
            "registry.example/web:slow",
            json!({BEHAVIOUR_ANNOTATION: "never-ready"}),
        )
        .await?;
        let aborted = wait_status(
            &env,
            "web",
            "the release aborted at its deadline",
            LIMIT,
            |s| s.abort == Some(true),
        )
        .await?;
        wait_event(
            &env,
            "web",
            "a ProgressDeadlineExceeded Event",
            |(t, r, m)| {
                t == "Warning"
                    && r == "ProgressDeadlineExceeded"
                    && m.contains("made no progress for 5s")
            },
        )
        .await?;
        ensure!(phase(&aborted) == Some(RolloutPhase::Degraded));
        wait_selector(&env, "web-canary", &v1, LIMIT).await?;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_missing_service_is_invalid_spec_until_it_exists() {
    TestEnv::run("canary-invalid", |env| async move {
        let _controller = ControllerProcess::start(&env)?;
        create_rollout(&env, &rollout(json!([{"setWeight": 50}]))?).await?;
        let (invalid, cond) = wait_condition(&env, "web", condition::INVALID_SPEC, LIMIT).await?;
        ensure!(
            cond.message.contains("spec.strategy.canary.stableService")
                && cond.message.contains("web-stable"),
            "{cond:?}"
        );
        ensure!(phase(&invalid) == Some(RolloutPhase::Degraded));
        wait_event(&env, "web", "an InvalidSpec Event", |(t, r, m)| {
            t == "Warning" && r == "InvalidSpec" && m.contains("stableService")
        })
        .await?;
        ensure!(
            sizes(&env).await?.is_empty(),
            "nothing else changes in the cluster"
        );

        // Fixing it (the Services appear) recovers without a restart.
        create_services(&env, &["web-stable", "web-canary"]).await?;
        let healthy = wait_status(&env, "web", "Healthy once the Services exist", LIMIT, |s| {
            phase(s) == Some(RolloutPhase::Healthy)
        })
        .await?;
        ensure!(
            common::condition(&healthy, condition::INVALID_SPEC).is_none(),
            "InvalidSpec cleared"
        );
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn deleting_the_rollout_gives_the_services_back_as_written() {
    TestEnv::run("canary-delete", |env| async move {
        let (_controller, _) = healthy_v1(&env, rollout(json!([{"setWeight": 50}]))?).await?;
        ensure!(
            selector_hash(&env, "web-stable").await?.is_some(),
            "Sluice's key is in the selector"
        );

        delete_rollout(&env, "web", LIMIT).await?;
        let services: Api<Service> = env.api();
        for name in ["web-stable", "web-canary"] {
            let selector = services
                .get(name)
                .await?
                .spec
                .and_then(|s| s.selector)
                .unwrap_or_default();
            ensure!(
                selector.len() == 1 && selector.get("app").map(String::as_str) == Some("web"),
                "{name} selector is {selector:?}, not the user's app=web"
            );
        }
        e2e::wait_for("the ReplicaSets garbage-collected", LIMIT, || async {
            Ok(sizes(&env).await?.is_empty().then_some(()))
        })
        .await?;
        Ok(())
    })
    .await;
}
