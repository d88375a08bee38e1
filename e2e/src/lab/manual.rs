//! The labs where the learner must roll back: a release whose pods never become ready
//! (`stuck`: Sluice reports the progress deadline but, as Argo Rollouts does by default,
//! does not abort), and a faulty release of a Rollout with no analysis (`manual-rollback`:
//! nothing but a person can tell it is bad).

use std::time::Duration;

use super::app::{self, Shape, Version};
use super::check::{self, End};
use super::facts::{Facts, Moment};
use super::learner::{self, Brief, Cmd};
use super::stack::Stack;
use super::world::{CONFIRM, World};
use super::{Lab, Mode};

/// `progressDeadlineSeconds` of the stuck lab.
const DEADLINE: u32 = 15;
/// How long the script waits for each of Sluice's reactions.
const LIMIT: Duration = Duration::from_secs(60);
/// The share of requests the faulty release of `manual-rollback` fails.
const ERRORS: f64 = 0.3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Stuck,
    NoAnalysis,
}

impl Kind {
    fn lab(self) -> Lab {
        match self {
            Kind::Stuck => Lab::Stuck,
            Kind::NoAnalysis => Lab::ManualRollback,
        }
    }

    fn bad(self) -> Version {
        match self {
            Kind::Stuck => Version {
                image: "registry.example/shop:1.1",
                behaviour: "never-ready",
                ..Version::good()
            },
            Kind::NoAnalysis => Version {
                image: "registry.example/shop:1.1",
                error_rate: ERRORS,
                ..Version::good()
            },
        }
    }

    fn shape(self, mode: Mode) -> Shape {
        Shape {
            analysis: self == Kind::Stuck,
            progress_deadline: if self == Kind::Stuck { DEADLINE } else { 600 },
            abort_scale_down_delay: mode.abort_delay(),
        }
    }
}

/// A rollback by request: the abort's cause and the words of its message.
fn aborted() -> End {
    End::RolledBack {
        cause: "Request",
        words: vec!["aborted on request".into()],
    }
}

pub async fn run(stack: &Stack, kind: Kind, mode: Mode) -> anyhow::Result<String> {
    let mut w = World::set_up(stack, kind.lab(), &kind.shape(mode)).await?;
    let result = play(&mut w, kind, mode).await;
    w.finish().await;
    result
}

async fn play(w: &mut World<'_>, kind: Kind, mode: Mode) -> anyhow::Result<String> {
    w.release(&kind.bad(), "1.1").await?;
    if kind == Kind::NoAnalysis {
        // The learner is told once 1.1 has its share and waits for a person.
        w.watch("1.1 to wait at 25% for a person", LIMIT, |f, _| {
            let waiting = f.weights.1 == app::FIRST_WEIGHT && f.view.phase == "Paused";
            waiting.then_some(Ok(()))
        })
        .await?;
    }
    learner::print_brief(&brief(w, kind), &w.stack.kubectl);
    if mode.scripted {
        answer(w, kind).await?;
    }
    let (old, new) = (w.old.clone(), w.new.clone());
    let ends = if mode.scripted {
        vec![match kind {
            Kind::Stuck => aborted(),
            Kind::NoAnalysis => End::Undone,
        }]
    } else {
        vec![aborted(), End::Undone]
    };
    let mut lacking = check::Lacking::default();
    let what = format!("1.1 to be {}", describe(&ends));
    let f = w
        .watch(&what, mode.learner_limit(LIMIT), |f, tl| {
            if let Some(why) = check::ruined(f, &old, &["Request"], false) {
                return Some(Err(anyhow::anyhow!(why)));
            }
            let missing: Vec<Vec<String>> = ends
                .iter()
                .map(|e| check::missing(e, f, &old, &new))
                .collect();
            if let Some(i) = missing.iter().position(Vec::is_empty) {
                return Some(Ok((f.clone(), ends[i].clone())));
            }
            // Once the learner has acted, what is left of the nearest end.
            if tl.at(Moment::Aborted).is_some() || tl.at(Moment::Undone).is_some() {
                let nearest = missing.iter().min_by_key(|m| m.len());
                lacking.report(f.t, nearest.map_or(&[][..], Vec::as_slice));
            }
            None
        })
        .await?;
    let sent = w.confirm_none_to(&new).await?;
    Ok(explain(w, kind, &f.0, &f.1, sent))
}

fn describe(ends: &[End]) -> String {
    ends.iter()
        .map(End::describe)
        .collect::<Vec<_>>()
        .join(" or ")
}

fn brief(w: &World, kind: Kind) -> Brief {
    match kind {
        Kind::Stuck => stuck_brief(w),
        Kind::NoAnalysis => no_analysis_brief(w),
    }
}

