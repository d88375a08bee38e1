//! What a lab reads from the cluster, Prometheus and the controller at one moment
//! ([`Facts`]), and the moments worth quoting afterwards ([`Timeline`]). Reading is I/O;
//! everything a lab concludes from the facts is pure and tested here.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Client};

use crate::shop::View;

/// The label that names a pod's (and a ReplicaSet's) revision.
pub const REVISION_LABEL: &str = "rollouts-pod-template-hash";

/// The pods of one revision.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pods {
    pub total: usize,
    pub ready: usize,
    /// The waiting reason of a container that is not running (`CrashLoopBackOff`), if any.
    pub waiting: Option<String>,
    pub restarts: i32,
}

impl Pods {
    pub fn of(pods: &[Pod]) -> Pods {
        let mut out = Pods {
            total: pods.len(),
            ..Pods::default()
        };
        for pod in pods {
            let status = pod.status.as_ref();
            let ready = status
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            out.ready += usize::from(ready);
            for c in status
                .and_then(|s| s.container_statuses.as_ref())
                .into_iter()
                .flatten()
            {
                out.restarts = out.restarts.max(c.restart_count);
                let reason = c
                    .state
                    .as_ref()
                    .and_then(|s| s.waiting.as_ref())
                    .and_then(|w| w.reason.clone());
                if reason.is_some() {
                    out.waiting = reason;
                }
            }
        }
        out
    }

    /// `1/1 ready`, `0/1 ready (CrashLoopBackOff, 3 restarts)`, or `none`.
    pub fn describe(&self) -> String {
        if self.total == 0 {
            return "none".into();
        }
        let mut s = format!("{}/{} ready", self.ready, self.total);
        if let Some(w) = &self.waiting {
            let _ = write!(s, " ({w}");
            if self.restarts > 0 {
                let _ = write!(s, ", {} restarts", self.restarts);
            }
            s.push(')');
        }
        s
    }
}

/// One moment of a lab.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Facts {
    /// Seconds since the release started (negative before).
    pub t: f64,
    pub view: View,
    /// (stable, canary) weights of the VirtualService.
    pub weights: (i64, i64),
    /// The pods of the new revision.
    pub new_pods: Pods,
    /// `spec.replicas` of the new revision's ReplicaSet and the pods it has.
    pub new_rs: Option<(i32, i32)>,
    /// The same for the revision the lab started from.
    pub old_rs: Option<(i32, i32)>,
    /// `sluice_rollout_aborts_total` by cause, since the release started.
    pub aborts: BTreeMap<String, f64>,
    /// `sluice_rollout_promotions_total` by cause, since the release started.
    pub promotions: BTreeMap<String, f64>,
    /// The new revision's success rate and 99th percentile response time (ms), from
    /// Prometheus; `None` without data (or with Prometheus down).
    pub success: Option<f64>,
    pub p99_ms: Option<f64>,
}

impl Facts {
    /// The one line a lab prints when something changed.
    pub fn line(&self, version: &str) -> String {
        self.text(version, true)
    }

    /// The line without the figures from Prometheus, which change at every look: what a
    /// change worth a line is judged on.
    pub fn state(&self, version: &str) -> String {
        self.text(version, false)
    }

    fn text(&self, version: &str, figures: bool) -> String {
        let v = &self.view;
        let mut s = format!(
            "{version}: {:<14} canary weight {:>3}%  new pods {}",
            v.step_text(),
            self.weights.1,
            self.new_pods.describe()
        );
        if let Some(x) = self.success.filter(|_| figures) {
            let _ = write!(s, "  success {:.1}%", x * 100.0);
        }
        if let Some(x) = self.p99_ms.filter(|_| figures) {
            let _ = write!(s, "  p99 {x:.0} ms");
        }
        if !v.analysis.is_empty() {
            let _ = write!(s, "  analysis {}", v.analysis);
        }
        let _ = write!(s, "  {}", v.phase);
        if !v.pauses.is_empty() {
            let _ = write!(s, " ({})", v.pauses.join(", "));
        }
        if v.progressing.0 == "ProgressDeadlineExceeded" {
            s.push_str(" (ProgressDeadlineExceeded)");
        }
        if v.abort {
            s.push_str(" (aborted)");
        }
        s
    }

