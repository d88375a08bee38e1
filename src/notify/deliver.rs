//! Delivery: the configuration watched from its ConfigMap and Secret; each pending record
//! sent to each of its receivers by a task of its own (retried with backoff, bounded), so a
//! slow or failing receiver never holds a reconcile; the outcome written back to the
//! record in the Rollout's status.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;
use tracing::{info, warn};

use super::config::{self, CONFIG_KEY, Config, Receiver};
use super::payload::{self, Notice};
use super::record::{self, Subscriptions};
use crate::api::rollout::{NotificationRecord, Rollout, RolloutStatus};
use crate::rollout::cached::CachedRollout;
use crate::rollout::decide::Plan;
use crate::runtime::locks::KeyLocks;
use crate::runtime::status::replace_status;
use crate::runtime::writes::WriteCounter;
use crate::telemetry::{Metrics, ReceiverLabels};

/// How long a reconcile waits for the configuration's first read before deciding without
/// it (an unreadable ConfigMap must not stop releases).
pub const CONFIG_WAIT: Duration = Duration::from_secs(30);

/// Tries to write one outcome (each conflict waits longer for the cache, up to 2 s).
const OUTCOME_ATTEMPTS: u32 = 20;

/// How long a delivery is remembered after its outcome was written (longer than any cache
/// lag).
const REMEMBERED: Duration = Duration::from_secs(600);

/// Where the configuration is: a ConfigMap and a Secret of the same name in one namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub namespace: String,
    pub name: String,
}

impl Source {
    /// `NAMESPACE/NAME`.
    pub fn parse(s: &str) -> Result<Source, String> {
        match s.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok(Source {
                    namespace: ns.to_string(),
                    name: name.to_string(),
                })
            }
            _ => Err(format!(
                "--notifications {s:?}: expected NAMESPACE/NAME of the ConfigMap"
            )),
        }
    }
}

/// The notifier of one controller process.
pub struct Notifier {
    client: Client,
    http: reqwest::Client,
    metrics: Arc<Metrics>,
    writes: WriteCounter,
    config: watch::Receiver<Option<Arc<Config>>>,
    /// (Rollout uid, record id, receiver) being delivered (`None`) or delivered lately (when
    /// its outcome was written): a reconcile that read the Rollout before that write must
    /// not send it again.
    in_flight: Mutex<HashMap<(String, i64, String), Option<Instant>>>,
    /// One status write per Rollout at a time.
    locks: KeyLocks,
    /// The controller's cache of Rollouts: what an outcome is written over (no reads).
    rollouts: Store<CachedRollout>,
    /// The configuration's first read took longer than [`CONFIG_WAIT`].
    gave_up: AtomicBool,
    /// True once the controller stops (this instance no longer leads): deliveries under
    /// way end, their records still pending for the next leader.
    stopped: watch::Sender<bool>,
    watch_task: tokio::task::JoinHandle<()>,
}

impl Drop for Notifier {
    fn drop(&mut self) {
        self.watch_task.abort();
    }
}

impl Notifier {
    /// Starts watching the configuration; outcomes are written over the Rollouts as
    /// `rollouts` (the controller's cache) holds them.
    pub fn start(
        client: Client,
        source: Source,
        metrics: Arc<Metrics>,
        rollouts: Store<CachedRollout>,
    ) -> Arc<Notifier> {
        let (tx, rx) = watch::channel(None);
        let watch_task = tokio::spawn(watch_config(client.clone(), source, tx));
        Arc::new(Notifier {
            writes: WriteCounter::new(metrics.clone()),
            client,
            http: reqwest::Client::new(),
            metrics,
            config: rx,
            in_flight: Mutex::new(HashMap::new()),
            rollouts,
            locks: KeyLocks::default(),
            gave_up: AtomicBool::new(false),
            stopped: watch::channel(false).0,
            watch_task,
        })
    }

    /// Waits for the configuration's first read: at most [`CONFIG_WAIT`], once (a watch that
    /// never answers holds only the first reconciles).
    pub async fn synced(&self) {
        if self.config.borrow().is_some() || self.gave_up.load(Ordering::Relaxed) {
            return;
        }
        let mut rx = self.config.clone();
        if tokio::time::timeout(CONFIG_WAIT, rx.wait_for(Option::is_some))
            .await
            .is_err()
        {
            warn!("the notifications configuration was not read in time; deciding without it");
            self.gave_up.store(true, Ordering::Relaxed);
        }
    }

