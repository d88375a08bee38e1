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

/// Reads the JSON text `json` as `K`, or says which field does not read and why: straight
/// from the text first, and only when that fails again through a `Value` with serde's path
/// (what [`parse`] does). The same answer as `parse` of the text's `Value`: whatever the first
/// read refuses goes through `parse`.
pub fn parse_text<K: serde::de::DeserializeOwned>(
    json: &str,
) -> Result<Result<K, Malformed>, serde_json::Error> {
    match serde_json::from_str::<K>(json) {
        Ok(k) => Ok(Ok(k)),
        Err(_) => parse(serde_json::from_str(json)?),
    }
}

impl<'de, K> Deserialize<'de> for Parsed<K>
where
    K: serde::de::DeserializeOwned + Resource,
{
    /// Takes the object's text as it comes where serde_json can hand it over (one copy, where
    /// a `Value` is an allocation per field and string) and reads it with [`parse_text`];
    /// after a restart every Rollout of the cluster comes through here. Where the text is not
    /// at hand (a watch event whose `object` came before its `type` is buffered by serde
    /// first), it reads a `Value` and [`parse`]s that: the same answer either way.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let read = match d.deserialize_newtype_struct(RAW_VALUE, TextOrValue)? {
            Read::Text(text) => parse_text(&text),
            Read::Value(value) => parse(value),
        };
        read.map(Parsed).map_err(serde::de::Error::custom)
    }
}

/// The name serde_json's `RawValue` asks for, to which its deserializers answer with the
/// value's text (a map of one entry under this name) rather than the value. Should a version
/// of serde_json name it differently, the object reads through a `Value` (slower, the same).
const RAW_VALUE: &str = "$serde_json::private::RawValue";

/// An object as handed over: its JSON text, or the value.
enum Read {
    Text(String),
    Value(serde_json::Value),
}

struct TextOrValue;

