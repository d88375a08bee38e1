//! Notifications through the real controller on the local control plane, to receivers on
//! loopback standing in for Slack (an incoming webhook), PagerDuty (the Events API v2) and a
//! generic webhook: what each is sent, field by field, for each decision of a release that
//! is promoted, one aborted by analysis against a real Prometheus, and its recovery; that a
//! receiver down or answering after 35 s delays no step; and that a SIGKILL between a
//! decision and its delivery yields exactly one delivery after the restart.

mod common;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use common::analysis::{Monitoring, json_body, serve};
use common::fixture::{create_rollout, set_image, wait_healthy, wait_promoted, web_canary};
use common::{ControllerProcess, create_services, http_get, phase, rollouts, wait_status};
use e2e::{TestEnv, wait_for};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::ResourceExt;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sluice::api::rollout::{NotificationRecord, RolloutPhase, RolloutStatus};

const LIMIT: Duration = Duration::from_secs(120);
const GAUGE: &str = "sluice_notify_success_rate";
const CONFIG: &str = "sluice-notifications";

/// How the webhook receiver answers.
const UP: u8 = 0;
const DOWN: u8 = 1;
const SLOW: u8 = 2;

/// One request a receiver got, and whether it answered 2xx.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    key: String,
    headers: HeaderMap,
    body: Value,
    taken: bool,
}

#[derive(Clone, Default)]
struct Receivers {
    got: Arc<Mutex<Vec<Received>>>,
    hook_mode: Arc<AtomicU8>,
}

impl Receivers {
    /// Serves `/slack`, `/pagerduty/v2/enqueue` (as PagerDuty answers: 202 and a JSON body)
    /// and `/hook` (as [`Receivers::hook_mode`] says); returns the base URL.
    async fn start(&self) -> anyhow::Result<String> {
        async fn take(
            State((r, path)): State<(Receivers, &'static str)>,
            headers: HeaderMap,
            body: String,
        ) -> axum::response::Response {
            use axum::response::IntoResponse;
            let body: Value = serde_json::from_str(&body).unwrap_or(Value::String(body));
            let mode = r.hook_mode.load(Ordering::SeqCst);
            if path == "/hook" && mode == SLOW {
                tokio::time::sleep(Duration::from_secs(35)).await;
            }
            let taken = path != "/hook" || mode != DOWN;
            let key = headers
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            if let Ok(mut g) = r.got.lock() {
                g.push(Received {
                    path: path.to_string(),
                    key,
                    headers,
                    body: body.clone(),
                    taken,
                });
            }
            match path {
                _ if !taken => (StatusCode::SERVICE_UNAVAILABLE, "down").into_response(),
                "/pagerduty/v2/enqueue" => (
                    StatusCode::ACCEPTED,
                    json_body(json!({"status": "success", "message": "Event processed",
                                     "dedup_key": body["dedup_key"]})),
                )
                    .into_response(),
                _ => (StatusCode::OK, "ok").into_response(),
            }
        }
        let route = |path: &'static str| {
            axum::Router::new()
                .route(path, post(take))
                .with_state((self.clone(), path))
        };
        let app = route("/slack")
            .merge(route("/pagerduty/v2/enqueue"))
            .merge(route("/hook"));
        serve(app).await
    }

    fn set_hook(&self, mode: u8) {
        self.hook_mode.store(mode, Ordering::SeqCst);
    }

