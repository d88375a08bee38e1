//! One lab's world: its namespace with the shop at 1.0, its own traffic and Prometheus, the
//! release that goes wrong, and the loop that watches it with deadlines.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kube::Client;
use kube::api::{Patch, PatchParams};

use super::Lab;
use super::app::{self, Shape, Version};
use super::facts::{self, Facts, Moment, Pods, Timeline};
use super::learner::{self, Cmd};
use super::stack::{Out, Stack};
use crate::prometheus::Prometheus;
use crate::shop::{self, Clock};
use crate::trafficsim::{Routing, TrafficSim};

/// Requests per second to each lab's shop.
pub const RPS: f64 = 100.0;
/// How long setting up the shop may take.
const SETUP_LIMIT: Duration = Duration::from_secs(120);
/// Pause between two looks at the cluster.
const POLL: Duration = Duration::from_millis(500);
/// How often a line is printed when only the figures from Prometheus changed (seconds).
const FIGURES_EVERY: f64 = 5.0;
/// How long the end state's traffic is counted.
pub const CONFIRM: Duration = Duration::from_secs(2);
/// The field manager of what a lab applies.
const MANAGER: &str = "sluice-lab";

/// A lab's world. See the module documentation.
pub struct World<'a> {
    pub shape: Shape,
    pub ns: String,
    pub stack: &'a Stack,
    pub client: Client,
    pub prometheus: Prometheus,
    traffic: Option<TrafficSim>,
    /// The lab's clock, from its set-up; `released_at` on it is t = 0 of the lab's lines.
    clock: Clock,
    released_at: f64,
    /// The revision the lab starts from (1.0) and the one it releases.
    pub old: String,
    pub new: String,
    /// The version released, for progress lines (`1.1`).
    pub version: String,
    pub timeline: Timeline,
    baseline: (BTreeMap<String, f64>, BTreeMap<String, f64>),
    last_line: String,
    /// The last line's state ([`Facts::state`]) and when it was printed.
    last_state: (String, f64),
    /// Whether Prometheus is meant to be up (queries are skipped while it is stopped).
    prometheus_up: bool,
}

