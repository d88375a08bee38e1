//! The demo (`make demo`): a real control plane with simulated Nodes, Prometheus, the traffic
//! simulator and the Sluice controller; an application released as a canary over Istio
//! weights with a Prometheus success-rate analysis: v2 (good) is promoted step by step, v3
//! (20% errors) is rolled back on its own. Prints live progress and a summary whose times are
//! measured from the events themselves, and writes an HTML report.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use k8s_openapi::api::core::v1::Event;
use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::prometheus::Prometheus;
use crate::report::{self, Mark, MarkKind, Release, Report, Sample};
use crate::shop::{
    self, Clock, View, gvk, revision_success_query, say, scalar, success_query, unix_now,
};
use crate::stage::{self, Cluster};
use crate::trafficsim::{ERROR_RATE_ANNOTATION, Routing, TrafficSim};
use crate::wait_for;

const NS: &str = "shop";
const LIMIT: Duration = Duration::from_secs(240);
/// Requests per second the simulated clients send.
const RPS: f64 = 200.0;

/// Which release strategy the demo shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Strategy {
    /// Canary over Istio VirtualService weights, with an analysis step.
    Canary,
    /// Blue-green: the active Service switches at once, judged by post-promotion analysis.
    Bluegreen,
}

/// How the demo runs.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    pub strategy: Strategy,
    /// The `sluice` binary.
    pub sluice: PathBuf,
    pub state_dir: PathBuf,
    pub report: PathBuf,
    pub keep: bool,
}

/// Everything the demo started; dropped, it stops them.
struct Stack {
    strategy: Strategy,
    // Fields drop in order: what watches the API server goes before the control plane.
    traffic: Option<TrafficSim>,
    controller: tokio::process::Child,
    prometheus: Prometheus,
    client: Client,
    cluster: Cluster,
}

async fn apply(client: &Client, ar: &ApiResource, obj: Value) -> anyhow::Result<()> {
    shop::apply(client, NS, ar, obj, "sluice-demo").await
}

fn rollout_api(client: &Client) -> Api<DynamicObject> {
    shop::rollout_api(client, NS)
}

async fn view(client: &Client) -> anyhow::Result<View> {
    shop::view(client, NS).await
}

/// The share of traffic (stable, new revision) as the routing objects say: the
/// VirtualService's weights (canary), or where the active Service points (blue-green).
async fn split(client: &Client, strategy: Strategy, v: &View) -> anyhow::Result<(i64, i64)> {
    match strategy {
        Strategy::Canary => routed_weights(client).await,
        Strategy::Bluegreen => {
            let active = active_hash(client).await?;
            Ok(
                if !v.current.is_empty() && active == v.current && v.current != v.stable {
                    (0, 100)
                } else {
                    (100, 0)
                },
            )
        }
    }
}

/// The revision the active Service selects (blue-green).
async fn active_hash(client: &Client) -> anyhow::Result<String> {
    shop::selected_hash(client, NS, "shop-active").await
}

async fn routed_weights(client: &Client) -> anyhow::Result<(i64, i64)> {
    shop::routed_weights(client, NS).await
}

/// Records a release: samples every second, marks from the Rollout's Events.
struct Recorder {
    samples: Vec<Sample>,
    marks: Vec<Mark>,
    seen_events: BTreeSet<String>,
    last_line: String,
    started: bool,
}

impl Recorder {
    fn new() -> Self {
        Recorder {
            samples: Vec::new(),
            marks: Vec::new(),
            seen_events: BTreeSet::new(),
            last_line: String::new(),
            started: false,
        }
    }

