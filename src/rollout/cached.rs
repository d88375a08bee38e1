//! The forms Sluice caches its most numerous objects in: a pod as [`CachedPod`], a Service as
//! [`CachedService`], a ReplicaSet as [`CachedReplicaSet`]. Each is read straight from the
//! watch's JSON and holds only what a reconcile reads, in its own small struct: `k8s_openapi`'s
//! `Pod` is over 2 KiB before it holds anything (its `PodSpec` is inline even when absent), a
//! `Service` over 800 bytes, and a ReplicaSet's pod template over 3.5 KiB with one container;
//! at 10,000 Rollouts (30,000 pods, 20,000 Services) that was most of the controller's memory.
//!
//! A reconcile reads them through `to_pod`, `to_service` and `to_replica_set`, so the code that
//! decides still reads the Kubernetes types; what those return is the object as the API server
//! sent it minus what Sluice never reads (tested below: a pod read back decides exactly as the
//! whole pod does; a ReplicaSet reads back whole).

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, Pod,
    PodCondition, PodStatus, PodTemplateSpec, Service, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use kube::Resource;
use serde::{Deserialize, Deserializer};

/// A pod as cached: its metadata (without `managedFields`, owner and `generateName`: pods are
/// found by their label), since when it is Ready, and of each container what `diagnose` reads
/// (its waiting reason, last termination and restart count).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct CachedPod {
    #[serde(default)]
    pub metadata: ObjectMeta,
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
    /// Drops what no reader needs: `managedFields`, the `kubectl apply` copy, the owner,
    /// `generateName`, and every condition but Ready.
    pub fn strip(&mut self) {
        super::cache::strip_meta(self);
        self.metadata.owner_references = None;
        self.metadata.generate_name = None;
        if let Some(cs) = self.status.as_mut().and_then(|s| s.conditions.as_mut()) {
            cs.retain(|c| c.type_ == "Ready");
        }
    }

    /// The pod as a reconcile reads it: what is cached, in Kubernetes' own type.
    pub fn to_pod(&self) -> Pod {
        Pod {
            metadata: self.metadata.clone(),
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
    pub metadata: ObjectMeta,
    #[serde(default)]
    spec: Option<CachedServiceSpec>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
struct CachedServiceSpec {
    #[serde(default)]
    selector: Option<BTreeMap<String, String>>,
}

impl CachedService {
    /// The selector, if the Service has one.
    pub fn selector(&self) -> Option<&BTreeMap<String, String>> {
        self.spec.as_ref().and_then(|s| s.selector.as_ref())
    }

    /// The Service as a reconcile reads it: what is cached, in Kubernetes' own type.
    pub fn to_service(&self) -> Service {
        Service {
            metadata: self.metadata.clone(),
            spec: self.spec.as_ref().map(|s| ServiceSpec {
                selector: s.selector.clone(),
                ..ServiceSpec::default()
            }),
            status: None,
        }
    }
}

/// A ReplicaSet as cached: all of it, but its pod template is kept as compact JSON (a few
/// hundred bytes where the parsed template takes kilobytes). Sluice reads the template only to
/// write the ReplicaSet back (`apply::scale`); `to_replica_set` parses it again (some
/// microseconds, once per ReplicaSet a reconcile reads).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct CachedReplicaSet {
    #[serde(default)]
    pub metadata: ObjectMeta,
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
    selector: LabelSelector,
    #[serde(default, deserialize_with = "compact_template")]
    template: Option<Box<str>>,
}

/// A pod template as compact JSON, read as `PodTemplateSpec` first so that what is kept is
/// known to read back.
fn compact_template<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Box<str>>, D::Error> {
    let Some(template) = Option::<PodTemplateSpec>::deserialize(d)? else {
        return Ok(None);
    };
    serde_json::to_string(&template)
        .map(|s| Some(s.into_boxed_str()))
        .map_err(serde::de::Error::custom)
}

impl CachedReplicaSet {
    /// The ReplicaSet as a reconcile reads it, its pod template parsed again.
    pub fn to_replica_set(&self) -> ReplicaSet {
        ReplicaSet {
            metadata: self.metadata.clone(),
            spec: self.spec.as_ref().map(|s| ReplicaSetSpec {
                min_ready_seconds: s.min_ready_seconds,
                replicas: s.replicas,
                selector: s.selector.clone(),
                // Written by `compact_template` from a PodTemplateSpec: it reads back.
                template: s
                    .template
                    .as_deref()
                    .and_then(|t| serde_json::from_str(t).ok()),
            }),
            status: self.status.clone(),
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
                &self.metadata
            }

            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
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
        assert!(
            std::mem::size_of::<CachedService>() * 2 < std::mem::size_of::<Service>(),
            "{} bytes against {}",
            std::mem::size_of::<CachedService>(),
            std::mem::size_of::<Service>()
        );
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
        let mut cached: CachedReplicaSet = serde_json::from_value(json).expect("cached");
        crate::rollout::cache::strip_meta(&mut cached);
        whole.metadata.managed_fields = None;
        assert_eq!(cached.to_replica_set(), whole);
        let template = cached.spec.as_ref().and_then(|s| s.template.as_ref());
        let kept = template.map_or(0, |t| t.len());
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
        let mut cached: CachedService = serde_json::from_value(json).expect("cached service");
        crate::rollout::cache::strip_meta(&mut cached);
        let kept = cached.to_service();
        let selector = |s: &Service| s.spec.as_ref().and_then(|s| s.selector.clone());
        assert_eq!(selector(&kept), selector(&whole));
        assert_eq!(cached.selector(), selector(&whole).as_ref());
        assert_eq!(kept.spec.as_ref().and_then(|s| s.ports.clone()), None);
        assert_eq!(kept.status, None);
        assert_eq!(kept.metadata.managed_fields, None);
        assert_eq!(
            kept.metadata.annotations,
            Some(BTreeMap::from([("team".to_string(), "a".to_string())]))
        );
    }
}
