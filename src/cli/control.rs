//! What `kubectl sluice promote|abort|retry|pause|resume` write: a patch of the Rollout's
//! status, computed by pure functions from the Rollout as read. Sluice never writes `spec`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use crate::api::rollout::{PauseCondition, PauseReason, Rollout, RolloutPhase, RolloutStatus};

/// A request from a person or a tool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Lift the pause, or go to the next step when not paused.
    Promote,
    /// Skip every remaining step (and analysis).
    PromoteFull,
    /// All traffic back to stable; the new revision is scaled down after its delay.
    Abort,
    /// Start an aborted release again from its first step.
    Retry,
    /// Hold the release where it stands.
    Pause,
    /// Lift a pause made with `Pause`.
    Resume,
}

/// Why a control does not apply to the Rollout as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("{0} is not releasing a new revision: nothing to {1}")]
    NotReleasing(String, &'static str),
    #[error("{0} is not aborted: nothing to retry (abort it first, or change its template)")]
    NotAborted(String),
    /// As in Argo Rollouts, a plain promotion does nothing to an aborted release; Sluice says
    /// so instead of writing a patch that changes nothing.
    #[error(
        "{0} is aborted: promote does nothing to an aborted release; run `kubectl sluice retry {0}` to release it again from its first step, or `kubectl sluice promote {0} --full` to skip every step and analysis"
    )]
    Aborted(String),
    #[error(
        "{0} is already aborted: all its traffic is on stable (kubectl sluice retry {0} releases it again)"
    )]
    AlreadyAborted(String),
    #[error("{0} is already paused by request")]
    AlreadyPaused(String),
    #[error("{0} has no pause made by request to lift")]
    NotPaused(String),
    #[error("{0} is already at its last step; wait for it to finish or use --full")]
    LastStep(String),
}

fn releasing(ro: &Rollout) -> bool {
    let st = ro.status.clone().unwrap_or_default();
    st.current_pod_hash.is_some() && st.current_pod_hash != st.stable_rs
}

fn aborted(ro: &Rollout) -> bool {
    ro.status.as_ref().and_then(|s| s.abort) == Some(true)
}

/// The status patch (the value of `status` in a merge patch) for `control`.
pub fn status_patch(ro: &Rollout, control: Control, now: Timestamp) -> Result<Value, ControlError> {
    let name = ro.metadata.name.clone().unwrap_or_default();
    let st = ro.status.clone().unwrap_or_default();
    match control {
        Control::Abort => abort(ro, name),
        Control::Retry => retry(ro, name),
        Control::PromoteFull => promote_full(ro, name),
        Control::Promote => promote(ro, &st, name),
        Control::Pause => pause(&st, name, now),
        Control::Resume => resume(&st, name),
    }
}

fn abort(ro: &Rollout, name: String) -> Result<Value, ControlError> {
    if !releasing(ro) {
        return Err(ControlError::NotReleasing(name, "abort"));
    }
    // A second abort would write what is already there.
    if aborted(ro) {
        return Err(ControlError::AlreadyAborted(name));
    }
    Ok(json!({"abort": true}))
}

fn retry(ro: &Rollout, name: String) -> Result<Value, ControlError> {
    if !aborted(ro) {
        return Err(ControlError::NotAborted(name));
    }
    Ok(json!({"abort": false}))
}

fn promote_full(ro: &Rollout, name: String) -> Result<Value, ControlError> {
    if !releasing(ro) {
        return Err(ControlError::NotReleasing(name, "promote"));
    }
    // On an aborted release too (as Argo Rollouts): the controller clears the abort and goes
    // to full size, skipping the steps and analysis.
    Ok(json!({"promoteFull": true}))
}

/// Lifts every pause, or else moves to the next step.
fn promote(ro: &Rollout, st: &RolloutStatus, name: String) -> Result<Value, ControlError> {
    if aborted(ro) {
        return Err(ControlError::Aborted(name));
    }
    if !st.pause_conditions.is_empty() {
        return Ok(json!({"pauseConditions": null}));
    }
    if !releasing(ro) {
        return Err(ControlError::NotReleasing(name, "promote"));
    }
    let steps = ro
        .spec
        .strategy
        .canary
        .as_ref()
        .map(|c| c.steps().len())
        .unwrap_or(0) as i32;
    let idx = st.current_step_index.unwrap_or(0);
    if idx >= steps {
        return Err(ControlError::LastStep(name));
    }
    Ok(json!({"currentStepIndex": idx + 1}))
}

fn paused_by_request(st: &RolloutStatus) -> bool {
    st.pause_conditions
        .iter()
        .any(|p| p.reason == PauseReason::UserPause)
}

