//! `kubectl sluice dashboard` through the real kubectl, read and pressed in a real headless
//! Chromium (WebDriver): the list page shows a paused canary with its step and weight, and
//! loads nothing from another site; the Rollout's page follows a promotion pressed on the page
//! in its step, weights, revisions and Events, adds and lifts a pause by request, says why a
//! control that does not apply was refused, and an abort pressed and confirmed on the page
//! reaches the API server.
//! Screenshots of each page go to `target/screenshots/dashboard-*.png`.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, ensure};
use axum::routing::get;
use common::analysis::{json_body, serve};
use common::fixture::{create_rollout, rollout, set_image, wait_healthy, wait_paused_at};
use common::{ControllerProcess, create_services, phase, rollouts, wait_status};
use e2e::TestEnv;
use e2e::browser::Browser;
use serde_json::json;
use sluice::api::analysis::AnalysisTemplate;
use sluice::api::rollout::{PauseReason, RolloutPhase};
use tokio::io::{AsyncBufReadExt, BufReader};

const LIMIT: Duration = Duration::from_secs(90);

/// The values the analysis endpoint answers, in turn, so the charts have a shape. One in
/// each turn fails (0.95), and a turn is as long as the measurements `kubectl sluice get`
/// shows (the latest 5), so whenever its tree is read, once the first 0.95 is measured,
/// the measurements it shows hold a failing one. (A turn of 6 left the tree without one
/// in one read in six: the tree check failed on CI.)
const RATES: [f64; 5] = [0.97, 0.99, 0.96, 0.95, 0.985];

/// `kubectl sluice dashboard --port 0` started through kubectl (the plugin found on the
/// PATH), and the URL it printed. Killed on drop.
struct Dashboard {
    _child: tokio::process::Child,
    url: String,
    /// What it has written to stderr so far.
    said: Arc<std::sync::Mutex<String>>,
}

impl Dashboard {
    async fn start(env: &TestEnv) -> anyhow::Result<Self> {
        Self::start_with(env, &[]).await
    }