/// The commands both labs suggest: the tree, abort and undo.
fn controls(ns: &str) -> [(String, String); 3] {
    [
        (
            format!("kubectl sluice get rollout shop -n {ns}"),
            "the Rollout as a tree: phase, step, weights, revisions and their pods".into(),
        ),
        (
            format!("kubectl sluice abort shop -n {ns}"),
            "all traffic back to the stable revision now; the new pods go after \
             abortScaleDownDelaySeconds"
                .into(),
        ),
        (
            format!("kubectl sluice undo shop -n {ns}"),
            "the Rollout's template back to the previous revision (1.0): Healthy again".into(),
        ),
    ]
}

fn stuck_brief(w: &World) -> Brief {
    let (ns, new) = (&w.ns, &w.new);
    let [get, abort, undo] = controls(ns);
    Brief {
        situation: format!(
            "You have just released shop 1.1 as a canary: Sluice starts one pod of 1.1 \
             beside the four of 1.0 and will send it 25% of the traffic once it is ready. \
             The release does not move. The Rollout has progressDeadlineSeconds: {DEADLINE}."
        ),
        questions: vec![
            "Is the new pod running? Is it ready? What is the difference?".into(),
            "What does Sluice say about the release after the progress deadline, and does it \
             roll back on its own?"
                .into(),
            "Do users get errors meanwhile?".into(),
            "What do you run to end it?".into(),
        ],
        commands: vec![
            (
                format!("kubectl get pods -n {ns}"),
                "STATUS and READY of the new pod".into(),
            ),
            (
                format!("kubectl describe pods -l rollouts-pod-template-hash={new} -n {ns}"),
                "its Conditions (Ready, ContainersReady) and its readiness probe".into(),
            ),
            get,
            (
                format!("kubectl sluice status shop --no-wait -n {ns}"),
                "one line, and an exit code for scripts (2: Degraded)".into(),
            ),
            abort,
            undo,
        ],
        waiting: "The lab waits for you to roll 1.1 back (abort or undo), then explains.".into(),
    }
}

fn no_analysis_brief(w: &World) -> Brief {
    let [get, abort, undo] = controls(&w.ns);
    let query = crate::shop::revision_success_query(&w.new);
    Brief {
        situation: format!(
            "The shop's Rollout has no analysis: each release stops at 25% and waits for a \
             person (a `pause: {{}}` step). 1.1 is there now, with one pod and 25% of the \
             traffic. Prometheus is at {}; the lab's lines show the share of 1.1's requests \
             that succeed.",
            w.prometheus.url()
        ),
        questions: vec![
            "Is 1.1 healthy? How can you tell, when Kubernetes says its pod is Ready?".into(),
            "What gets users off 1.1 fastest, and what makes the Rollout Healthy again?".into(),
            "What would have rolled it back without you?".into(),
        ],
        commands: vec![
            get,
            (
                format!(
                    "curl -s {}/api/v1/query --data-urlencode 'query={query}'",
                    w.prometheus.url()
                ),
                "the share of 1.1's requests that succeed, from Prometheus".into(),
            ),
            abort,
            undo,
        ],
        waiting: "The lab waits for you to roll 1.1 back (abort, undo, or both), then explains."
            .into(),
    }
}

/// The scripted learner's part.
async fn answer(w: &mut World<'_>, kind: Kind) -> anyhow::Result<()> {
    let (ns, old, new) = (w.ns.clone(), w.old.clone(), w.new.clone());
    let ruined = move |f: &Facts| check::ruined(f, &old, &["Request"], false);
    match kind {
        Kind::Stuck => {
            let limit = LIMIT + Duration::from_secs(u64::from(DEADLINE));
            w.watch("Sluice to report the progress deadline", limit, |f, tl| {
                if let Some(why) = ruined(f) {
                    return Some(Err(anyhow::anyhow!(why)));
                }
                tl.at(Moment::Deadline).map(|_| Ok(()))
            })
            .await?;
            for cmd in [
                Cmd::new(format!("kubectl get pods -n {ns}")).shows("0/1"),
                Cmd::new(format!(
                    "kubectl describe pods -l rollouts-pod-template-hash={new} -n {ns}"
                ))
                .shows("Readiness:")
                .shows("ContainersReady"),
                Cmd::new(format!("kubectl sluice status shop --no-wait -n {ns}"))
                    .shows("ProgressDeadlineExceeded")
                    .code(2),
                Cmd::new(format!("kubectl sluice abort shop -n {ns}")),
            ] {
                w.run(&cmd).await?;
            }
        }
        Kind::NoAnalysis => {
            w.watch("1.1's errors to show in Prometheus", LIMIT, |f, _| {
                if let Some(why) = ruined(f) {
                    return Some(Err(anyhow::anyhow!(why)));
                }
                f.success.is_some_and(|s| s < 0.9).then_some(Ok(()))
            })
            .await?;
            for cmd in [
                Cmd::new(format!("kubectl sluice get rollout shop -n {ns}")).shows("Paused"),
                Cmd::new(format!("kubectl sluice abort shop -n {ns}")),
            ] {
                w.run(&cmd).await?;
            }
            w.watch("all traffic back on 1.0", LIMIT, |f, tl| {
                if let Some(why) = ruined(f) {
                    return Some(Err(anyhow::anyhow!(why)));
                }
                tl.at(Moment::Safe).map(|_| Ok(()))
            })
            .await?;
            w.run(&Cmd::new(format!("kubectl sluice undo shop -n {ns}")))
                .await?;
        }
    }
    Ok(())
}

