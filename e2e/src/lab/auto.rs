//! The labs where Sluice rolls back on its own and the learner diagnoses: pods that crash
//! (`crashloop`), an image that cannot be pulled (`image-pull`), and a version that fails
//! requests (`error-rate`) or answers slowly (`latency`), caught by analysis.

use std::time::Duration;

use super::app::{self, Shape, Version};
use super::check::{self, End};
use super::facts::{Facts, Moment};
use super::learner::{self, Brief, Cmd};
use super::runs;
use super::stack::Stack;
use super::world::{CONFIRM, World};
use super::{Lab, Mode};

/// How long Sluice may take to abort after the release started.
const REACT_LIMIT: Duration = Duration::from_secs(60);

/// Which of Sluice's signals should catch the release.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Fail fast: a new pod that cannot run, with a waiting reason among these.
    Pods(&'static [&'static str]),
    /// The analysis step: this metric fails.
    Analysis(&'static str),
}

/// One lab of this kind.
pub struct Auto {
    pub lab: Lab,
    pub bad: Version,
    pub signal: Signal,
    /// The situation, as the learner hears it.
    pub situation: &'static str,
}

pub fn crashloop() -> Auto {
    Auto {
        lab: Lab::Crashloop,
        bad: Version {
            image: "registry.example/shop:1.1",
            behaviour: "crashloop",
            ..Version::good()
        },
        signal: Signal::Pods(&["CrashLoopBackOff"]),
        situation: "You have just released shop 1.1 (a new image) as a canary: Sluice starts one \
                    pod of 1.1 beside the four of 1.0 and will send it 25% of the traffic once it \
                    is ready. A teammate says the new pod keeps restarting.",
    }
}

pub fn image_pull() -> Auto {
    Auto {
        lab: Lab::ImagePull,
        bad: Version {
            image: "registry.example/shop:v1.1",
            behaviour: "image-pull",
            ..Version::good()
        },
        signal: Signal::Pods(&["ErrImagePull", "ImagePullBackOff"]),
        situation: "You have just released shop 1.1 as a canary by changing the image to \
                    registry.example/shop:v1.1. The new pod does not start: it stays Pending.",
    }
}

pub fn error_rate() -> Auto {
    Auto {
        lab: Lab::ErrorRate,
        bad: Version {
            image: "registry.example/shop:1.1",
            error_rate: 0.2,
            ..Version::good()
        },
        signal: Signal::Analysis(app::SUCCESS_METRIC),
        situation: "You have just released shop 1.1 as a canary. Its pod starts and becomes \
                    ready, and Sluice sends it 25% of the traffic; then the analysis step \
                    measures it against Prometheus (AnalysisTemplate shop-slo: success rate at \
                    least 95%, 99th percentile response time under 100 ms).",
    }
}

pub fn latency() -> Auto {
    Auto {
        lab: Lab::Latency,
        bad: Version {
            image: "registry.example/shop:1.1",
            latency_ms: 400,
            ..Version::good()
        },
        signal: Signal::Analysis(app::LATENCY_METRIC),
        situation: "You have just released shop 1.1 as a canary. Its pod starts and becomes \
                    ready, and Sluice sends it 25% of the traffic; every request still \
                    succeeds. The analysis step measures it against Prometheus \
                    (AnalysisTemplate shop-slo: success rate at least 95%, 99th percentile \
                    response time under 100 ms).",
    }
}