    /// Started with `extra` arguments after `--port 0`.
    async fn start_with(env: &TestEnv, extra: &[&str]) -> anyhow::Result<Self> {
        let mut args = vec!["--port", "0"];
        args.extend_from_slice(extra);
        let mut child = plugin(env, &env.cluster.kubeconfig, &args)?;
        let log = std::env::temp_dir().join(format!("sluice-dashboard-{}.log", env.namespace));
        env.attach_log(log.clone());
        let stderr = child.stderr.take().context("stderr")?;
        let mut errors = BufReader::new(stderr).lines();
        let said = Arc::new(std::sync::Mutex::new(String::new()));
        let sink = said.clone();
        tokio::spawn(async move {
            while let Ok(Some(l)) = errors.next_line().await {
                if let Ok(mut out) = sink.lock() {
                    out.push_str(&l);
                    out.push('\n');
                    let _ = std::fs::write(&log, out.as_bytes());
                }
            }
        });
        let stdout = child.stdout.take().context("stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .context("the dashboard printed no address within 60 s")??
            .context("the dashboard exited before printing its address")?;
        let url = first
            .strip_prefix("dashboard: ")
            .with_context(|| format!("unexpected first line {first:?}"))?
            .trim()
            .to_string();
        ensure!(
            url.starts_with("http://127.0.0.1:") && url.ends_with('/'),
            "the dashboard must listen on loopback by default: {url}"
        );
        // Keep reading stdout so the plugin never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Dashboard {
            _child: child,
            url,
            said,
        })
    }

    fn said(&self) -> String {
        self.said.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// `kubectl sluice dashboard ARGS -n NAMESPACE` through kubectl, the plugin found on the PATH,
/// as the user of `kubeconfig`; stdout and stderr piped, killed on drop.
fn plugin(
    env: &TestEnv,
    kubeconfig: &std::path::Path,
    args: &[&str],
) -> anyhow::Result<tokio::process::Child> {
    let plugin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_kubectl-sluice"))
        .parent()
        .context("plugin dir")?
        .to_path_buf();
    let path = format!(
        "{}:{}",
        plugin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    tokio::process::Command::new(env.cluster.bin_dir.join("kubectl"))
        .arg("sluice")
        .arg("dashboard")
        .args(args)
        .args(["-n", &env.namespace])
        .env("PATH", path)
        .env("KUBECONFIG", kubeconfig)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting kubectl sluice dashboard")
}

/// Runs the dashboard as the user of `kubeconfig` and expects it to refuse to start; returns
/// what it said.
async fn refused(
    env: &TestEnv,
    kubeconfig: &std::path::Path,
    args: &[&str],
) -> anyhow::Result<String> {
    let child = plugin(env, kubeconfig, args)?;
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .context("the dashboard neither started nor stopped within 60 s")??;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(
        !out.status.success(),
        "it should have refused to start: {stdout}"
    );
    ensure!(
        !stdout.contains("dashboard: http"),
        "it should not listen: {stdout}"
    );
    Ok(String::from_utf8_lossy(&out.stderr).into_owned())
}

fn screenshot_path(name: &str) -> PathBuf {
    let target = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("target"));
    target
        .join("screenshots")
        .join(format!("dashboard-{name}.png"))
}

/// Presses control `name` on the Rollout's page and confirms it in the page's dialog.
async fn press(browser: &Browser, name: &str) -> anyhow::Result<()> {
    browser.click(&format!("#btn-{name}")).await?;
    browser
        .wait_text("#confirm-title", "the confirm dialog", LIMIT, |t| {
            t.to_lowercase().starts_with(name)
        })
        .await?;
    browser.click("#confirm-yes").await
}

#[tokio::test]
async fn the_dashboard_follows_and_steers_a_canary() {
    TestEnv::run("dashboard", |env| async move {
        let browser = Browser::start().await?;
        env.attach_log(browser.log.clone());
        let _controller = ControllerProcess::start(&env)?;
        create_services(&env, &["web-canary"]).await?;
        let served = paused_canary_with_analysis(&env).await?;
        let dash = Dashboard::start(&env).await?;
        let row = list_page_shows_the_canary(&browser, &env, &dash).await?;
        rollout_page_follows_a_promotion(&browser, &env, &row).await?;
        abort_on_the_page(&browser, &env).await?;
        the_server_refuses_other_sites(&env, &dash).await?;
        ensure!(
            served.load(Ordering::SeqCst) > 0,
            "the analysis endpoint was never read"
        );
        Ok(())
    })
    .await;
}

/// A web metric the background analysis reads every second, and Rollout `web` released to
/// its first pause with it; returns how many times the metric was read.
async fn paused_canary_with_analysis(env: &TestEnv) -> anyhow::Result<Arc<AtomicUsize>> {
    let served = Arc::new(AtomicUsize::new(0));
    let counter = served.clone();
    let app = axum::Router::new().route(
        "/rate",
        get(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move { json_body(json!({"rate": RATES[n % RATES.len()]})) }
        }),
    );
    let base = serve(app).await?;
    let template: AnalysisTemplate = serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisTemplate",
        "metadata": {"name": "success-rate"},
        "spec": {"metrics": [{
            "name": "success-rate", "interval": "1s",
            // 0.95 fails it, tolerated: the page shows the failing point and why.
            "successCondition": "result >= 0.955", "failureLimit": 50,
            "provider": {"web": {"url": format!("{base}/rate"), "jsonPath": "{$.rate}"}}
        }]}
    }))?;
    env.api::<AnalysisTemplate>()
        .create(&Default::default(), &template)
        .await?;

    let ro = rollout(
        "web",
        4,
        json!({"canary": {"canaryService": "web-canary",
            "analysis": {"templates": [{"templateName": "success-rate"}]},
            "steps": [{"setWeight": 25}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]}}),
    )?;
    create_rollout(env, &ro).await?;
    wait_healthy(env, "web", 4, LIMIT).await?;
    set_image(env, "web", "registry.example/web:2").await?;
    wait_paused_at(env, "web", 1, LIMIT).await?;
    Ok(served)
}

