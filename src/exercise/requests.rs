//! The queries that count the requests an exercise's faulty revision served, pure.
//!
//! By default they read Istio's standard metrics as the sidecars report them
//! (`reporter="destination"`): `istio_requests_total` of the revision's pods, told apart by
//! `destination_canonical_revision` (Istio takes it from the pod's
//! `service.istio.io/canonical-revision` label; set it to the pod-template hash, or give
//! queries of your own). A new revision's counters start at zero, so the largest value each
//! series reached within the run is what it served: `max_over_time`, summed over the series.

use crate::api::exercise::RequestCount;

/// What the queries are filled in with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vars {
    pub namespace: String,
    pub rollout: String,
    /// The faulty revision's pod-template hash.
    pub revision: String,
    /// A PromQL range covering the run, such as `600s`.
    pub window: String,
}

const SELECTOR: &str = r#"reporter="destination",destination_workload_namespace="{{namespace}}",destination_canonical_revision="{{revision}}""#;

/// The query for every request, and for the failed ones (5xx), filled in.
pub fn queries(spec: &RequestCount, vars: &Vars) -> (String, String) {
    let total = spec.total_query.clone().unwrap_or_else(|| {
        format!("sum(max_over_time(istio_requests_total{{{SELECTOR}}}[{{{{window}}}}]))")
    });
    let failed = spec.failed_query.clone().unwrap_or_else(|| {
        format!(
            r#"sum(max_over_time(istio_requests_total{{{SELECTOR},response_code=~"5.."}}[{{{{window}}}}]))"#
        )
    });
    (fill(&total, vars), fill(&failed, vars))
}

fn fill(query: &str, v: &Vars) -> String {
    query
        .replace("{{namespace}}", &v.namespace)
        .replace("{{rollout}}", &v.rollout)
        .replace("{{revision}}", &v.revision)
        .replace("{{window}}", &v.window)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        Vars {
            namespace: "shop".into(),
            rollout: "web".into(),
            revision: "6f9c".into(),
            window: "600s".into(),
        }
    }

    #[test]
    fn the_default_queries_read_istio_metrics_of_the_revision() {
        let spec = RequestCount {
            prometheus_address: "http://prometheus:9090".into(),
            ..RequestCount::default()
        };
        let (total, failed) = queries(&spec, &vars());
        assert_eq!(
            total,
            r#"sum(max_over_time(istio_requests_total{reporter="destination",destination_workload_namespace="shop",destination_canonical_revision="6f9c"}[600s]))"#
        );
        assert_eq!(
            failed,
            r#"sum(max_over_time(istio_requests_total{reporter="destination",destination_workload_namespace="shop",destination_canonical_revision="6f9c",response_code=~"5.."}[600s]))"#
        );
    }

    #[test]
    fn queries_of_ones_own_are_filled_in() {
        let spec = RequestCount {
            prometheus_address: "http://prometheus:9090".into(),
            total_query: Some("sum(increase(http_requests_total{app=\"{{rollout}}\",rev=\"{{revision}}\",ns=\"{{namespace}}\"}[{{window}}]))".into()),
            failed_query: Some("0".into()),
            ..RequestCount::default()
        };
        let (total, failed) = queries(&spec, &vars());
        assert_eq!(
            total,
            "sum(increase(http_requests_total{app=\"web\",rev=\"6f9c\",ns=\"shop\"}[600s]))"
        );
        assert_eq!(failed, "0");
    }
}
