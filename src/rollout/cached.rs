//! The forms Sluice caches its most numerous objects in: a pod as [`CachedPod`], a Service as
//! [`CachedService`], a ReplicaSet as [`CachedReplicaSet`], a Rollout as [`CachedRollout`].
//! Each is read straight from the watch's JSON and holds only what a reconcile reads, in its
//! own small struct: `k8s_openapi`'s `Pod` is over 2 KiB before it holds anything (its
//! `PodSpec` is inline even when absent), a `Service` over 800 bytes, a ReplicaSet's pod
//! template over 3.5 KiB with one container, a Rollout's parsed spec about 8 KiB; at 10,000
//! Rollouts (30,000 pods, 20,000 Services) that was most of the controller's memory.
//!
//! A reconcile reads them through `to_pod`, `to_service`, `to_replica_set` and `to_parsed`,
//! so the code that decides still reads the Kubernetes types and Sluice's own; what those
//! return is the object as the API server sent it minus what Sluice never reads (tested below:
//! a pod read back decides exactly as the whole pod does; a ReplicaSet and a Rollout read back
//! whole).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::marker::PhantomData;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, Pod,
    PodCondition, PodStatus, PodTemplateSpec, Service, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use kube::Resource;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

use crate::api::rollout::{Rollout, RolloutSpec, RolloutStatus};
use crate::runtime::malformed::{Malformed, Parsed};

/// A value kept as its compact JSON: one allocation the size of its text, where the parsed
/// value takes many (a `BTreeMap` of a few labels takes a 544-byte node and two strings per
/// entry; a pod template several kilobytes of inline structs). It is read as `T` first, so
/// what is kept is known to read back; `read` parses it again.
#[derive(Clone, Debug, PartialEq)]
pub struct Compact<T> {
    json: Box<str>,
    kind: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned> Compact<T> {
    /// `value` as compact JSON.
    pub fn new(value: &T) -> Result<Self, serde_json::Error> {
        Ok(Compact {
            json: serde_json::to_string(value)?.into_boxed_str(),
            kind: PhantomData,
        })
    }

    /// The value again, or why the JSON no longer reads as `T` (which cannot happen to JSON
    /// that `new` wrote from a `T`).
    pub fn parse(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(&self.json)
    }

    /// The value again; `None` only where [`Compact::parse`] fails.
    pub fn read(&self) -> Option<T> {
        self.parse().ok()
    }

    /// The bytes kept.
    pub fn bytes(&self) -> usize {
        self.json.len()
    }
}

impl<'de, T: Serialize + DeserializeOwned> Deserialize<'de> for Compact<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = T::deserialize(d)?;
        Compact::new(&value).map_err(serde::de::Error::custom)
    }
}

/// A string map: labels, annotations, a selector.
type Map = BTreeMap<String, String>;

/// An object's metadata as cached: without `managedFields` and the `kubectl apply` copy, its
/// labels and annotations as compact JSON, its uid beside the rest. `Resource::meta` gives the
/// rest (name, namespace, resourceVersion, owners, timestamps...) and so reads no labels,
/// annotations or uid: they are read through [`Meta::to_meta`] (what `to_pod`, `to_service`,
/// `to_replica_set` and `to_parsed` return), [`Meta::label`], or the cached kinds' own `uid()`,
/// which shadows `ResourceExt`'s.
///
/// Kept out of `meta()`, the uid is not copied again into the key the watch cache files each
/// object under (kube-runtime's `ObjectRef` copies it from `meta()` for every object it
/// stores: 30,000 pods and as many other objects at 10,000 Rollouts). The resourceVersion must
/// stay: the watch reads it from `meta()` of every event to know where to resume, and re-lists
/// the whole kind when it is missing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Meta {
    rest: ObjectMeta,
    labels: Option<Compact<Map>>,
    annotations: Option<Compact<Map>>,
    uid: Option<Box<str>>,
}

impl Meta {
    /// The whole metadata, labels and annotations parsed again.
    pub fn to_meta(&self) -> ObjectMeta {
        ObjectMeta {
            labels: self.labels.as_ref().and_then(Compact::read),
            annotations: self.annotations.as_ref().and_then(Compact::read),
            uid: self.uid.as_deref().map(str::to_string),
            ..self.rest.clone()
        }
    }