    /// The cause of every abort counted since the release started.
    pub fn abort_causes(&self) -> Vec<String> {
        counted(&self.aborts)
    }

    pub fn promotion_causes(&self) -> Vec<String> {
        counted(&self.promotions)
    }
}

fn counted(m: &BTreeMap<String, f64>) -> Vec<String> {
    m.iter()
        .filter(|(_, v)| **v > 0.0)
        .map(|(k, _)| k.clone())
        .collect()
}

/// `now - before` for each key of `now`.
pub fn delta(now: &BTreeMap<String, f64>, before: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    now.iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .collect()
}

/// The pods of revision `hash` in `ns`.
pub async fn pods(client: &Client, ns: &str, hash: &str) -> anyhow::Result<Vec<Pod>> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().labels(&format!("{REVISION_LABEL}={hash}"));
    Ok(api.list(&lp).await?.items)
}

/// `spec.replicas` and `status.replicas` of revision `hash`'s ReplicaSet in `ns`.
pub async fn replica_set(
    client: &Client,
    ns: &str,
    hash: &str,
) -> anyhow::Result<Option<(i32, i32)>> {
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().labels(&format!("{REVISION_LABEL}={hash}"));
    Ok(api.list(&lp).await?.items.first().map(|rs| {
        (
            rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0),
            rs.status.as_ref().map_or(0, |s| s.replicas),
        )
    }))
}

/// Moments of a lab worth quoting, each the first time it was seen (seconds since the
/// release started).
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    marks: Vec<(Moment, f64)>,
}

/// What a lab times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Moment {
    /// A pod of the new revision showed a waiting reason (`CrashLoopBackOff`, ...).
    PodFailing,
    /// The canary got a share of the traffic.
    CanaryTraffic,
    /// Prometheus stopped (prometheus-down).
    PrometheusDown,
    /// The release paused on an inconclusive analysis.
    Inconclusive,
    /// Prometheus answered again.
    PrometheusBack,
    /// The progress deadline passed (`ProgressDeadlineExceeded`).
    Deadline,
    /// `status.abort` was set.
    Aborted,
    /// The template went back to the revision the lab started from (`undo`).
    Undone,
    /// All traffic on the stable revision again after the canary had some, or after an abort.
    Safe,
    /// The new revision's pods were all gone after an abort or undo.
    PodsGone,
    /// The new revision became stable.
    Promoted,
}

impl Timeline {
    pub fn mark(&mut self, m: Moment, t: f64) {
        if self.at(m).is_none() {
            self.marks.push((m, t));
        }
    }

    pub fn at(&self, m: Moment) -> Option<f64> {
        self.marks.iter().find(|(k, _)| *k == m).map(|(_, t)| *t)
    }

    /// Marks what `f` shows for the first time; `old` is the revision the lab started from.
    pub fn observe(&mut self, f: &Facts, old: &str) {
        let v = &f.view;
        if f.new_pods.waiting.is_some() {
            self.mark(Moment::PodFailing, f.t);
        }
        if f.weights.1 > 0 {
            self.mark(Moment::CanaryTraffic, f.t);
        }
        if v.pauses.iter().any(|p| p == "InconclusiveAnalysis") {
            self.mark(Moment::Inconclusive, f.t);
        }
        if v.progressing.0 == "ProgressDeadlineExceeded" {
            self.mark(Moment::Deadline, f.t);
        }
        if v.abort {
            self.mark(Moment::Aborted, f.t);
        }
        let undone = !v.current.is_empty() && v.current == old;
        if undone {
            self.mark(Moment::Undone, f.t);
        }
        let on_stable = f.weights == (100, 0) && v.stable == old;
        if on_stable && (v.abort || undone || self.at(Moment::CanaryTraffic).is_some()) {
            self.mark(Moment::Safe, f.t);
        }
        if (v.abort || undone) && f.new_rs.is_none_or(|(_, pods)| pods == 0) {
            self.mark(Moment::PodsGone, f.t);
        }
        if !v.stable.is_empty() && v.stable != old {
            self.mark(Moment::Promoted, f.t);
        }
    }