    fn current(&self) -> Option<Arc<Config>> {
        self.config.borrow().clone()
    }

    /// Records in `plan.status` the decisions of `plan` that `ro`'s subscriptions ask for.
    pub fn record(&self, ro: &Rollout, plan: &mut Plan, now: Timestamp) {
        let config = self.current();
        let ns = ro.namespace().unwrap_or_default();
        let default = config.as_ref().and_then(|c| c.default_for(&ns));
        let (subs, unknown): (Subscriptions, _) = record::subscriptions(ro.annotations(), default);
        for key in unknown {
            tracing::debug!(annotation = key, "no such notification trigger; ignored");
        }
        let prev = ro.status.clone().unwrap_or_default();
        record::record(&prev, plan, &subs, now);
    }

    /// Starts delivering every pending record of `status` (the status just written for
    /// `ro`) that is not being delivered already.
    pub fn deliver(self: &Arc<Self>, ro: &Rollout, status: &RolloutStatus) {
        if *self.stopped.borrow() {
            return;
        }
        let uid = ro.uid().unwrap_or_default();
        for rec in record::pending(status) {
            for receiver in &rec.pending {
                let key = (uid.clone(), rec.id, receiver.clone());
                let fresh = self
                    .in_flight
                    .lock()
                    .map(|mut f| {
                        f.retain(|_, done| done.is_none_or(|t| t.elapsed() < REMEMBERED));
                        f.insert(key.clone(), None).is_none()
                    })
                    .unwrap_or(false);
                if !fresh {
                    continue;
                }
                let notice = Notice {
                    namespace: ro.namespace().unwrap_or_default(),
                    name: ro.name_any(),
                    uid: uid.clone(),
                    stable: status.stable_rs.clone(),
                    link: None,
                    record: rec.clone(),
                };
                let me = self.clone();
                let receiver = receiver.clone();
                let mut stopped = self.stopped.subscribe();
                tokio::spawn(async move {
                    tokio::select! {
                        () = me.deliver_one(notice, &receiver) => {}
                        _ = stopped.wait_for(|s| *s) => return,
                    }
                    if let Ok(mut f) = me.in_flight.lock() {
                        f.insert(key, Some(Instant::now()));
                    }
                });
            }
        }
    }

    /// Ends the deliveries under way and starts no more.
    pub fn stop(&self) {
        self.stopped.send_replace(true);
    }

    /// Sends one record to one receiver, then writes down how it went.
    async fn deliver_one(&self, mut notice: Notice, receiver: &str) {
        self.synced().await;
        let config = self.current().unwrap_or_default();
        notice.link = config.link_for(&notice.namespace, &notice.name);
        let outcome = match config.receivers.get(receiver) {
            None => Err(format!("no receiver {receiver:?} in the configuration")),
            Some(Err(why)) => Err(format!("receiver {receiver:?} cannot be used: {why}")),
            Some(Ok(r)) => self.send(r, receiver, &notice, &config.retry).await,
        };
        let kind = match config.receivers.get(receiver) {
            Some(Ok(r)) => r.kind(),
            _ => "unknown",
        };
        let labels = ReceiverLabels {
            receiver: receiver.to_string(),
            kind: kind.to_string(),
        };
        match &outcome {
            Ok(()) => {
                self.metrics.notifications_sent.get_or_create(&labels).inc();
                info!(namespace = %notice.namespace, rollout = %notice.name, receiver, trigger = %notice.record.trigger, id = notice.record.id, "notification delivered");
            }
            Err(why) => {
                self.metrics
                    .notifications_failed
                    .get_or_create(&labels)
                    .inc();
                warn!(namespace = %notice.namespace, rollout = %notice.name, receiver, trigger = %notice.record.trigger, id = notice.record.id, error = %why, "notification not delivered");
            }
        }
        self.write_outcome(&notice, receiver, outcome).await;
    }