impl Auto {
    fn cause(&self) -> &'static str {
        match self.signal {
            Signal::Pods(_) => "PodsFailing",
            Signal::Analysis(_) => "AnalysisFailed",
        }
    }

    /// What the Rollout's message must name.
    fn words(&self, f: &Facts) -> Vec<String> {
        match self.signal {
            Signal::Pods(reasons) => {
                // The reason the pod showed when Sluice looked (an image pull moves from
                // ErrImagePull to ImagePullBackOff).
                let named = reasons.iter().find(|r| f.view.message.contains(**r));
                vec![named.unwrap_or(&reasons[0]).to_string()]
            }
            Signal::Analysis(metric) => vec![format!("metric \"{metric}\" failed")],
        }
    }

    fn end(&self, f: &Facts) -> End {
        End::RolledBack {
            cause: self.cause(),
            words: self.words(f),
        }
    }

    fn brief(&self, w: &World) -> Brief {
        let (ns, new) = (&w.ns, &w.new);
        let mut commands = vec![(
            format!("kubectl get pods -n {ns}"),
            "every pod of the shop: STATUS, READY and RESTARTS of the new one".to_string(),
        )];
        match self.signal {
            Signal::Pods(_) => commands.push((
                format!("kubectl describe pods -l rollouts-pod-template-hash={new} -n {ns}"),
                "the new pod in detail: State, Last State, Reason, Exit Code, Restart Count".into(),
            )),
            Signal::Analysis(_) => commands.push((
                format!("kubectl get analysisruns -n {ns}"),
                "the analysis runs of this Rollout, and their phase".into(),
            )),
        }
        commands.extend([
            (
                format!("kubectl sluice get rollout shop -n {ns}"),
                "the Rollout as a tree: step, weights, revisions, pods, analysis".into(),
            ),
            (
                format!("kubectl get events -n {ns} --field-selector involvedObject.kind=Rollout"),
                "what Sluice decided, and why".into(),
            ),
            (
                format!("kubectl get virtualservice shop -n {ns} -o yaml"),
                "the weights users' requests follow".into(),
            ),
        ]);
        Brief {
            situation: self.situation.into(),
            questions: vec![
                "What is wrong with 1.1? Which command shows it, and which field says so?".into(),
                "Which signal will Sluice act on, and how long will it take?".into(),
                "How many users' requests reach 1.1 before it is rolled back?".into(),
                "What would you do next, after the rollback?".into(),
            ],
            commands,
            waiting: format!(
                "Sluice should roll 1.1 back on its own: the lab waits for the rollback and for \
                 the pods of 1.1 to be gone (they stay {} s after the abort, \
                 abortScaleDownDelaySeconds, to be looked at), then explains.",
                w.shape.abort_scale_down_delay
            ),
        }
    }

    /// What the scripted learner runs while the fault shows, before Sluice acts.
    fn look(&self, w: &World) -> Vec<Cmd> {
        let (ns, new) = (&w.ns, &w.new);
        match self.signal {
            Signal::Pods(reasons) => vec![
                Cmd::new(format!("kubectl get pods -n {ns}")).shows(any_of(reasons)),
                Cmd::new(format!(
                    "kubectl describe pods -l rollouts-pod-template-hash={new} -n {ns}"
                ))
                .shows(any_of(reasons)),
            ],
            Signal::Analysis(_) => vec![Cmd::new(format!("kubectl get pods -n {ns}"))],
        }
    }

    /// What the scripted learner runs once Sluice has aborted.
    fn after(&self, w: &World) -> Vec<Cmd> {
        let ns = &w.ns;
        let mut cmds = vec![
            Cmd::new(format!("kubectl sluice get rollout shop -n {ns}")).shows("Degraded"),
            Cmd::new(format!("kubectl sluice status shop --no-wait -n {ns}"))
                .shows("RolloutAborted")
                .code(2),
        ];
        if let Signal::Analysis(metric) = self.signal {
            cmds.push(Cmd::new(format!("kubectl get analysisruns -n {ns}")).shows("Failed"));
            cmds.push(
                Cmd::new(format!(
                    "kubectl get events -n {ns} --field-selector involvedObject.kind=Rollout"
                ))
                .shows(metric),
            );
        }
        cmds
    }
}

/// The first of `reasons` (a pod shows one of them at a time; the first is the one it shows
/// first).
fn any_of(reasons: &[&str]) -> String {
    reasons.first().copied().unwrap_or_default().to_string()
}

pub async fn run(stack: &Stack, lab: Auto, mode: Mode) -> anyhow::Result<String> {
    let shape = Shape {
        analysis: true,
        progress_deadline: 600,
        abort_scale_down_delay: mode.abort_delay(),
    };
    let mut w = World::set_up(stack, lab.lab, &shape).await?;
    let result = play(&mut w, &lab, mode).await;
    w.finish().await;
    result
}