    /// `+12.3 s`, or `-` when it was not seen.
    pub fn rel(&self, m: Moment) -> String {
        self.at(m)
            .map(|t| format!("+{t:.1} s"))
            .unwrap_or_else(|| "-".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(ready: bool, waiting: Option<&str>, restarts: i32) -> Pod {
        let state = match waiting {
            Some(r) => json!({"waiting": {"reason": r}}),
            None => json!({"running": {}}),
        };
        serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "status": {
                "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}],
                "containerStatuses": [{"name": "shop", "image": "i", "imageID": "", "ready": ready,
                    "restartCount": restarts, "state": state}]
            }
        }))
        .unwrap_or_default()
    }

    #[test]
    fn pods_say_why_they_are_not_ready() {
        let p = Pods::of(&[pod(true, None, 0), pod(false, Some("CrashLoopBackOff"), 3)]);
        assert_eq!(p.describe(), "1/2 ready (CrashLoopBackOff, 3 restarts)");
        assert_eq!(Pods::of(&[]).describe(), "none");
        assert_eq!(Pods::of(&[pod(true, None, 0)]).describe(), "1/1 ready");
    }

    fn facts(t: f64, weights: (i64, i64), abort: bool, stable: &str, current: &str) -> Facts {
        Facts {
            t,
            weights,
            view: View {
                abort,
                stable: stable.into(),
                current: current.into(),
                ..View::default()
            },
            new_rs: Some((1, 1)),
            ..Facts::default()
        }
    }

    #[test]
    fn safe_is_all_traffic_on_the_old_stable_after_the_canary_had_some() {
        let mut tl = Timeline::default();
        // Before the canary gets traffic, 100/0 is not a recovery.
        tl.observe(&facts(1.0, (100, 0), false, "old", "new"), "old");
        assert_eq!(tl.at(Moment::Safe), None);
        tl.observe(&facts(2.0, (75, 25), false, "old", "new"), "old");
        tl.observe(&facts(3.0, (75, 25), true, "old", "new"), "old");
        assert_eq!(tl.at(Moment::Aborted), Some(3.0));
        assert_eq!(tl.at(Moment::Safe), None);
        tl.observe(&facts(3.5, (100, 0), true, "old", "new"), "old");
        assert_eq!(tl.at(Moment::Safe), Some(3.5));
        assert_eq!(tl.at(Moment::PodsGone), None);
        assert_eq!(tl.rel(Moment::Safe), "+3.5 s");
        assert_eq!(tl.rel(Moment::Promoted), "-");
    }

    #[test]
    fn an_abort_without_canary_traffic_is_safe_at_once() {
        let mut tl = Timeline::default();
        let mut f = facts(4.0, (100, 0), true, "old", "new");
        f.new_rs = Some((0, 0));
        tl.observe(&f, "old");
        assert_eq!(tl.at(Moment::Safe), Some(4.0));
        assert_eq!(tl.at(Moment::PodsGone), Some(4.0));
    }

    #[test]
    fn promotion_is_a_new_stable() {
        let mut tl = Timeline::default();
        tl.observe(&facts(9.0, (100, 0), false, "new", "new"), "old");
        assert_eq!(tl.at(Moment::Promoted), Some(9.0));
        assert_eq!(tl.at(Moment::Safe), None);
    }

    #[test]
    fn deltas_count_from_the_release() {
        let before = BTreeMap::from([("Request".to_string(), 1.0)]);
        let now = BTreeMap::from([
            ("Request".to_string(), 1.0),
            ("PodsFailing".to_string(), 1.0),
        ]);
        let f = Facts {
            aborts: delta(&now, &before),
            ..Facts::default()
        };
        assert_eq!(f.abort_causes(), vec!["PodsFailing".to_string()]);
    }
}
