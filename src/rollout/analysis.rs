//! How a Rollout uses AnalysisRuns, pure: which run a step or phase needs, its name, and what
//! its verdict means for the release.

use crate::api::analysis::{AnalysisPhase, AnalysisRunSpec};
use crate::api::rollout::{Rollout, RolloutAnalysisRunStatus};

use super::decide::Plan;
use super::hash::dns_label;
use super::observe::{Observed, ObservedRun};

/// Label on an AnalysisRun: which use it serves (`step`, `background`, `pre`, `post`).
pub const LABEL_ANALYSIS_KIND: &str = "sluice.dev/analysis";

/// Where a Rollout declares an analysis: the one key observe (which builds each run's spec)
/// and decide (which creates and judges the run) share.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AnalysisKey {
    /// `spec.strategy.canary.steps[i].analysis`
    Step(usize),
    /// `spec.strategy.canary.analysis`
    Background,
    /// `spec.strategy.blueGreen.prePromotionAnalysis`
    PrePromotion,
    /// `spec.strategy.blueGreen.postPromotionAnalysis`
    PostPromotion,
}

impl AnalysisKey {
    /// The Rollout field that declares it, as messages name it.
    pub fn field(self) -> String {
        match self {
            AnalysisKey::Step(i) => format!("spec.strategy.canary.steps[{i}].analysis"),
            AnalysisKey::Background => "spec.strategy.canary.analysis".into(),
            AnalysisKey::PrePromotion => "spec.strategy.blueGreen.prePromotionAnalysis".into(),
            AnalysisKey::PostPromotion => "spec.strategy.blueGreen.postPromotionAnalysis".into(),
        }
    }

    /// The value of the run's `sluice.dev/analysis` label.
    pub fn kind(self) -> &'static str {
        match self {
            AnalysisKey::Step(_) => "step",
            AnalysisKey::Background => "background",
            AnalysisKey::PrePromotion => "pre",
            AnalysisKey::PostPromotion => "post",
        }
    }

    /// What people call it in messages.
    pub fn describe(self) -> &'static str {
        match self {
            AnalysisKey::Step(_) => "step analysis",
            AnalysisKey::Background => "background analysis",
            AnalysisKey::PrePromotion => "pre-promotion analysis",
            AnalysisKey::PostPromotion => "post-promotion analysis",
        }
    }

    /// The name of its run for revision `hash` in the Rollout's `release`-th release: every
    /// release and every retry gets runs of its own.
    pub fn run_name(self, ro: &Rollout, hash: &str, release: i32) -> String {
        let name = ro.metadata.name.clone().unwrap_or_default();
        let which = match self {
            AnalysisKey::Step(i) => format!("step{i}"),
            other => other.kind().to_string(),
        };
        dns_label(&[&name, hash, &release.to_string(), &which])
    }
}

impl std::fmt::Display for AnalysisKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.field())
    }
}

/// An AnalysisRun a release relies on: the use it serves and its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsedRun {
    pub key: AnalysisKey,
    pub name: String,
}

/// A run as the release sees it: its verdict and the status line the Rollout shows for it.
#[derive(Clone, Debug, PartialEq)]
pub struct RunState {
    pub verdict: Verdict,
    pub line: RolloutAnalysisRunStatus,
}

/// An AnalysisRun to create.
#[derive(Clone, Debug, PartialEq)]
pub struct RunPlan {
    pub name: String,
    /// The revision it judges.
    pub hash: String,
    pub kind: &'static str,
    pub spec: AnalysisRunSpec,
}

/// What a run's verdict means to the release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not created yet (its creation is planned now) or still measuring.
    Running,
    Successful,
    /// Failed or Error: the release is aborted.
    Failed(String),
    /// A person decides; `outage` when it came from a provider outage (measuring goes on).
    Inconclusive {
        message: String,
        outage: bool,
    },
}