    /// Up to `retry.attempts` POSTs, waiting longer after each failure; a refusal on the
    /// merits (a 4xx other than 408 and 429) is not tried again.
    async fn send(
        &self,
        receiver: &Receiver,
        name: &str,
        notice: &Notice,
        retry: &config::Retry,
    ) -> Result<(), String> {
        let req = payload::request(receiver, notice)?;
        let labels = ReceiverLabels {
            receiver: name.to_string(),
            kind: receiver.kind().to_string(),
        };
        let mut last = String::new();
        for attempt in 0..retry.attempts {
            if attempt > 0 {
                tokio::time::sleep(retry.wait(attempt)).await;
            }
            let mut post = self
                .http
                .post(&req.url)
                .timeout(retry.timeout)
                .json(&req.body);
            for (k, v) in &req.headers {
                post = post.header(k, v);
            }
            let started = Instant::now();
            let answer = post.send().await;
            self.metrics
                .notification_duration
                .get_or_create(&labels)
                .observe(started.elapsed().as_secs_f64());
            match answer {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => {
                    let code = r.status();
                    let body: String = r
                        .text()
                        .await
                        .unwrap_or_default()
                        .chars()
                        .take(300)
                        .collect();
                    last = format!("HTTP {code}: {body}");
                    let again = code.is_server_error()
                        || code == reqwest::StatusCode::TOO_MANY_REQUESTS
                        || code == reqwest::StatusCode::REQUEST_TIMEOUT;
                    if !again {
                        return Err(last);
                    }
                }
                Err(e) if e.is_timeout() => {
                    last = format!("no answer within {}s", retry.timeout.as_secs())
                }
                Err(e) => last = format!("cannot reach it: {e}"),
            }
        }
        Err(format!("{last} (after {} attempts)", retry.attempts))
    }

    /// Moves `receiver` out of the record's pending list, into delivered or failed, under
    /// the resourceVersion of the Rollout as cached (a conflict waits for the cache to catch
    /// up). A Rollout deleted, or replaced by another of the same name, or a record pruned
    /// meanwhile, ends it.
    async fn write_outcome(&self, notice: &Notice, receiver: &str, outcome: Result<(), String>) {
        let key = format!("{}/{}", notice.namespace, notice.name);
        let _one = self.locks.lock(&key).await;
        let at = ObjectRef::new(&notice.name).within(&notice.namespace);
        for attempt in 0..OUTCOME_ATTEMPTS {
            if attempt > 0 {
                let wait = (Duration::from_millis(250) * attempt).min(Duration::from_secs(2));
                tokio::time::sleep(wait).await;
            }
            let Some(cached) = self.rollouts.get(&at) else {
                return;
            };
            let Ok(mut ro) = cached.to_parsed().0 else {
                return;
            };
            if ro.uid().as_deref() != Some(notice.uid.as_str()) {
                return;
            }
            let Some(log) = ro.status.as_mut().and_then(|s| s.notifications.as_mut()) else {
                // The cache has not seen the decision's write yet.
                continue;
            };
            if log.sequence < notice.record.id {
                continue;
            }
            let Some(rec) = log.records.iter_mut().find(|r| r.id == notice.record.id) else {
                // Pruned: there is nothing left to write it on.
                return;
            };
            if !settle(rec, receiver, &outcome) {
                return;
            }
            match replace_status(&self.client, &self.writes, ro, "record a notification").await {
                Ok(_) => return,
                Err(e) => {
                    tracing::debug!(rollout = %key, error = %e, "recording a notification; trying again");
                }
            }
        }
        warn!(rollout = %key, receiver, id = notice.record.id, "could not record a notification's delivery; it may be sent again");
    }
}

/// The record with `receiver` moved out of pending; false when it was not pending.
fn settle(rec: &mut NotificationRecord, receiver: &str, outcome: &Result<(), String>) -> bool {
    let Some(i) = rec.pending.iter().position(|r| r == receiver) else {
        return false;
    };
    rec.pending.remove(i);
    match outcome {
        Ok(()) => rec.delivered.push(receiver.to_string()),
        Err(why) => rec.failed.push(format!("{receiver}: {why}")),
    }
    true
}