    async fn tick(
        &mut self,
        stack: &Stack,
        clock: &Clock,
        version: &str,
        started: f64,
    ) -> anyhow::Result<View> {
        let v = view(&stack.client).await?;
        let t = clock.now();
        if v.phase == "Healthy" && v.stable == v.current && self.samples.is_empty() && !self.started
        {
            // The controller has not seen the new template yet.
            return Ok(v);
        }
        self.started = true;
        let (_, canary_weight) = split(&stack.client, stack.strategy, &v)
            .await
            .unwrap_or((100, 0));
        let (canary, stable) = match stack.strategy {
            Strategy::Canary => (
                scalar(&stack.prometheus, &success_query("shop-canary")).await,
                scalar(&stack.prometheus, &success_query("shop-stable")).await,
            ),
            Strategy::Bluegreen => (
                scalar(&stack.prometheus, &revision_success_query(&v.current)).await,
                scalar(&stack.prometheus, &revision_success_query(&v.stable)).await,
            ),
        };
        self.samples.push(Sample {
            t,
            canary_weight: canary_weight as f64,
            canary_success: canary.filter(|_| canary_weight > 0),
            stable_success: stable,
        });
        // Events as marks, with the time the controller gave them.
        let events: Api<Event> = Api::namespaced(stack.client.clone(), NS);
        for e in events.list(&ListParams::default()).await?.items {
            let Some(name) = e.metadata.name.clone() else {
                continue;
            };
            if e.involved_object.kind.as_deref() != Some("Rollout")
                || !self.seen_events.insert(name)
            {
                continue;
            }
            let when = e
                .event_time
                .as_ref()
                .map(|t| t.0.as_millisecond() as f64 / 1000.0)
                .or_else(|| {
                    e.last_timestamp
                        .as_ref()
                        .map(|t| t.0.as_millisecond() as f64 / 1000.0)
                })
                .map(|u| clock.at(u))
                .unwrap_or(t);
            if when < started - 0.5 {
                continue;
            }
            let reason = e.reason.clone().unwrap_or_default();
            let kind = match reason.as_str() {
                "StepCompleted" if e.message.as_deref().unwrap_or("").contains("analysis") => {
                    MarkKind::AnalysisPassed
                }
                "StepCompleted" | "Paused" | "PauseEnded" => MarkKind::Step,
                "RolloutAborted" => MarkKind::Abort,
                "RolloutCompleted" | "Promoted" => MarkKind::Promoted,
                "ScalingReplicaSet" => continue,
                _ => MarkKind::Info,
            };
            let message = e.message.clone().unwrap_or_default();
            let label = match kind {
                MarkKind::Abort => "aborted".to_string(),
                _ => message
                    .split(':')
                    .next_back()
                    .unwrap_or(&message)
                    .trim()
                    .to_string(),
            };
            self.marks.push(Mark {
                t: when,
                kind,
                label: label.chars().take(40).collect(),
            });
        }
        let step = match v.step {
            Some(s) if (s as usize) < v.steps => format!("step {}/{}", s + 1, v.steps),
            _ => "all steps done".to_string(),
        };
        let canary_txt = canary
            .filter(|_| canary_weight > 0)
            .map(|c| format!("{:.1}%", c * 100.0))
            .unwrap_or_else(|| "-".into());
        let line = format!(
            "{version}: {:<14} weight canary {:>3}%  canary success {:>6}  analysis {:<28} {}",
            step,
            canary_weight,
            canary_txt,
            if v.analysis.is_empty() {
                "-"
            } else {
                &v.analysis
            },
            v.phase
        );
        if line != self.last_line {
            println!("[{t:6.1}s] {line}");
            self.last_line = line;
        }
        Ok(v)
    }
}

async fn set_version(client: &Client, version: &str, error_rate: &str) -> anyhow::Result<()> {
    rollout_api(client)
        .patch(
            "shop",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": {
                "metadata": {"annotations": {ERROR_RATE_ANNOTATION: error_rate}},
                "spec": {"containers": [{"name": "shop", "image": format!("registry.example/shop:{version}")}]}
            }}})),
        )
        .await?;
    Ok(())
}