async fn play(w: &mut World<'_>, lab: &Auto, mode: Mode) -> anyhow::Result<String> {
    w.release(&lab.bad, "1.1").await?;
    learner::print_brief(&lab.brief(w), &w.stack.kubectl);
    let (old, cause) = (w.old.clone(), lab.cause());
    let ruined = |f: &Facts| check::ruined(f, &old, &[cause], false);
    if mode.scripted {
        look_while_it_fails(w, lab, &ruined).await?;
        w.watch("Sluice to abort 1.1", REACT_LIMIT, |f, _| {
            if let Some(why) = ruined(f) {
                return Some(Err(anyhow::anyhow!(why)));
            }
            f.view.abort.then_some(Ok(()))
        })
        .await?;
        for cmd in lab.after(w) {
            w.run(&cmd).await?;
        }
    }
    let (new, limit) = (w.new.clone(), mode.learner_limit(REACT_LIMIT));
    let mut lacking = check::Lacking::default();
    let end = w
        .watch("the rollback of 1.1 to end", limit, |f, _| {
            if let Some(why) = ruined(f) {
                return Some(Err(anyhow::anyhow!(why)));
            }
            let missing = check::missing(&lab.end(f), f, &old, &new);
            if f.view.abort {
                lacking.report(f.t, &missing);
            }
            missing.is_empty().then(|| Ok(f.clone()))
        })
        .await?;
    let sent = w.confirm_none_to(&new).await?;
    explain(w, lab, &end, sent).await
}

/// The scripted learner looks when the fault shows: the pods' state, or nothing more than
/// the pods while the analysis measures.
async fn look_while_it_fails(
    w: &mut World<'_>,
    lab: &Auto,
    ruined: &impl Fn(&Facts) -> Option<String>,
) -> anyhow::Result<()> {
    let reasons = match lab.signal {
        Signal::Pods(reasons) => reasons,
        Signal::Analysis(_) => &[],
    };
    w.watch("the fault to show", REACT_LIMIT, |f, _| {
        if let Some(why) = ruined(f) {
            return Some(Err(anyhow::anyhow!(why)));
        }
        let shows = match lab.signal {
            Signal::Pods(_) => f
                .new_pods
                .waiting
                .as_deref()
                .is_some_and(|r| reasons.first() == Some(&r)),
            Signal::Analysis(_) => f.weights.1 > 0,
        };
        shows.then_some(Ok(()))
    })
    .await?;
    for cmd in lab.look(w) {
        w.run(&cmd).await?;
    }
    Ok(())
}

async fn explain(
    w: &World<'_>,
    lab: &Auto,
    end: &Facts,
    sent_after: u64,
) -> anyhow::Result<String> {
    let tl = &w.timeline;
    let aborted = tl.at(Moment::Aborted).unwrap_or(end.t);
    let (sent, failed) = w.requests_to_new();
    let (mut paragraphs, signal) = match lab.signal {
        Signal::Pods(_) => (pods_story(w, lab), lab.words(end).join(", ")),
        Signal::Analysis(metric) => analysis_story(w, metric).await?,
    };
    paragraphs.push(format!(
        "Timeline (seconds after the release started): canary got traffic {}; aborted {}; all \
         traffic on 1.0 {}; pods of 1.1 gone {} (abortScaleDownDelaySeconds {} keeps them that \
         long to be looked at). Requests that reached 1.1: {sent}, of which {failed} failed. \
         Then the lab counted {sent_after} requests over {} s: every one went to 1.0.",
        tl.rel(Moment::CanaryTraffic),
        tl.rel(Moment::Aborted),
        tl.rel(Moment::Safe),
        tl.rel(Moment::PodsGone),
        w.shape.abort_scale_down_delay,
        CONFIRM.as_secs()
    ));
    paragraphs.push(format!("The Rollout's message: {}", end.view.message));
    paragraphs.push(
        "What next: the Rollout stays Degraded with 1.0 serving until its template changes. \
         Fix the version and release it again, or put 1.0 back: `kubectl sluice undo shop` (or \
         revert the commit in git when Argo CD or Flux owns the Rollout). `kubectl sluice \
         retry shop` would release the same 1.1 again."
            .into(),
    );
    learner::explain(&paragraphs);
    Ok(format!(
        "Sluice aborted 1.1 at +{aborted:.1} s ({}: {signal}); {sent} requests reached it, \
         {failed} failed; its pods gone at {}",
        lab.cause(),
        tl.rel(Moment::PodsGone)
    ))
}