    /// The object's uid, if it has one.
    pub fn uid(&self) -> Option<&str> {
        self.uid.as_deref()
    }

    /// The value of label `key`, if the object has it.
    pub fn label(&self, key: &str) -> Option<String> {
        self.labels.as_ref()?.read()?.remove(key)
    }

    /// `rest` as cached.
    fn from_meta(mut rest: ObjectMeta) -> Result<Self, serde_json::Error> {
        rest.managed_fields = None;
        // A list read from JSON has room for four at least; most hold one.
        if let Some(o) = rest.owner_references.as_mut() {
            o.shrink_to_fit();
        }
        if let Some(f) = rest.finalizers.as_mut() {
            f.shrink_to_fit();
        }
        let compact = |m: Option<Map>| m.as_ref().map(Compact::new).transpose();
        let labels = compact(rest.labels.take())?;
        let mut annotations = rest.annotations.take();
        if let Some(a) = annotations.as_mut() {
            a.remove(super::cache::LAST_APPLIED);
        }
        let annotations = compact(annotations)?;
        let uid = rest.uid.take().map(String::into_boxed_str);
        Ok(Meta {
            rest,
            labels,
            annotations,
            uid,
        })
    }
}

impl<'de> Deserialize<'de> for Meta {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Meta::from_meta(ObjectMeta::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A pod as cached: its metadata (without `managedFields`, owner and `generateName`: pods are
/// found by their label), since when it is Ready, and of each container what `diagnose` reads
/// (its waiting reason, last termination and restart count).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct CachedPod {
    #[serde(default)]
    metadata: Meta,
    #[serde(default)]
    status: Option<CachedPodStatus>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct CachedPodStatus {
    #[serde(default)]
    conditions: Option<Vec<CachedCondition>>,
    #[serde(default)]
    container_statuses: Option<Vec<CachedContainer>>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct CachedCondition {
    #[serde(rename = "type")]
    type_: String,
    status: String,
    #[serde(default)]
    last_transition_time: Option<Time>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct CachedContainer {
    name: String,
    #[serde(default)]
    ready: bool,
    #[serde(default)]
    restart_count: i32,
    #[serde(default)]
    state: Option<Waiting>,
    #[serde(default)]
    last_state: Option<Terminated>,
}

/// Of a container's state, only why it waits.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
struct Waiting {
    #[serde(default)]
    waiting: Option<ContainerStateWaiting>,
}

/// Of a container's last state, only how it ended.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
struct Terminated {
    #[serde(default)]
    terminated: Option<ContainerStateTerminated>,
}

impl CachedPod {
    /// Drops what no reader needs beyond what [`Meta`] drops when read: the owner,
    /// `generateName`, and every condition but Ready.
    pub fn strip(&mut self) {
        self.metadata.rest.owner_references = None;
        self.metadata.rest.generate_name = None;
        if let Some(st) = self.status.as_mut() {
            // A list read from JSON has room for four at least: a pod has one or two
            // containers, and one condition is kept.
            if let Some(cs) = st.conditions.as_mut() {
                cs.retain(|c| c.type_ == "Ready");
                cs.shrink_to_fit();
            }
            if let Some(cs) = st.container_statuses.as_mut() {
                cs.shrink_to_fit();
            }
        }
    }

    /// The value of label `key`, if the pod has it.
    pub fn label(&self, key: &str) -> Option<String> {
        self.metadata.label(key)
    }

    /// The pod as a reconcile reads it: what is cached, in Kubernetes' own type.
    pub fn to_pod(&self) -> Pod {
        Pod {
            metadata: self.metadata.to_meta(),
            spec: None,
            status: self.status.as_ref().map(|st| PodStatus {
                conditions: st.conditions.as_ref().map(|cs| {
                    cs.iter()
                        .map(|c| PodCondition {
                            type_: c.type_.clone(),
                            status: c.status.clone(),
                            last_transition_time: c.last_transition_time.clone(),
                            ..PodCondition::default()
                        })
                        .collect()
                }),
                container_statuses: st.container_statuses.as_ref().map(|cs| {
                    cs.iter()
                        .map(|c| ContainerStatus {
                            name: c.name.clone(),
                            ready: c.ready,
                            restart_count: c.restart_count,
                            state: c.state.as_ref().map(|s| ContainerState {
                                waiting: s.waiting.clone(),
                                ..ContainerState::default()
                            }),
                            last_state: c.last_state.as_ref().map(|s| ContainerState {
                                terminated: s.terminated.clone(),
                                ..ContainerState::default()
                            }),
                            ..ContainerStatus::default()
                        })
                        .collect()
                }),
                ..PodStatus::default()
            }),
        }
    }
}

/// A Service as cached: its metadata and selector, all Sluice reads of it and all it patches.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct CachedService {
    #[serde(default)]
    metadata: Meta,
    #[serde(default)]
    spec: Option<CachedServiceSpec>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
struct CachedServiceSpec {
    #[serde(default)]
    selector: Option<Compact<BTreeMap<String, String>>>,
}

impl CachedService {
    /// The selector, if the Service has one.
    pub fn selector(&self) -> Option<BTreeMap<String, String>> {
        self.spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .and_then(Compact::read)
    }

    /// The Service as a reconcile reads it: what is cached, in Kubernetes' own type.
    pub fn to_service(&self) -> Service {
        Service {
            metadata: self.metadata.to_meta(),
            spec: self.spec.as_ref().map(|s| ServiceSpec {
                selector: s.selector.as_ref().and_then(Compact::read),
                ..ServiceSpec::default()
            }),
            status: None,
        }
    }
}

/// A ReplicaSet as cached: all of it, but its pod template and selector are kept as compact
/// JSON (a few hundred bytes where the parsed template takes kilobytes). Sluice reads the
/// template only to write the ReplicaSet back (`apply::scale`); `to_replica_set` parses it
/// again (some microseconds, once per ReplicaSet a reconcile reads).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct CachedReplicaSet {
    #[serde(default)]
    metadata: Meta,
    #[serde(default)]
    spec: Option<CachedReplicaSetSpec>,
    #[serde(default)]
    status: Option<ReplicaSetStatus>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct CachedReplicaSetSpec {
    #[serde(default)]
    min_ready_seconds: Option<i32>,
    #[serde(default)]
    replicas: Option<i32>,
    #[serde(default)]
    selector: Option<Compact<LabelSelector>>,
    #[serde(default)]
    template: Option<Compact<PodTemplateSpec>>,
}

impl CachedReplicaSet {
    /// The ReplicaSet as a reconcile reads it, its pod template parsed again.
    pub fn to_replica_set(&self) -> ReplicaSet {
        ReplicaSet {
            metadata: self.metadata.to_meta(),
            spec: self.spec.as_ref().map(|s| ReplicaSetSpec {
                min_ready_seconds: s.min_ready_seconds,
                replicas: s.replicas,
                selector: s
                    .selector
                    .as_ref()
                    .and_then(Compact::read)
                    .unwrap_or_default(),
                template: s.template.as_ref().and_then(Compact::read),
            }),
            status: self.status.clone(),
        }
    }
}

/// A Rollout as cached: its metadata and status as read, its spec as compact JSON. A parsed
/// spec takes about 8 KiB (most of it the pod template's inline structs), its JSON about
/// 500 bytes; the spec is read only when the Rollout is reconciled or its watch event indexed,
/// and `to_parsed` parses it again then (some microseconds). One that does not read is kept as
/// what is wrong with it, as [`Parsed`] keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct CachedRollout(Result<CompactRollout, Malformed>);

#[derive(Clone, Debug, PartialEq)]
struct CompactRollout {
    metadata: Meta,
    spec: Compact<RolloutSpec>,
    status: Option<RolloutStatus>,
}

impl CachedRollout {
    /// True when the Rollout reads (it is not [`Malformed`]).
    pub fn reads(&self) -> bool {
        self.0.is_ok()
    }

    /// The Rollout as a reconcile reads it, its spec parsed again. A spec that no longer
    /// parses (it was written from a parsed spec, so it should) reads as malformed.
    pub fn to_parsed(&self) -> Parsed<Rollout> {
        let c = match &self.0 {
            Ok(c) => c,
            Err(bad) => return Parsed(Err(bad.clone())),
        };
        match c.spec.parse() {
            Ok(spec) => Parsed(Ok(Rollout {
                metadata: c.metadata.to_meta(),
                spec,
                status: c.status.clone(),
            })),
            Err(e) => Parsed(Err(Malformed {
                metadata: c.metadata.to_meta(),
                status: c.status.as_ref().and_then(|s| serde_json::to_value(s).ok()),
                field: "spec".to_string(),
                error: e.to_string(),
            })),
        }
    }
}

impl From<Parsed<Rollout>> for CachedRollout {
    fn from(p: Parsed<Rollout>) -> Self {
        let ro = match p.0 {
            Ok(ro) => ro,
            Err(bad) => return CachedRollout(Err(bad)),
        };
        let compact = Compact::new(&ro.spec)
            .and_then(|spec| Ok((Meta::from_meta(ro.metadata.clone())?, spec)));
        CachedRollout(match compact {
            Ok((metadata, spec)) => Ok(CompactRollout {
                metadata,
                spec,
                status: ro.status,
            }),
            Err(e) => Err(Malformed {
                metadata: ro.metadata,
                status: ro
                    .status
                    .as_ref()
                    .and_then(|s| serde_json::to_value(s).ok()),
                field: "spec".to_string(),
                error: e.to_string(),
            }),
        })
    }
}

impl<'de> Deserialize<'de> for CachedRollout {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Parsed::<Rollout>::deserialize(d).map(CachedRollout::from)
    }
}

impl Resource for CachedRollout {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        Rollout::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        Rollout::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        Rollout::version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        Rollout::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        match &self.0 {
            Ok(c) => &c.metadata.rest,
            Err(bad) => &bad.metadata,
        }
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        match &mut self.0 {
            Ok(c) => &mut c.metadata.rest,
            Err(bad) => &mut bad.metadata,
        }
    }
}

/// A cached kind's uid, which its `meta()` does not carry (see [`Meta`]): this inherent
/// method is found before `ResourceExt::uid`.
macro_rules! uid {
    ($t:ty) => {
        impl $t {
            /// The object's uid, if it has one.
            pub fn uid(&self) -> Option<String> {
                self.metadata.uid().map(str::to_string)
            }
        }
    };
}

uid!(CachedPod);
uid!(CachedService);
uid!(CachedReplicaSet);

impl CachedRollout {
    /// The Rollout's uid, if it has one.
    pub fn uid(&self) -> Option<String> {
        match &self.0 {
            Ok(c) => c.metadata.uid().map(str::to_string),
            Err(bad) => bad.metadata.uid.clone(),
        }
    }
}

/// Each reads as the kind it caches.
macro_rules! kind {
    ($t:ty, $group:literal, $kind:literal, $plural:literal) => {
        impl Resource for $t {
            type DynamicType = ();
            type Scope = NamespaceResourceScope;

            fn kind(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($kind)
            }

            fn group(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($group)
            }

            fn version(_: &()) -> Cow<'_, str> {
                Cow::Borrowed("v1")
            }

            fn plural(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($plural)
            }

            fn meta(&self) -> &ObjectMeta {
                &self.metadata.rest
            }

            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata.rest
            }
        }
    };
}

kind!(CachedPod, "", "Pod", "pods");
kind!(CachedService, "", "Service", "services");
kind!(CachedReplicaSet, "apps", "ReplicaSet", "replicasets");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::constants::{LABEL_POD_TEMPLATE_HASH, LABEL_ROLLOUT};
    use crate::rollout::cache::LAST_APPLIED;
    use crate::rollout::observe::policy;
    use serde_json::{Value, json};

