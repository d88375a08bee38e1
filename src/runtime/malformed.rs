//! Objects the API server accepted but Sluice cannot read stay on their own.
//!
//! The CRDs keep unknown fields in the pod template and a Job spec, so a value of the wrong
//! type (`containerPort: "eighty"`) passes the API server and fails Sluice's deserialization.
//! A watch of `K` would fail its whole list on that one object and stall every object of the
//! kind; a watch of [`Parsed<K>`] yields the object either read or as [`Malformed`], which names
//! the field (serde's path) and the error, so the reconcile can report it and move on. Like
//! kube-runtime's `DeserializeGuard`, which does not say where the error is.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::runtime::events::EventType;

use super::events::Events;
use serde::{Deserialize, Deserializer};

/// The Event reason (and, on a Rollout, the condition) for an object that does not read.
pub const REASON: &str = "InvalidSpec";

/// An object as read from the API server: `Ok` when it deserializes, `Err` when it does not.
#[derive(Clone, Debug)]
pub struct Parsed<K>(pub Result<K, Malformed>);

/// An object that does not deserialize: its metadata, its status as JSON (Sluice wrote it, so
/// it is usually readable on its own), and what is wrong.
#[derive(Clone, Debug, PartialEq)]
pub struct Malformed {
    pub metadata: ObjectMeta,
    pub status: Option<serde_json::Value>,
    /// serde's path to the value that does not read (`spec.template.spec...containerPort`).
    pub field: String,
    /// serde's error for it (`invalid type: string "eighty", expected i32`).
    pub error: String,
}

impl Malformed {
    /// One line for a condition and an Event.
    pub fn describe(&self) -> String {
        format!("field {}: {}", self.field, self.error)
    }
}

impl<K: Resource> Parsed<K> {
    /// The object, when it reads.
    pub fn ok(&self) -> Option<&K> {
        self.0.as_ref().ok()
    }
}

/// What this process already reported per object (`namespace/name` of a kind), so an object
/// that stays malformed gets one Event per distinct error, not one per wake-up.
#[derive(Default)]
pub struct Reported(Mutex<HashMap<String, String>>);

impl Reported {
    /// True the first time `message` is reported for `key` (a different message replaces it).
    pub fn first(&self, key: String, message: &str) -> bool {
        let Ok(mut seen) = self.0.lock() else {
            return true;
        };
        seen.insert(key, message.to_string()).as_deref() != Some(message)
    }

    /// `key` reads again: a later error is new, even if it is the same as before.
    pub fn forget(&self, key: &str) {
        if let Ok(mut seen) = self.0.lock() {
            seen.remove(key);
        }
    }
}

/// Publishes the Warning Event for an object that does not read. Best effort: the object is
/// left alone either way until it changes.
pub fn publish(events: &Events, reference: &ObjectReference, message: &str) {
    super::events::publish(
        events,
        reference,
        EventType::Warning,
        REASON,
        message,
        "Read",
    );
}

/// Reads `value` as `K`, or says which field does not read and why.
pub fn parse<K: serde::de::DeserializeOwned>(
    mut value: serde_json::Value,
) -> Result<Result<K, Malformed>, serde_json::Error> {
    match serde_path_to_error::deserialize::<_, K>(&value) {
        Ok(k) => Ok(Ok(k)),
        Err(e) => {
            let field = e.path().to_string();
            let error = e.into_inner().to_string();
            let metadata = serde_json::from_value(value["metadata"].take())?;
            let status = value.get_mut("status").map(serde_json::Value::take);
            Ok(Err(Malformed {
                metadata,
                status,
                field,
                error,
            }))
        }
    }
}

impl<'de, K> Deserialize<'de> for Parsed<K>
where
    K: serde::de::DeserializeOwned + Resource,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        parse(value).map(Parsed).map_err(serde::de::Error::custom)
    }
}

impl<K: Resource> Resource for Parsed<K> {
    type DynamicType = K::DynamicType;
    type Scope = K::Scope;

    fn kind(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::kind(dt)
    }
    fn group(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::group(dt)
    }
    fn version(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::version(dt)
    }
    fn plural(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        match &self.0 {
            Ok(k) => k.meta(),
            Err(m) => &m.metadata,
        }
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        match &mut self.0 {
            Ok(k) => k.meta_mut(),
            Err(m) => &mut m.metadata,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::analysis::AnalysisTemplate;
    use crate::api::rollout::Rollout;
    use serde_json::json;

    #[test]
    fn a_pod_template_of_the_wrong_type_names_its_field() {
        let p: Parsed<Rollout> = serde_json::from_value(json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {
                "strategy": {"canary": {}},
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [
                    {"name": "web", "image": "web:1", "ports": [{"containerPort": "eighty"}]}
                ]}}
            },
            "status": {"phase": "Healthy"}
        }))
        .expect("a malformed object still deserializes as Parsed");
        let bad = p.0.clone().expect_err("the template does not read");
        assert_eq!(
            bad.field,
            "spec.template.spec.containers[0].ports[0].containerPort"
        );
        assert!(bad.error.contains("\"eighty\""), "{}", bad.error);
        assert_eq!(p.meta().name.as_deref(), Some("web"));
        assert_eq!(bad.status, Some(json!({"phase": "Healthy"})));
    }

    #[test]
    fn a_job_spec_of_the_wrong_type_names_its_field_and_a_good_object_reads() {
        let metric = |backoff: serde_json::Value| {
            json!({
                "apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisTemplate",
                "metadata": {"name": "smoke", "namespace": "shop"},
                "spec": {"metrics": [{"name": "smoke", "provider": {"job": {"spec": {
                    "backoffLimit": backoff,
                    "template": {"spec": {"restartPolicy": "Never",
                        "containers": [{"name": "t", "image": "busybox"}]}}
                }}}}]}
            })
        };
        let bad: Parsed<AnalysisTemplate> =
            serde_json::from_value(metric(json!("two"))).expect("parsed");
        let bad = bad.0.expect_err("backoffLimit is a number");
        assert_eq!(bad.field, "spec.metrics[0].provider.job.spec.backoffLimit");
        let good: Parsed<AnalysisTemplate> =
            serde_json::from_value(metric(json!(2))).expect("parsed");
        assert!(good.ok().is_some());
    }

    #[test]
    fn an_object_without_readable_metadata_is_an_error() {
        let r = serde_json::from_value::<Parsed<Rollout>>(json!({"metadata": 3, "spec": 4}));
        assert!(r.is_err());
    }
}
