//! Table tests of how a Rollout acts on AnalysisRuns: created when their step or phase comes,
//! a failure aborts with traffic first, an inconclusive verdict waits for a person, an outage
//! that ends lets the release go on.

use super::*;
use crate::api::analysis::{AnalysisPhase, AnalysisRunSpec};
use crate::api::rollout::{PauseReason, RolloutPhase};
use crate::rollout::conditions;
use crate::rollout::decide::{AbortCause, PromotionCause, decide};
use crate::rollout::observe::ObservedRs;
use crate::rollout::test_support::{
    self, at, at_first_step, hash, reasons, releasing_web2, replicas_of, rs, service, step,
    template, world_with,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;

fn spec_ok() -> Result<AnalysisRunSpec, String> {
    Ok(AnalysisRunSpec::default())
}

/// A canary of `web:2` over stable `web:1` with Services and the given steps.
fn canary(steps: serde_json::Value, background: Option<i32>) -> Rollout {
    let mut canary = json!({"steps": steps, "maxSurge": 1, "maxUnavailable": 0,
        "stableService": "web-stable", "canaryService": "web-canary"});
    if let Some(start) = background {
        canary["analysis"] =
            json!({"templates": [{"templateName": "rate"}], "startingStep": start});
    }
    releasing_web2(4, json!({"canary": canary}), at_first_step())
}

fn world(sets: Vec<ObservedRs>, keys: &[AnalysisKey], runs: Vec<ObservedRun>) -> Observed {
    Observed {
        analysis: keys.iter().map(|k| (*k, spec_ok())).collect(),
        runs,
        ..world_with(&["web-stable", "web-canary"], sets)
    }
}

fn run(name: &str, phase: AnalysisPhase, message: &str, measuring: bool) -> ObservedRun {
    ObservedRun {
        name: name.into(),
        hash: hash("web:2"),
        phase: Some(phase),
        message: Some(message.into()),
        terminated: false,
        measuring,
        decided_by: None,
    }
}

const STEP1: AnalysisKey = AnalysisKey::Step(1);

fn step_run_name() -> String {
    format!("web-{}-2-step1", hash("web:2"))
}

/// 25% reached (1 of 4 canary pods), step 1 is the analysis.
fn at_analysis_step() -> (Rollout, Vec<ObservedRs>) {
    let ro = canary(
        json!([{"setWeight": 25}, {"analysis": {"templates": [{"templateName": "rate"}]}}, {"setWeight": 50}]),
        None,
    );
    (ro, vec![rs("web:1", 3, 3), rs("web:2", 1, 1)])
}

/// `at_analysis_step`, after the reconcile (at 0s) that created the step's run.
fn run_created() -> (Rollout, Vec<ObservedRs>) {
    let (mut ro, sets) = at_analysis_step();
    step(&mut ro, &world(sets.clone(), &[STEP1], vec![]), at(0));
    (ro, sets)
}

/// The step's run, observed in `phase`.
fn step_run(phase: AnalysisPhase, message: &str, measuring: bool) -> ObservedRun {
    run(&step_run_name(), phase, message, measuring)
}

#[test]
fn an_analysis_step_creates_its_run_once_and_waits_for_it() {
    let (mut ro, sets) = at_analysis_step();
    let plan = step(&mut ro, &world(sets.clone(), &[STEP1], vec![]), at(0));
    assert_eq!(plan.status.current_step_index, Some(1));
    assert_eq!(plan.create_runs.len(), 1);
    assert_eq!(plan.create_runs[0].name, step_run_name());
    assert_eq!(plan.create_runs[0].hash, hash("web:2"));
    let line = plan
        .status
        .canary
        .as_ref()
        .and_then(|c| c.current_step_analysis_run_status.clone())
        .expect("a value");
    assert_eq!(line.name, step_run_name());
    // Observed now, still running: nothing created again, the step waits.
    let running = step_run(AnalysisPhase::Running, "", true);
    let plan = step(&mut ro, &world(sets, &[STEP1], vec![running]), at(5));
    assert!(plan.create_runs.is_empty());
    assert_eq!(plan.status.current_step_index, Some(1));
    assert_eq!(plan.status.phase, Some(RolloutPhase::Progressing));
}

#[test]
fn a_passing_analysis_completes_its_step() {
    let (mut ro, sets) = run_created();
    let passed = step_run(AnalysisPhase::Successful, "every metric passed", false);
    let plan = step(&mut ro, &world(sets, &[STEP1], vec![passed]), at(10));
    assert_eq!(plan.status.current_step_index, Some(2));
    assert!(reasons(&plan).contains(&"StepCompleted"));
    assert!(
        plan.events
            .iter()
            .any(|e| e.message.contains("analysis") && e.message.contains("passed"))
    );
}

#[test]
fn a_failed_analysis_aborts_with_traffic_back_on_stable_in_the_same_reconcile() {
    let (mut ro, sets) = run_created();
    let failed = step_run(
        AnalysisPhase::Failed,
        "metric \"error-rate\" failed: failureCondition `result[0] > 0.05` is true for result [0.2]",
        false,
    );
    let plan = step(&mut ro, &world(sets, &[STEP1], vec![failed]), at(10));
    assert_eq!(plan.status.abort, Some(true));
    assert_eq!(plan.status.phase, Some(RolloutPhase::Degraded));
    assert_eq!(
        service(&plan, "web-canary"),
        Some(hash("web:1")),
        "traffic first"
    );
    assert_eq!(service(&plan, "web-stable"), Some(hash("web:1")));
    let abort = plan
        .events
        .iter()
        .find(|e| e.reason == "RolloutAborted")
        .expect("a value");
    assert!(abort.message.contains("error-rate"), "{}", abort.message);
    assert!(abort.message.contains("[0.2]"), "{}", abort.message);
    assert_eq!(replicas_of(&plan, "web:1"), Some(4));
    assert_eq!(plan.aborted, Some(AbortCause::AnalysisFailed));
}

#[test]
fn an_inconclusive_analysis_pauses_and_a_promotion_accepts_it() {
    let (mut ro, sets) = run_created();
    let unsure = step_run(
        AnalysisPhase::Inconclusive,
        "neither condition is true",
        false,
    );
    let obs = world(sets.clone(), &[STEP1], vec![unsure.clone()]);
    let plan = step(&mut ro, &obs, at(10));
    assert_eq!(plan.status.phase, Some(RolloutPhase::Paused));
    assert_eq!(
        plan.status.pause_conditions[0].reason,
        PauseReason::InconclusiveAnalysis
    );
    assert!(reasons(&plan).contains(&"AnalysisInconclusive"));
    assert_eq!(plan.status.current_step_index, Some(1));
    // Deciding again holds, without a second Event.
    let plan = step(&mut ro, &obs, at(20));
    assert_eq!(plan.status.phase, Some(RolloutPhase::Paused));
    assert!(!reasons(&plan).contains(&"AnalysisInconclusive"));
    // A person promotes: clears pauseConditions.
    ro.status
        .as_mut()
        .expect("a value")
        .pause_conditions
        .clear();
    let plan = step(&mut ro, &obs, at(30));
    assert_eq!(plan.status.current_step_index, Some(2));
    assert!(reasons(&plan).contains(&"Promoted"));
    assert_eq!(plan.promotions, vec![PromotionCause::InconclusiveAccepted]);
}

#[test]
fn an_outage_pause_lifts_itself_when_measuring_resumes() {
    let (mut ro, sets) = run_created();
    let outage = step_run(
        AnalysisPhase::Inconclusive,
        "the provider failed 5 times in a row",
        true,
    );
    let plan = step(
        &mut ro,
        &world(sets.clone(), &[STEP1], vec![outage]),
        at(10),
    );
    assert_eq!(plan.status.phase, Some(RolloutPhase::Paused));
    assert!(
        plan.events
            .iter()
            .any(|e| e.message.contains("resumes by itself"))
    );
    let back = step_run(AnalysisPhase::Running, "", true);
    let plan = step(&mut ro, &world(sets.clone(), &[STEP1], vec![back]), at(20));
    assert!(plan.status.pause_conditions.is_empty());
    assert_eq!(plan.status.controller_pause, None);
    assert_eq!(plan.status.phase, Some(RolloutPhase::Progressing));
    assert!(reasons(&plan).contains(&"AnalysisResumed"));
    assert_eq!(
        plan.status.current_step_index,
        Some(1),
        "never promoted on missing data"
    );
}

#[test]
fn background_analysis_starts_at_its_step_and_its_failure_aborts() {
    let mut ro = canary(
        json!([{"setWeight": 25}, {"pause": {}}, {"setWeight": 50}]),
        Some(1),
    );
    let bg_field = AnalysisKey::Background;
    let bg_name = format!("web-{}-2-background", hash("web:2"));
    // Step 0 not reached yet: no background run.
    let plan = step(
        &mut ro,
        &world(vec![rs("web:1", 4, 4)], &[bg_field], vec![]),
        at(0),
    );
    assert!(plan.create_runs.is_empty());
    // 25% reached, now at step 1: the background run starts.
    let sets = vec![rs("web:1", 3, 3), rs("web:2", 1, 1)];
    let plan = step(&mut ro, &world(sets.clone(), &[bg_field], vec![]), at(5));
    assert_eq!(plan.status.current_step_index, Some(1));
    assert_eq!(
        plan.create_runs
            .iter()
            .map(|r| r.name.clone())
            .collect::<Vec<_>>(),
        vec![bg_name.clone()]
    );
    // It fails while paused between steps: abort, traffic to stable, run stopped.
    let failed = run(
        &bg_name,
        AnalysisPhase::Failed,
        "metric \"latency\" failed",
        true,
    );
    let plan = step(&mut ro, &world(sets, &[bg_field], vec![failed]), at(9));
    assert_eq!(plan.status.abort, Some(true));
    assert_eq!(service(&plan, "web-canary"), Some(hash("web:1")));
    assert_eq!(plan.terminate_runs, vec![bg_name]);
}

#[test]
fn the_background_run_stops_when_the_release_completes() {
    let mut ro = canary(json!([{"setWeight": 50}]), Some(0));
    let bg_field = AnalysisKey::Background;
    let bg_name = format!("web-{}-2-background", hash("web:2"));
    ro.status.as_mut().expect("a value").current_step_index = Some(1);
    let running = run(&bg_name, AnalysisPhase::Running, "", true);
    let plan = decide(
        &ro,
        &world(
            vec![rs("web:1", 0, 0), rs("web:2", 4, 4)],
            &[bg_field],
            vec![running],
        ),
        at(50),
    );
    assert_eq!(plan.status.stable_rs, Some(hash("web:2")));
    assert_eq!(plan.terminate_runs, vec![bg_name]);
}

#[test]
fn a_template_problem_is_invalid_spec_naming_the_field() {
    let (mut ro, sets) = at_analysis_step();
    let mut obs = world(sets, &[], vec![]);
    obs.analysis
        .insert(STEP1, Err("AnalysisTemplate \"rate\" not found".into()));
    // Before the release starts: nothing moves.
    ro.status.as_mut().expect("status").current_pod_hash = Some(hash("web:1"));
    let plan = decide(&ro, &obs, at(0));
    let msg = plan.status.message.clone().expect("message");
    assert!(
        msg.contains("spec.strategy.canary.steps[1].analysis: AnalysisTemplate \"rate\" not found"),
        "{msg}"
    );
    assert!(plan.create_runs.is_empty() && plan.replica_sets.is_empty());
    // During a release: the step waits for the template, the rest (abort) still works.
    ro.status.as_mut().expect("status").current_pod_hash = Some(hash("web:2"));
    let plan = step(&mut ro, &obs, at(1));
    let invalid = conditions::get(&plan.status.conditions, "InvalidSpec").expect("condition");
    assert!(
        invalid.message.contains("steps[1].analysis"),
        "{}",
        invalid.message
    );
    assert!(plan.create_runs.is_empty());
    assert_eq!(plan.status.current_step_index, Some(1));
    ro.status.as_mut().expect("status").abort = Some(true);
    let plan = step(&mut ro, &obs, at(2));
    assert_eq!(service(&plan, "web-canary"), Some(hash("web:1")));
}

#[test]
fn a_retry_gets_runs_of_its_own_and_is_not_judged_by_the_aborted_ones() {
    let (mut ro, sets) = at_analysis_step();
    let s = ro.status.as_mut().expect("a value");
    // Aborted at step 1 by its failed run; the user has just cleared `abort`.
    s.current_step_index = Some(1);
    s.aborted_at = Some(Time(at(0)));
    let failed = step_run(AnalysisPhase::Failed, "metric \"rate\" failed", false);
    let steps0 =
        json!([{"analysis": {"templates": [{"templateName": "rate"}]}}, {"setWeight": 25}]);
    ro.spec.strategy.canary.as_mut().expect("canary").steps =
        serde_json::from_value(steps0).expect("steps");
    let old_step0 = run(
        &format!("web-{}-2-step0", hash("web:2")),
        AnalysisPhase::Successful,
        "terminated; no metric failed",
        false,
    );
    let keys = [AnalysisKey::Step(0)];
    let plan = step(
        &mut ro,
        &world(sets, &keys, vec![failed, old_step0]),
        at(10),
    );
    assert_eq!(plan.status.abort, None, "not aborted again by the old run");
    assert_eq!(plan.status.release_count, Some(3));
    assert_eq!(
        plan.status.current_step_index,
        Some(0),
        "step 0 is judged afresh"
    );
    assert_eq!(
        plan.create_runs[0].name,
        format!("web-{}-3-step0", hash("web:2"))
    );
}

#[test]
fn a_new_revision_stops_the_runs_of_the_old_release() {
    let (mut ro, sets) = at_analysis_step();
    let bg = run(
        &format!("web-{}-2-background", hash("web:2")),
        AnalysisPhase::Running,
        "",
        true,
    );
    // The template goes back to the stable revision: a fast-track rollback.
    ro.spec.template = Some(template("web:1"));
    let plan = step(&mut ro, &world(sets, &[], vec![bg.clone()]), at(0));
    assert_eq!(plan.terminate_runs, vec![bg.name.clone()]);
}

#[test]
fn runs_of_a_revision_that_is_gone_are_deleted_once_finished() {
    let (mut ro, _) = at_analysis_step();
    ro.spec.template = Some(template("web:1"));
    let mut old = run(
        &format!("web-{}-1-step1", hash("web:0")),
        AnalysisPhase::Successful,
        "",
        false,
    );
    old.hash = hash("web:0");
    let plan = step(
        &mut ro,
        &world(vec![rs("web:1", 4, 4)], &[], vec![old.clone()]),
        at(0),
    );
    assert_eq!(plan.delete_runs, vec![old.name]);
    assert!(plan.terminate_runs.is_empty());
}

#[test]
fn a_step_run_and_a_background_run_share_the_pause_without_fighting() {
    let mut ro = canary(
        json!([{"setWeight": 25}, {"analysis": {"templates": [{"templateName": "rate"}]}}, {"setWeight": 50}]),
        Some(0),
    );
    ro.status.as_mut().expect("status").current_step_index = Some(1);
    let sets = vec![rs("web:1", 3, 3), rs("web:2", 1, 1)];
    let unsure = step_run(AnalysisPhase::Inconclusive, "no data", false);
    let bg = run(
        &format!("web-{}-2-background", hash("web:2")),
        AnalysisPhase::Running,
        "",
        true,
    );
    let keys = [STEP1, AnalysisKey::Background];
    let obs = world(sets, &keys, vec![unsure, bg]);
    let first = step(&mut ro, &obs, at(0));
    assert_eq!(first.status.phase, Some(RolloutPhase::Paused));
    assert!(!reasons(&first).contains(&"AnalysisResumed"));
    let again = step(&mut ro, &obs, at(5));
    assert_eq!(again.status, first.status, "a second look changes nothing");
    assert!(again.events.is_empty());
}

#[test]
fn an_accepted_verdict_survives_a_restart_between_the_two_writes() {
    let (mut ro, sets) = at_analysis_step();
    let s = ro.status.as_mut().expect("status");
    s.current_step_index = Some(1);
    // The person cleared the pause; Sluice stopped the run but its status write was lost.
    s.controller_pause = Some(true);
    let mut stopped = step_run(AnalysisPhase::Inconclusive, "no data", false);
    stopped.terminated = true;
    let plan = step(&mut ro, &world(sets, &[STEP1], vec![stopped]), at(0));
    assert_eq!(plan.status.current_step_index, Some(2));
}

fn blue_green(extra: serde_json::Value) -> Rollout {
    let mut ro = test_support::blue_green(extra);
    if let Some(s) = ro.status.as_mut() {
        s.release_count = Some(2);
    }
    ro
}

fn bg_world(sets: Vec<ObservedRs>, keys: &[AnalysisKey], runs: Vec<ObservedRun>) -> Observed {
    Observed {
        analysis: keys.iter().map(|k| (*k, spec_ok())).collect(),
        runs,
        ..test_support::blue_green_world(sets)
    }
}

#[test]
fn blue_green_pre_promotion_failure_keeps_the_active_service_on_stable() {
    let pre = AnalysisKey::PrePromotion;
    let mut ro =
        blue_green(json!({"prePromotionAnalysis": {"templates": [{"templateName": "smoke"}]}}));
    let name = format!("web-{}-2-pre", hash("web:2"));
    let sets = vec![rs("web:1", 3, 3), rs("web:2", 3, 3)];
    let plan = step(&mut ro, &bg_world(sets.clone(), &[pre], vec![]), at(0));
    assert_eq!(plan.create_runs[0].name, name);
    assert_eq!(
        service(&plan, "web-active"),
        Some(hash("web:1")),
        "no switch before the verdict"
    );
    let failed = run(
        &name,
        AnalysisPhase::Failed,
        "metric \"smoke\" failed",
        false,
    );
    let plan = step(&mut ro, &bg_world(sets, &[pre], vec![failed]), at(5));
    assert_eq!(plan.status.abort, Some(true));
    assert_eq!(service(&plan, "web-active"), Some(hash("web:1")));
    // As in Argo Rollouts, the preview Service stays on the aborted revision.
    assert_eq!(service(&plan, "web-preview"), Some(hash("web:2")));
    assert!(
        plan.events
            .iter()
            .any(|e| e.reason == "RolloutAborted" && e.message.contains("pre-promotion"))
    );
}

#[test]
fn blue_green_pre_promotion_success_lets_the_promotion_go_on() {
    let pre = AnalysisKey::PrePromotion;
    let mut ro =
        blue_green(json!({"prePromotionAnalysis": {"templates": [{"templateName": "smoke"}]}}));
    let name = format!("web-{}-2-pre", hash("web:2"));
    let sets = vec![rs("web:1", 3, 3), rs("web:2", 3, 3)];
    step(&mut ro, &bg_world(sets.clone(), &[pre], vec![]), at(0));
    let passed = run(
        &name,
        AnalysisPhase::Successful,
        "every metric passed",
        false,
    );
    let plan = step(&mut ro, &bg_world(sets, &[pre], vec![passed]), at(5));
    assert_eq!(service(&plan, "web-active"), Some(hash("web:2")));
    assert_eq!(plan.status.stable_rs, Some(hash("web:2")));
}

#[test]
fn blue_green_post_promotion_failure_switches_the_active_service_back() {
    let post = AnalysisKey::PostPromotion;
    let mut ro =
        blue_green(json!({"postPromotionAnalysis": {"templates": [{"templateName": "smoke"}]}}));
    let name = format!("web-{}-2-post", hash("web:2"));
    let sets = vec![rs("web:1", 3, 3), rs("web:2", 3, 3)];
    let plan = step(&mut ro, &bg_world(sets.clone(), &[post], vec![]), at(0));
    assert_eq!(
        service(&plan, "web-active"),
        Some(hash("web:2")),
        "switched, being judged"
    );
    assert_eq!(
        plan.status.stable_rs,
        Some(hash("web:1")),
        "not stable until judged"
    );
    assert_eq!(plan.create_runs[0].name, name);
    let failed = run(
        &name,
        AnalysisPhase::Failed,
        "metric \"smoke\" failed",
        false,
    );
    let plan = step(&mut ro, &bg_world(sets, &[post], vec![failed]), at(5));
    assert_eq!(plan.status.abort, Some(true));
    assert_eq!(
        service(&plan, "web-active"),
        Some(hash("web:1")),
        "switched back"
    );
    assert_eq!(replicas_of(&plan, "web:1"), Some(3));
}