impl<'a> World<'a> {
    /// Creates namespace `lab-<name>`, the Services, the VirtualService and the
    /// AnalysisTemplate, starts traffic and Prometheus, deploys 1.0 and waits until it is
    /// Healthy and Prometheus has its requests.
    pub async fn set_up(stack: &'a Stack, lab: Lab, shape: &Shape) -> anyhow::Result<World<'a>> {
        let clock = Clock::new();
        let ns = lab.namespace();
        let client = stack.cluster.client.clone();
        shop::create_namespace(&client, &ns, SETUP_LIMIT).await?;
        let svc = shop::gvk("", "v1", "Service");
        let objects = [
            (svc.clone(), shop::service("shop-stable")),
            (svc, shop::service("shop-canary")),
            (shop::virtual_service_resource(), shop::virtual_service()),
            (
                shop::gvk("sluice.dev", "v1alpha1", "AnalysisTemplate"),
                app::analysis_template(),
            ),
        ];
        for (ar, obj) in objects {
            shop::apply(&client, &ns, &ar, obj, MANAGER).await?;
        }
        let routing = Routing::VirtualService {
            name: shop::NAME.into(),
            route: Some("primary".into()),
        };
        let traffic = TrafficSim::start(client.clone(), &ns, routing, RPS).await?;
        let dir = stack.state.join(lab.name());
        let prometheus = Prometheus::start(
            &dir.join("prometheus"),
            &[traffic.metrics_target()],
            Duration::from_secs(1),
        )
        .await?;
        let ro = app::rollout(shape, &Version::good(), &prometheus.url());
        shop::apply(&client, &ns, &shop::rollout_resource(), ro, MANAGER).await?;
        let mut world = World {
            shape: shape.clone(),
            ns,
            stack,
            client,
            prometheus,
            traffic: Some(traffic),
            clock,
            released_at: 0.0,
            old: String::new(),
            new: String::new(),
            version: "1.0".into(),
            timeline: Timeline::default(),
            baseline: Default::default(),
            last_line: String::new(),
            last_state: (String::new(), f64::MIN),
            prometheus_up: true,
        };
        world.wait_healthy().await?;
        Ok(world)
    }

    async fn wait_healthy(&mut self) -> anyhow::Result<()> {
        let (c, ns) = (&self.client, &self.ns);
        let v = crate::wait_for("shop 1.0 Healthy", SETUP_LIMIT, || async {
            let v = shop::view(c, ns).await?;
            Ok((v.phase == "Healthy" && !v.stable.is_empty()).then_some(v))
        })
        .await?;
        self.old = v.stable;
        let q = format!(
            "istio_requests_total{{destination_canonical_revision=\"{}\"}}",
            self.old
        );
        self.prometheus.wait_for_series(&q, SETUP_LIMIT).await?;
        println!(
            "[{:6.1}s] shop 1.0 (revision {}) is Healthy in namespace {}: {} pods, {RPS} requests/s, all on 1.0",
            self.clock.now(),
            self.old,
            self.ns,
            app::REPLICAS
        );
        Ok(())
    }

    /// Releases `version`: the template changes as `kubectl sluice set image` or a git
    /// commit would change it. Returns once Sluice has seen the new revision.
    pub async fn release(&mut self, version: &Version, label: &str) -> anyhow::Result<()> {
        self.baseline = self.counters().await?;
        shop::rollout_api(&self.client, &self.ns)
            .patch(
                shop::NAME,
                &PatchParams::default(),
                &Patch::Merge(app::release(version)),
            )
            .await
            .context("releasing the new version")?;
        self.released_at = self.clock.now();
        self.version = label.into();
        let (c, ns, old) = (&self.client, &self.ns, &self.old);
        let v = crate::wait_for("Sluice to see the new revision", SETUP_LIMIT, || async {
            let v = shop::view(c, ns).await?;
            Ok((!v.current.is_empty() && v.current != *old).then_some(v))
        })
        .await?;
        self.new = v.current;
        println!(
            "[{:6.1}s] released {label} ({}, revision {}): the release starts now (t = 0)",
            self.t(),
            version.image,
            self.new
        );
        Ok(())
    }

    /// Seconds since the release started.
    pub fn t(&self) -> f64 {
        self.clock.now() - self.released_at
    }

    /// A Unix time (seconds) as seconds since the release started.
    pub fn t_of(&self, unix: f64) -> f64 {
        self.clock.at(unix) - self.released_at
    }

    async fn counters(&self) -> anyhow::Result<(BTreeMap<String, f64>, BTreeMap<String, f64>)> {
        let s = self.stack;
        Ok((
            s.counters("sluice_rollout_aborts_total", &self.ns, "cause")
                .await?,
            s.counters("sluice_rollout_promotions_total", &self.ns, "cause")
                .await?,
        ))
    }

    /// Reads the facts of this moment.
    pub async fn read(&self) -> anyhow::Result<Facts> {
        let (c, ns) = (&self.client, &self.ns);
        let view = shop::view(c, ns).await?;
        let weights = shop::routed_weights(c, ns).await?;
        let new_pods = Pods::of(&facts::pods(c, ns, &self.new).await?);
        let new_rs = facts::replica_set(c, ns, &self.new).await?;
        let old_rs = facts::replica_set(c, ns, &self.old).await?;
        let (aborts, promotions) = self.counters().await?;
        let (success, p99_ms) = if self.prometheus_up {
            (
                shop::scalar(&self.prometheus, &shop::revision_success_query(&self.new)).await,
                shop::scalar(&self.prometheus, &shop::revision_latency_query(&self.new)).await,
            )
        } else {
            (None, None)
        };
        Ok(Facts {
            t: self.t(),
            view,
            weights,
            new_pods,
            new_rs,
            old_rs,
            aborts: facts::delta(&aborts, &self.baseline.0),
            promotions: facts::delta(&promotions, &self.baseline.1),
            success,
            p99_ms,
        })
    }

    /// Reads, marks the timeline, and prints a line when something changed.
    pub async fn poll(&mut self) -> anyhow::Result<Facts> {
        let f = self.read().await?;
        self.timeline.observe(&f, &self.old);
        // After an undo the template is 1.0's again.
        let label = if f.view.current == self.old {
            "1.0"
        } else {
            &self.version
        };
        let (line, state) = (f.line(label), f.state(label));
        // A new state gets a line at once; the figures alone, every few seconds.
        let figures_due = f.t - self.last_state.1 >= FIGURES_EVERY;
        if state != self.last_state.0 || (line != self.last_line && figures_due) {
            println!("[{:6.1}s] {line}", f.t);
            self.last_line = line;
            self.last_state = (state, f.t);
        }
        Ok(f)
    }

    /// Runs `cmd` as the learner would (see [`learner::run`]) while the lab keeps looking, so
    /// the timeline stays exact; nothing is printed between the command and its output.
    pub async fn run(&mut self, cmd: &Cmd) -> anyhow::Result<Out> {
        let kubectl = self.stack.kubectl.clone();
        let run = learner::run(&kubectl, cmd);
        tokio::pin!(run);
        loop {
            tokio::select! {
                out = &mut run => return out,
                () = tokio::time::sleep(POLL) => {
                    if let Ok(f) = self.read().await {
                        self.timeline.observe(&f, &self.old);
                    }
                }
            }
        }
    }

    /// Polls until `check` says the lab is done (`Some(Ok)`) or failed (`Some(Err)`), or
    /// `limit` passes: then the error names `what` and the last facts.
    pub async fn watch<T>(
        &mut self,
        what: &str,
        limit: Duration,
        mut check: impl FnMut(&Facts, &Timeline) -> Option<anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        let deadline = Instant::now() + limit;
        let mut last_error = String::new();
        loop {
            match self.poll().await {
                Ok(f) => {
                    if let Some(r) = check(&f, &self.timeline) {
                        return r;
                    }
                }
                Err(e) => last_error = format!("; last error: {e:#}"),
            }
            if Instant::now() >= deadline {
                bail!(
                    "{what}: not within {} s (last seen: {}{last_error})",
                    limit.as_secs(),
                    self.last_line
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Stops Prometheus (its port then refuses connections).
    pub async fn stop_prometheus(&mut self) {
        self.prometheus.stop().await;
        self.prometheus_up = false;
        self.timeline.mark(Moment::PrometheusDown, self.t());
    }

    /// Starts Prometheus again on the same port and data.
    pub async fn restart_prometheus(&mut self) -> anyhow::Result<()> {
        self.prometheus.restart().await?;
        self.prometheus_up = true;
        self.timeline.mark(Moment::PrometheusBack, self.t());
        Ok(())
    }

    /// Requests the traffic simulator sent to the new revision so far, and how many failed.
    pub fn requests_to_new(&self) -> (u64, u64) {
        self.requests_to(Some(&self.new))
    }

    /// Requests sent to revision `rev` (every request when `None`) so far, and how many
    /// failed.
    fn requests_to(&self, rev: Option<&str>) -> (u64, u64) {
        let stats = self.traffic.as_ref().map(|t| t.stats()).unwrap_or_default();
        let mine = stats
            .iter()
            .filter(|((_, _, r, _), _)| rev.is_none_or(|rev| r == rev));
        mine.fold((0, 0), |(all, bad), ((_, _, _, code), n)| {
            (all + n, bad + if *code >= 500 { *n } else { 0 })
        })
    }

    /// Counts the requests of the next [`CONFIRM`] and fails if one reached revision `rev`
    /// (the one that must have no traffic now) or if none was sent; returns how many were.
    pub async fn confirm_none_to(&self, rev: &str) -> anyhow::Result<u64> {
        let (all, to_rev) = (self.requests_to(None).0, self.requests_to(Some(rev)).0);
        tokio::time::sleep(CONFIRM).await;
        let sent = self.requests_to(None).0 - all;
        let reached = self.requests_to(Some(rev)).0 - to_rev;
        anyhow::ensure!(sent > 0, "no request was sent in {CONFIRM:?}");
        anyhow::ensure!(
            reached == 0,
            "{reached} of the {sent} requests of the last {CONFIRM:?} reached revision {rev}"
        );
        Ok(sent)
    }

    /// Stops the lab's traffic and Prometheus; the namespace stays, to be looked at.
    pub async fn finish(mut self) {
        if let Some(t) = self.traffic.take() {
            t.stop().await;
        }
        self.prometheus.stop().await;
    }
}