/// The list page: the paused canary, its step and weight, its analysis values. Returns the
/// row's selector.
async fn list_page_shows_the_canary(
    browser: &Browser,
    env: &TestEnv,
    dash: &Dashboard,
) -> anyhow::Result<String> {
    browser.goto(&dash.url).await?;
    let row = format!("tr[data-rollout=\"{}/web\"]", env.namespace);
    let text = browser
        .wait_text(
            &row,
            "the list to show web paused at step 1 of 5, canary 25%",
            LIMIT,
            |t| {
                t.contains("web")
                    && t.contains("Paused")
                    && t.contains("1 of 5")
                    && t.contains("canary 25%")
            },
        )
        .await?;
    ensure!(text.contains("registry.example/web:2"), "{text}");
    wait_sparkline(browser, &row).await?;
    loads_nothing_from_elsewhere(browser, dash).await?;
    browser.screenshot_page(&screenshot_path("list")).await?;
    Ok(row)
}

/// The Rollout's page, reached from the list: a promotion pressed on the page moves the step
/// and the weight; a control that does not apply says why; cancel sends nothing.
async fn rollout_page_follows_a_promotion(
    browser: &Browser,
    env: &TestEnv,
    row: &str,
) -> anyhow::Result<()> {
    // The Rollout's page, reached from the list.
    browser.click(&format!("{row} .c-name a")).await?;
    browser
        .wait_text("#step", "the page to show step 1 of 5", LIMIT, |t| {
            t == "1 of 5"
        })
        .await?;
    browser
        .wait_text("#canary-weight", "canary weight 25%", LIMIT, |t| t == "25%")
        .await?;
    browser
        .wait_text("#steps li.current", "the pause step marked", LIMIT, |t| {
            t.contains("pause until promoted")
        })
        .await?;

    // A promotion pressed on the page moves the step and the weight.
    press(browser, "promote").await?;
    browser
        .wait_text("#control-result", "the promotion's result", LIMIT, |t| {
            t.contains("promoted")
        })
        .await?;
    browser
        .wait_text("#step", "the page to show step 3 of 5", LIMIT, |t| {
            t == "3 of 5"
        })
        .await?;
    browser
        .wait_text("#canary-weight", "canary weight 50%", LIMIT, |t| t == "50%")
        .await?;
    browser
        .wait_text("#stable-weight", "stable weight 50%", LIMIT, |t| t == "50%")
        .await?;
    revisions_and_events_follow(browser).await?;
    pause_and_resume_on_the_page(browser, env).await?;

    // A control that does not apply says why, and writes nothing.
    press(browser, "retry").await?;
    browser
        .wait_text("#control-result", "retry refused", LIMIT, |t| {
            t.contains("is not aborted: nothing to retry")
        })
        .await?;

    // Cancel in the dialog sends nothing.
    browser.click("#btn-abort").await?;
    browser.click("#confirm-no").await?;
    let st = rollouts(env).get("web").await?.status.context("status")?;
    ensure!(st.abort != Some(true), "a cancelled abort must not be sent");

    // Measurements on the page, the failing one with its condition, then its screenshot.
    wait_for_points(browser).await?;
    browser
        .wait_text(
            ".metric .failing",
            "the failing measurement and why",
            LIMIT,
            |t| t.contains("successCondition `result >= 0.955` is false for result 0.95"),
        )
        .await?;
    browser.screenshot_page(&screenshot_path("rollout")).await?;
    the_tree_shows_the_analysis(env).await?;
    Ok(())
}

/// The revisions table holds both revisions with their images and roles; the Events table
/// holds the release's start and the promotion pressed on the page.
async fn revisions_and_events_follow(browser: &Browser) -> anyhow::Result<()> {
    browser
        .wait_text(
            "#revisions",
            "both revisions with their roles and images",
            LIMIT,
            |t| {
                t.contains("canary")
                    && t.contains("registry.example/web:2")
                    && t.contains("stable")
                    && t.contains("registry.example/web:1")
            },
        )
        .await?;
    let rows = browser
        .execute(
            "return document.querySelectorAll('#revisions tbody tr').length;",
            json!([]),
        )
        .await?;
    ensure!(rows.as_u64() == Some(2), "two revisions, not {rows}");
    browser
        .wait_text(
            "#events",
            "the release's Events, the promotion among them",
            LIMIT,
            |t| {
                t.contains("RolloutStarted")
                    && t.contains("Promoted")
                    && t.contains("step 1: promoted")
            },
        )
        .await?;
    Ok(())
}

