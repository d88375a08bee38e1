//! What the benchmark knows about the Rollouts of one flavour: a watch cache of them (one
//! watch, so counting them every half second costs the API server nothing), and the states
//! it waits for, read the same way for both groups.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::Value;
use tokio::task::JoinHandle;

use super::workload::Flavour;

/// The API resource of a flavour's `kind` (`Rollout`, `AnalysisRun`, ...).
pub fn resource(flavour: Flavour, kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(flavour.group(), "v1alpha1", kind))
}

/// A watch cache of one flavour's Rollouts in every namespace.
pub struct Tracker {
    store: Store<DynamicObject>,
    resource: ApiResource,
    task: JoinHandle<()>,
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Tracker {
    /// Starts watching; returns once the first list is in.
    pub async fn start(client: &Client, flavour: Flavour) -> anyhow::Result<Self> {
        let ar = resource(flavour, "Rollout");
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
        let writer = reflector::store::Writer::new(ar.clone());
        let store = writer.as_reader();
        let stream = watcher(api, watcher::Config::default().labels("bench=rollout"))
            .modify(|o: &mut DynamicObject| o.metadata.managed_fields = None)
            .default_backoff()
            .reflect(writer)
            .applied_objects();
        let task = tokio::spawn(async move {
            futures::pin_mut!(stream);
            while stream.next().await.is_some() {}
        });
        tokio::time::timeout(Duration::from_secs(120), store.wait_until_ready())
            .await
            .map_err(|_| {
                anyhow::anyhow!("the watch of {} Rollouts did not sync", flavour.title())
            })??;
        Ok(Tracker {
            store,
            resource: ar,
            task,
        })
    }

    /// How many cached Rollouts satisfy `check`, and how many there are.
    pub fn count(&self, check: impl Fn(&DynamicObject) -> bool) -> (usize, usize) {
        let all = self.store.state();
        (all.iter().filter(|o| check(o)).count(), all.len())
    }

    /// The cached Rollout `namespace/name`.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<DynamicObject>> {
        self.store
            .get(&reflector::ObjectRef::new_with(name, self.resource.clone()).within(namespace))
    }

    /// Waits until `want` Rollouts satisfy `check`, printing progress every
    /// [`super::PROGRESS_EVERY`]; the seconds it took from `since`, or an error saying how far
    /// it got by `limit`.
    pub async fn wait_for(
        &self,
        what: &str,
        want: usize,
        since: Instant,
        limit: Duration,
        check: impl Fn(&DynamicObject) -> bool,
    ) -> Result<f64, Shortfall> {
        let mut last_print = Instant::now();
        loop {
            let (n, _) = self.count(&check);
            if n >= want {
                return Ok(since.elapsed().as_secs_f64());
            }
            if since.elapsed() > limit {
                return Err(Shortfall {
                    what: what.to_string(),
                    reached: n,
                    want,
                    after: since.elapsed().as_secs_f64(),
                });
            }
            if last_print.elapsed() >= super::PROGRESS_EVERY {
                last_print = Instant::now();
                eprintln!(
                    "bench:   {what}: {n} of {want} after {:.0} s",
                    since.elapsed().as_secs_f64()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// A wait that ran out of time: how far it got.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Shortfall {
    pub what: String,
    pub reached: usize,
    pub want: usize,
    pub after: f64,
}

impl std::fmt::Display for Shortfall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} of {} after {:.0} s (time limit)",
            self.what, self.reached, self.want, self.after
        )
    }
}

fn status(o: &DynamicObject) -> Option<&Value> {
    o.data.get("status")
}

/// `status.observedGeneration` as a number (Sluice writes a number, Argo Rollouts a string).
fn observed_generation(o: &DynamicObject) -> Option<i64> {
    match status(o)?.get("observedGeneration")? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// The controller has seen the Rollout's current spec.
pub fn current(o: &DynamicObject) -> bool {
    o.metadata.generation.is_some() && observed_generation(o) == o.metadata.generation
}

/// `status.phase`.
pub fn phase(o: &DynamicObject) -> Option<&str> {
    status(o)?.get("phase")?.as_str()
}

/// Healthy on its current spec.
pub fn healthy(o: &DynamicObject) -> bool {
    current(o) && phase(o) == Some("Healthy")
}

/// Paused at step `step` of its current spec.
pub fn paused_at(o: &DynamicObject, step: i64) -> bool {
    current(o)
        && phase(o) == Some("Paused")
        && status(o)
            .and_then(|s| s.get("currentStepIndex"))
            .and_then(Value::as_i64)
            == Some(step)
}

/// The release was aborted.
pub fn aborted(o: &DynamicObject) -> bool {
    status(o)
        .and_then(|s| s.get("abort"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// `status.stableRS`: the pod-template hash of the stable revision.
pub fn stable_hash(o: &DynamicObject) -> Option<String> {
    Some(status(o)?.get("stableRS")?.as_str()?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(generation: i64, status: Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "x/v1alpha1", "kind": "Rollout",
            "metadata": {"name": "a", "namespace": "n", "generation": generation},
            "status": status
        }))
        .expect("object")
    }

    #[test]
    fn states_read_the_same_for_both_groups() {
        // Sluice writes observedGeneration as a number, Argo Rollouts as a string.
        let sluice = obj(2, json!({"observedGeneration": 2, "phase": "Healthy"}));
        let argo = obj(2, json!({"observedGeneration": "2", "phase": "Healthy"}));
        assert!(healthy(&sluice) && healthy(&argo));
        let stale = obj(3, json!({"observedGeneration": "2", "phase": "Healthy"}));
        assert!(!healthy(&stale));
        let paused = obj(
            3,
            json!({"observedGeneration": 3, "phase": "Paused", "currentStepIndex": 1}),
        );
        assert!(paused_at(&paused, 1) && !paused_at(&paused, 2) && !healthy(&paused));
        let aborted_one = obj(
            3,
            json!({"observedGeneration": 3, "phase": "Degraded", "abort": true, "stableRS": "abc"}),
        );
        assert!(aborted(&aborted_one) && !aborted(&paused));
        assert_eq!(stable_hash(&aborted_one).as_deref(), Some("abc"));
    }
}