/// The release number whose runs this reconcile uses: the current one, or the next when
/// the reconcile retries an aborted release.
pub fn release_number(status: &crate::api::rollout::RolloutStatus) -> i32 {
    let retrying = status.abort != Some(true) && status.aborted_at.is_some();
    status
        .release_count
        .unwrap_or(0)
        .saturating_add(i32::from(retrying))
}

pub fn observed<'a>(obs: &'a Observed, name: &str) -> Option<&'a ObservedRun> {
    obs.runs.iter().find(|r| r.name == name)
}

/// The verdict of an observed run.
pub fn verdict(run: &ObservedRun) -> Verdict {
    let message = run.message.clone().unwrap_or_default();
    match run.phase {
        Some(AnalysisPhase::Successful) => Verdict::Successful,
        Some(AnalysisPhase::Failed) | Some(AnalysisPhase::Error) => Verdict::Failed(message),
        Some(AnalysisPhase::Inconclusive) => Verdict::Inconclusive {
            message,
            outage: run.measuring,
        },
        _ => Verdict::Running,
    }
}

/// Makes sure the run exists: plans its creation (for revision `hash`) when it is not
/// observed.
pub fn ensure_run(plan: &mut Plan, obs: &Observed, run: &UsedRun, hash: &str) -> RunState {
    let UsedRun { key, name } = run;
    if let Some(observed) = observed(obs, name) {
        return RunState {
            verdict: verdict(observed),
            line: RolloutAnalysisRunStatus {
                name: name.clone(),
                status: observed.phase.or(Some(AnalysisPhase::Pending)),
                message: observed.message.clone(),
            },
        };
    }
    if let Some(Ok(spec)) = obs.analysis.get(key)
        && !plan.create_runs.iter().any(|r| &r.name == name)
    {
        plan.create_runs.push(RunPlan {
            name: name.clone(),
            hash: hash.to_string(),
            kind: key.kind(),
            spec: spec.clone(),
        });
    }
    RunState {
        verdict: Verdict::Running,
        line: RolloutAnalysisRunStatus {
            name: name.clone(),
            status: Some(AnalysisPhase::Pending),
            message: None,
        },
    }
}

/// Stops a run Sluice no longer acts on (still measuring, not yet told to stop).
pub fn terminate(plan: &mut Plan, obs: &Observed, name: &str) {
    if let Some(run) = observed(obs, name)
        && run.measuring
        && !run.terminated
        && !plan.terminate_runs.iter().any(|n| n == name)
    {
        plan.terminate_runs.push(name.to_string());
    }
}

/// Records that a person accepted the run's inconclusive verdict: the run is stopped
/// (`spec.terminate`), which is also the durable mark a restarted controller reads.
pub fn accept(plan: &mut Plan, obs: &Observed, name: &str) {
    if let Some(run) = observed(obs, name)
        && !run.terminated
        && !plan.terminate_runs.iter().any(|n| n == name)
    {
        plan.terminate_runs.push(name.to_string());
    }
}

/// Stops every run not in `keep` that still measures: runs of an earlier release (a new
/// revision, a rollback, a retry) are never acted on again. Finished runs of revisions that
/// no longer have a ReplicaSet, or whose ReplicaSet this plan deletes (revision history), are
/// deleted.
pub fn tidy(plan: &mut Plan, obs: &Observed, keep: &[&str]) {
    for r in &obs.runs {
        if keep.contains(&r.name.as_str()) {
            continue;
        }
        terminate(plan, obs, &r.name);
        let revision_gone = !obs
            .replica_sets
            .iter()
            .any(|rs| rs.hash == r.hash && !plan.delete_replica_sets.contains(&rs.name));
        if revision_gone && !r.measuring && !plan.delete_runs.contains(&r.name) {
            plan.delete_runs.push(r.name.clone());
        }
    }
}

#[cfg(test)]
#[path = "analysis_tests.rs"]
mod tests;
