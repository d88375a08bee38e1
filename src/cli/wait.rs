//! `kubectl sluice status NAME`: where a Rollout stands, as an exit code a pipeline can branch
//! on. Pure: the verdict comes from the Rollout as read.

use std::process::ExitCode;

use kube::ResourceExt;

use crate::api::constants::condition;
use crate::api::rollout::{Rollout, RolloutPhase};

/// Where a Rollout stands, for `status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The release is done: every pod runs the stable revision.
    Healthy,
    /// Aborted, or stopped by an invalid spec: a person must act.
    Degraded,
    /// Waiting for a person (a pause step, a pause by request, an inconclusive analysis).
    Paused,
    /// Still moving; `status` waits.
    Progressing,
}

impl Outcome {
    /// The documented exit codes: 0 Healthy, 2 Degraded, 3 Paused, 4 timed out while still
    /// progressing; 1 is kept for errors (not found, forbidden, no cluster).
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Healthy => 0,
            Outcome::Degraded => 2,
            Outcome::Paused => 3,
            Outcome::Progressing => 4,
        }
    }

    pub fn exit(self) -> ExitCode {
        ExitCode::from(self.exit_code())
    }

    /// Whether `status` stops waiting here.
    pub fn settled(self) -> bool {
        self != Outcome::Progressing
    }
}

/// The verdict and a line saying why. A Rollout the controller has not looked at since its
/// last change is still progressing, whatever its old status says.
pub fn outcome(ro: &Rollout) -> (Outcome, String) {
    let st = ro.status.clone().unwrap_or_default();
    let name = ro.name_any();
    let generation = ro.metadata.generation;
    if st.observed_generation.is_none() || st.observed_generation != generation {
        return (
            Outcome::Progressing,
            format!(
                "{name}: waiting for the controller to see generation {}",
                generation.unwrap_or_default()
            ),
        );
    }
    let invalid = st
        .conditions
        .iter()
        .find(|c| c.type_ == condition::INVALID_SPEC && c.status == "True");
    if let Some(c) = invalid {
        return (
            Outcome::Degraded,
            format!("{name}: Degraded: InvalidSpec: {}", c.message),
        );
    }
    let message = st
        .message
        .as_ref()
        .filter(|m| !m.is_empty())
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    let step = match (ro.spec.strategy.canary.as_ref(), st.current_step_index) {
        (Some(c), Some(i)) if !c.steps().is_empty() => format!(" (step {i}/{})", c.steps().len()),
        _ => String::new(),
    };
    let (outcome, word) = match st.phase {
        Some(RolloutPhase::Healthy) => (Outcome::Healthy, "Healthy"),
        Some(RolloutPhase::Degraded) => (Outcome::Degraded, "Degraded"),
        _ if st.abort == Some(true) => (Outcome::Degraded, "Degraded"),
        Some(RolloutPhase::Paused) => (Outcome::Paused, "Paused"),
        Some(RolloutPhase::Progressing) | None => (Outcome::Progressing, "Progressing"),
    };
    (outcome, format!("{name}: {word}{step}{message}"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ro(generation: i64, status: serde_json::Value) -> Rollout {
        serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "web", "generation": generation},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                     "template": {"spec": {"containers": [{"name": "web", "image": "web:1"}]}},
                     "strategy": {"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}}},
            "status": status
        }))
        .expect("rollout")
    }

    #[test]
    fn each_phase_has_its_exit_code() {
        let cases = [
            ("Healthy", Outcome::Healthy, 0),
            ("Degraded", Outcome::Degraded, 2),
            ("Paused", Outcome::Paused, 3),
            ("Progressing", Outcome::Progressing, 4),
        ];
        for (phase, want, code) in cases {
            let (got, line) = outcome(&ro(
                2,
                json!({"observedGeneration": 2, "phase": phase, "currentStepIndex": 1}),
            ));
            assert_eq!((got, got.exit_code()), (want, code), "{phase}");
            assert!(
                line.starts_with(&format!("web: {phase} (step 1/2)")),
                "{line}"
            );
        }
    }

    #[test]
    fn an_old_status_is_not_believed() {
        let (got, line) = outcome(&ro(3, json!({"observedGeneration": 2, "phase": "Healthy"})));
        assert_eq!(got, Outcome::Progressing);
        assert!(line.contains("generation 3"), "{line}");
        assert_eq!(outcome(&ro(3, json!(null))).0, Outcome::Progressing);
    }

    #[test]
    fn an_invalid_spec_or_an_abort_is_degraded() {
        let invalid = json!({"observedGeneration": 1, "phase": "Progressing",
            "conditions": [{"type": "InvalidSpec", "status": "True", "reason": "InvalidSpec",
                            "message": "template \"x\" not found", "lastTransitionTime": "2026-12-01T00:00:00Z"}]});
        let (got, line) = outcome(&ro(1, invalid));
        assert_eq!(got, Outcome::Degraded);
        assert!(
            line.contains("InvalidSpec: template \"x\" not found"),
            "{line}"
        );
        let aborted = json!({"observedGeneration": 1, "phase": "Paused", "abort": true});
        assert_eq!(outcome(&ro(1, aborted)).0, Outcome::Degraded);
    }
}
