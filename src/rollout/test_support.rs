//! Fixtures shared by the pure core's table tests.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use super::hash::pod_template_hash;

/// A fixed instant plus `s` seconds.
pub fn at(s: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + s).expect("timestamp")
}

/// The pod template of app `web` running `image`.
pub fn template(image: &str) -> PodTemplateSpec {
    serde_json::from_value(json!({
        "metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": image}]}
    }))
    .expect("template")
}

/// The revision hash of `template(image)`.
pub fn hash(image: &str) -> String {
    pod_template_hash(&template(image))
}