/// Pause, confirmed on the page, adds a pause by request beside the step's own; resume lifts
/// only it. Each reaches the API server, and the page follows: the list of pauses and which
/// control applies.
async fn pause_and_resume_on_the_page(browser: &Browser, env: &TestEnv) -> anyhow::Result<()> {
    let by_request = |s: &sluice::api::rollout::RolloutStatus| {
        s.pause_conditions
            .iter()
            .any(|p| p.reason == PauseReason::UserPause)
    };
    let at_step = |s: &sluice::api::rollout::RolloutStatus| {
        s.pause_conditions
            .iter()
            .any(|p| p.reason == PauseReason::CanaryPauseStep)
    };
    press(browser, "pause").await?;
    wait_status(env, "web", "a pause by request", LIMIT, |s| {
        by_request(s) && at_step(s)
    })
    .await?;
    browser
        .wait_text("#pauses", "the pause by request listed", LIMIT, |t| {
            t.contains("UserPause") && t.contains("CanaryPauseStep")
        })
        .await?;
    wait_applies(browser, "resume", true).await?;
    wait_applies(browser, "pause", false).await?;

    press(browser, "resume").await?;
    wait_status(
        env,
        "web",
        "the pause by request lifted, the step's kept",
        LIMIT,
        |s| !by_request(s) && at_step(s),
    )
    .await?;
    browser
        .wait_text("#pauses", "only the step's pause listed", LIMIT, |t| {
            !t.contains("UserPause") && t.contains("CanaryPauseStep")
        })
        .await?;
    wait_applies(browser, "pause", true).await?;
    wait_applies(browser, "resume", false).await
}

/// Waits until the page says whether control `name` applies as `applies`.
async fn wait_applies(browser: &Browser, name: &str, applies: bool) -> anyhow::Result<()> {
    // The page marks a control that applies with a bare `data-applies` attribute.
    let script = "const b = document.querySelector(arguments[0]); \
                  return b ? b.hasAttribute('data-applies') : null;";
    let css = format!("#btn-{name}");
    e2e::wait_for(
        &format!("the page to say {name} applies: {applies}"),
        LIMIT,
        || async {
            let v = browser.execute(script, json!([css])).await?;
            Ok((v.as_bool() == Some(applies)).then_some(()))
        },
    )
    .await
}

/// Everything the page loaded (document, script, style, the event stream) came from the
/// dashboard itself: it works without internet.
async fn loads_nothing_from_elsewhere(browser: &Browser, dash: &Dashboard) -> anyhow::Result<()> {
    let loaded = browser
        .execute(
            "return [location.href].concat(performance.getEntriesByType('resource').map((e) => e.name));",
            json!([]),
        )
        .await?;
    let loaded: Vec<String> = serde_json::from_value(loaded)?;
    ensure!(
        loaded.len() >= 3,
        "the page, its script and its style at least: {loaded:?}"
    );
    let elsewhere: Vec<&String> = loaded
        .iter()
        .filter(|u| !u.starts_with(&dash.url))
        .collect();
    ensure!(elsewhere.is_empty(), "loaded from elsewhere: {elsewhere:?}");
    Ok(())
}

