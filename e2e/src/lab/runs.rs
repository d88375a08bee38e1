//! The AnalysisRuns of a lab's namespace, as a learner reads them with
//! `kubectl get analysisrun NAME -o yaml`: each metric's measurements with their phase, value
//! and time.

use kube::api::{DynamicObject, ListParams};
use kube::{Api, Client};
use serde_json::Value;

use crate::shop;

/// One measurement of a metric.
#[derive(Clone, Debug, PartialEq)]
pub struct Measurement {
    pub metric: String,
    pub run: String,
    /// Successful, Failed, Inconclusive or Error.
    pub phase: String,
    pub value: String,
    pub message: String,
    /// When it finished (Unix seconds; Kubernetes keeps whole seconds).
    pub finished: Option<f64>,
}

/// Every measurement of every run in `ns`, oldest first.
pub async fn measurements(client: &Client, ns: &str) -> anyhow::Result<Vec<Measurement>> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), ns, &shop::analysis_run_resource());
    let mut out = Vec::new();
    for run in api.list(&ListParams::default()).await?.items {
        out.extend(of_run(
            &run.data,
            run.metadata.name.as_deref().unwrap_or(""),
        ));
    }
    out.sort_by(|a, b| {
        a.finished
            .partial_cmp(&b.finished)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    Ok(out)
}

/// The measurements recorded in one run's JSON.
pub fn of_run(data: &Value, run: &str) -> Vec<Measurement> {
    let s = |v: &Value, k: &str| v[k].as_str().unwrap_or("").to_string();
    let mut out = Vec::new();
    let metrics = data
        .pointer("/status/metricResults")
        .and_then(Value::as_array);
    for m in metrics.into_iter().flatten() {
        for x in m["measurements"].as_array().into_iter().flatten() {
            out.push(Measurement {
                metric: s(m, "name"),
                run: run.to_string(),
                phase: s(x, "phase"),
                value: s(x, "value"),
                message: s(x, "message"),
                finished: x["finishedAt"]
                    .as_str()
                    .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
                    .map(|t| t.as_millisecond() as f64 / 1000.0),
            });
        }
    }
    out
}

/// The first measurement in `phase` of `metric` (any metric when `None`).
pub fn first<'a>(
    ms: &'a [Measurement],
    phase: &str,
    metric: Option<&str>,
) -> Option<&'a Measurement> {
    ms.iter()
        .find(|m| m.phase == phase && metric.is_none_or(|n| m.metric == n))
}

/// The first number of a measured value as a run records it (`[0.85]`, `0.85`).
pub fn first_number(value: &str) -> Option<f64> {
    match serde_json::from_str::<Value>(value).ok()? {
        Value::Array(a) => a.first().and_then(Value::as_f64),
        v => v.as_f64(),
    }
}

/// A provider's error without the request's URL: what follows the `(http...): ` that names
/// it (`client error (Connect): tcp connect error: Connection refused (os error 111)`).
pub fn short(message: &str) -> String {
    let after_url = message
        .find("(http")
        .and_then(|u| message[u..].find("): ").map(|i| u + i + 3));
    match after_url {
        Some(i) => message[i..].to_string(),
        None => message.to_string(),
    }
}

/// How many measurements are in `phase`.
pub fn count(ms: &[Measurement], phase: &str) -> usize {
    ms.iter().filter(|m| m.phase == phase).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn measurements_come_with_their_metric_and_time() {
        let run = json!({"status": {"metricResults": [
            {"name": "success-rate", "measurements": [
                {"phase": "Successful", "value": "[1]", "finishedAt": "2026-12-01T10:00:02Z"},
                {"phase": "Failed", "value": "[0.79]", "finishedAt": "2026-12-01T10:00:04Z"}]},
            {"name": "latency-p99", "measurements": [
                {"phase": "Error", "message": "connection refused", "finishedAt": "2026-12-01T10:00:03Z"}]}
        ]}});
        let ms = of_run(&run, "r");
        assert_eq!(ms.len(), 3);
        let failed = first(&ms, "Failed", Some("success-rate"));
        assert_eq!(failed.map(|m| m.value.as_str()), Some("[0.79]"));
        assert_eq!(first(&ms, "Failed", Some("latency-p99")), None);
        assert_eq!(count(&ms, "Error"), 1);
        assert_eq!(
            short(
                "query failed: error sending request for url (http://x/api?q=1): client error (Connect): refused"
            ),
            "client error (Connect): refused"
        );
        assert_eq!(short("no data"), "no data");
        assert_eq!(first_number("[0.79]"), Some(0.79));
        assert_eq!(first_number("412.5"), Some(412.5));
        assert_eq!(first_number("[]"), None);
        let t = ms[0].finished.unwrap_or(0.0);
        assert_eq!(ms[1].finished.map(|x| x - t), Some(2.0));
    }
}