fn objects(strategy: Strategy) -> Vec<(ApiResource, Value)> {
    let core_svc = gvk("", "v1", "Service");
    let mut out = match strategy {
        Strategy::Canary => vec![
            (core_svc.clone(), shop::service("shop-stable")),
            (core_svc, shop::service("shop-canary")),
        ],
        Strategy::Bluegreen => vec![
            (core_svc.clone(), shop::service("shop-active")),
            (core_svc, shop::service("shop-preview")),
        ],
    };
    out.extend([
        (shop::virtual_service_resource(), shop::virtual_service()),
        (
            gvk("sluice.dev", "v1alpha1", "AnalysisTemplate"),
            json!({
                "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisTemplate",
                "metadata": {"name": "success-rate"},
                "spec": {
                    "args": [{"name": "service"}, {"name": "prometheus"}],
                    "metrics": [{
                        "name": "success-rate",
                        "initialDelay": "4s",
                        "interval": "2s",
                        "count": 4,
                        "inconclusiveLimit": 2,
                        "successCondition": "result[0] >= 0.95",
                        "provider": {"prometheus": {
                            "address": "{{args.prometheus}}",
                            "query": "sum(rate(istio_requests_total{destination_service_name=\"{{args.service}}\",response_code!~\"5..\"}[10s])) / sum(rate(istio_requests_total{destination_service_name=\"{{args.service}}\"}[10s]))"
                        }}
                    }]
                }
            }),
        ),
    ]);
    out
}

fn rollout(strategy: Strategy, prometheus: &str) -> Value {
    let analysis = |service: &str| {
        json!({"templates": [{"templateName": "success-rate"}], "args": [
            {"name": "service", "value": service}, {"name": "prometheus", "value": prometheus}]})
    };
    let strategy = match strategy {
        Strategy::Bluegreen => json!({"blueGreen": {
            "activeService": "shop-active",
            "previewService": "shop-preview",
            "scaleDownDelaySeconds": 10,
            "abortScaleDownDelaySeconds": 5,
            "postPromotionAnalysis": analysis("shop-active")
        }}),
        Strategy::Canary => json!({"canary": {
            "stableService": "shop-stable",
            "canaryService": "shop-canary",
            "scaleDownDelaySeconds": 5,
            "abortScaleDownDelaySeconds": 5,
            "trafficRouting": {"istio": {"virtualService": {"name": "shop", "routes": ["primary"]}}},
            "steps": [
                {"setWeight": 10},
                {"analysis": analysis("shop-canary")},
                {"setWeight": 30},
                {"pause": {"duration": "4s"}},
                {"setWeight": 60},
                {"pause": {"duration": "4s"}}
            ]
        }}),
    };
    json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": "shop"},
        "spec": {
            "replicas": 4,
            "selector": {"matchLabels": {"app": "shop"}},
            "template": {
                "metadata": {"labels": {"app": "shop"}, "annotations": {ERROR_RATE_ANNOTATION: "0"}},
                "spec": {"containers": [{"name": "shop", "image": "registry.example/shop:v1"}]}
            },
            "strategy": strategy
        }
    })
}

