//! `kubectl sluice exercise start|status|history|cancel NAME`: rehearsed rollbacks
//! (RolloutExercise) from the command line. `start` and `cancel` write one annotation of the
//! exercise's metadata (a merge patch; never its spec or status); the exercise controller
//! does the rest. The decisions and the text are pure (`follow`, `view`); this is the I/O.

pub mod follow;
pub mod view;

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Api, ResourceExt};

use self::follow::{CancelPlan, End, Follow, StartOutcome, StartPlan};
use self::view::RolloutSeen;
use super::cluster::{Action, Among, CliError, Cluster, hint_among};
use super::commands::{Output, emit, encode};
use super::tree::Style;
use crate::api::constants::FIELD_MANAGER_CLI;
use crate::api::exercise::RolloutExercise;
use crate::api::rollout::Rollout;
use crate::exercise::run::{CANCEL_REQUESTED, RUN_REQUESTED};

const EXERCISES: &str = "rolloutexercises.sluice.dev";
/// How long `start` waits for the controller to take the request before saying so.
const TAKEN_WITHIN: Duration = Duration::from_secs(30);
/// Writes tried when the exercise changes between the read and the write.
const ATTEMPTS: usize = 3;

fn exercises(cl: &Cluster) -> Api<RolloutExercise> {
    Api::namespaced(cl.client.clone(), &cl.namespace)
}

/// The names of the namespace's exercises (for completion and not-found hints).
pub async fn names(cl: &Cluster) -> Result<Vec<String>, CliError> {
    let list = Action::new("list", EXERCISES).in_ns(&cl.namespace);
    Ok(cl
        .call(&list, exercises(cl).list_metadata(&ListParams::default()))
        .await?
        .items
        .iter()
        .map(|m| m.name_any())
        .collect())
}

/// Reads exercise `name`; when it is not there, the error names the close ones.
pub async fn fetch(cl: &Cluster, name: &str) -> Result<RolloutExercise, CliError> {
    let get = Action::new("get", EXERCISES)
        .named(name)
        .in_ns(&cl.namespace);
    if let Some(ex) = cl.call(&get, exercises(cl).get_opt(name)).await? {
        return Ok(ex);
    }
    let among = Among {
        plural: "rollout exercises",
        list: format!("kubectl get rolloutexercises -n {}", cl.namespace),
        list_all: "kubectl get rolloutexercises -A",
    };
    Err(CliError::NotFound {
        kind: "exercise",
        name: name.to_string(),
        namespace: cl.namespace.clone(),
        // Without the right to list them, no hint rather than a refusal.
        hint: match names(cl).await {
            Ok(names) => hint_among(&among, name, &names, &cl.namespace),
            Err(_) => String::new(),
        },
    })
}

/// Sets one annotation to `at`, guarded by the resourceVersion read.
async fn annotate(
    cl: &Cluster,
    ex: &RolloutExercise,
    key: &str,
    at: Timestamp,
) -> Result<(), CliError> {
    let name = ex.name_any();
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER_CLI.into()),
        ..Default::default()
    };
    let action = Action::new("patch", EXERCISES)
        .named(&name)
        .in_ns(&cl.namespace);
    let patch = follow::annotation_patch(ex, key, at);
    cl.call(
        &action,
        exercises(cl).patch(&name, &params, &Patch::Merge(&patch)),
    )
    .await
    .map(|_| ())
}

/// `exercise start NAME`: asks for a run (or finds one under way) and, with `wait`, follows
/// it to its result or `timeout`.
pub async fn start(
    cl: &Cluster,
    name: &str,
    wait: bool,
    timeout: Duration,
    style: Style,
) -> Result<StartOutcome, CliError> {
    let began = tokio::time::Instant::now();
    let mut following = None;
    for _ in 0..ATTEMPTS {
        let ex = fetch(cl, name).await?;
        match follow::plan_start(&ex) {
            StartPlan::Invalid(message) => {
                return Err(CliError::Exercise(format!(
                    "exercise {name} cannot run: {message}"
                )));
            }
            StartPlan::Follow { run, line } => {
                emit(&line)?;
                following = Some(Follow::run(run));
            }
            StartPlan::Ask { runs_before } => {
                let at = Timestamp::now();
                match annotate(cl, &ex, RUN_REQUESTED, at).await {
                    Err(CliError::Conflict { .. }) => continue,
                    Err(e) => return Err(e),
                    Ok(()) => {}
                }
                emit(&follow::asked_line(&ex, at))?;
                following = Some(Follow::request(&at.to_string(), runs_before));
            }
        }
        break;
    }
    let Some(mut f) = following else {
        return Err(CliError::Conflict {
            resource: EXERCISES,
            name: name.to_string(),
        });
    };
    if !wait {
        emit(&format!(
            "not waiting (--no-wait): kubectl sluice exercise status {name} -n {} shows how it goes\n",
            cl.namespace
        ))?;
        return Ok(StartOutcome::Asked);
    }
    let left = timeout.saturating_sub(began.elapsed());
    match tokio::time::timeout(left, watch_run(cl, name, &mut f, began, style)).await {
        Ok(outcome) => outcome,
        Err(_) => {
            emit(&follow::timed_out_line(name, f.run_number(), timeout))?;
            Ok(StartOutcome::TimedOut)
        }
    }
}