/// `kubectl sluice get rollout` through the real kubectl shows the same run: its latest
/// measurements, the failed one marked, and the condition that failed.
async fn the_tree_shows_the_analysis(env: &TestEnv) -> anyhow::Result<()> {
    let out = common::plugin::sluice(env, &["get", "rollout", "web"]).await?;
    ensure!(out.code == 0, "{}", out.stderr);
    let run = out
        .stdout
        .lines()
        .find(|l| l.contains("AnalysisRun web-"))
        .with_context(|| format!("no AnalysisRun in the tree:\n{}", out.stdout))?;
    ensure!(run.contains("Running"), "{run}");
    let metric = out
        .stdout
        .lines()
        .find(|l| l.contains("metric success-rate"))
        .with_context(|| format!("no metric in the tree:\n{}", out.stdout))?;
    ensure!(
        metric.contains("0.95(failed)")
            && metric.contains("successCondition `result >= 0.955` is false for result 0.95"),
        "the failed measurement and its condition:\n{}",
        out.stdout
    );
    Ok(())
}

/// Abort, confirmed on the page, reaches the API server, and the page follows.
async fn abort_on_the_page(browser: &Browser, env: &TestEnv) -> anyhow::Result<()> {
    // Abort, confirmed on the page, reaches the API server.
    press(browser, "abort").await?;
    browser
        .wait_text("#control-result", "the abort's result", LIMIT, |t| {
            t.contains("aborted")
        })
        .await?;
    wait_status(env, "web", "the Rollout aborted", LIMIT, |s| {
        s.abort == Some(true)
    })
    .await?;
    wait_status(env, "web", "the Rollout Degraded", LIMIT, |s| {
        phase(s) == Some(RolloutPhase::Degraded)
    })
    .await?;
    browser
        .wait_text("#canary-weight", "canary weight back to 0%", LIMIT, |t| {
            t == "0%"
        })
        .await?;
    browser
        .wait_text("h1", "the page to show Degraded", LIMIT, |t| {
            t.contains("Degraded")
        })
        .await?;
    browser
        .wait_text("#events", "the abort among the Events", LIMIT, |t| {
            t.contains("RolloutAborted") && t.contains("aborted on request")
        })
        .await?;
    browser.screenshot_page(&screenshot_path("aborted")).await?;
    Ok(())
}

/// The page's server refuses a control without its header (a form on another site), and
/// requests for another host name (DNS rebinding).
async fn the_server_refuses_other_sites(env: &TestEnv, dash: &Dashboard) -> anyhow::Result<()> {
    // The page's server refuses a control without its header (a form on another site),
    // and requests for another host name (DNS rebinding).
    let http = reqwest::Client::new();
    let control = format!("{}api/rollouts/{}/web/retry", dash.url, env.namespace);
    let res = http.post(&control).send().await?;
    ensure!(
        res.status() == 403,
        "a control without the header: {}",
        res.status()
    );
    let res = http
        .get(&dash.url)
        .header("host", "dashboard.example:80")
        .send()
        .await?;
    ensure!(res.status() == 421, "another host name: {}", res.status());
    Ok(())
}

