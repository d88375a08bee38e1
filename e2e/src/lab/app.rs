//! What each lab deploys, pure: the shop's Rollout and AnalysisTemplate, and the release
//! that goes wrong. Every lab runs the same shop (4 pods, a canary over the Istio
//! VirtualService `shop`); what changes is the release and, for two labs, the steps.

use serde_json::{Value, json};

use crate::nodesim::{BEHAVIOUR_ANNOTATION, EXIT_CODE_ANNOTATION};
use crate::shop::NAME;
use crate::trafficsim::{ERROR_RATE_ANNOTATION, LATENCY_ANNOTATION};

/// The AnalysisTemplate every lab with analysis uses.
pub const TEMPLATE: &str = "shop-slo";
/// Its metrics.
pub const SUCCESS_METRIC: &str = "success-rate";
pub const LATENCY_METRIC: &str = "latency-p99";
/// The shop's pods.
pub const REPLICAS: i64 = 4;
/// The canary's share at the first step.
pub const FIRST_WEIGHT: i64 = 25;
/// The image every lab starts from.
pub const GOOD_IMAGE: &str = "registry.example/shop:1.0";

/// A version of the shop: its image and how its pods behave.
#[derive(Clone, Debug, PartialEq)]
pub struct Version {
    pub image: &'static str,
    /// `sim.sluice.dev/behaviour`: ready, crashloop, image-pull, never-ready.
    pub behaviour: &'static str,
    /// The share of requests the pods answer with 500.
    pub error_rate: f64,
    /// Their response time in milliseconds.
    pub latency_ms: u32,
}

impl Version {
    /// 1.0: healthy, answers every request in about 10 ms.
    pub fn good() -> Version {
        Version {
            image: GOOD_IMAGE,
            behaviour: "ready",
            error_rate: 0.0,
            latency_ms: 10,
        }
    }

    /// The pod template's metadata and spec.
    pub fn template(&self) -> Value {
        json!({
            "metadata": {"labels": {"app": NAME}, "annotations": {
                BEHAVIOUR_ANNOTATION: self.behaviour,
                EXIT_CODE_ANNOTATION: "1",
                ERROR_RATE_ANNOTATION: format!("{}", self.error_rate),
                LATENCY_ANNOTATION: format!("{}", self.latency_ms),
            }},
            "spec": {"containers": [{
                "name": NAME,
                "image": self.image,
                "ports": [{"containerPort": 8080}],
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 5}
            }]}
        })
    }
}

/// How the shop's release is shaped in a lab.
#[derive(Clone, Debug, PartialEq)]
pub struct Shape {
    /// With an analysis step after the first weight (else a pause without end).
    pub analysis: bool,
    /// `progressDeadlineSeconds`.
    pub progress_deadline: u32,
    /// `abortScaleDownDelaySeconds`: how long an aborted revision's pods stay to be looked at.
    pub abort_scale_down_delay: u32,
}

/// The Rollout `shop` at `version`, its analysis reading Prometheus at `prometheus`.
pub fn rollout(shape: &Shape, version: &Version, prometheus: &str) -> Value {
    let second = if shape.analysis {
        json!({"analysis": {"templates": [{"templateName": TEMPLATE}], "args": [
            {"name": "service", "value": "shop-canary"},
            {"name": "prometheus", "value": prometheus}]}})
    } else {
        json!({"pause": {}})
    };
    json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout", "metadata": {"name": NAME},
        "spec": {
            "replicas": REPLICAS,
            "progressDeadlineSeconds": shape.progress_deadline,
            "selector": {"matchLabels": {"app": NAME}},
            "template": version.template(),
            "strategy": {"canary": {
                "stableService": "shop-stable",
                "canaryService": "shop-canary",
                "scaleDownDelaySeconds": 3,
                "abortScaleDownDelaySeconds": shape.abort_scale_down_delay,
                "trafficRouting": {"istio": {"virtualService": {"name": NAME, "routes": ["primary"]}}},
                "steps": [
                    {"setWeight": FIRST_WEIGHT},
                    second,
                    {"setWeight": 50},
                    {"pause": {"duration": "2s"}}
                ]
            }}
        }
    })
}