/// Adds a pause by request to the pauses there are.
fn pause(st: &RolloutStatus, name: String, now: Timestamp) -> Result<Value, ControlError> {
    if paused_by_request(st) {
        return Err(ControlError::AlreadyPaused(name));
    }
    let mut list = st.pause_conditions.clone();
    list.push(PauseCondition {
        reason: PauseReason::UserPause,
        start_time: Time(now),
    });
    Ok(json!({"pauseConditions": list}))
}

/// Takes out the pause by request; the other pauses stay.
fn resume(st: &RolloutStatus, name: String) -> Result<Value, ControlError> {
    if !paused_by_request(st) {
        return Err(ControlError::NotPaused(name));
    }
    let rest: Vec<&PauseCondition> = st
        .pause_conditions
        .iter()
        .filter(|p| p.reason != PauseReason::UserPause)
        .collect();
    Ok(if rest.is_empty() {
        json!({"pauseConditions": null})
    } else {
        json!({"pauseConditions": rest})
    })
}

/// A short, readable account of a Rollout, for `kubectl sluice get`.
pub fn describe(ro: &Rollout) -> String {
    let mut account = Account {
        ro,
        st: ro.status.clone().unwrap_or_default(),
        out: String::new(),
    };
    account.what_and_where();
    account.traffic();
    account.analysis();
    account.revisions();
    account.holds();
    account.conditions();
    account.next();
    account.out
}

/// What a Rollout's `status.exercise` says in one line: a rehearsed rollback is under way, so
/// its release and abort are a drill, not a real release (`kubectl sluice get`, the dashboard).
pub fn exercise_line(e: &crate::api::exercise::ExerciseInForce) -> String {
    let at = |t: &Option<Time>| t.as_ref().map(|t| t.0.to_string());
    let revision = e.revision.as_deref().unwrap_or("(not built yet)");
    let state = if let Some(end) = &e.ended {
        format!("ended {}: {}", end.result.as_str(), end.message)
    } else if let Some(why) = &e.refused {
        format!("the fault is not released: {why}")
    } else if let Some(aborted) = at(&e.aborted_at) {
        let cause = e.abort_cause.as_deref().unwrap_or("abort");
        match at(&e.safe_at) {
            Some(safe) => {
                format!("faulty revision {revision} aborted ({cause}) at {aborted}, safe at {safe}")
            }
            None => format!("faulty revision {revision} aborted ({cause}) at {aborted}"),
        }
    } else if let Some(live) = at(&e.live_at) {
        let peak = e
            .peak_weight
            .map(|w| format!(", peak weight {w}%"))
            .unwrap_or_default();
        format!("faulty revision {revision} live since {live}{peak}")
    } else {
        "starting: the faulty revision is being released".to_string()
    };
    format!(
        "{} run {} (a rehearsed rollback, not a real release): {state}",
        e.name, e.run
    )
}

/// `describe` as it is written: one `Label:    value` line after another.
struct Account<'a> {
    ro: &'a Rollout,
    st: RolloutStatus,
    out: String,
}

/// `: message`, or nothing for no message.
fn colon(message: Option<&str>) -> String {
    message
        .filter(|m| !m.is_empty())
        .map(|m| format!(": {m}"))
        .unwrap_or_default()
}

