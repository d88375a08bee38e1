//! An hour of past traffic, backfilled into a real Prometheus (Debian's prometheus and
//! promtool): the series e2e::history writes, turned into blocks by promtool, answer the
//! Istio error-rate query at 1 m steps exactly as the description says, and `increase()` over
//! the hour counts every request. Needs no Kubernetes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, ensure};
use e2e::history::{History, Revision, backfill};
use e2e::prometheus::Prometheus;
use e2e::trafficsim::IstioLabels;
use e2e::wait_for;

const RPS: f64 = 100.0;
const BASE_ERROR_RATE: f64 = 0.01;
const INCIDENT_ERROR_RATE: f64 = 0.30;
const SCRAPE: Duration = Duration::from_secs(15);
const LIMIT: Duration = Duration::from_secs(60);
const ERROR_RATIO: &str = r#"sum(rate(istio_requests_total{response_code="500"}[1m])) / sum(rate(istio_requests_total[1m]))"#;

#[tokio::test]
async fn an_hour_of_past_traffic_answers_promql_exactly() -> anyhow::Result<()> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    // One hour ending two hours ago, on whole minutes.
    let end = (now / 60 * 60 - 2 * 3600) as f64;
    let start = end - 3600.0;
    // Off the minute grid and off the 15 s scrape grid: 20 min 7 s in, for 5 minutes.
    let incident = (start + 20.0 * 60.0 + 7.0, start + 25.0 * 60.0 + 7.0);
    let labels = IstioLabels::answered("shop", "web", "web", "web", "6d4f9c7b8d", 200);
    let revision = Revision::new(labels, RPS, BASE_ERROR_RATE, 40.0).with_episode(
        incident.0,
        incident.1,
        INCIDENT_ERROR_RATE,
    );
    let history = History {
        start,
        end,
        scrape_interval: SCRAPE,
        revisions: vec![revision.clone()],
    };

    let dir = std::env::temp_dir().join(format!("history-backfill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("history.om");
    history.write_openmetrics(&file)?;
    let data = dir.join("data");
    backfill(&file, &data).await?;
    let blocks = std::fs::read_dir(&data)?
        .filter_map(Result::ok)
        .filter(|e| e.path().join("meta.json").is_file())
        .count();
    ensure!(
        blocks >= 1,
        "promtool wrote no block into {}",
        data.display()
    );

    let prom = Prometheus::start_with_data(&dir, &[], SCRAPE, &data).await?;
    // The blocks are loaded when Prometheus is ready; wait for the series all the same.
    let series = wait_for("the backfilled series", LIMIT, || async {
        let s = prom.query_at("count(istio_requests_total)", end).await?;
        Ok(s.first().filter(|(_, v)| *v == 2.0).map(|(_, v)| *v))
    })
    .await
    .with_context(|| prom.log_tail(20))?;
    ensure!(series == 2.0);

    // The error ratio at each whole minute over [t - 1m, t].
    let result = prom
        .query_range_points(ERROR_RATIO, start, end, 60.0)
        .await?;
    ensure!(result.len() == 1, "one series expected: {result:?}");
    let points = &result[0].1;
    // At `start` the window holds one sample: no rate. Then one point a minute.
    ensure!(
        points.len() == 60 && points[0].0 == start + 60.0,
        "expected the 60 steps from start + 1 m, got {} from {:?}",
        points.len(),
        points.first()
    );
    let first_inside = (incident.0 / 60.0).ceil() * 60.0;
    let mut checked = (0, 0);
    for &(t, v) in points {
        let touched = t > incident.0 && t - 60.0 < incident.1;
        if !touched {
            ensure!(
                (v - BASE_ERROR_RATE).abs() <= 1e-6,
                "at {t} (outside the incident) the error ratio is {v}, not {BASE_ERROR_RATE}"
            );
            checked.0 += 1;
        } else if t == first_inside {
            // 7 s of the window at 1 %, 53 s at 30 %.
            let expected = (BASE_ERROR_RATE * (incident.0 - (t - 60.0))
                + INCIDENT_ERROR_RATE * (t - incident.0))
                / 60.0;
            ensure!(
                (expected - (0.07 + 15.9) / 60.0).abs() < 1e-12,
                "the test's own arithmetic: {expected}"
            );
            ensure!(
                (v - expected).abs() <= 1e-6,
                "at {t} (first step inside the incident) the error ratio is {v}, not {expected}"
            );
            let described = revision.errors_between(t - 60.0, t) / (RPS * 60.0);
            ensure!((described - expected).abs() <= 1e-12);
            checked.1 += 1;
        } else if t - 60.0 >= incident.0 && t <= incident.1 {
            ensure!(
                (v - INCIDENT_ERROR_RATE).abs() <= 1e-6,
                "at {t} (inside the incident) the error ratio is {v}, not {INCIDENT_ERROR_RATE}"
            );
        }
    }
    ensure!(
        checked == (54, 1),
        "steps checked (outside, first inside): {checked:?}"
    );

    // Every request of the hour, counted by increase() at the end.
    let increase = prom
        .query_at("sum(increase(istio_requests_total[1h]))", end)
        .await?;
    let total = increase.first().map(|(_, v)| *v).context("no increase")?;
    let expected = RPS * 3600.0;
    // Prometheus extrapolates to the window's ends; the samples sit on them, so at most a
    // scrape interval's requests of difference.
    ensure!(
        (total - expected).abs() <= RPS * SCRAPE.as_secs_f64(),
        "increase over the hour: {total}, expected {expected}"
    );
    eprintln!(
        "figure: backfilled hour: {blocks} block(s), increase {total} (expected {expected}), \
         error ratio {} at the first step inside the incident",
        points
            .iter()
            .find(|(t, _)| *t == first_inside)
            .map_or(f64::NAN, |(_, v)| *v)
    );

    drop(prom);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