impl<'de> serde::de::Visitor<'de> for TextOrValue {
    type Value = Read;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a Kubernetes object")
    }

    /// serde_json's answer (one entry named [`RAW_VALUE`] whose value is the text), or, from
    /// a deserializer that does not know the name, the object's own fields.
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Read, A::Error> {
        let Some(first) = map.next_key::<String>()? else {
            return Ok(Read::Value(serde_json::Value::Object(Default::default())));
        };
        if first == RAW_VALUE {
            return Ok(Read::Text(map.next_value()?));
        }
        let mut fields = serde_json::Map::new();
        fields.insert(first, map.next_value()?);
        while let Some((k, v)) = map.next_entry()? {
            fields.insert(k, v);
        }
        Ok(Read::Value(serde_json::Value::Object(fields)))
    }

    /// A deserializer that hands the newtype's content on (serde's own buffer does).
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Read, D::Error> {
        serde_json::Value::deserialize(d).map(Read::Value)
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

    /// The ways the API server hands objects over: a watch event and a list (whose `types`
    /// kube-core reads with `flatten`), each through serde_json's reader, with a good Rollout
    /// and one that does not read.
    #[test]
    fn a_watch_event_and_a_list_read_good_and_malformed_objects() {
        let good = json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "good", "namespace": "shop"},
            "spec": {"strategy": {"canary": {}}, "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [{"name": "web", "image": "web:1"}]}}}
        });
        let mut bad = good.clone();
        bad["metadata"]["name"] = json!("bad");
        bad["spec"]["replicas"] = json!("three");
        // The API server writes `type` first; serde buffers an `object` that comes first.
        for event in [
            format!(r#"{{"type": "ADDED", "object": {bad}}}"#),
            format!(r#"{{"object": {bad}, "type": "ADDED"}}"#),
        ] {
            let read: kube::api::WatchEvent<Parsed<Rollout>> =
                serde_json::from_slice(event.as_bytes()).expect("a watch event reads");
            let kube::api::WatchEvent::Added(p) = read else {
                panic!("an ADDED event");
            };
            let bad_read = p.0.expect_err("replicas is a number");
            assert_eq!(bad_read.field, "spec.replicas");
            assert_eq!(bad_read.status, None);
        }
        let event = format!(r#"{{"type": "MODIFIED", "object": {good}}}"#);
        let read: kube::api::WatchEvent<Parsed<Rollout>> =
            serde_json::from_str(&event).expect("a watch event reads");
        let kube::api::WatchEvent::Modified(p) = read else {
            panic!("a MODIFIED event");
        };
        assert_eq!(p.ok().map(|r| r.spec.replicas), Some(None));
        let list = json!({"apiVersion": "sluice.dev/v1alpha1", "kind": "RolloutList",
            "metadata": {"resourceVersion": "7"}, "items": [good, bad]})
        .to_string();
        let read: kube::core::ObjectList<Parsed<Rollout>> =
            serde_json::from_slice(list.as_bytes()).expect("a list reads");
        let names: Vec<_> = read.items.iter().map(|p| p.meta().name.clone()).collect();
        assert_eq!(names, [Some("good".into()), Some("bad".into())]);
        assert!(read.items[0].ok().is_some());
        assert_eq!(
            read.items[1].0.as_ref().expect_err("malformed").field,
            "spec.replicas"
        );
    }

    /// serde_json hands the object's text over (the fast path), from text and from a
    /// `Value`; serde's buffer hands on the value.
    #[test]
    fn serde_json_hands_over_the_text() {
        let text = r#"{"metadata": {"name": "web"}, "spec": {"replicas": 3}}"#;
        let mut from_text = serde_json::Deserializer::from_str(text);
        let read = from_text
            .deserialize_newtype_struct(RAW_VALUE, TextOrValue)
            .expect("reads");
        assert!(matches!(read, Read::Text(ref t) if t == text));
        let value: serde_json::Value = serde_json::from_str(text).expect("json");
        let read = (&value)
            .deserialize_newtype_struct(RAW_VALUE, TextOrValue)
            .expect("reads");
        let Read::Text(t) = read else {
            panic!("a Value hands over its text too");
        };
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&t).ok(),
            Some(value)
        );
        // A deserializer that knows nothing of the name hands over the fields themselves.
        let fields = serde::de::value::MapDeserializer::<_, serde::de::value::Error>::new(
            [("kind", "Rollout"), ("apiVersion", "sluice.dev/v1alpha1")].into_iter(),
        );
        let read = fields
            .deserialize_newtype_struct(RAW_VALUE, TextOrValue)
            .expect("reads");
        let Read::Value(v) = read else {
            panic!("fields read as a Value");
        };
        assert_eq!(
            v,
            json!({"kind": "Rollout", "apiVersion": "sluice.dev/v1alpha1"})
        );
    }

    /// Text the direct read refuses but a `Value` takes (a repeated key: the last one wins in
    /// a `Value`) reads as it did through a `Value`.
    #[test]
    fn what_only_a_value_reads_still_reads() {
        let text = r#"{"apiVersion": "sluice.dev/v1alpha1", "kind": "AnalysisTemplate",
            "metadata": {"name": "smoke", "namespace": "shop"},
            "spec": {"metrics": [], "metrics": [{"name": "m", "provider": {"job": {"spec": {
                "template": {"spec": {"containers": [{"name": "t", "image": "b"}]}}}}}}]}}"#;
        assert!(serde_json::from_str::<AnalysisTemplate>(text).is_err());
        let p: Parsed<AnalysisTemplate> = serde_json::from_str(text).expect("parsed");
        let t = p.ok().expect("reads as it did through a Value");
        assert_eq!(t.spec.metrics.as_ref().map(Vec::len), Some(1));
    }

    #[test]
    fn an_object_without_readable_metadata_is_an_error() {
        let r = serde_json::from_value::<Parsed<Rollout>>(json!({"metadata": 3, "spec": 4}));
        assert!(r.is_err());
    }
}