/// Waits until the row's sparkline has at least two values.
/// A dashboard left open on quiet Rollouts keeps its watches: with `--request-timeout 3`, for
/// three times that long, neither its stderr nor its list says a watch failed (the API server
/// ends each watch before the client's read timeout would break it, and it is resumed).
#[tokio::test]
async fn a_quiet_dashboard_keeps_its_watches() {
    TestEnv::run("dashboard-quiet", |env| async move {
        create_rollout(
            &env,
            &rollout("idle", 1, json!({"canary": {"steps": [{"setWeight": 50}]}}))?,
        )
        .await?;
        let dash = Dashboard::start_with(&env, &["--request-timeout", "3"]).await?;
        let http = reqwest::Client::new();
        let list = format!("{}api/list", dash.url);
        // Until its watches have their first lists it says it is loading; from then on it
        // holds the Rollout, and the quiet stream must keep it.
        let first = e2e::wait_for("the dashboard's first lists", LIMIT, || async {
            let body: serde_json::Value = http.get(&list).send().await?.json().await?;
            let loading = body["loading"]
                .as_bool()
                .ok_or_else(|| anyhow::anyhow!("no loading in {body}"))?;
            Ok((!loading).then_some(body))
        })
        .await?;
        ensure!(
            first["rollouts"].as_array().is_some_and(|r| r.len() == 1),
            "no longer loading, the list must hold the Rollout: {first}"
        );
        let watched = std::time::Instant::now() + Duration::from_secs(9);
        let mut reads = 0;
        while std::time::Instant::now() < watched {
            let body: serde_json::Value = http.get(&list).send().await?.json().await?;
            ensure!(
                body["rollouts"].as_array().is_some_and(|r| r.len() == 1)
                    && body["loading"] == json!(false),
                "the list holds the Rollout: {body}"
            );
            ensure!(
                body["problems"].as_array().is_some_and(Vec::is_empty),
                "a watch failed on a quiet stream: {body}"
            );
            let said = dash.said();
            ensure!(
                !said.contains("watch stream failed"),
                "a watch failed on a quiet stream: {said}"
            );
            reads += 1;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        ensure!(reads >= 10, "read the list {reads} times");
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn the_dashboard_says_what_keeps_it_from_starting() {
    TestEnv::run("dashboard-refused", |env| async move {
        // A user with no Role at all.
        let sa: k8s_openapi::api::core::v1::ServiceAccount = serde_json::from_value(
            json!({"metadata": {"name": "nobody", "namespace": env.namespace}}),
        )?;
        env.api::<k8s_openapi::api::core::v1::ServiceAccount>()
            .create(&Default::default(), &sa)
            .await?;
        let nobody = e2e::identity::token_kubeconfig(
            &env.client,
            &env.cluster.kubeconfig,
            &env.namespace,
            "nobody",
            &std::env::temp_dir().join(format!("sluice-{}-nobody.kubeconfig", env.namespace)),
        )
        .await?;
        let said = refused(&env, &nobody, &["--port", "0"]).await?;
        ensure!(
            said.contains(&format!(
                "forbidden: you may not list rollouts.sluice.dev in namespace {}",
                env.namespace
            )),
            "{said}"
        );

        // A port another program holds.
        let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = taken.local_addr()?.port().to_string();
        let said = refused(&env, &env.cluster.kubeconfig, &["--port", &port]).await?;
        ensure!(
            said.contains(&format!("port {port} on 127.0.0.1 is in use")),
            "{said}"
        );

        // An API server that is not there.
        let admin = std::fs::read_to_string(&env.cluster.kubeconfig)?;
        let gone = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let server = regex::Regex::new(r"server: https://[^\s]+")?
            .replace(&admin, format!("server: https://127.0.0.1:{gone}"))
            .into_owned();
        let unreachable =
            std::env::temp_dir().join(format!("sluice-{}-gone.kubeconfig", env.namespace));
        std::fs::write(&unreachable, server)?;
        let said = refused(&env, &unreachable, &["--port", "0"]).await?;
        ensure!(
            said.contains(&format!(
                "cannot reach the API server: https://127.0.0.1:{gone}"
            )) && said.to_lowercase().contains("connection refused"),
            "{said}"
        );
        // The first holds a token, if a powerless one: no credential is left behind.
        let _ = std::fs::remove_file(&nobody);
        let _ = std::fs::remove_file(&unreachable);
        Ok(())
    })
    .await;
}

async fn wait_sparkline(browser: &Browser, row: &str) -> anyhow::Result<()> {
    let script = "const s = document.querySelector(arguments[0]); \
                  return s ? s.getAttribute('data-values') : null;";
    let css = format!("{row} svg.spark");
    e2e::wait_for("a sparkline of the analysis values", LIMIT, || async {
        let v = browser.execute(script, json!([css])).await?;
        Ok(v.as_str().filter(|s| s.split(',').count() >= 2).map(|_| ()))
    })
    .await
}

/// Waits until a metric chart on the page has at least three measurements.
async fn wait_for_points(browser: &Browser) -> anyhow::Result<()> {
    let script = "return document.querySelectorAll('.metric svg.chart circle').length;";
    e2e::wait_for("measurements charted on the page", LIMIT, || async {
        let n = browser.execute(script, json!([])).await?;
        Ok((n.as_u64().unwrap_or(0) >= 3).then_some(()))
    })
    .await
}
