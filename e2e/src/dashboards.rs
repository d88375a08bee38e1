//! The Grafana dashboards in `dashboards/`: every query of every panel, annotation and
//! template variable, with Grafana's variables filled in, run against a real Prometheus over
//! a time range; each must return data, so a renamed metric never leaves an empty panel.

use std::path::{Path, PathBuf};

use anyhow::{Context, ensure};
use serde_json::Value;

use crate::prometheus::Prometheus;

/// One query of a dashboard.
#[derive(Clone, Debug)]
pub struct Query {
    pub dashboard: String,
    /// The panel's title (or `annotation: NAME`, `variable: NAME`).
    pub place: String,
    /// As written in the dashboard.
    pub expr: String,
}

/// The repository's dashboards directory.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards")
}

/// Every query of the dashboards (`*.json`) in `dir`, in file order.
pub fn queries(dir: &Path) -> anyhow::Result<Vec<Query>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        let d: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", file.display()))?;
        let dashboard = d["title"].as_str().unwrap_or("?").to_string();
        let mut panels: Vec<&Value> = Vec::new();
        for p in d["panels"].as_array().into_iter().flatten() {
            panels.push(p);
            panels.extend(p["panels"].as_array().into_iter().flatten());
        }
        for p in panels {
            let title = p["title"].as_str().unwrap_or("?");
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = t["expr"].as_str() {
                    out.push(Query {
                        dashboard: dashboard.clone(),
                        place: format!("{title} ({})", t["refId"].as_str().unwrap_or("?")),
                        expr: expr.to_string(),
                    });
                }
            }
        }
        for a in d["annotations"]["list"].as_array().into_iter().flatten() {
            if let Some(expr) = a["expr"].as_str() {
                out.push(Query {
                    dashboard: dashboard.clone(),
                    place: format!("annotation: {}", a["name"].as_str().unwrap_or("?")),
                    expr: expr.to_string(),
                });
            }
        }
        for v in d["templating"]["list"].as_array().into_iter().flatten() {
            if v["type"] != "query" {
                continue;
            }
            let q = v["query"]["query"].as_str().or(v["query"].as_str());
            if let Some(q) = q {
                out.push(Query {
                    dashboard: dashboard.clone(),
                    place: format!("variable: {}", v["name"].as_str().unwrap_or("?")),
                    expr: q.to_string(),
                });
            }
        }
    }
    Ok(out)
}

/// `expr` as Grafana sends it to Prometheus: its variables replaced (`vars` by name, as
/// `$name` and `${name}`; `$__rate_interval`, `$__interval` and `$__range` by the given
/// durations), and a variable's `label_values(METRIC, LABEL)` as the PromQL that answers it.
pub fn prepared(expr: &str, vars: &[(&str, &str)], rate_interval: &str, range: &str) -> String {
    let mut e = expr
        .replace("$__rate_interval", rate_interval)
        .replace("$__interval", "15s")
        .replace("$__range", range);
    for (name, value) in vars {
        e = e
            .replace(&format!("${{{name}}}"), value)
            .replace(&format!("${name}"), value);
    }
    if let Some(inner) = e
        .trim()
        .strip_prefix("label_values(")
        .and_then(|r| r.strip_suffix(')'))
    {
        if let Some((metric, label)) = inner.rsplit_once(',') {
            return format!("count by ({}) ({})", label.trim(), metric.trim());
        }
        return format!("count by ({}) ({{__name__=~\".+\"}})", inner.trim());
    }
    e
}

/// What one query returned: the series and their numeric points over the range.
#[derive(Debug)]
pub struct Answer {
    pub query: Query,
    pub sent: String,
    pub series: usize,
    pub points: usize,
}

/// Runs every query of the dashboards in `dir` against `prometheus` from `start` to `end`
/// (Unix seconds), with `vars`; fails naming each query that returned no data.
pub async fn check(
    prometheus: &Prometheus,
    dir: &Path,
    vars: &[(&str, &str)],
    start: f64,
    end: f64,
) -> anyhow::Result<Vec<Answer>> {
    let step = 2.0;
    // The last point is evaluated at `end` itself: a sample Prometheus had when the caller
    // asked is in it.
    let start = end - ((end - start) / step).floor() * step;
    let range = format!("{}s", ((end - start).ceil() as u64).max(60));
    let mut answers = Vec::new();
    for q in queries(dir)? {
        let sent = prepared(&q.expr, vars, "15s", &range);
        let points = prometheus
            .query_range(&sent, start, end, step)
            .await
            .with_context(|| format!("{} › {}", q.dashboard, q.place))?;
        answers.push(Answer {
            series: points.iter().filter(|p| **p > 0).count(),
            points: points.iter().sum(),
            sent,
            query: q,
        });
    }
    ensure!(!answers.is_empty(), "no query in {}", dir.display());
    let empty: Vec<String> = answers
        .iter()
        .filter(|a| a.points == 0)
        .map(|a| format!("{} › {}: {}", a.query.dashboard, a.query.place, a.sent))
        .collect();
    ensure!(
        empty.is_empty(),
        "dashboard queries that returned no data:\n  {}",
        empty.join("\n  ")
    );
    Ok(answers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grafana_variables_are_filled_in_as_grafana_does() {
        let vars = [("namespace", "shop"), ("rollout", "web")];
        assert_eq!(
            prepared(
                r#"rate(x{namespace="$namespace", rollout="${rollout}"}[$__rate_interval])"#,
                &vars,
                "15s",
                "300s"
            ),
            r#"rate(x{namespace="shop", rollout="web"}[15s])"#
        );
        assert_eq!(
            prepared("increase(x[$__range])", &vars, "15s", "300s"),
            "increase(x[300s])"
        );
        assert_eq!(
            prepared(
                r#"label_values(sluice_rollout_phase{namespace="$namespace"}, rollout)"#,
                &vars,
                "15s",
                "300s"
            ),
            r#"count by (rollout) (sluice_rollout_phase{namespace="shop"})"#
        );
    }

    /// The README's table of each dashboard lists every panel with its queries.
    #[test]
    fn the_readme_lists_every_panel_and_its_queries() {
        let readme = std::fs::read_to_string(dir().join("../README.md")).expect("README");
        for q in queries(&dir()).expect("dashboards") {
            if q.place.starts_with("variable: ") {
                continue;
            }
            let written = format!("`{}`", q.expr.replace('|', "\\|"));
            assert!(
                readme.contains(&written),
                "README does not list {} › {}: {written}",
                q.dashboard,
                q.place
            );
        }
    }

    #[test]
    fn every_panel_annotation_and_variable_query_of_the_dashboards_is_found() {
        let qs = queries(&dir()).expect("dashboards");
        for (dashboard, place) in [
            ("Sluice / Fleet", "Rollouts by phase (A)"),
            ("Sluice / Fleet", "variable: namespace"),
            ("Sluice / Rollout", "Latency by revision (p50, p99) (B)"),
            ("Sluice / Rollout", "annotation: Aborts"),
            ("Sluice / Rollout", "variable: rollout"),
        ] {
            assert!(
                qs.iter()
                    .any(|q| q.dashboard == dashboard && q.place == place),
                "{dashboard} › {place} not found in {qs:?}"
            );
        }
    }
}