    fn taken(&self, path: &str) -> Vec<Received> {
        self.got
            .lock()
            .map(|g| {
                g.iter()
                    .filter(|r| r.path == path && r.taken)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    fn tried(&self, path: &str, key: &str) -> usize {
        self.got
            .lock()
            .map(|g| g.iter().filter(|r| r.path == path && r.key == key).count())
            .unwrap_or_default()
    }

    /// Waits until `path` took a request `check` accepts; returns it.
    async fn wait(
        &self,
        path: &str,
        what: &str,
        check: impl Fn(&Received) -> bool,
    ) -> anyhow::Result<Received> {
        wait_for(what, LIMIT, || async {
            Ok(self.taken(path).into_iter().find(|r| check(r)))
        })
        .await
    }
}

/// The ConfigMap and Secret of the notifications, in the test's namespace.
async fn configure(env: &TestEnv, config: &str, secret: Value) -> anyhow::Result<()> {
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": CONFIG}, "data": {"config.yaml": config}
    }))?;
    env.api::<ConfigMap>()
        .create(&PostParams::default(), &cm)
        .await?;
    let s: Secret = serde_json::from_value(json!({
        "metadata": {"name": CONFIG}, "stringData": secret
    }))?;
    env.api::<Secret>()
        .create(&PostParams::default(), &s)
        .await?;
    Ok(())
}

fn controller(env: &TestEnv) -> anyhow::Result<ControllerProcess> {
    let source = format!("{}/{CONFIG}", env.namespace);
    ControllerProcess::start_with(env, "a", &["--notifications", &source])
}

/// Sets the Rollout's subscription annotations.
async fn subscribe(env: &TestEnv, name: &str, subs: &[(&str, &str)]) -> anyhow::Result<()> {
    let annotations: serde_json::Map<String, Value> = subs
        .iter()
        .map(|(t, r)| (format!("notifications.sluice.dev/subscribe.{t}"), json!(r)))
        .collect();
    rollouts(env)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": annotations}})),
        )
        .await?;
    Ok(())
}

fn records(s: &RolloutStatus) -> Vec<NotificationRecord> {
    s.notifications
        .as_ref()
        .map(|l| l.records.clone())
        .unwrap_or_default()
}

fn record_of<'a>(
    s: &'a [NotificationRecord],
    trigger: &str,
    revision: &str,
) -> Option<&'a NotificationRecord> {
    s.iter()
        .find(|r| r.trigger == trigger && r.revision == revision)
}