fn pods_story(w: &World<'_>, lab: &Auto) -> Vec<String> {
    let tl = &w.timeline;
    let first = match lab.lab {
        Lab::ImagePull => format!(
            "The kubelet could not pull registry.example/shop:v1.1 (the tag does not exist: the \
             registry has 1.1). A pod that cannot get its image shows ErrImagePull, then \
             ImagePullBackOff while the kubelet waits longer and longer between tries; it stays \
             Pending and never runs. In a real cluster `kubectl describe pod` shows the \
             registry's answer in the pod's Events (`Failed to pull image ...`); here the \
             simulated kubelet writes it into the container's state, and Sluice's message \
             quotes it. On EKS the same reasons also come from a node role without permission \
             to read the ECR repository, or a node that cannot reach the registry. The pod \
             first showed it at {}.",
            tl.rel(Moment::PodFailing)
        ),
        _ => format!(
            "The container of 1.1 starts and exits with code 1 at once, again and again: \
             CrashLoopBackOff means the kubelet restarts it with a growing back-off (10 s, 20 s, \
             40 s, up to 5 minutes). `kubectl describe pod` shows it under Last State \
             (Terminated, Reason Error, Exit Code 1) and Restart Count; in a real cluster \
             `kubectl logs POD --previous` shows what the last run printed before it exited \
             (the simulated Nodes here have no logs). The pod first showed it at {}.",
            tl.rel(Moment::PodFailing)
        ),
    };
    let why = format!(
        "Sluice caught it by its fail-fast check, not by the progress deadline (600 s here): a \
         new pod whose container waits with ImagePullBackOff, ErrImagePull, \
         CreateContainerConfigError or InvalidImageName, or crash-loops with at least 2 \
         restarts (`sluice run --restart-threshold`, 2 by default), aborts the release at once, with the \
         diagnosis in the Rollout's Progressing condition and a RolloutAborted Event. It \
         aborted at {}, with cause {} (sluice_rollout_aborts_total).",
        tl.rel(Moment::Aborted),
        lab.cause()
    );
    let traffic = if tl.at(Moment::CanaryTraffic).is_none() {
        "No user saw it: Sluice gives the canary its weight only once its pods are ready, so \
         the VirtualService stayed at 100% for 1.0 the whole time."
    } else {
        "The canary had received traffic before the abort."
    };
    vec![first, why, traffic.into()]
}

/// The story of a failed analysis, and its measurement in a few words.
async fn analysis_story(w: &World<'_>, metric: &str) -> anyhow::Result<(Vec<String>, String)> {
    let ms = runs::measurements(&w.client, &w.ns).await?;
    let failed = runs::first(&ms, "Failed", Some(metric));
    let (raw, at, run) = failed
        .map(|m| {
            (
                m.value.clone(),
                m.finished.map(|u| w.t_of(u)),
                m.run.clone(),
            )
        })
        .unwrap_or_default();
    let at = at
        .map(|t| format!("+{t:.0} s"))
        .unwrap_or_else(|| "-".into());
    let number = runs::first_number(&raw);
    let short = match number {
        Some(x) if metric == app::SUCCESS_METRIC => format!("{:.1}%", x * 100.0),
        Some(x) => format!("{x:.0} ms"),
        None => format!("`{raw}`"),
    };
    let value = format!("{short} (the run records `{raw}`)");
    let what = if metric == app::SUCCESS_METRIC {
        format!(
            "1.1 answers one request in five with HTTP 500. Its pod is Running and Ready, so \
             Kubernetes sees nothing wrong: only the requests show it. The analysis run {run} \
             measured the canary Service's success rate (share of requests not answered 5xx over \
             the last 10 s) at {value}, below the 95% the template asks for \
             (`result[0] >= 0.95`)."
        )
    } else {
        format!(
            "1.1 answers every request, but in about 400 ms instead of 10. Its pod is Running and \
             Ready and no request fails, so neither Kubernetes nor an error-rate check sees it. \
             The analysis run {run} measured the canary's 99th percentile response time \
             (histogram_quantile over Istio's request-duration buckets) at {value}, above the \
             100 ms the template allows (`result[0] < 100`)."
        )
    };
    let why = format!(
        "The measurement finished at {at} (Kubernetes keeps whole seconds) and failed; with \
         failureLimit 0 (the default) one failed measurement fails the metric and the run. In \
         the same reconcile Sluice aborted the release (cause AnalysisFailed) and set the \
         VirtualService back to 100/0 before scaling anything down: traffic first."
    );
    Ok((vec![what, why], format!("{metric} measured {short}")))
}