fn explain(w: &World, kind: Kind, f: &Facts, end: &End, sent_after: u64) -> String {
    let tl = &w.timeline;
    let (sent, failed) = w.requests_to_new();
    let mut paragraphs = match kind {
        Kind::Stuck => stuck_story(w),
        Kind::NoAnalysis => vec![format!(
            "1.1 fails {:.0}% of its requests, but its pod is Running and Ready: Kubernetes sees \
             nothing wrong, and with no analysis Sluice cannot know either. It waited at 25% \
             for a person, as the `pause: {{}}` step says. Only the requests show it: \
             Prometheus's success rate of 1.1.",
            ERRORS * 100.0
        )],
    };
    paragraphs.push(answer_story(w, end));
    paragraphs.push(format!(
        "1.1's pods were gone at {}. Requests that reached 1.1: {sent}, of which {failed} \
         failed. Then the lab counted {sent_after} requests over {} s: every one went to 1.0.",
        tl.rel(Moment::PodsGone),
        CONFIRM.as_secs()
    ));
    paragraphs.push(match kind {
        Kind::Stuck => "To have Sluice end such a release on its own, set \
                        `progressDeadlineAbort: true` (the abort's cause is then \
                        ProgressDeadline)."
            .into(),
        Kind::NoAnalysis => "An analysis step (as in the error-rate lab) would have measured \
                             the success rate and aborted within seconds, without anyone \
                             watching."
            .into(),
    });
    if !f.view.message.is_empty() {
        paragraphs.push(format!("The Rollout's message: {}", f.view.message));
    }
    learner::explain(&paragraphs);
    let traffic = match tl.at(Moment::CanaryTraffic) {
        None => "1.1 never had traffic".to_string(),
        Some(_) => format!("all traffic on 1.0 at {}", tl.rel(Moment::Safe)),
    };
    let deadline = match kind {
        Kind::Stuck => format!(
            "progress deadline reported at {}; ",
            tl.rel(Moment::Deadline)
        ),
        Kind::NoAnalysis => String::new(),
    };
    format!(
        "{deadline}{} by the learner; {traffic}; {failed} of {sent} requests to 1.1 failed",
        end.describe()
    )
}

fn stuck_story(w: &World) -> Vec<String> {
    vec![
        "1.1's pod is Running but never Ready: its container started, but its readiness probe \
         (GET /healthz on port 8080) never passes; here the simulated kubelet reports it not \
         ready, and in a real cluster `kubectl describe pod` also shows `Readiness probe \
         failed` in the Events. A pod that is not ready gets no traffic: it is left out of the \
         Service's endpoints, and Sluice gives the canary its weight only once its pods are \
         ready, so 1.0 served every request and users saw no error."
            .to_string(),
        format!(
            "Nothing fails loudly, so fail-fast does not apply: only the progress deadline \
             catches it. After {DEADLINE} s without progress Sluice set the Progressing \
             condition to False with reason ProgressDeadlineExceeded and the phase to Degraded \
             (at {}), and sent a Warning Event; like Argo Rollouts, it does not roll back on a \
             deadline unless the Rollout says `progressDeadlineAbort: true`.",
            w.timeline.rel(Moment::Deadline)
        ),
    ]
}

fn answer_story(w: &World, end: &End) -> String {
    let tl = &w.timeline;
    let safe = match tl.at(Moment::CanaryTraffic) {
        None => "1.1 never had traffic".to_string(),
        Some(_) => format!(
            "all traffic on 1.0 at {}: Sluice moves traffic first, in the same reconcile",
            tl.rel(Moment::Safe)
        ),
    };
    match end {
        End::Undone if tl.at(Moment::Aborted).is_some() => format!(
            "You aborted at {} ({safe}), then undid the release at {}: the template is 1.0's \
             again, which is the stable revision, so no new release was needed and the Rollout \
             is Healthy.",
            tl.rel(Moment::Aborted),
            tl.rel(Moment::Undone)
        ),
        End::Undone => format!(
            "You undid the release at {}: the template is 1.0's again, which is the stable \
             revision, so Sluice went straight back to it ({safe}) and the Rollout is Healthy.",
            tl.rel(Moment::Undone)
        ),
        _ => format!(
            "You aborted at {} ({safe}). The Rollout stays Degraded, with 1.0 serving, until \
             its template changes: `kubectl sluice undo shop` (or a revert in git) makes it \
             Healthy again; `kubectl sluice retry shop` would try 1.1 again.",
            tl.rel(Moment::Aborted)
        ),
    }
}
