//! The `prometheus-down` lab: a good release is being measured when Prometheus stops. Sluice
//! must neither promote on missing data nor roll back a healthy release because monitoring
//! blinked: the analysis turns Inconclusive and the release pauses for a person. The learner
//! brings Prometheus back (Enter in the lab's terminal; the script does it), or decides with
//! `kubectl sluice promote` or `abort`.

use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};

use super::app::{self, Shape, Version};
use super::check::{self, End};
use super::facts::{Facts, Moment, Timeline};
use super::learner::{self, Brief, Cmd, Keyboard};
use super::runs;
use super::stack::Stack;
use super::world::World;
use super::{Lab, Mode};

/// How long the script waits for each of Sluice's reactions.
const LIMIT: Duration = Duration::from_secs(60);
/// How long the script keeps Prometheus down once the release has paused, checking that
/// Sluice decides nothing meanwhile.
const HOLD: f64 = 6.0;

pub async fn run(stack: &Stack, mode: Mode) -> anyhow::Result<String> {
    let shape = Shape {
        analysis: true,
        progress_deadline: 600,
        abort_scale_down_delay: mode.abort_delay(),
    };
    let mut w = World::set_up(stack, Lab::PrometheusDown, &shape).await?;
    let result = play(&mut w, mode).await;
    w.finish().await;
    result
}

async fn play(w: &mut World<'_>, mode: Mode) -> anyhow::Result<String> {
    let good = Version {
        image: "registry.example/shop:1.1",
        ..Version::good()
    };
    w.release(&good, "1.1").await?;
    first_measurement(w).await?;
    w.stop_prometheus().await;
    println!(
        "[{:6.1}s] Prometheus stopped (as when its pod is evicted or its node goes away), in \
         the middle of the analysis",
        w.t()
    );
    learner::print_brief(&brief(w), &w.stack.kubectl);
    let (f, end) = if mode.scripted {
        script(w).await?
    } else {
        interactive(w, mode.time_limit).await?
    };
    let idle = if end == End::Promoted {
        w.old.clone()
    } else {
        w.new.clone()
    };
    w.confirm_none_to(&idle).await?;
    explain(w, &f, &end).await
}

