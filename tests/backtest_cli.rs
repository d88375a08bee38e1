//! `kubectl sluice backtest` through the real kubectl (the plugin found on the PATH) against
//! the local control plane and a real Prometheus holding an hour of past traffic
//! (e2e::history, backfilled with promtool): both incidents are caught with the delays worked
//! out below, and the only false failures are the two planted blips.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, ensure};
use common::fixture::{create_rollout, web_canary};
use common::plugin::{Out, scratch, sluice};
use e2e::history::{History, Revision, backfill};
use e2e::prometheus::Prometheus;
use e2e::trafficsim::IstioLabels;
use e2e::{TestEnv, wait_for};
use kube::api::PostParams;
use serde_json::{Value, json};
use sluice::api::analysis::AnalysisTemplate;

const RPS: f64 = 100.0;
const BASE: f64 = 0.01;
const SCRAPE: Duration = Duration::from_secs(15);
const LIMIT: Duration = Duration::from_secs(60);

fn show(what: &str, out: &Out) {
    eprintln!(
        "--- {what}: exit {}\n{}{}",
        out.code,
        out.stdout,
        if out.stderr.is_empty() {
            String::new()
        } else {
            format!("stderr:\n{}", out.stderr)
        }
    );
}

fn rfc3339(t: f64) -> String {
    k8s_openapi::jiff::Timestamp::from_second(t as i64)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// The template: the service's error ratio over the last minute, every minute, below 5 %.
fn template(address: &str) -> anyhow::Result<AnalysisTemplate> {
    let service = r#"destination_service_name="{{args.service}}""#;
    let query = format!(
        r#"sum(rate(istio_requests_total{{response_code="500",{service}}}[1m])) / sum(rate(istio_requests_total{{{service}}}[1m]))"#
    );
    Ok(serde_json::from_value(json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": "error-rate"},
        "spec": {
            "args": [{"name": "service"}],
            "metrics": [{
                "name": "errors",
                "interval": "1m",
                "successCondition": "result[0] < 0.05",
                "provider": {"prometheus": {"address": address, "query": query}}
            }, {
                // A dry run (the Rollout says so): shown, never ending a run.
                "name": "burn",
                "interval": "1m",
                "provider": {"burnRate": {
                    "prometheus": {"address": address},
                    "objective": 0.99,
                    "badQuery": format!(r#"sum(rate(istio_requests_total{{response_code="500",{service}}}[{{{{window}}}}]))"#),
                    "totalQuery": format!(r#"sum(rate(istio_requests_total{{{service}}}[{{{{window}}}}]))"#),
                    "alerts": [{"long": "5m", "short": "1m", "burnRate": 10}]
                }}
            }, {
                "name": "smoke",
                "provider": {"web": {"url": "http://127.0.0.1:1/healthz"}}
            }]
        }
    }))?)
}

#[tokio::test]
async fn backtest_catches_both_incidents_and_flags_only_the_blips() {
    TestEnv::run("backtest", |env| async move {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        // One hour ending two hours ago, on whole minutes.
        let end = (now / 60 * 60 - 2 * 3600) as f64;
        let start = end - 3600.0;
        let m = |min: f64| start + min * 60.0;
        // Incident 1: 30 % from 20m30s for 5 minutes. Incident 2: 15 % from 40m15s for 3.
        // Blips: 50 % for 30 s at 8m15s and at 50m15s, each inside one minute's window.
        let incident1 = (m(20.5), m(25.5));
        let incident2 = (m(40.25), m(43.25));
        let labels = IstioLabels::answered(&env.namespace, "web", "web", "web", "6d4f9c7b8d", 200);
        let revision = Revision::new(labels, RPS, BASE, 40.0)
            .with_episode(m(8.25), m(8.75), 0.50)
            .with_episode(incident1.0, incident1.1, 0.30)
            .with_episode(incident2.0, incident2.1, 0.15)
            .with_episode(m(50.25), m(50.75), 0.50);
        let history = History {
            start,
            end,
            scrape_interval: SCRAPE,
            revisions: vec![revision],
        };
        let dir = scratch(&env)?.join("prometheus");
        std::fs::create_dir_all(&dir)?;
        let file = dir.join("history.om");
        history.write_openmetrics(&file)?;
        let data = dir.join("data");
        backfill(&file, &data).await?;
        let prom = Prometheus::start_with_data(&dir, &[], SCRAPE, &data).await?;
        wait_for("the backfilled series", LIMIT, || async {
            let s = prom.query_at("count(istio_requests_total)", end).await?;
            Ok(s.first().filter(|(_, v)| *v == 2.0).map(|(_, v)| *v))
        })
        .await
        .with_context(|| prom.log_tail(20))?;

        // The template's address is the in-cluster one a laptop cannot reach; --prometheus
        // replaces it. The Rollout's background analysis gives the service argument.
        env.api::<AnalysisTemplate>()
            .create(&PostParams::default(), &template("http://127.0.0.1:1")?)
            .await?;
        let mut unused = template("http://127.0.0.1:1")?;
        unused.metadata.name = Some("unused".into());
        env.api::<AnalysisTemplate>().create(&PostParams::default(), &unused).await?;
        let analysis = json!({"templates": [{"templateName": "error-rate"}],
                              "args": [{"name": "service", "value": "web"}],
                              "dryRun": [{"metricName": "burn"}]});
        create_rollout(&env, &web_canary(1, json!({"analysis": analysis, "steps": [{"pause": {}}]}))?).await?;

        let incidents = scratch(&env)?.join("incidents.yaml");
        std::fs::write(
            &incidents,
            format!(
                "- name: checkout-outage\n  start: {}\n  end: {}\n- {{name: slow-db, start: {}, end: {}}}\n",
                rfc3339(incident1.0),
                rfc3339(incident1.1),
                rfc3339(incident2.0),
                rfc3339(incident2.1)
            ),
        )?;
        // From start + 1m: at `start` the 1m window holds one sample and the query is empty.
        let (from, to) = (rfc3339(m(1.0)), rfc3339(end));
        let url = prom.url();
        let incidents_arg = incidents.to_string_lossy().to_string();
        let base = [
            "backtest", "error-rate", "--rollout", "web", "--from", &from, "--to", &to,
            "--incidents", &incidents_arg, "--grace", "1m",
        ];
        let with = |extra: &[&'static str]| -> Vec<String> {
            base.iter().map(|s| s.to_string()).chain(extra.iter().map(|s| s.to_string())).collect()
        };
        let run = |args: Vec<String>| {
            let env = env.clone();
            async move {
                let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                sluice(&env, &refs).await
            }
        };

        let mut json_args = with(&["-o", "json"]);
        json_args.extend(["--prometheus".to_string(), url.clone()]);
        let out = run(json_args).await?;
        ensure!(out.code == 0, "the backtest exits 0: {} {}", out.code, out.stderr);
        let v: Value = serde_json::from_str(&out.stdout).context("the JSON output")?;

        // The arithmetic. Prometheus 2.x takes rate() over [t - 1m, t], so the ratio at t is
        // the errors over that minute divided by the requests (100 rps):
        // - checkout-outage begins at 20m30s. The step at 20m covers [19m, 20m] at 1 %: ok.
        //   The step at 21m covers 30 s at 1 % and 30 s at 30 %: (0.3 + 9) / 60 = 0.155 >=
        //   0.05, so run 2 fails at 21m: 30 s after the incident began. Every step to 26m
        //   fails (26m: 30 s at 30 % then 30 s at 1 %, 0.155), and 26m is within the end
        //   (25m30s) plus the 1m grace: the same detection, not false.
        // - slow-db begins at 40m15s. The step at 41m covers 15 s at 1 % and 45 s at 15 %:
        //   (0.15 + 6.75) / 60 = 0.115 >= 0.05: caught at 41m, 45 s after it began. 42m and
        //   43m fail (15 %); 44m covers 15 s at 15 % and 45 s at 1 %: (2.25 + 0.45) / 60 =
        //   0.045 < 0.05, ok.
        // - Each blip is in one window only: 9m ([8m, 9m]: 30 s at 50 %, 30 s at 1 %,
        //   (15 + 0.3) / 60 = 0.255) and 51m. Those two are the false failures.
        let caught: Vec<(String, i64)> = v["report"]["incidents"]
            .as_array()
            .context("incidents")?
            .iter()
            .map(|d| (d["incident"]["name"].as_str().unwrap_or("").to_string(), d["delaySeconds"].as_i64().unwrap_or(-1)))
            .collect();
        ensure!(
            caught == vec![("checkout-outage".to_string(), 30), ("slow-db".to_string(), 45)],
            "detections: {caught:?}\n{}",
            out.stdout
        );
        let detected: Vec<&str> = v["report"]["incidents"]
            .as_array()
            .context("incidents")?
            .iter()
            .filter_map(|d| d["caughtBy"]["ended"].as_str())
            .collect();
        ensure!(detected == [rfc3339(m(21.0)), rfc3339(m(41.0))], "{detected:?}");
        let falses: Vec<&str> = v["report"]["falseFailures"]
            .as_array()
            .context("false failures")?
            .iter()
            .filter_map(|f| f["ended"].as_str())
            .collect();
        ensure!(falses == [rfc3339(m(9.0)), rfc3339(m(51.0))], "false failures: {falses:?}");
        // 60 steps; failed run-ends at 9, 21..=26, 41..=43 and 51 minutes.
        let s = &v["summary"];
        ensure!(
            s["evaluations"] == 60 && s["failed"] == 11 && s["inconclusive"] == 0 && s["caught"] == 2 && s["falseFailures"] == 2,
            "summary: {s}"
        );

        // The burnRate metric, a dry run: 1x on the base 1 % (objective 99 %), failing where
        // both its 5m and 1m windows burn above 10x, e.g. at 25m (5m: (0.3 + 81) / 300 =
        // 0.271, 27.1x; 1m: 30x; the value is the lower, 27.10). The web metric cannot be
        // replayed.
        let burn_at = |min: f64| -> Option<Value> {
            v["rows"].as_array()?.iter().find(|r| r["at"] == rfc3339(m(min)).as_str())?["cells"]
                .as_array()?
                .iter()
                .find(|c| c["metric"] == "burn")
                .cloned()
        };
        let (ok, hot) = (burn_at(5.0).context("burn at 5m")?, burn_at(25.0).context("burn at 25m")?);
        ensure!(ok["phase"] == "Successful" && ok["dryRun"] == true, "burn at 5m: {ok}");
        ensure!(hot["phase"] == "Failed" && hot["value"] == "27.10", "burn at 25m: {hot}");
        ensure!(v["skipped"][0]["metric"] == "smoke" && v["skipped"][0]["provider"] == "web", "{}", v["skipped"]);
        ensure!(v["notes"].to_string().contains("budget"), "{}", v["notes"]);

        // The text: one line a step, the runs, the incidents, the summary.
        let mut text_args = with(&[]);
        text_args.extend(["--prometheus".to_string(), url.clone()]);
        let out = run(text_args).await?;
        show("backtest (text)", &out);
        ensure!(out.code == 0, "{}", out.stderr);
        for want in [
            format!("{}    7  [0.155] FAIL", rfc3339(m(26.0))),
            "← run 7 ends Failed".to_string(),
            format!("caught  checkout-outage ({} to {}): run 2 failed at {}, 30s after it began", rfc3339(incident1.0), rfc3339(incident1.1), rfc3339(m(21.0))),
            "45s after it began".to_string(),
            format!("{}  errors = [0.255]  (run 1)", rfc3339(m(9.0))),
            "Summary: 60 evaluations, 11 runs ended (11 failed, 0 inconclusive); 2 of 2 incidents caught; 2 false failures".to_string(),
        ] {
            ensure!(out.stdout.contains(&want), "{want:?} not in the text");
        }

        // The template's own address is unreachable from here: exit 1, and the way round.
        let out = run(with(&[])).await?;
        show("backtest without --prometheus", &out);
        ensure!(out.code == 1 && out.stderr.contains("port-forward") && out.stderr.contains("--prometheus"), "{}", out.stderr);

        // Usage errors: exit 1 with a clear message, never a panic.
        for (args, want) in [
            (vec!["backtest", "error-rate", "--rollout", "web", "--from", "-1h", "--to", "-2h"], "must be before"),
            (vec!["backtest", "error-rate", "--rollout", "web", "--from", "yesterday"], "is not a time"),
            (vec!["backtest", "error-rat", "--rollout", "web", "--from", "-1h"], "did you mean error-rate"),
            (vec!["backtest", "unused", "--rollout", "web", "--from", "-1h"], "its analyses use: AnalysisTemplate error-rate (background analysis)"),
            (vec!["backtest", "error-rate", "--rollout", "nope", "--from", "-1h"], "not found"),
            (vec!["backtest", "error-rate", "--rollout", "web", "--from", "-1h", "--interval", "soon"], "--interval"),
            (vec!["backtest", "error-rate", "--rollout", "web", "--from", "-400d"], "narrow the range"),
        ] {
            let out = sluice(&env, &args).await?;
            ensure!(
                out.code == 1 && out.stderr.contains(want) && !out.stderr.contains("panicked"),
                "{args:?}: exit {}, stderr {:?} (wanted {want:?})",
                out.code,
                out.stderr
            );
        }
        drop(prom);
        Ok(())
    })
    .await;
}