/// A watch of exercise `name` (see `Cluster::watch_timeout`).
fn watch_config(cl: &Cluster, name: &str) -> watcher::Config {
    watcher::Config::default()
        .fields(&format!("metadata.name={name}"))
        .timeout(cl.watch_timeout())
}

/// A watch error the command cannot get past (no right to list or watch the exercises).
fn fatal(cl: &Cluster, e: watcher::Error) -> Result<String, CliError> {
    match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s))
            if matches!(s.code, 401 | 403) =>
        {
            let verb = if s.code == 403 { "watch" } else { "list" };
            let action = Action::new(verb, EXERCISES).in_ns(&cl.namespace);
            Err(cl.explain(&action, kube::Error::Api(s)))
        }
        other => Ok(other.to_string()),
    }
}

/// Follows the run through the exercise's watch, printing each change, to its result.
async fn watch_run(
    cl: &Cluster,
    name: &str,
    f: &mut Follow,
    began: tokio::time::Instant,
    style: Style,
) -> Result<StartOutcome, CliError> {
    let mut events = watcher(exercises(cl), watch_config(cl, name)).boxed();
    let not_taken = tokio::time::sleep(TAKEN_WITHIN);
    tokio::pin!(not_taken);
    let (mut noted, mut last_error) = (false, String::new());
    loop {
        let ev = tokio::select! {
            ev = events.next() => ev,
            _ = &mut not_taken, if !noted => {
                noted = true;
                if f.run_number().is_none() {
                    eprintln!("kubectl sluice: Sluice has not taken the request after {}s: is its controller running and watching namespace {:?}?", TAKEN_WITHIN.as_secs(), cl.namespace);
                }
                continue;
            }
        };
        let ex = match ev {
            Some(Ok(Event::Apply(ex) | Event::InitApply(ex))) => ex,
            Some(Ok(Event::Delete(_))) => {
                return Err(CliError::Exercise(format!(
                    "exercise {name} was deleted (its run, if any, is cancelled)"
                )));
            }
            Some(Ok(_)) => continue,
            None => return Err(CliError::Exercise("the watch ended".into())),
            Some(Err(e)) => {
                let said = fatal(cl, e)?;
                if said != last_error {
                    eprintln!("kubectl sluice: watch: {said} (retrying)");
                    last_error = said;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let step = f.see(&ex, began.elapsed(), style);
        for line in &step.lines {
            emit(line)?;
        }
        match step.end {
            None => {}
            Some(End::Finished(run)) => {
                emit(&format!("\n{}", view::render_run(&run, style)))?;
                return Ok(StartOutcome::of(run.result));
            }
            Some(End::Invalid(message)) => {
                return Err(CliError::Exercise(format!(
                    "exercise {name} cannot run: {message}"
                )));
            }
            Some(End::Lost(n)) => {
                return Err(CliError::Exercise(format!(
                    "run {n} of exercise {name} is neither under way nor in its history any more (historyLimit); nothing more to follow"
                )));
            }
        }
    }
}

/// `exercise status NAME [-o json|yaml]`.
pub async fn status(
    cl: &Cluster,
    name: &str,
    output: Output,
    style: Style,
) -> Result<String, CliError> {
    let mut ex = fetch(cl, name).await?;
    if output != Output::Text {
        // As kubectl prints objects: without the field managers' bookkeeping.
        ex.metadata.managed_fields = None;
        return encode(&ex, output);
    }
    let ro_name = &ex.spec.rollout_name;
    let get = Action::new("get", "rollouts.sluice.dev")
        .named(ro_name)
        .in_ns(&cl.namespace);
    let api: Api<Rollout> = Api::namespaced(cl.client.clone(), &cl.namespace);
    let read = cl.call(&get, api.get_opt(ro_name)).await;
    let why;
    let seen = match &read {
        Ok(Some(ro)) => RolloutSeen::Read(ro.status.as_ref().and_then(|s| s.exercise.as_ref())),
        Ok(None) => RolloutSeen::Missing,
        Err(e) => {
            why = e.to_string();
            RolloutSeen::Unreadable(&why)
        }
    };
    Ok(view::render_status(&ex, seen, style))
}

/// `exercise history NAME [-o json|yaml]`: the table, or the history list.
pub async fn history(
    cl: &Cluster,
    name: &str,
    output: Output,
    style: Style,
) -> Result<String, CliError> {
    let ex = fetch(cl, name).await?;
    match output {
        Output::Text => Ok(view::render_history(&ex, style)),
        _ => encode(&ex.status.unwrap_or_default().history, output),
    }
}

/// `exercise cancel NAME`.
pub async fn cancel(cl: &Cluster, name: &str) -> Result<String, CliError> {
    for _ in 0..ATTEMPTS {
        let ex = fetch(cl, name).await?;
        match follow::plan_cancel(&ex, Timestamp::now()) {
            CancelPlan::Nothing(line) | CancelPlan::Already(line) => return Ok(line),
            CancelPlan::Waiting(message) => return Err(CliError::Exercise(message)),
            CancelPlan::Cancel { at, line } => {
                match annotate(cl, &ex, CANCEL_REQUESTED, at).await {
                    Err(CliError::Conflict { .. }) => continue,
                    Err(e) => return Err(e),
                    Ok(()) => return Ok(line),
                }
            }
        }
    }
    Err(CliError::Conflict {
        resource: EXERCISES,
        name: name.to_string(),
    })
}
