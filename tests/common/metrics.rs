//! Prometheus text as the controller, the API server and the traffic simulator serve it.

use std::collections::BTreeMap;

use super::{ControllerProcess, http_get};

pub use e2e::promtext::samples;

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