/// The text of each field of a Slack message's first `fields` section.
fn slack_fields(body: &Value) -> Vec<String> {
    body["blocks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|b| b["fields"].is_array())
        .and_then(|b| b["fields"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|f| f["text"].as_str().map(String::from))
        .collect()
}

/// A metric sample's value on the controller's /metrics (0 when absent).
async fn sample(c: &ControllerProcess, name: &str, labels: &[(&str, &str)]) -> anyhow::Result<f64> {
    let (_, body) = http_get(c, "/metrics").await?;
    Ok(common::metrics::samples(&body, name)
        .into_iter()
        .filter(|(l, _)| {
            labels
                .iter()
                .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| v)
        .sum())
}

/// The ConfigMap of the formats test: a Slack, a PagerDuty and a webhook receiver on
/// `base`, their secrets, and the namespace's default subscriptions.
async fn configure_three(env: &TestEnv, base: &str) -> anyhow::Result<()> {
    let ns = &env.namespace;
    let config = format!(
        r#"
link: "https://grafana.example/d/sluice-rollout?var-namespace={{{{namespace}}}}&var-rollout={{{{name}}}}"
receivers:
  - name: releases
    slack: {{url: $slack-url}}
  - name: oncall
    pagerduty: {{routingKey: $pagerduty-key, url: "{base}/pagerduty/v2/enqueue"}}
  - name: audit
    webhook:
      url: {base}/hook
      headers: {{Authorization: $audit-token}}
defaults:
  {ns}:
    on-aborted: [oncall, releases]
    on-recovered: [oncall]
  "*":
    on-aborted: [nobody]
"#
    );
    let secret = json!({"slack-url": format!("{base}/slack"), "pagerduty-key": "R0UTING-KEY-1",
                        "audit-token": "Bearer s3cret"});
    configure(env, &config, secret).await
}

/// A canary of `web` (50%, a 1 s pause, the success-rate analysis against `mon`) subscribed
/// to every trigger but the steps', Healthy on v1; returns v1's hash and the Rollout's uid.
async fn shop(env: &TestEnv, mon: &Monitoring) -> anyhow::Result<(String, String)> {
    mon.success_rate_template(env, json!({})).await?;
    create_services(env, &["web-stable", "web-canary"]).await?;
    let analysis = json!({"templates": [{"templateName": "success-rate"}]});
    let steps = json!({"steps": [{"setWeight": 50}, {"pause": {"duration": "1s"}},
                                 {"analysis": analysis}]});
    create_rollout(env, &web_canary(2, steps)?).await?;
    subscribe(
        env,
        "web",
        &[
            ("on-release-started", "releases, audit"),
            ("on-paused", "audit"),
            ("on-promoted", "releases,audit,oncall"),
            ("on-aborted", "audit"),
            ("on-recovered", "releases"),
        ],
    )
    .await?;
    let v1 = wait_healthy(env, "web", 2, LIMIT).await?;
    let uid = rollouts(env).get("web").await?.uid().context("uid")?;
    Ok((v1, uid))
}

/// v2 is released and promoted: the webhook is told of its start (Sluice's JSON, the
/// header from the Secret) and pause, Slack of its promotion, PagerDuty resolves.
async fn v2_is_told(env: &TestEnv, rx: &Receivers, v1: &str, uid: &str) -> anyhow::Result<String> {
    let ns = &env.namespace;
    set_image(env, "web", "registry.example/web:2").await?;
    let v2 = wait_promoted(env, "web", v1, LIMIT).await?;
    let started = rx
        .wait("/hook", "the webhook told v2 started", |r| {
            r.body["trigger"] == "on-release-started" && r.body["revision"] == v2.as_str()
        })
        .await?;
    let b = &started.body;
    ensure!(b["apiVersion"] == "sluice.dev/v1alpha1" && b["kind"] == "RolloutNotification");
    ensure!(
        b["rollout"] == json!({"namespace": ns, "name": "web", "uid": uid}),
        "{b}"
    );
    ensure!(
        b["id"]
            .as_str()
            .is_some_and(|id| id.starts_with(&format!("{uid}/"))),
        "{b}"
    );
    ensure!(
        started.key == b["id"].as_str().unwrap_or_default(),
        "Idempotency-Key is the id"
    );
    let auth = started
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    ensure!(
        auth == Some("Bearer s3cret"),
        "the header from the Secret: {auth:?}"
    );
    ensure!(b["stableRevision"] == v1 && b["analysis"].is_null(), "{b}");
    let link =
        format!("https://grafana.example/d/sluice-rollout?var-namespace={ns}&var-rollout=web");
    ensure!(b["link"] == link.as_str(), "{b}");
    ensure!(
        b["message"].as_str().is_some_and(|m| m.contains(&v2)),
        "{b}"
    );
    rx.wait("/hook", "the webhook told the pause", |r| {
        r.body["trigger"] == "on-paused" && r.body["revision"] == v2.as_str()
    })
    .await?;
    let slack = rx
        .wait("/slack", "Slack told v2 promoted", |r| {
            r.body["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("Promoted:"))
        })
        .await?;
    let blocks = slack.body["blocks"].as_array().context("blocks")?;
    let header =
        json!({"type": "plain_text", "text": format!("Promoted: {ns}/web"), "emoji": true});
    ensure!(
        blocks[0]["type"] == "header" && blocks[0]["text"] == header,
        "{blocks:?}"
    );
    let fields = slack_fields(&slack.body);
    let want = [
        format!("*Rollout*\n{ns}/web"),
        format!("*Revision*\n`{v2}`"),
        format!("*Stable*\n`{v2}`"),
    ];
    ensure!(fields == want, "{fields:?}");
    ensure!(
        blocks
            .iter()
            .any(|b| b["type"] == "actions" && b["elements"][0]["url"] == link.as_str())
    );
    ensure!(
        blocks.last().is_some_and(|b| b["type"] == "context"),
        "{blocks:?}"
    );
    let resolve = rx
        .wait(
            "/pagerduty/v2/enqueue",
            "PagerDuty resolve on v2's promotion",
            |r| r.body["event_action"] == "resolve",
        )
        .await?;
    let want = json!({"routing_key": "R0UTING-KEY-1", "event_action": "resolve",
                      "dedup_key": format!("sluice/{ns}/web/{v2}")});
    ensure!(resolve.body == want, "{}", resolve.body);
    Ok(v2)
}

/// v3 fails its analysis and is aborted: PagerDuty is paged (every field of the event),
/// the webhook and Slack are told the metric, its value and the condition.
async fn v3_abort_is_told(
    env: &TestEnv,
    rx: &Receivers,
    mon: &Monitoring,
    v2: &str,
) -> anyhow::Result<String> {
    let ns = &env.namespace;
    mon.set(0.2).await?;
    set_image(env, "web", "registry.example/web:3").await?;
    let aborted = wait_status(env, "web", "v3 aborted", LIMIT, |s| s.abort == Some(true)).await?;
    let v3 = aborted.current_pod_hash.clone().context("v3's hash")?;
    let page = rx
        .wait("/pagerduty/v2/enqueue", "PagerDuty paged for v3", |r| {
            r.body["event_action"] == "trigger"
        })
        .await?;
    let p = &page.body;
    ensure!(p["routing_key"] == "R0UTING-KEY-1", "{p}");
    ensure!(p["dedup_key"] == format!("sluice/{ns}/web/{v3}"), "{p}");
    let payload = &p["payload"];
    ensure!(
        payload["severity"] == "critical" && payload["source"] == format!("{ns}/web"),
        "{p}"
    );
    ensure!(
        payload["component"] == "web" && payload["group"] == ns.as_str(),
        "{p}"
    );
    ensure!(payload["class"] == "on-aborted", "{p}");
    ensure!(
        payload["timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{p}"
    );
    let summary = payload["summary"].as_str().unwrap_or_default();
    ensure!(summary.starts_with(&format!("Release aborted: {ns}/web")) && summary.len() <= 1024);
    let details = &payload["custom_details"];
    ensure!(details["Metric"] == "success-rate", "{p}");
    ensure!(details["Value"] == "[0.2]", "the value measured: {p}");
    ensure!(
        details["Condition"] == "successCondition: result[0] >= 0.95",
        "{p}"
    );
    ensure!(
        details["Revision"] == v3.as_str() && details["Stable"] == v2,
        "{p}"
    );
    ensure!(
        p["links"][0]["href"]
            .as_str()
            .is_some_and(|h| h.contains("var-rollout=web")),
        "{p}"
    );
    let hook = rx
        .wait("/hook", "the webhook told the abort", |r| {
            r.body["trigger"] == "on-aborted"
        })
        .await?;
    let a = &hook.body["analysis"];
    ensure!(
        a["metric"] == "success-rate" && a["value"] == "[0.2]",
        "{}",
        hook.body
    );
    ensure!(
        a["condition"] == "successCondition: result[0] >= 0.95",
        "{}",
        hook.body
    );
    ensure!(
        a["run"].as_str().is_some_and(|r| r.contains(&v3)),
        "{}",
        hook.body
    );
    let slack = rx
        .wait("/slack", "Slack told the abort", |r| {
            r.body["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("Release aborted:"))
        })
        .await?;
    let fields = slack_fields(&slack.body);
    for want in [
        format!("*Revision*\n`{v3}`"),
        "*Metric*\nsuccess-rate".to_string(),
        "*Value*\n[0.2]".to_string(),
        "*Condition*\n`successCondition: result[0] &gt;= 0.95`".to_string(),
    ] {
        ensure!(fields.contains(&want), "{want:?} in {fields:?}");
    }
    Ok(v3)
}

#[tokio::test]
async fn slack_pagerduty_and_a_webhook_are_told_each_decision_of_a_release() {
    TestEnv::run("notify-formats", |env| async move {
        let mon = Monitoring::start(&env, GAUGE, 0.99).await?;
        let rx = Receivers::default();
        let base = rx.start().await?;
        let ns = env.namespace.clone();
        configure_three(&env, &base).await?;
        let c = controller(&env)?;
        let (v1, uid) = shop(&env, &mon).await?;
        let v2 = v2_is_told(&env, &rx, &v1, &uid).await?;
        let v3 = v3_abort_is_told(&env, &rx, &mon, &v2).await?;

        // Back to v2 in the template: a fast-track rollback; Healthy again resolves v3's page.
        set_image(&env, "web", "registry.example/web:2").await?;
        wait_status(&env, "web", "Healthy on v2", LIMIT, |s| {
            phase(s) == Some(RolloutPhase::Healthy) && s.stable_rs.as_deref() == Some(v2.as_str())
        })
        .await?;
        let v3_key = format!("sluice/{ns}/web/{v3}");
        let resolve_v3 = rx
            .wait("/pagerduty/v2/enqueue", "PagerDuty resolve of v3", |r| {
                r.body["event_action"] == "resolve" && r.body["dedup_key"] == v3_key.as_str()
            })
            .await?;
        ensure!(resolve_v3.body["routing_key"] == "R0UTING-KEY-1");
        rx.wait("/slack", "Slack told the recovery", |r| {
            r.body["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("Recovered:"))
        })
        .await?;

        // The status says what each receiver got; nothing is left pending or sent twice.
        let done = wait_status(&env, "web", "every notification delivered", LIMIT, |s| {
            let r = records(s);
            record_of(&r, "on-recovered", &v3).is_some() && r.iter().all(|r| r.pending.is_empty())
        })
        .await?;
        let recs = records(&done);
        let aborted = record_of(&recs, "on-aborted", &v3).context("the abort's record")?;
        let mut got = aborted.delivered.clone();
        got.sort();
        ensure!(got == vec!["audit", "oncall", "releases"], "{aborted:?}");
        ensure!(recs.iter().all(|r| r.failed.is_empty()), "{recs:?}");
        for path in ["/slack", "/pagerduty/v2/enqueue", "/hook"] {
            let taken = rx.taken(path);
            let mut keys: Vec<&str> = taken.iter().map(|r| r.key.as_str()).collect();
            let n = keys.len();
            keys.sort();
            keys.dedup();
            ensure!(
                keys.len() == n,
                "{path} took a notification twice: {taken:?}"
            );
        }
        let oncall = [("receiver", "oncall"), ("kind", "pagerduty")];
        let paged = sample(&c, "sluice_notifications_sent_total", &oncall).await?;
        ensure!(
            paged == 3.0,
            "oncall took v2's resolve, v3's page and v3's resolve: {paged}"
        );
        let timed = [("receiver", "releases")];
        let attempts = sample(
            &c,
            "sluice_notification_attempt_duration_seconds_count",
            &timed,
        )
        .await?;
        ensure!(attempts >= 4.0, "Slack's attempts are timed: {attempts}");
        common::figure(&format!(
            "notifications: {} to Slack, {} to PagerDuty, {} to the webhook; none twice",
            rx.taken("/slack").len(),
            rx.taken("/pagerduty/v2/enqueue").len(),
            rx.taken("/hook").len()
        ));
        Ok(())
    })
    .await;
}

/// Seconds from the start of the release of `image` to its promotion.
async fn release_seconds(
    env: &TestEnv,
    image: &str,
    stable: &str,
) -> anyhow::Result<(String, f64)> {
    let t = Instant::now();
    set_image(env, "web", image).await?;
    let next = wait_promoted(env, "web", stable, LIMIT).await?;
    Ok((next, t.elapsed().as_secs_f64()))
}

#[tokio::test]
async fn a_slow_or_down_receiver_delays_no_step_and_a_kill_loses_no_notification() {
    TestEnv::run("notify-slow", |env| async move {
        let rx = Receivers::default();
        let base = rx.start().await?;
        // A port nothing listens on: Slack is down.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        configure(
            &env,
            &format!(
                r#"
receivers:
  - name: down
    slack: {{url: "http://{closed}/slack"}}
  - name: hook
    webhook: {{url: "{base}/hook"}}
"#
            ),
            json!({}),
        )
        .await?;
        let mut c = controller(&env)?;
        create_services(&env, &["web-stable", "web-canary"]).await?;
        let steps = json!({"steps": [{"setWeight": 25}, {"pause": {"duration": "2s"}},
                                     {"setWeight": 50}, {"pause": {"duration": "2s"}}]});
        create_rollout(&env, &web_canary(2, steps)?).await?;
        let every = "on-release-started,on-step-completed,on-paused,on-promoted";
        let subs: Vec<(&str, &str)> = every.split(',').map(|t| (t, "hook")).collect();
        subscribe(&env, "web", &subs).await?;
        let v1 = wait_healthy(&env, "web", 2, LIMIT).await?;

        // The same release with the receiver answering at once, then answering after 35 s
        // with Slack down as well.
        let (v2, quick) = release_seconds(&env, "registry.example/web:2", &v1).await?;
        rx.wait("/hook", "v2's promotion told", |r| r.body["trigger"] == "on-promoted").await?;
        rx.set_hook(SLOW);
        let slow_subs: Vec<(&str, &str)> = every.split(',').map(|t| (t, "hook,down")).collect();
        subscribe(&env, "web", &slow_subs).await?;
        let (v3, slow) = release_seconds(&env, "registry.example/web:3", &v2).await?;
        common::figure(&format!(
            "notifications: a release of 4 steps (two 2 s pauses) took {quick:.1} s with the receiver \
             answering at once, {slow:.1} s with it answering after 35 s and Slack down"
        ));
        ensure!(
            slow < quick + 10.0 && slow < 30.0,
            "a slow receiver delayed the release: {slow:.1} s against {quick:.1} s"
        );
        let s = rollouts(&env).get("web").await?.status.unwrap_or_default();
        let pending: Vec<_> = records(&s)
            .into_iter()
            .filter(|r| r.revision == v3 && !r.pending.is_empty())
            .collect();
        ensure!(!pending.is_empty(), "v3's notifications were still being tried: {s:?}");

        // Killed between a decision and its delivery: told exactly once after the restart.
        rx.set_hook(DOWN);
        set_image(&env, "web", "registry.example/web:4").await?;
        let s = wait_status(&env, "web", "v4's start recorded", LIMIT, |s| {
            records(s).iter().any(|r| r.trigger == "on-release-started" && r.revision != v3 && r.revision != v2 && r.pending.contains(&"hook".to_string()))
        })
        .await?;
        let rec = records(&s)
            .into_iter()
            .find(|r| r.trigger == "on-release-started" && r.revision != v3 && r.revision != v2)
            .context("v4's record")?;
        let key = format!("{}/{}", rollouts(&env).get("web").await?.uid().context("uid")?, rec.id);
        wait_for("a first attempt refused", LIMIT, || async {
            Ok((rx.tried("/hook", &key) >= 1).then_some(()))
        })
        .await?;
        c.kill();
        rx.set_hook(UP);
        let tried_before = rx.tried("/hook", &key);
        c.restart()?;
        let after = wait_status(&env, "web", "v4's start delivered after the restart", LIMIT, |s| {
            records(s).iter().any(|r| r.id == rec.id && r.delivered.contains(&"hook".to_string()))
        })
        .await?;
        common::poke_and_wait(&env, &c, "web").await?;
        let taken: Vec<_> = rx.taken("/hook").into_iter().filter(|r| r.key == key).collect();
        ensure!(taken.len() == 1, "delivered once after the restart: {taken:?}");
        ensure!(
            records(&after).iter().filter(|r| r.trigger == "on-release-started" && r.revision == rec.revision).count() == 1,
            "one record of the decision"
        );
        common::figure(&format!(
            "notifications: killed after {tried_before} refused attempt(s) of one notification, delivered {} time(s) after the restart",
            taken.len()
        ));
        Ok(())
    })
    .await;
}