/// The merge patch that releases `version`.
pub fn release(version: &Version) -> Value {
    json!({"spec": {"template": version.template()}})
}

/// The AnalysisTemplate `shop-slo`: the canary Service's success rate (at least 95%) and its
/// 99th percentile response time (under 100 ms), from Istio's metrics, every 3 s, 6 times.
/// Two provider errors in a row are tolerated (the default is 4), so an outage shows sooner;
/// four measurements without data are (a Prometheus that has just started has none for its
/// first seconds: it scrapes a few seconds after it starts, and a rate needs two scrapes).
pub fn analysis_template() -> Value {
    let metric = |name: &str, condition: &str, query: &str| {
        json!({
            "name": name,
            "initialDelay": "4s",
            "interval": "3s",
            "count": 6,
            "inconclusiveLimit": 4,
            "consecutiveErrorLimit": 2,
            "successCondition": condition,
            "provider": {"prometheus": {"address": "{{args.prometheus}}", "query": query}}
        })
    };
    let service = "destination_service_name=\"{{args.service}}\"";
    json!({
        "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisTemplate",
        "metadata": {"name": TEMPLATE},
        "spec": {
            "args": [{"name": "service"}, {"name": "prometheus"}],
            "metrics": [
                metric(
                    SUCCESS_METRIC,
                    "result[0] >= 0.95",
                    &format!("sum(rate(istio_requests_total{{{service},response_code!~\"5..\"}}[10s])) / sum(rate(istio_requests_total{{{service}}}[10s]))"),
                ),
                metric(
                    LATENCY_METRIC,
                    "result[0] < 100",
                    &format!("histogram_quantile(0.99, sum by (le) (rate(istio_request_duration_milliseconds_bucket{{{service}}}[10s])))"),
                ),
            ]
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(analysis: bool) -> Shape {
        Shape {
            analysis,
            progress_deadline: 15,
            abort_scale_down_delay: 5,
        }
    }

    #[test]
    fn the_analysis_step_follows_the_first_weight() {
        let ro = rollout(&shape(true), &Version::good(), "http://127.0.0.1:9");
        let steps = &ro["spec"]["strategy"]["canary"]["steps"];
        assert_eq!(steps[0]["setWeight"], FIRST_WEIGHT);
        assert_eq!(
            steps[1]["analysis"]["templates"][0]["templateName"],
            TEMPLATE
        );
        assert_eq!(
            steps[1]["analysis"]["args"][1]["value"],
            "http://127.0.0.1:9"
        );
    }

    #[test]
    fn without_analysis_the_release_waits_for_a_person() {
        let ro = rollout(&shape(false), &Version::good(), "x");
        assert_eq!(
            ro["spec"]["strategy"]["canary"]["steps"][1],
            json!({"pause": {}})
        );
    }

    #[test]
    fn a_release_carries_the_faults_in_the_pod_template() {
        let bad = Version {
            image: "registry.example/shop:1.1",
            behaviour: "crashloop",
            error_rate: 0.2,
            latency_ms: 400,
        };
        let patch = release(&bad);
        let ann = &patch["spec"]["template"]["metadata"]["annotations"];
        assert_eq!(ann[BEHAVIOUR_ANNOTATION], "crashloop");
        assert_eq!(ann[ERROR_RATE_ANNOTATION], "0.2");
        assert_eq!(ann[LATENCY_ANNOTATION], "400");
        assert_eq!(
            patch["spec"]["template"]["spec"]["containers"][0]["image"],
            "registry.example/shop:1.1"
        );
    }

    #[test]
    fn both_metrics_read_the_canary_service() {
        let t = analysis_template();
        for m in t["spec"]["metrics"].as_array().into_iter().flatten() {
            let q = m["provider"]["prometheus"]["query"].as_str().unwrap_or("");
            assert!(
                q.contains("destination_service_name=\"{{args.service}}\""),
                "{q}"
            );
        }
    }
}