async fn start(opts: &DemoOptions, clock: &Clock) -> anyhow::Result<Stack> {
    say("Starting the local control plane (Kubernetes binaries are built once and cached)");
    let _ = std::fs::remove_dir_all(&opts.state_dir);
    std::fs::create_dir_all(&opts.state_dir)?;
    let state = std::fs::canonicalize(&opts.state_dir)?;
    let cluster = Cluster::start(&state.join("cluster")).await?;
    let client = cluster.client.clone();
    println!(
        "[{:6.1}s] control plane ready: {} (3 simulated Nodes; Istio and Gateway API CRDs)",
        clock.now(),
        cluster.cp.api_url
    );
    shop::create_namespace(&client, NS, LIMIT).await?;

    say("Starting the traffic simulator and Prometheus");
    for (ar, obj) in objects(opts.strategy) {
        apply(&client, &ar, obj).await?;
    }
    let traffic = TrafficSim::start(
        client.clone(),
        NS,
        match opts.strategy {
            Strategy::Canary => Routing::VirtualService {
                name: "shop".into(),
                route: Some("primary".into()),
            },
            Strategy::Bluegreen => Routing::Service {
                service: "shop-active".into(),
            },
        },
        RPS,
    )
    .await?;
    // The controller's metrics port, chosen now so Prometheus scrapes it from the start (the
    // dashboards' queries read both the mesh's metrics and Sluice's).
    let sluice_metrics = stage::free_local_addr()?;
    let prometheus = Prometheus::start(
        &state.join("prometheus"),
        &[traffic.metrics_target(), sluice_metrics.clone()],
        Duration::from_secs(1),
    )
    .await?;
    println!(
        "[{:6.1}s] {RPS} requests/s to shop.example.com, routed {}; Prometheus at {}",
        clock.now(),
        match opts.strategy {
            Strategy::Canary => "by the VirtualService's weights",
            Strategy::Bluegreen => "to the active Service's endpoints",
        },
        prometheus.url()
    );

    say("Starting the Sluice controller");
    let controller = stage::Controller {
        sluice: &opts.sluice,
        kubeconfig: &cluster.cp.kubeconfig,
        namespaces: &[NS],
        metrics_addr: &sluice_metrics,
        extra_args: &[],
        log: &state.join("sluice.log"),
    }
    .spawn()?;
    println!(
        "[{:6.1}s] log: {}",
        clock.now(),
        state.join("sluice.log").display()
    );
    Ok(Stack {
        strategy: opts.strategy,
        client,
        cluster,
        controller,
        prometheus,
        traffic: Some(traffic),
    })
}

/// Times (on the demo clock) of what made v3 safe, measured from the events themselves.
#[derive(Clone, Debug, Default)]
struct Safety {
    first_bad_sample: Option<f64>,
    analysis_failed: Option<f64>,
    weight_zero: Option<f64>,
    abort_reason: String,
}

