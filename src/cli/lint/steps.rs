//! Canary steps that are valid but probably not what was meant.
//!
//! - A `setWeight` lower than the weight before it: traffic moves back to the stable
//!   revision. Sluice allows it, as Argo Rollouts does, so it is a **warning** (a typo such
//!   as `5` for `50` is the common cause). Weights above 100 are refused by the API server
//!   and reported by the schema check.
//! - The release reaches 100% after its last pause below 100% with no analysis judging it
//!   (no analysis step after that pause, no background analysis): a **warning**, since
//!   promotion is then decided by a timer or a person alone.
//! - A background analysis whose `startingStep` is past the last step: it never starts (the
//!   steps are numbered from 0), so the release runs unjudged: a **warning**, since the API
//!   server and the controller accept it, as Argo Rollouts does.

use super::docs::{Note, warning};
use crate::api::rollout::{CanaryStrategy, Rollout};

pub fn check(ro: &Rollout) -> Vec<Note> {
    let Some(c) = &ro.spec.strategy.canary else {
        return Vec::new();
    };
    let mut notes = weights(c);
    notes.extend(unjudged_promotion(c));
    notes.extend(starting_step(c));
    notes
}

/// A background analysis that starts at a step the release never reaches.
pub fn starting_step(c: &CanaryStrategy) -> Option<Note> {
    let start = c.analysis.as_ref()?.starting_step?;
    let last = c.steps().len().checked_sub(1)?;
    if usize::try_from(start).is_ok_and(|s| s <= last) {
        return None;
    }
    Some(warning(
        "spec.strategy.canary.analysis.startingStep",
        format!(
            "startingStep {start} is past the last step (steps[{last}]; steps are numbered from 0): the background analysis never starts, so nothing judges the release; use a step index from 0 to {last}"
        ),
    ))
}

/// A `setWeight` below the weight in force before it.
pub fn weights(c: &CanaryStrategy) -> Vec<Note> {
    let mut notes = Vec::new();
    let mut current: Option<(usize, i32)> = None;
    for (i, step) in c.steps().iter().enumerate() {
        let Some(w) = step.set_weight else { continue };
        if let Some((j, before)) = current
            && w < before
        {
            notes.push(warning(
                format!("spec.strategy.canary.steps[{i}].setWeight"),
                format!(
                    "setWeight {w} is lower than the {before} set by steps[{j}]: traffic moves back to the stable revision here; if that is not meant, raise it (weights usually only grow)"
                ),
            ));
        }
        current = Some((i, w));
    }
    notes
}

/// The last pause below 100% with no analysis after it: promotion is not judged.
pub fn unjudged_promotion(c: &CanaryStrategy) -> Vec<Note> {
    let steps = c.steps();
    let background = c.analysis.as_ref().is_some_and(|a| {
        usize::try_from(a.starting_step.unwrap_or(0)).is_ok_and(|s| s < steps.len().max(1))
    });
    if background {
        return Vec::new();
    }
    let mut weight = 0;
    let mut last_pause = None;
    for (i, step) in steps.iter().enumerate() {
        if let Some(w) = step.set_weight {
            weight = w;
        }
        if let Some(p) = &step.pause
            && weight < 100
        {
            last_pause = Some((i, weight, p.duration.is_some()));
        }
    }
    let Some((i, weight, timed)) = last_pause else {
        return Vec::new();
    };
    if steps[i + 1..].iter().any(|s| s.analysis.is_some()) {
        return Vec::new();
    }
    let how = if timed {
        "when this pause ends"
    } else {
        "once someone promotes it"
    };
    vec![warning(
        format!("spec.strategy.canary.steps[{i}].pause"),
        format!(
            "promotion is not judged by analysis: {how}, the release goes from {weight}% to 100% with no analysis step after this pause and no background analysis; add an analysis step after it, or spec.strategy.canary.analysis"
        ),
    )]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canary(v: serde_json::Value) -> CanaryStrategy {
        serde_json::from_value(v).expect("canary")
    }

    fn paths(notes: &[Note]) -> Vec<&str> {
        notes.iter().map(|n| n.path.as_str()).collect()
    }

    #[test]
    fn weights_that_go_down_are_warned() {
        let c = canary(
            json!({"steps": [{"setWeight": 20}, {"setWeight": 50}, {"pause": {}}, {"setWeight": 5}, {"setWeight": 80}]}),
        );
        let n = weights(&c);
        assert_eq!(paths(&n), ["spec.strategy.canary.steps[3].setWeight"]);
        assert!(
            n[0].message.contains("lower than the 50 set by steps[1]"),
            "{n:?}"
        );
        assert!(
            weights(&canary(
                json!({"steps": [{"setWeight": 20}, {"setWeight": 20}, {"setWeight": 100}]})
            ))
            .is_empty()
        );
    }

    #[test]
    fn a_starting_step_past_the_last_is_warned() {
        let with = |start: i32| {
            canary(json!({
                "steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}],
                "analysis": {"templates": [{"templateName": "rate"}], "startingStep": start}
            }))
        };
        assert!(starting_step(&with(0)).is_none());
        assert!(starting_step(&with(2)).is_none());
        let n = starting_step(&with(3)).expect("past the last step");
        assert_eq!(n.path, "spec.strategy.canary.analysis.startingStep");
        assert!(
            n.message
                .contains("startingStep 3 is past the last step (steps[2]")
                && n.message.contains("from 0 to 2"),
            "{n:?}"
        );
        // No steps, or no startingStep: nothing to say.
        let none = canary(
            json!({"analysis": {"templates": [{"templateName": "rate"}], "startingStep": 4}}),
        );
        assert!(starting_step(&none).is_none());
        let unset = canary(
            json!({"steps": [{"setWeight": 20}], "analysis": {"templates": [{"templateName": "rate"}]}}),
        );
        assert!(starting_step(&unset).is_none());
    }

    #[test]
    fn a_last_pause_without_analysis_is_warned() {
        let t = json!({"templates": [{"templateName": "rate"}]});
        let cases = [
            (
                json!({"steps": [{"setWeight": 20}, {"pause": {"duration": "1m"}}]}),
                Some("spec.strategy.canary.steps[1].pause"),
            ),
            (
                json!({"steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}, {"analysis": t}]}),
                None,
            ),
            (
                json!({"steps": [{"setWeight": 20}, {"analysis": t}, {"pause": {}}]}),
                Some("spec.strategy.canary.steps[2].pause"),
            ),
            (
                json!({"steps": [{"setWeight": 20}, {"pause": {}}], "analysis": t}),
                None,
            ),
            (
                json!({"steps": [{"setWeight": 20}, {"pause": {}}], "analysis": {"templates": [{"templateName": "x"}], "startingStep": 5}}),
                Some("spec.strategy.canary.steps[1].pause"),
            ),
            (json!({"steps": [{"setWeight": 100}, {"pause": {}}]}), None),
            (json!({"steps": [{"setWeight": 20}]}), None),
        ];
        for (c, want) in cases {
            let n = unjudged_promotion(&canary(c.clone()));
            assert_eq!(paths(&n), want.into_iter().collect::<Vec<_>>(), "{c}");
        }
    }
}