/// Keeps `tx` at the configuration read from the ConfigMap and Secret `source` names
/// (watched by name). A Secret that cannot be read counts as empty (with a warning); a
/// configuration that does not read keeps the one before (and says why).
async fn watch_config(client: Client, source: Source, tx: watch::Sender<Option<Arc<Config>>>) {
    enum Change {
        Map(Option<BTreeMap<String, String>>),
        MapUnreadable(String),
        Secret(Option<BTreeMap<String, String>>),
        SecretUnreadable(String),
    }
    let by_name = watcher::Config::default().fields(&format!("metadata.name={}", source.name));
    let maps = watcher(
        Api::<ConfigMap>::namespaced(client.clone(), &source.namespace),
        by_name.clone(),
    )
    .default_backoff();
    let maps = latest(maps, |c: ConfigMap| c.data.unwrap_or_default()).filter_map(|r| async move {
        match r {
            Ok(d) => Some(Change::Map(d)),
            Err(e) => Some(Change::MapUnreadable(e.to_string())),
        }
    });
    let secrets = watcher(
        Api::<Secret>::namespaced(client, &source.namespace),
        by_name,
    )
    .default_backoff();
    let secrets = latest(secrets, |s: Secret| {
        s.data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
            .collect()
    })
    .filter_map(|r| async move {
        match r {
            Ok(d) => Some(Change::Secret(d)),
            Err(e) => Some(Change::SecretUnreadable(e.to_string())),
        }
    });
    let mut changes = futures::stream::select(maps.boxed(), secrets.boxed());
    let (mut map, mut secret) = (None::<Option<BTreeMap<String, String>>>, None);
    while let Some(change) = changes.next().await {
        match change {
            Change::Map(d) => map = Some(d),
            Change::MapUnreadable(e) => {
                warn!(error = %e, "cannot watch the notifications ConfigMap");
                if map.is_some() {
                    continue;
                }
                // Until it can be read, releases go on without notifications.
                map = Some(None);
            }
            Change::Secret(d) => secret = Some(d.unwrap_or_default()),
            Change::SecretUnreadable(e) => {
                if secret.is_some() {
                    continue;
                }
                warn!(error = %e, "cannot read the notifications Secret; receivers naming its keys cannot be used until it can");
                secret = Some(BTreeMap::new());
            }
        }
        let (Some(map), Some(secret)) = (&map, &secret) else {
            continue;
        };
        let text = map
            .as_ref()
            .and_then(|d| d.get(CONFIG_KEY))
            .map(String::as_str);
        match config::parse(text, secret) {
            Ok(c) => {
                for (name, r) in &c.receivers {
                    if let Err(why) = r {
                        warn!(receiver = %name, error = %why, "notification receiver cannot be used");
                    }
                }
                info!(
                    receivers = c.receivers.len(),
                    "notifications configuration read"
                );
                tx.send_replace(Some(Arc::new(c)));
            }
            Err(why) => {
                warn!(configmap = %format!("{}/{}", source.namespace, source.name), error = %why, "notifications configuration does not read; the one before stays");
                if tx.borrow().is_none() {
                    tx.send_replace(Some(Arc::new(Config::default())));
                }
            }
        }
    }
}

/// What the watch of one named object says of its data as it changes: `Some(d)` while it
/// is there, `None` once it is gone or when the first list has it not. Events inside a
/// (re)list are held until its end.
fn latest<K, F>(
    events: impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    data: F,
) -> impl futures::Stream<Item = Result<Option<BTreeMap<String, String>>, watcher::Error>>
where
    K: Send + 'static,
    F: Fn(K) -> BTreeMap<String, String> + Send + 'static,
{
    events
        .scan(
            None::<Option<BTreeMap<String, String>>>,
            move |listing, e| {
                let out = match e {
                    Err(e) => Some(Err(e)),
                    Ok(watcher::Event::Init) => {
                        *listing = Some(None);
                        None
                    }
                    Ok(watcher::Event::InitApply(o)) => {
                        *listing = Some(Some(data(o)));
                        None
                    }
                    Ok(watcher::Event::InitDone) => Some(Ok(listing.take().flatten())),
                    Ok(watcher::Event::Apply(o)) => Some(Ok(Some(data(o)))),
                    Ok(watcher::Event::Delete(_)) => Some(Ok(None)),
                };
                futures::future::ready(Some(out))
            },
        )
        .filter_map(futures::future::ready)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_is_a_namespace_and_a_name() {
        assert_eq!(
            Source::parse("sluice-system/sluice-notifications"),
            Ok(Source {
                namespace: "sluice-system".into(),
                name: "sluice-notifications".into()
            })
        );
        for bad in ["", "x", "/x", "x/", "a/b/c"] {
            assert!(Source::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_outcome_is_written_once() {
        let mut rec = NotificationRecord {
            id: 1,
            trigger: "on-aborted".into(),
            revision: "v3".into(),
            at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::UNIX_EPOCH),
            message: String::new(),
            analysis: None,
            pending: vec!["a".into(), "b".into()],
            delivered: vec![],
            failed: vec![],
        };
        assert!(settle(&mut rec, "a", &Ok(())));
        assert!(!settle(&mut rec, "a", &Ok(())));
        assert!(settle(&mut rec, "b", &Err("HTTP 400".into())));
        assert_eq!(rec.pending, Vec::<String>::new());
        assert_eq!(rec.delivered, vec!["a"]);
        assert_eq!(rec.failed, vec!["b: HTTP 400"]);
    }
}
