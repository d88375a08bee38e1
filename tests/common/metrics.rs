//! Prometheus text as the controller, the API server and the traffic simulator serve it.

use std::collections::BTreeMap;

use super::{ControllerProcess, http_get};

/// The samples of `metric` in a Prometheus text exposition: labels and value.
pub fn samples(text: &str, metric: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (head, value) = l.rsplit_once(' ')?;
            let (name, labels) = match head.split_once('{') {
                Some((n, rest)) => (n, rest.strip_suffix('}')?),
                None => (head, ""),
            };
            if name != metric {
                return None;
            }
            let mut map = BTreeMap::new();
            let mut rest = labels;
            while let Some((key, after)) = rest.split_once("=\"") {
                let end = after.find('"')?;
                map.insert(
                    key.trim_start_matches(',').to_string(),
                    after[..end].to_string(),
                );
                rest = &after[end + 1..];
            }
            Some((map, value.trim().parse().ok()?))
        })
        .collect()
}

/// The controller's failed reconciles by reason (`sluice_reconcile_errors_total`), from its
/// own /metrics.
pub async fn reconcile_errors(
    controller: &ControllerProcess,
) -> anyhow::Result<BTreeMap<String, u64>> {
    let (code, body) = http_get(controller, "/metrics").await?;
    anyhow::ensure!(code == 200, "/metrics answered {code}");
    Ok(samples(&body, "sluice_reconcile_errors_total")
        .into_iter()
        .filter_map(|(labels, v)| Some((labels.get("reason")?.clone(), v as u64)))
        .collect())
}