/// Waits until the analysis has taken its first measurement.
async fn first_measurement(w: &mut World<'_>) -> anyhow::Result<()> {
    let deadline = Instant::now() + LIMIT;
    loop {
        w.poll().await?;
        let ms = runs::measurements(&w.client, &w.ns).await?;
        if runs::count(&ms, "Successful") > 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "the analysis took no measurement within {} s",
                LIMIT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn brief(w: &World) -> Brief {
    let ns = &w.ns;
    Brief {
        situation: format!(
            "You have released shop 1.1 as a canary; it has 25% of the traffic and the \
             analysis step is measuring it against Prometheus ({}). 1.1 is a good version. \
             Prometheus has just stopped: every query now fails with `connection refused`.",
            w.prometheus.url()
        ),
        questions: vec![
            "What does Sluice do with a measurement it cannot take? Will it promote 1.1? Roll it \
             back?"
                .into(),
            "Where do you see that the analysis is not failing but cannot decide?".into(),
            "What are your options, and which one fits here?".into(),
        ],
        commands: vec![
            (
                format!("kubectl sluice get rollout shop -n {ns}"),
                "the phase, the pause and its reason, the analysis run".into(),
            ),
            (
                format!("kubectl get analysisruns -n {ns}"),
                "the run's phase".into(),
            ),
            (
                format!("kubectl get analysisruns -n {ns} -o yaml"),
                "each measurement: phase (Successful, Error), value, message".into(),
            ),
            (
                format!("kubectl get events -n {ns} --field-selector involvedObject.kind=Rollout"),
                "AnalysisInconclusive, then AnalysisResumed".into(),
            ),
            (
                format!("kubectl sluice promote shop -n {ns}"),
                "accept the inconclusive verdict and go on without data".into(),
            ),
            (
                format!("kubectl sluice abort shop -n {ns}"),
                "roll back to 1.0 (1.1 is good: this costs a release)".into(),
            ),
        ],
        waiting: "To bring Prometheus back, press Enter here. The lab waits until 1.1 is \
                  promoted or rolled back, then explains."
            .into(),
    }
}

/// Sluice may promote only once Prometheus is back, or when a person accepted the verdict;
/// it may never abort on its own.
fn ruined(f: &Facts, tl: &Timeline, old: &str) -> Option<String> {
    let down = tl.at(Moment::PrometheusDown).is_some() && tl.at(Moment::PrometheusBack).is_none();
    let accepted = f
        .promotion_causes()
        .iter()
        .any(|c| c == "InconclusiveAccepted" || c == "Full");
    if down && !accepted && !f.view.stable.is_empty() && f.view.stable != old {
        return Some(format!(
            "1.1 was promoted while Prometheus was down and nobody accepted it: a verdict \
             without data ({})",
            f.view.message
        ));
    }
    check::ruined(f, old, &["Request"], true)
}

/// The script: checks that Sluice pauses and holds, brings Prometheus back, and expects 1.1
/// promoted on the measurements taken after.
async fn script(w: &mut World<'_>) -> anyhow::Result<(Facts, End)> {
    let old = w.old.clone();
    let paused_at = w
        .watch("the analysis to turn Inconclusive", LIMIT, |f, tl| {
            if let Some(why) = ruined(f, tl, &old) {
                return Some(Err(anyhow!(why)));
            }
            tl.at(Moment::Inconclusive).map(Ok)
        })
        .await?;
    println!(
        "[{:6.1}s] paused on an inconclusive analysis; Prometheus stays down {HOLD} s more: \
         Sluice must decide nothing",
        w.t()
    );
    w.watch("the pause to hold", LIMIT, |f, tl| {
        if let Some(why) = ruined(f, tl, &old) {
            return Some(Err(anyhow!(why)));
        }
        if f.view.phase != "Paused" || f.weights.1 != app::FIRST_WEIGHT {
            return Some(Err(anyhow!(
                "the release moved while Prometheus was down: {}",
                f.line("1.1")
            )));
        }
        (f.t >= paused_at + HOLD).then_some(Ok(()))
    })
    .await?;
    let ns = w.ns.clone();
    for cmd in [
        Cmd::new(format!("kubectl sluice get rollout shop -n {ns}")).shows("Inconclusive"),
        Cmd::new(format!("kubectl get analysisruns -n {ns}")).shows("Inconclusive"),
    ] {
        w.run(&cmd).await?;
    }
    println!(
        "\n[{:6.1}s] bringing Prometheus back (what Enter does)",
        w.t()
    );
    w.restart_prometheus().await?;
    let new = w.new.clone();
    let f = w
        .watch("1.1 to be promoted", LIMIT, |f, tl| {
            if let Some(why) = ruined(f, tl, &old) {
                return Some(Err(anyhow!(why)));
            }
            check::missing(&End::Promoted, f, &old, &new)
                .is_empty()
                .then(|| Ok(f.clone()))
        })
        .await?;
    if f.promotion_causes()
        .iter()
        .any(|c| c == "InconclusiveAccepted")
    {
        bail!("the inconclusive verdict was accepted, but the script never promoted");
    }
    Ok((f, End::Promoted))
}

/// The learner's turn: Enter brings Prometheus back; promote or abort decide.
async fn interactive(w: &mut World<'_>, limit: Duration) -> anyhow::Result<(Facts, End)> {
    let mut keys = Keyboard::start();
    let deadline = Instant::now() + limit;
    let (old, new) = (w.old.clone(), w.new.clone());
    let ends = [
        End::Promoted,
        End::RolledBack {
            cause: "Request",
            words: vec!["aborted on request".into()],
        },
    ];
    loop {
        if keys.pressed() && w.timeline.at(Moment::PrometheusBack).is_none() {
            println!("[{:6.1}s] bringing Prometheus back", w.t());
            w.restart_prometheus().await?;
        }
        let f = w.poll().await?;
        if let Some(why) = ruined(&f, &w.timeline, &old) {
            bail!(why);
        }
        if let Some(e) = ends
            .iter()
            .find(|e| check::missing(e, &f, &old, &new).is_empty())
        {
            return Ok((f, e.clone()));
        }
        if Instant::now() >= deadline {
            bail!(
                "time is up ({} s): 1.1 was neither promoted nor rolled back",
                limit.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn explain(w: &World<'_>, f: &Facts, end: &End) -> anyhow::Result<String> {
    let ms = runs::measurements(&w.client, &w.ns)
        .await
        .context("reading the analysis runs")?;
    let errors = runs::count(&ms, "Error");
    let mut paragraphs = outage_story(&w.timeline, &ms);
    paragraphs.push(decision_story(w, f, end, &ms));
    if !f.view.message.is_empty() {
        paragraphs.push(format!("The Rollout's message: {}", f.view.message));
    }
    learner::explain(&paragraphs);
    Ok(outcome(&w.timeline, f, end, errors))
}

/// What Sluice did while Prometheus was down.
fn outage_story(tl: &Timeline, ms: &[runs::Measurement]) -> Vec<String> {
    let errors = runs::count(ms, "Error");
    let error = runs::first(ms, "Error", None)
        .map(|m| runs::short(&m.message))
        .unwrap_or_default();
    vec![
        format!(
            "Prometheus went down at {}. From then on each measurement of the two metrics \
             ended in Error instead of a value ({errors} in all; the first said: {error}). An \
             error is not a verdict: it never counts towards success or failure. After more \
             than consecutiveErrorLimit errors in a row (2 in this template; 4 by default) the \
             metric became Inconclusive, and Sluice paused the release at {} \
             (InconclusiveAnalysis, Warning Event AnalysisInconclusive): 1.1 kept its 25%, \
             1.0 the rest, and nothing was promoted or rolled back.",
            tl.rel(Moment::PrometheusDown),
            tl.rel(Moment::Inconclusive)
        ),
        "Argo Rollouts turns the same outage into Error and aborts a healthy release when \
         monitoring blinks; Sluice waits for data or for a person \
         (`onProviderError: Failed` on a metric asks for the abort instead)."
            .into(),
    ]
}

/// How the release ended, and who decided.
fn decision_story(w: &World<'_>, f: &Facts, end: &End, ms: &[runs::Measurement]) -> String {
    let tl = &w.timeline;
    let back = tl.at(Moment::PrometheusBack).unwrap_or(f64::MAX);
    // The measurements that found no data right after Prometheus came back.
    let empty = ms
        .iter()
        .filter(|m| m.metric == app::SUCCESS_METRIC && m.phase == "Inconclusive")
        .filter(|m| m.finished.is_some_and(|u| w.t_of(u) >= back - 1.0))
        .count();
    match (end, tl.at(Moment::PrometheusBack)) {
        (End::Promoted, Some(_)) if !accepted(f) => format!(
            "Prometheus came back at {}. Measuring had gone on; the first answer put the run \
             back to Running and lifted the pause Sluice had set (Event AnalysisResumed). \
             Back is not the same as data: a restarted Prometheus scrapes its targets a few \
             seconds after it starts, and a rate needs two scrapes in its window, so the \
             first {empty} measurement(s) of each metric after it found no data: \
             Inconclusive, which the template tolerates (inconclusiveLimit 4). The next ones \
             passed, and 1.1 was promoted at {}: a decision on data.",
            tl.rel(Moment::PrometheusBack),
            tl.rel(Moment::Promoted)
        ),
        (End::Promoted, _) => format!(
            "You accepted the inconclusive verdict (`kubectl sluice promote`, counted as \
             InconclusiveAccepted) and 1.1 was promoted at {}: fine here, since 1.1 is good, \
             but a decision without data.",
            tl.rel(Moment::Promoted)
        ),
        _ => format!(
            "You aborted at {}: all traffic went back to 1.0. Safe, but 1.1 was a good \
             version: bringing Prometheus back would have let the analysis finish.",
            tl.rel(Moment::Aborted)
        ),
    }
}

/// The lab's one-line outcome.
fn outcome(tl: &Timeline, f: &Facts, end: &End, errors: usize) -> String {
    let back = match tl.at(Moment::PrometheusBack) {
        Some(_) => format!("Prometheus back at {}", tl.rel(Moment::PrometheusBack)),
        None => "Prometheus still down".into(),
    };
    let (how, at) = match end {
        End::Promoted if accepted(f) => ("promoted without data by the learner", Moment::Promoted),
        End::Promoted => ("promoted on data", Moment::Promoted),
        _ => ("rolled back by the learner", Moment::Aborted),
    };
    format!(
        "Prometheus down at {} ({errors} measurement errors): Sluice paused at {} and decided \
         nothing; {back}; {how} at {}",
        tl.rel(Moment::PrometheusDown),
        tl.rel(Moment::Inconclusive),
        tl.rel(at)
    )
}

fn accepted(f: &Facts) -> bool {
    f.promotion_causes()
        .iter()
        .any(|c| c == "InconclusiveAccepted" || c == "Full")
}