/// Runs the demo; an error means a release did not end as it should.
pub async fn run(opts: DemoOptions) -> anyhow::Result<()> {
    let clock = Clock::new();
    let mut stack = start(&opts, &clock).await?;
    let scraped_from = unix_now();

    say(match opts.strategy {
        Strategy::Canary => {
            "Deploying v1 of the shop as a canary Rollout (Istio weights, Prometheus analysis)"
        }
        Strategy::Bluegreen => {
            "Deploying v1 of the shop as a blue-green Rollout (post-promotion analysis on Prometheus)"
        }
    });
    let ro_ar = gvk("sluice.dev", "v1alpha1", "Rollout");
    apply(
        &stack.client,
        &ro_ar,
        rollout(opts.strategy, &stack.prometheus.url()),
    )
    .await?;
    let c = stack.client.clone();
    wait_for("v1 Healthy", LIMIT, || async {
        let v = view(&c).await?;
        Ok((v.phase == "Healthy").then_some(()))
    })
    .await?;
    let v1 = view(&stack.client).await?.stable;
    println!(
        "[{:6.1}s] v1 ({v1}) is Healthy and takes all traffic",
        clock.now()
    );
    stack
        .prometheus
        .wait_for_series(
            match opts.strategy {
                Strategy::Canary => {
                    "istio_requests_total{destination_service_name=\"shop-stable\"}"
                }
                Strategy::Bluegreen => {
                    "istio_requests_total{destination_service_name=\"shop-active\"}"
                }
            },
            LIMIT,
        )
        .await?;

    // v2: good.
    say(match opts.strategy {
        Strategy::Canary => {
            "Releasing v2 (good): promoted step by step while analysis watches its success rate"
        }
        Strategy::Bluegreen => {
            "Releasing v2 (good): previewed, switched at once, then judged by analysis"
        }
    });
    let v2_start = clock.now();
    set_version(&stack.client, "v2", "0").await?;
    let mut rec = Recorder::new();
    let deadline = Instant::now() + LIMIT;
    let v2 = loop {
        let v = rec.tick(&stack, &clock, "v2", v2_start).await?;
        if v.phase == "Healthy" && !v.current.is_empty() && v.stable == v.current && v.stable != v1
        {
            break v;
        }
        if v.abort {
            bail!("v2 was aborted: {}", v.message);
        }
        ensure!(
            Instant::now() < deadline,
            "v2 was not promoted within {LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    rec.tick(&stack, &clock, "v2", v2_start).await?;
    let v2_took = clock.now() - v2_start;
    let v2_view = view(&stack.client).await?;
    let routed = split(&stack.client, opts.strategy, &v2_view).await?;
    ensure!(routed == (100, 0), "after v2, the route says {routed:?}");
    println!(
        "[{:6.1}s] v2 ({}) promoted in {v2_took:.1} s; all traffic on it",
        clock.now(),
        v2.stable
    );
    let v2_release = Release {
        title: "v2 (good): promoted".into(),
        version: "v2".into(),
        started: v2_start,
        ended: Some(v2_start + v2_took),
        outcome: match opts.strategy {
            Strategy::Canary => format!("Promoted through 10/30/60% in {v2_took:.0} s"),
            Strategy::Bluegreen => {
                format!("Switched and confirmed by post-promotion analysis in {v2_took:.0} s")
            }
        },
        ok: true,
        samples: rec.samples,
        marks: rec.marks,
        figures: vec![("Release took".into(), format!("{v2_took:.1} s"))],
    };

    // v3: bad.
    say("Releasing v3 (bad: 20% of its requests fail): Sluice should roll it back on its own");
    let v3_start = clock.now();
    set_version(&stack.client, "v3", "0.2").await?;
    let mut rec = Recorder::new();
    let deadline = Instant::now() + LIMIT;
    let mut safety = Safety::default();
    loop {
        let v = rec.tick(&stack, &clock, "v3", v3_start).await?;
        if v.abort && safety.weight_zero.is_none() {
            // Poll the route closely until the weight write lands.
            let c = stack.client.clone();
            let stable = v2.stable.clone();
            let strategy = opts.strategy;
            let t = wait_for("all traffic back on stable", LIMIT, || async {
                let back = match strategy {
                    Strategy::Canary => routed_weights(&c).await? == (100, 0),
                    Strategy::Bluegreen => active_hash(&c).await? == stable,
                };
                Ok(back.then_some(()))
            })
            .await
            .map(|_| clock.now())?;
            safety.weight_zero = Some(t);
            safety.abort_reason = v.message.clone();
        }
        if safety.weight_zero.is_some() && v.phase == "Degraded" {
            break;
        }
        if v.phase == "Healthy" && v.stable == v.current && v.stable != v2.stable {
            bail!("v3 was promoted: its errors went unnoticed");
        }
        ensure!(
            Instant::now() < deadline,
            "v3 was not rolled back within {LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    rec.tick(&stack, &clock, "v3", v3_start).await?;
    let v3_hash = view(&stack.client).await?.current;
    // The first failed request of v3 that Prometheus scraped.
    safety.first_bad_sample = scalar(
        &stack.prometheus,
        &format!(
            "min_over_time(timestamp(istio_requests_total{{destination_canonical_revision=\"{v3_hash}\",response_code=\"500\"}})[10m:250ms])"
        ),
    )
    .await
    .map(|u| clock.at(u));
    // The failed measurement, from the AnalysisRun.
    let runs: Api<DynamicObject> = Api::namespaced_with(
        stack.client.clone(),
        NS,
        &gvk("sluice.dev", "v1alpha1", "AnalysisRun"),
    );
    for r in runs.list(&ListParams::default()).await?.items {
        let failed = r
            .data
            .pointer("/status/metricResults")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .flat_map(|m| m["measurements"].as_array().cloned().unwrap_or_default())
            .filter(|m| m["phase"] == "Failed")
            .filter_map(|m| m["finishedAt"].as_str().map(String::from))
            .filter_map(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
            .map(|t| clock.at(t.as_millisecond() as f64 / 1000.0))
            .filter(|t| *t >= v3_start)
            .fold(None, |a: Option<f64>, t| Some(a.map_or(t, |a| a.min(t))));
        if failed.is_some() {
            safety.analysis_failed = failed;
        }
    }
    let v3_took = clock.now() - v3_start;
    let after = view(&stack.client).await?;
    let routed = match opts.strategy {
        Strategy::Canary => routed_weights(&stack.client).await?,
        Strategy::Bluegreen => {
            if active_hash(&stack.client).await? == v2.stable {
                (100, 0)
            } else {
                (0, 100)
            }
        }
    };
    ensure!(routed == (100, 0), "after v3, the route says {routed:?}");
    ensure!(
        after.stable == v2.stable,
        "after v3, stable is {} instead of v2 {}",
        after.stable,
        v2.stable
    );
    ensure!(
        safety.abort_reason.contains("success-rate"),
        "the abort does not name the failed metric: {}",
        safety.abort_reason
    );

    // Summary.
    say("Summary");
    let rel = |t: Option<f64>| {
        t.map(|t| format!("+{:.1} s", t - v3_start))
            .unwrap_or_else(|| "-".into())
    };
    let safe = match (safety.first_bad_sample, safety.weight_zero) {
        (Some(bad), Some(zero)) => Some(zero - bad),
        _ => None,
    };
    println!(
        "  v2: promoted ({}) with analysis in {v2_took:.1} s; stable revision {}",
        match opts.strategy {
            Strategy::Canary => "through 10/30/60%",
            Strategy::Bluegreen => "switched at once, then judged",
        },
        v2.stable
    );
    println!("  v3: rolled back automatically, {v3_took:.1} s after its release started");
    println!(
        "      first failed request scraped by Prometheus {}; analysis measurement failed {}; all traffic back on v2 {}",
        rel(safety.first_bad_sample),
        rel(safety.analysis_failed),
        rel(safety.weight_zero)
    );
    if let Some(s) = safe {
        println!("      time to safe (first bad sample to 100% stable): {s:.1} s");
    }
    println!("      why: {}", safety.abort_reason);

    let mut v3_marks = rec.marks;
    let at = |t: Option<f64>| t;
    if let Some(t) = at(safety.first_bad_sample) {
        v3_marks.push(Mark {
            t,
            kind: MarkKind::Breach,
            label: "first failed request scraped".into(),
        });
    }
    if let Some(t) = at(safety.analysis_failed) {
        v3_marks.push(Mark {
            t,
            kind: MarkKind::AnalysisFailed,
            label: "analysis failed".into(),
        });
    }
    if let Some(t) = at(safety.weight_zero) {
        v3_marks.push(Mark {
            t,
            kind: MarkKind::Safe,
            label: "100% on stable".into(),
        });
    }
    let mut figures = vec![("Release to rollback".into(), format!("{v3_took:.1} s"))];
    for (k, v) in [
        (
            "First failed request in Prometheus",
            rel(safety.first_bad_sample),
        ),
        ("Analysis measurement failed", rel(safety.analysis_failed)),
        ("All traffic back on stable", rel(safety.weight_zero)),
    ] {
        figures.push((k.into(), v));
    }
    if let Some(s) = safe {
        figures.push(("Time to safe".into(), format!("{s:.1} s")));
    }
    let v3_release = Release {
        title: "v3 (bad: 20% errors): rolled back".into(),
        version: "v3".into(),
        started: v3_start,
        ended: Some(v3_start + v3_took),
        outcome: format!("Rolled back on its own: {}", safety.abort_reason),
        ok: true,
        samples: rec.samples,
        marks: v3_marks,
        figures,
    };
    let page = report::render(&Report {
        title: "Sluice demo".into(),
        subtitle: match opts.strategy {
            Strategy::Canary => "Canary over Istio VirtualService weights, judged by a Prometheus success-rate analysis",
            Strategy::Bluegreen => "Blue-green: the active Service switches at once; post-promotion analysis on Prometheus decides whether it stays",
        }
        .into(),
        releases: vec![v2_release, v3_release],
        notes: match opts.strategy {
            Strategy::Canary => vec![
                "v2 answers every request. At each step Sluice first scales the canary, then gives it its weight; the analysis step measured the canary's success rate before the release went on.".into(),
                "v3 fails one request in five. The analysis measured a success rate below 95%, the run failed, and in the same reconcile Sluice set the canary's weight to 0, before scaling anything down. Time to safe counts from the first failed request Prometheus scraped to the weight write seen on the VirtualService.".into(),
            ],
            Strategy::Bluegreen => vec![
                "Blue-green runs the new revision beside the old one behind the preview Service, switches the active Service at once when every new pod is available, and keeps the old pods for scaleDownDelaySeconds.".into(),
                "v3 fails one request in five. After the switch, the post-promotion analysis measured the active Service's success rate below 95%; Sluice aborted and pointed the active Service back at v2, whose pods were still running. Time to safe counts from the first failed request Prometheus scraped to the active Service selecting v2 again.".into(),
            ],
        },
    });
    // Every query of the Grafana dashboards, over this run, against its Prometheus (which
    // scraped the mesh and Sluice): each must return data. The canary run has the mesh's
    // per-revision series the canary view reads.
    if opts.strategy == Strategy::Canary {
        say("Dashboards: every query of every panel against this run's Prometheus");
        // Prometheus has scraped Sluice since the abort.
        for q in [
            format!(
                r#"sluice_rollout_phase{{namespace="{NS}",rollout="shop",phase="Degraded"}} == 1"#
            ),
            format!(
                r#"sluice_rollout_decisions_total{{namespace="{NS}",rollout="shop",reason="RolloutAborted"}} >= 1"#
            ),
        ] {
            stack
                .prometheus
                .wait_for_series(&q, LIMIT)
                .await
                .with_context(|| format!("Prometheus to scrape Sluice after the abort: {q}"))?;
        }
        let answers = crate::dashboards::check(
            &stack.prometheus,
            &crate::dashboards::dir(),
            &[("namespace", NS), ("rollout", "shop")],
            scraped_from,
            unix_now(),
        )
        .await?;
        for a in &answers {
            println!(
                "  ok  {} › {}: {} series, {} points",
                a.query.dashboard, a.query.place, a.series, a.points
            );
        }
        println!("  {} queries, each returned data", answers.len());
    }

    if let Some(dir) = opts.report.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&opts.report, page)?;
    println!("\n  report: {}", opts.report.display());

    if opts.keep {
        say("The stack stays up; Ctrl-C stops it");
        println!(
            "  export KUBECONFIG={}",
            stack.cluster.cp.kubeconfig.display()
        );
        if let Ok(bin) = std::env::var("SLUICE_K8S_BIN") {
            println!("  export PATH={bin}:$PWD/target/debug:$PATH   # kubectl, kubectl-sluice");
        }
        println!("  kubectl -n {NS} get sro,sar,rs,pods");
        println!("  kubectl -n {NS} get virtualservice shop -o yaml");
        println!(
            "  Prometheus: {}  (try: {})",
            stack.prometheus.url(),
            success_query("shop-stable")
        );
        println!("  kubectl sluice -n {NS} get shop");
        tokio::signal::ctrl_c().await?;
    }
    if let Some(t) = stack.traffic.take() {
        t.stop().await;
    }
    stack.prometheus.stop().await;
    let _ = stack.controller.kill().await;
    Ok(())
}