    /// A pod as the kubelet reports it, failing: one container crash-looping after an OOM kill.
    fn reported_pod(ready: bool) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": "web-6d4f-x1", "namespace": "shop", "generateName": "web-6d4f-",
                "uid": "u1", "resourceVersion": "42",
                "creationTimestamp": "2026-11-30T10:00:00Z",
                "labels": {LABEL_POD_TEMPLATE_HASH: "6d4f", LABEL_ROLLOUT: "web"},
                "annotations": {"role": "canary", LAST_APPLIED: "{...}"},
                "managedFields": [{"manager": "kubelet", "operation": "Update"}],
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-6d4f",
                                     "uid": "rs1", "controller": true}]
            },
            "spec": {"containers": [{"name": "web", "image": "web:2"}], "nodeName": "node-1"},
            "status": {
                "phase": "Running", "qosClass": "BestEffort", "podIP": "10.0.0.7",
                "podIPs": [{"ip": "10.0.0.7"}], "hostIP": "172.16.0.1",
                "startTime": "2026-11-30T10:00:01Z",
                "conditions": [
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-11-30T10:00:00Z"},
                    {"type": "Initialized", "status": "True", "lastTransitionTime": "2026-11-30T10:00:01Z"},
                    {"type": "Ready", "status": if ready { "True" } else { "False" },
                     "reason": "ContainersNotReady", "lastTransitionTime": "2026-11-30T10:00:09Z"}
                ],
                "containerStatuses": [
                    {"name": "sidecar", "image": "proxy:1", "imageID": "sha256:aa", "containerID": "cri://1",
                     "ready": true, "restartCount": 0, "started": true,
                     "state": {"running": {"startedAt": "2026-11-30T10:00:02Z"}}},
                    {"name": "web", "image": "web:2", "imageID": "sha256:bb", "containerID": "cri://2",
                     "ready": false, "restartCount": 4, "started": false,
                     "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
                     "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137,
                                                  "startedAt": "2026-11-30T10:00:03Z",
                                                  "finishedAt": "2026-11-30T10:00:05Z"}}}
                ]
            }
        })
    }

    #[test]
    fn the_uid_reads_back_and_the_resource_version_stays_in_meta() {
        for (uid, rv) in [
            (Some("4f1c-77"), Some("123")),
            (None, Some("5")),
            (Some("u"), None),
        ] {
            let meta = ObjectMeta {
                name: Some("web".into()),
                uid: uid.map(String::from),
                resource_version: rv.map(String::from),
                ..ObjectMeta::default()
            };
            let cached = Meta::from_meta(meta.clone()).expect("meta");
            assert_eq!(cached.uid(), uid);
            assert_eq!(cached.rest.uid, None);
            assert_eq!(cached.rest.resource_version.as_deref(), rv);
            assert_eq!(cached.to_meta(), meta);
        }
    }

    #[test]
    fn a_cached_pod_reads_as_the_whole_pod_does() {
        for ready in [true, false] {
            let json = reported_pod(ready);
            let whole: Pod = serde_json::from_value(json.clone()).expect("pod");
            let mut cached: CachedPod = serde_json::from_value(json).expect("cached pod");
            cached.strip();
            let kept = cached.to_pod();
            assert_eq!(
                policy::observed_pod(&kept),
                policy::observed_pod(&whole),
                "ready: {ready}"
            );
            assert!(policy::observed_pod(&kept).is_some());
            for threshold in [1, 4, 5] {
                assert_eq!(
                    policy::diagnose(std::slice::from_ref(&kept), threshold),
                    policy::diagnose(std::slice::from_ref(&whole), threshold),
                    "ready: {ready}, threshold {threshold}"
                );
            }
            assert!(policy::diagnose(std::slice::from_ref(&kept), 5).is_some());
            assert_eq!(kept.metadata.labels, whole.metadata.labels);
            assert_eq!(
                kept.metadata.annotations,
                Some(BTreeMap::from([("role".to_string(), "canary".to_string())]))
            );
            assert_eq!(kept.metadata.managed_fields, None);
            assert_eq!(kept.metadata.owner_references, None);
            assert_eq!(kept.metadata.resource_version.as_deref(), Some("42"));
            assert_eq!(kept.metadata.uid.as_deref(), Some("u1"));
            assert_eq!(cached.uid().as_deref(), Some("u1"));
            assert_eq!(cached.meta().uid, None, "kept out of the watch cache's key");
            // The watch resumes from each event's resourceVersion, read from `meta()`: without
            // it the watch re-lists the whole kind after every event.
            assert_eq!(cached.meta().resource_version.as_deref(), Some("42"));
            let conditions = kept.status.as_ref().and_then(|s| s.conditions.as_ref());
            assert_eq!(conditions.map(Vec::len), Some(1), "only Ready is kept");
        }
    }

    #[test]
    fn a_cached_pod_is_a_fraction_of_the_whole_in_memory() {
        // What a cache entry costs before its strings and maps: the struct itself.
        let whole = std::mem::size_of::<Pod>() + 2 * std::mem::size_of::<ContainerStatus>();
        let cached = std::mem::size_of::<CachedPod>()
            + std::mem::size_of::<CachedPodStatus>()
            + 2 * std::mem::size_of::<CachedContainer>();
        assert!(cached * 3 < whole, "{cached} bytes against {whole}");
        // A Service: the struct and its selector's JSON against the struct alone.
        let svc: CachedService = serde_json::from_value(json!({
            "metadata": {"name": "web-stable", "namespace": "shop"},
            "spec": {"selector": {"app": "web", LABEL_POD_TEMPLATE_HASH: "6d4f"}}
        }))
        .expect("service");
        let selector = svc.spec.as_ref().and_then(|s| s.selector.as_ref());
        let cached = std::mem::size_of::<CachedService>() + selector.map_or(0, Compact::bytes);
        let whole = std::mem::size_of::<Service>();
        assert!(cached * 3 < whole * 2, "{cached} bytes against {whole}");
    }

    #[test]
    fn labels_and_annotations_are_kept_as_compact_json_and_read_back() {
        let json = reported_pod(true);
        let whole: Pod = serde_json::from_value(json.clone()).expect("pod");
        let cached: CachedPod = serde_json::from_value(json).expect("cached");
        // What `Resource::meta` gives holds neither: they are read through `label`/`to_pod`.
        assert_eq!(cached.meta().labels, None);
        assert_eq!(cached.meta().annotations, None);
        assert_eq!(cached.label(LABEL_ROLLOUT).as_deref(), Some("web"));
        assert_eq!(cached.label("missing"), None);
        let back = cached.to_pod().metadata;
        assert_eq!(back.labels, whole.metadata.labels);
        let mut annotations = whole.metadata.annotations.clone().expect("annotations");
        annotations.remove(LAST_APPLIED);
        assert_eq!(back.annotations, Some(annotations));
        // Three labels: one allocation of their text (a BTreeMap's leaf node alone, eleven
        // slots of two 24-byte Strings, is over 500 bytes, and each key and value another).
        let kept = cached.metadata.labels.as_ref().map_or(0, Compact::bytes);
        assert!(kept > 0 && kept < 100, "{kept} bytes");
        // None and empty stay apart.
        let bare: CachedPod =
            serde_json::from_value(json!({"metadata": {"name": "p", "labels": {}}})).expect("pod");
        assert_eq!(bare.to_pod().metadata.labels, Some(BTreeMap::new()));
        assert_eq!(bare.to_pod().metadata.annotations, None);
    }

    #[test]
    fn a_pod_without_status_or_with_nulls_reads() {
        let bare: CachedPod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "status": {"conditions": null, "containerStatuses": null}
        }))
        .expect("pod with nulls");
        assert_eq!(bare.to_pod().metadata.name.as_deref(), Some("p"));
        let none: CachedPod =
            serde_json::from_value(json!({"metadata": {"name": "q"}})).expect("pod");
        assert_eq!(none.to_pod().status, None);
    }

    #[test]
    fn a_cached_replica_set_reads_back_whole_and_its_template_is_small() {
        let json = json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web-6d4f", "namespace": "shop", "uid": "rs1", "generation": 3,
                         "labels": {LABEL_POD_TEMPLATE_HASH: "6d4f", LABEL_ROLLOUT: "web"},
                         "annotations": {"sluice.dev/scale-down-at": "2026-11-30T10:00:00Z"},
                         "ownerReferences": [{"apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
                                              "name": "web", "uid": "ro1", "controller": true}],
                         "managedFields": [{"manager": "sluice", "operation": "Apply"}]},
            "spec": {
                "replicas": 3, "minReadySeconds": 5,
                "selector": {"matchLabels": {"app": "web", LABEL_POD_TEMPLATE_HASH: "6d4f"}},
                "template": {
                    "metadata": {"labels": {"app": "web", LABEL_POD_TEMPLATE_HASH: "6d4f"}},
                    "spec": {"containers": [{"name": "web", "image": "web:2",
                                             "ports": [{"containerPort": 8080}],
                                             "resources": {"requests": {"cpu": "100m"}}}]}
                }
            },
            "status": {"replicas": 3, "readyReplicas": 2, "availableReplicas": 2,
                       "observedGeneration": 3}
        });
        let mut whole: ReplicaSet = serde_json::from_value(json.clone()).expect("replica set");
        let cached: CachedReplicaSet = serde_json::from_value(json).expect("cached");
        whole.metadata.managed_fields = None;
        assert_eq!(cached.to_replica_set(), whole);
        let template = cached.spec.as_ref().and_then(|s| s.template.as_ref());
        let kept = template.map_or(0, Compact::bytes);
        assert!(
            kept > 0 && kept < 400,
            "the template is kept as {kept} bytes of JSON"
        );
        let parsed = std::mem::size_of::<PodTemplateSpec>()
            + std::mem::size_of::<k8s_openapi::api::core::v1::Container>();
        assert!(kept * 5 < parsed, "{kept} bytes against {parsed}");
    }

    #[test]
    fn a_replica_set_without_a_template_or_spec_reads() {
        let bare: CachedReplicaSet =
            serde_json::from_value(json!({"metadata": {"name": "x"}, "spec": {"template": null}}))
                .expect("no template");
        assert_eq!(bare.to_replica_set().spec.and_then(|s| s.template), None);
        let none: CachedReplicaSet =
            serde_json::from_value(json!({"metadata": {"name": "y"}})).expect("no spec");
        assert_eq!(none.to_replica_set().spec, None);
        let bad = serde_json::from_value::<CachedReplicaSet>(
            json!({"metadata": {"name": "z"}, "spec": {"template": {"spec": {"containers": 7}}}}),
        );
        assert!(
            bad.is_err(),
            "a template that does not read is an error, as for ReplicaSet"
        );
    }

    /// A Rollout as a user writes it and Sluice's status on it, mid-release.
    fn releasing_rollout() -> Value {
        json!({
            "apiVersion": "sluice.dev/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "web", "namespace": "shop", "uid": "ro1", "resourceVersion": "8", "generation": 2,
                         "labels": {"team": "a"}, "finalizers": ["sluice.dev/cleanup"],
                         "managedFields": [{"manager": "kubectl", "operation": "Apply"}]},
            "spec": {
                "replicas": 3, "revisionHistoryLimit": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                             "spec": {"containers": [{"name": "web", "image": "web:2",
                                                      "resources": {"requests": {"cpu": "100m"}}}]}},
                "strategy": {"canary": {
                    "stableService": "web-stable", "canaryService": "web-canary",
                    "steps": [{"setWeight": 25}, {"pause": {"duration": "30s"}},
                              {"analysis": {"templates": [{"templateName": "success-rate"}],
                                            "args": [{"name": "service", "value": "web"}]}},
                              {"setWeight": 75}]}}
            },
            "status": {"observedGeneration": 2, "phase": "Paused", "currentStepIndex": 1,
                       "currentPodHash": "6d4f", "stableRS": "5c3e", "releaseCount": 2,
                       "pauseConditions": [{"reason": "CanaryPauseStep",
                                            "startTime": "2026-11-30T10:00:00Z"}],
                       "conditions": [{"type": "Progressing", "status": "True",
                                       "reason": "RolloutPaused", "message": "paused at step 1",
                                       "lastTransitionTime": "2026-11-30T10:00:00Z",
                                       "lastUpdateTime": "2026-11-30T10:00:00Z"}]}
        })
    }

    #[test]
    fn a_cached_rollout_reads_back_whole_and_its_spec_is_small() {
        let json = releasing_rollout();
        let mut whole: Parsed<Rollout> = serde_json::from_value(json.clone()).expect("rollout");
        let cached: CachedRollout = serde_json::from_value(json).expect("cached");
        assert!(cached.reads());
        // Read back whole, less `managedFields`, which no cache keeps.
        whole.meta_mut().managed_fields = None;
        assert_eq!(cached.to_parsed().0, whole.0);
        assert_eq!(cached.meta().finalizers, whole.meta().finalizers);
        // Its uid is read through its own method, and the watch cache's key for it does not
        // copy it; its resourceVersion stays where the watch reads it.
        assert_eq!(cached.uid().as_deref(), Some("ro1"));
        assert_eq!(cached.meta().uid, None);
        assert_eq!(cached.meta().resource_version.as_deref(), Some("8"));
        let key = kube::runtime::reflector::Lookup::to_object_ref(&cached, ());
        assert_eq!(key.extra.uid, None);
        assert_eq!(
            (key.name.as_str(), key.namespace.as_deref()),
            ("web", whole.meta().namespace.as_deref())
        );
        let Ok(c) = &cached.0 else {
            panic!("the Rollout reads");
        };
        assert!(
            c.spec.bytes() < 1024,
            "the spec is kept as {} bytes of JSON",
            c.spec.bytes()
        );
        let parsed = std::mem::size_of::<Rollout>()
            + std::mem::size_of::<k8s_openapi::api::core::v1::Container>();
        let kept = std::mem::size_of::<CachedRollout>() + c.spec.bytes();
        assert!(kept * 2 < parsed, "{kept} bytes against {parsed}");
    }

    #[test]
    fn a_rollout_that_does_not_read_is_cached_as_what_is_wrong() {
        let mut json = releasing_rollout();
        json["spec"]["replicas"] = json!("three");
        let whole: Parsed<Rollout> = serde_json::from_value(json.clone()).expect("parsed");
        let cached: CachedRollout = serde_json::from_value(json).expect("cached");
        assert!(!cached.reads());
        assert_eq!(cached.meta().name.as_deref(), Some("web"));
        let back = cached.to_parsed();
        assert_eq!(back.0, whole.0);
        let Err(bad) = cached.to_parsed().0 else {
            panic!("it does not read");
        };
        assert_eq!(bad.field, "spec.replicas");
    }

    #[test]
    fn a_cached_rollout_whose_spec_no_longer_parses_reads_as_malformed() {
        let mut cached: CachedRollout =
            serde_json::from_value(releasing_rollout()).expect("cached");
        if let Ok(c) = &mut cached.0 {
            c.spec = Compact {
                json: "{\"replicas\": \"three\"}".into(),
                kind: PhantomData,
            };
        }
        let Err(bad) = cached.to_parsed().0 else {
            panic!("a spec that does not parse is malformed, not a panic");
        };
        assert_eq!(bad.field, "spec");
        assert_eq!(bad.metadata.name.as_deref(), Some("web"));
        assert!(bad.status.is_some(), "its status is kept");
    }

    #[test]
    fn a_cached_service_keeps_its_selector_and_metadata() {
        let json = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web-canary", "namespace": "shop", "annotations": {"team": "a"},
                         "managedFields": [{"manager": "kubectl", "operation": "Apply"}]},
            "spec": {
                "selector": {"app": "web", LABEL_POD_TEMPLATE_HASH: "6d4f"},
                "ports": [{"port": 80, "targetPort": 8080}],
                "clusterIP": "10.96.0.12", "clusterIPs": ["10.96.0.12"], "type": "ClusterIP",
                "ipFamilies": ["IPv4"], "sessionAffinity": "None"
            },
            "status": {"loadBalancer": {}}
        });
        let whole: Service = serde_json::from_value(json.clone()).expect("service");
        let cached: CachedService = serde_json::from_value(json).expect("cached service");
        let kept = cached.to_service();
        let selector = |s: &Service| s.spec.as_ref().and_then(|s| s.selector.clone());
        assert_eq!(selector(&kept), selector(&whole));
        assert_eq!(cached.selector(), selector(&whole));
        assert_eq!(kept.spec.as_ref().and_then(|s| s.ports.clone()), None);
        assert_eq!(kept.status, None);
        assert_eq!(kept.metadata.managed_fields, None);
        assert_eq!(
            kept.metadata.annotations,
            Some(BTreeMap::from([("team".to_string(), "a".to_string())]))
        );
    }
}