impl Account<'_> {
    fn line(&mut self, label: &str, value: String) {
        self.out.push_str(&format!("{label:<12}{value}\n"));
    }

    /// Name, namespace, strategy, phase and step.
    fn what_and_where(&mut self) {
        let meta = &self.ro.metadata;
        self.line("Name:", meta.name.clone().unwrap_or_default());
        self.line("Namespace:", meta.namespace.clone().unwrap_or_default());
        let strategy = &self.ro.spec.strategy;
        let described = match (&strategy.canary, &strategy.blue_green) {
            (Some(c), _) => format!("canary, {} steps", c.steps().len()),
            (None, Some(b)) => format!("blue-green, active Service {}", b.active_service),
            _ => "none".into(),
        };
        self.line("Strategy:", described);
        let phase = self
            .st
            .phase
            .map(|p| format!("{p:?}"))
            .unwrap_or_else(|| "Unknown (not yet reconciled)".into());
        let msg = self
            .st
            .message
            .as_ref()
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        self.line("Phase:", format!("{phase}{msg}"));
        if let (Some(c), Some(i)) = (&strategy.canary, self.st.current_step_index) {
            self.line("Step:", format!("{i}/{}", c.steps().len()));
        }
    }

    /// The canary's weights, or the blue-green Services' selectors.
    fn traffic(&mut self) {
        if let Some(w) = self
            .st
            .canary
            .as_ref()
            .and_then(|c| c.weights.as_ref())
            .filter(|_| self.ro.spec.strategy.canary.is_some())
        {
            let weights = format!("canary {}%, stable {}%", w.canary.weight, w.stable.weight);
            self.line("Weights:", weights);
        }
        if let Some(bg) = &self.st.blue_green {
            let services = format!(
                "active {}, preview {}",
                bg.active_selector.clone().unwrap_or_default(),
                bg.preview_selector.clone().unwrap_or_else(|| "-".into())
            );
            self.line("Services:", services);
        }
    }

    /// The analysis runs the release waits on, and how to look at them.
    fn analysis(&mut self) {
        let canary = self.st.canary.as_ref();
        let bg = self.st.blue_green.as_ref();
        let runs = [
            (
                "step",
                canary.and_then(|c| c.current_step_analysis_run_status.as_ref()),
            ),
            (
                "background",
                canary.and_then(|c| c.current_background_analysis_run_status.as_ref()),
            ),
            (
                "pre-promotion",
                bg.and_then(|b| b.pre_promotion_analysis_run_status.as_ref()),
            ),
            (
                "post-promotion",
                bg.and_then(|b| b.post_promotion_analysis_run_status.as_ref()),
            ),
        ];
        let lines: Vec<String> = runs
            .into_iter()
            .filter_map(|(kind, run)| {
                let r = run?;
                let phase = r
                    .status
                    .map(|p| format!("{p:?}"))
                    .unwrap_or_else(|| "Pending".into());
                let msg = colon(r.message.as_deref());
                let name = &r.name;
                Some(format!(
                    "{kind} {name} {phase}{msg} (kubectl get sar {name} -o yaml)"
                ))
            })
            .collect();
        for l in lines {
            self.line("Analysis:", l);
        }
    }

    /// Which revisions there are, and how many pods.
    fn revisions(&mut self) {
        let st = &self.st;
        let revisions = format!(
            "stable {}, current {}",
            st.stable_rs.clone().unwrap_or_else(|| "-".into()),
            st.current_pod_hash.clone().unwrap_or_else(|| "-".into())
        );
        let replicas = format!(
            "desired {}, current {}, updated {}, ready {}, available {}",
            self.ro.spec.replicas(),
            st.replicas.unwrap_or(0),
            st.updated_replicas.unwrap_or(0),
            st.ready_replicas.unwrap_or(0),
            st.available_replicas.unwrap_or(0)
        );
        self.line("Revisions:", revisions);
        self.line("Replicas:", replicas);
    }

    /// What holds the release: pauses and an abort.
    fn holds(&mut self) {
        let pauses: Vec<String> = self
            .st
            .pause_conditions
            .iter()
            .map(|p| format!("{:?} since {}", p.reason, p.start_time.0))
            .collect();
        for p in pauses {
            self.line("Paused:", p);
        }
        if self.st.abort == Some(true) {
            let since = self
                .st
                .aborted_at
                .as_ref()
                .map(|t| t.0.to_string())
                .unwrap_or_else(|| "yes".into());
            self.line("Aborted:", since);
        }
        if let Some(e) = &self.st.exercise {
            self.line("Exercise:", exercise_line(e));
        }
    }

    /// The conditions, sorted, under one label; a message the Phase line already says is not
    /// said again (most conditions of a paused or aborted release repeat it).
    fn conditions(&mut self) {
        let said = self.st.message.as_deref().unwrap_or_default();
        let mut conds: Vec<String> = self
            .st
            .conditions
            .iter()
            .map(|c| {
                let repeated = !c.message.is_empty() && said.contains(c.message.as_str());
                let msg = if repeated {
                    String::new()
                } else {
                    colon(Some(&c.message))
                };
                format!("{}={} ({}){msg}", c.type_, c.status, c.reason)
            })
            .collect();
        conds.sort();
        for (i, c) in conds.into_iter().enumerate() {
            self.line(if i == 0 { "Conditions:" } else { "" }, c);
        }
    }

    /// What a person can do now.
    fn next(&mut self) {
        let ro = self.ro;
        let healthy = self.st.phase == Some(RolloutPhase::Healthy);
        if let Some(e) = &self.st.exercise {
            let name = e.name.clone();
            self.line(
                "Next:",
                format!("kubectl sluice exercise status {name} (or cancel {name})"),
            );
        } else if !healthy && releasing(ro) && !aborted(ro) {
            self.line("Next:", "kubectl sluice promote | abort | pause".into());
        } else if aborted(ro) {
            self.line(
                "Next:",
                "kubectl sluice retry, or set the template back".into(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::rollout::RolloutSpec;

    fn ro(status: RolloutStatus) -> Rollout {
        let spec: RolloutSpec = serde_json::from_value(json!({
            "replicas": 4,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "web:2"}]}},
            "strategy": {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 60}]}}
        }))
        .expect("spec");
        let mut r = Rollout::new("web", spec);
        r.status = Some(status);
        r
    }

    fn releasing_status() -> RolloutStatus {
        RolloutStatus {
            stable_rs: Some("aaa".into()),
            current_pod_hash: Some("bbb".into()),
            current_step_index: Some(0),
            ..Default::default()
        }
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).expect("timestamp")
    }

    fn pause_for(reason: PauseReason) -> PauseCondition {
        PauseCondition {
            reason,
            start_time: Time(now()),
        }
    }

    #[test]
    fn promote_lifts_a_pause_or_moves_to_the_next_step() {
        let mut paused = releasing_status();
        paused.pause_conditions = vec![pause_for(PauseReason::CanaryPauseStep)];
        assert_eq!(
            status_patch(&ro(paused), Control::Promote, now()),
            Ok(json!({"pauseConditions": null}))
        );
        assert_eq!(
            status_patch(&ro(releasing_status()), Control::Promote, now()),
            Ok(json!({"currentStepIndex": 1}))
        );
        let last = RolloutStatus {
            current_step_index: Some(3),
            ..releasing_status()
        };
        assert!(matches!(
            status_patch(&ro(last), Control::Promote, now()),
            Err(ControlError::LastStep(_))
        ));
    }

    #[test]
    fn abort_and_retry_only_where_they_mean_something() {
        let healthy = RolloutStatus {
            stable_rs: Some("aaa".into()),
            current_pod_hash: Some("aaa".into()),
            ..Default::default()
        };
        assert!(matches!(
            status_patch(&ro(healthy), Control::Abort, now()),
            Err(ControlError::NotReleasing(_, "abort"))
        ));
        assert_eq!(
            status_patch(&ro(releasing_status()), Control::Abort, now()),
            Ok(json!({"abort": true}))
        );
        assert!(matches!(
            status_patch(&ro(releasing_status()), Control::Retry, now()),
            Err(ControlError::NotAborted(_))
        ));
        let aborted = RolloutStatus {
            abort: Some(true),
            ..releasing_status()
        };
        assert_eq!(
            status_patch(&ro(aborted.clone()), Control::Retry, now()),
            Ok(json!({"abort": false}))
        );
        assert_eq!(
            status_patch(&ro(aborted.clone()), Control::Abort, now()),
            Err(ControlError::AlreadyAborted("web".into())),
            "no write that changes nothing"
        );
        assert_eq!(
            status_patch(&ro(aborted.clone()), Control::PromoteFull, now()),
            Ok(json!({"promoteFull": true})),
            "a full promotion lifts the abort, as in Argo Rollouts"
        );
        let refused = status_patch(&ro(aborted), Control::Promote, now());
        let Err(e @ ControlError::Aborted(_)) = refused else {
            panic!("plain promote on an aborted release: {refused:?}");
        };
        let message = e.to_string();
        assert!(
            message.contains("retry") && message.contains("--full"),
            "{message}"
        );
    }

    #[test]
    fn pause_and_resume_touch_only_the_user_pause() {
        let mut st = releasing_status();
        st.pause_conditions = vec![pause_for(PauseReason::CanaryPauseStep)];
        let paused = status_patch(&ro(st.clone()), Control::Pause, now()).expect("pause");
        let list = paused["pauseConditions"].as_array().expect("list");
        assert_eq!(list.len(), 2);
        assert_eq!(list[1]["reason"], "UserPause");
        st.pause_conditions.push(pause_for(PauseReason::UserPause));
        assert!(matches!(
            status_patch(&ro(st.clone()), Control::Pause, now()),
            Err(ControlError::AlreadyPaused(_))
        ));
        let resumed = status_patch(&ro(st), Control::Resume, now()).expect("resume");
        assert_eq!(
            resumed["pauseConditions"].as_array().map(|l| l.len()),
            Some(1),
            "the step's own pause stays"
        );
    }

    #[test]
    fn describe_shows_step_weights_and_what_to_do_next() {
        let mut st = releasing_status();
        st.phase = Some(RolloutPhase::Paused);
        st.current_step_index = Some(1);
        let text = describe(&ro(st));
        assert!(text.contains("Step:       1/3"), "{text}");
        assert!(text.contains("Phase:      Paused"), "{text}");
        assert!(
            text.contains("Next:       kubectl sluice promote"),
            "{text}"
        );
    }

    #[test]
    fn describe_shows_the_analysis_a_release_waits_on() {
        let mut st = releasing_status();
        st.canary = Some(crate::api::rollout::CanaryStatus {
            current_step_analysis_run_status: Some(crate::api::rollout::RolloutAnalysisRunStatus {
                name: "web-abc-step1".into(),
                status: Some(crate::api::analysis::AnalysisPhase::Failed),
                message: Some("metric \"success-rate\" failed".into()),
            }),
            ..Default::default()
        });
        let text = describe(&ro(st));
        assert!(
            text.contains("Analysis:   step web-abc-step1 Failed: metric \"success-rate\" failed"),
            "{text}"
        );
    }

    #[test]
    fn describe_says_an_exercise_is_a_drill_and_points_to_it() {
        use crate::api::exercise::ExerciseInForce;
        let mut e: ExerciseInForce = serde_json::from_value(json!({
            "name": "drill", "run": 3, "stableRevision": "aaaa",
            "fault": {"patch": {"spec": {"containers": [{"name": "web", "image": "bad:1"}]}}}
        }))
        .expect("exercise");
        assert_eq!(
            exercise_line(&e),
            "drill run 3 (a rehearsed rollback, not a real release): starting: the faulty revision is being released"
        );
        e.revision = Some("bbbb".into());
        e.live_at = Some(Time(now()));
        e.peak_weight = Some(25);
        assert!(
            exercise_line(&e).ends_with(&format!(
                "faulty revision bbbb live since {}, peak weight 25%",
                now()
            )),
            "{}",
            exercise_line(&e)
        );
        e.aborted_at = Some(Time(now()));
        e.abort_cause = Some("AnalysisFailed".into());
        e.safe_at = Some(Time(now()));
        assert!(
            exercise_line(&e).contains("faulty revision bbbb aborted (AnalysisFailed) at"),
            "{}",
            exercise_line(&e)
        );
        let mut st = releasing_status();
        st.abort = Some(true);
        st.exercise = Some(e);
        let text = describe(&ro(st));
        let line = |label: &str| {
            text.lines()
                .find(|l| l.starts_with(label))
                .unwrap_or_else(|| panic!("no {label:?} in {text}"))
                .to_string()
        };
        assert!(
            line("Exercise:").contains("drill run 3 (a rehearsed rollback"),
            "{text}"
        );
        assert_eq!(
            line("Next:"),
            "Next:       kubectl sluice exercise status drill (or cancel drill)"
        );
    }

    #[test]
    fn describe_shows_what_holds_an_aborted_release_and_its_conditions_sorted() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
        let cond = |type_: &str, status: &str, message: &str| Condition {
            type_: type_.into(),
            status: status.into(),
            reason: "Because".into(),
            message: message.into(),
            last_transition_time: Time(now()),
            observed_generation: None,
        };
        let mut st = releasing_status();
        st.abort = Some(true);
        st.pause_conditions = vec![pause_for(PauseReason::UserPause)];
        st.message = Some("RolloutAborted: revision abc aborted on request".into());
        st.conditions = vec![
            cond("Progressing", "False", "aborted by request"),
            cond("Healthy", "False", ""),
            cond(
                "Paused",
                "False",
                "RolloutAborted: revision abc aborted on request",
            ),
            cond("Ready", "False", "revision abc aborted on request"),
        ];
        let text = describe(&ro(st));
        let lines: Vec<&str> = text.lines().collect();
        let at = |prefix: &str| {
            lines
                .iter()
                .position(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix:?} in {text}"))
        };
        assert!(lines[at("Paused:")].contains("UserPause since"), "{text}");
        assert_eq!(lines[at("Aborted:")], "Aborted:    yes");
        let first = at("Conditions:");
        assert_eq!(lines[first], "Conditions: Healthy=False (Because)");
        // A message the Phase line says is not repeated; another one is.
        assert_eq!(
            &lines[first + 1..first + 4],
            [
                "            Paused=False (Because)",
                "            Progressing=False (Because): aborted by request",
                "            Ready=False (Because)",
            ]
        );
        assert!(
            lines[at("Phase:")].ends_with("RolloutAborted: revision abc aborted on request"),
            "{text}"
        );
        assert_eq!(
            lines[at("Next:")],
            "Next:       kubectl sluice retry, or set the template back"
        );
    }
}
