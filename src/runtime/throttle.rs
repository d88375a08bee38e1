//! The controller's Kubernetes client: every request passes a client-side rate limit (a token
//! bucket: `qps` per second on average, bursts of up to `burst`), as client-go's is, so a
//! cold start or a release of every Rollout at once queues in the controller instead of
//! overloading the API server; and every request is counted by verb and resource in
//! `sluice_api_requests_total`, so "a reconcile that changes nothing makes no request" can be
//! checked from the outside.
//!
//! Work that makes a release safe (a verdict that fails a release, the abort it causes) runs
//! inside [`urgent`]: its requests take their tokens but never wait for them, so a rollback is
//! not queued behind a thousand routine step changes. The tokens they take are still owed:
//! the routine requests after them wait that much longer, and the average stays at `qps`.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{Method, Request};
use kube::client::ClientBuilder;
use kube::{Client, Config};
use tower::{Layer, Service};

use crate::telemetry::{Metrics, RequestLabels};

/// Defaults of the rate limit: Argo Rollouts' budget. Its `--qps 40 --burst 80` apply to each
/// of its clients (client-go gives every client set its own bucket), and its Kubernetes and
/// argoproj clients carry a Rollout's requests, so it may send 80 a second with bursts of 160.
/// Sluice has one bucket for every request, so the same budget is 80 and 160. At 40, the
/// benchmark's 1,000 new Rollouts reached Healthy at the bucket's pace (about 8 requests
/// each, 5 Rollouts a second) with the machine half idle.
pub const DEFAULT_QPS: f64 = 80.0;
pub const DEFAULT_BURST: u32 = 160;

/// A token bucket handing out reservations: each request takes a token, going into debt when
/// none is left; the debt says how long the request waits. Requests are served in order.
#[derive(Debug)]
pub struct Bucket {
    qps: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    /// `qps <= 0` means no limit.
    pub fn new(qps: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Bucket {
            qps,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// Takes one token at `now`; returns how long to wait before using it. An urgent
    /// request takes its token (going into debt if need be) and never waits.
    pub fn reserve_at(&self, now: Instant, urgent: bool) -> Duration {
        if self.qps <= 0.0 || !self.qps.is_finite() {
            return Duration::ZERO;
        }
        let Ok(mut s) = self.state.lock() else {
            return Duration::ZERO;
        };
        let (tokens, last) = *s;
        let elapsed = now.saturating_duration_since(last).as_secs_f64();
        let tokens = (tokens + elapsed * self.qps).min(self.burst) - 1.0;
        *s = (tokens, now.max(last));
        if tokens >= 0.0 || urgent {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-tokens / self.qps)
        }
    }
}

/// The tower layer that puts [`Throttled`] in front of the client's transport.
#[derive(Clone)]
pub struct ThrottleLayer {
    bucket: Arc<Bucket>,
    metrics: Option<Arc<Metrics>>,
}

impl ThrottleLayer {
    pub fn new(bucket: Arc<Bucket>, metrics: Option<Arc<Metrics>>) -> Self {
        ThrottleLayer { bucket, metrics }
    }
}

impl<S> Layer<S> for ThrottleLayer {
    type Service = Throttled<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Throttled {
            inner,
            bucket: self.bucket.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

tokio::task_local! {
    static URGENT: ();
}

/// Runs `work` with its Kubernetes requests in the urgent lane: they do not wait for the rate
/// limit (see the module's documentation).
pub async fn urgent<F: Future>(work: F) -> F::Output {
    URGENT.scope((), work).await
}

/// Whether the calling task is inside [`urgent`].
pub fn is_urgent() -> bool {
    URGENT.try_with(|_| ()).is_ok()
}

/// Waits for a token in the response future, that is in the task that made the request (the
/// client's buffer only hands the future over): a request made inside [`urgent`] is known
/// there. Tokens are reserved in the order the requests are first polled.
pub struct Throttled<S> {
    inner: S,
    bucket: Arc<Bucket>,
    metrics: Option<Arc<Metrics>>,
}

impl<S, B> Service<Request<B>> for Throttled<S>
where
    S: Service<Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if let Some(m) = &self.metrics {
            let (verb, resource) = classify(req.method(), req.uri());
            m.api_requests
                .get_or_create(&RequestLabels {
                    verb: verb.to_string(),
                    resource,
                })
                .inc();
        }
        // The client's transport does nothing until its future is polled.
        let sent = self.inner.call(req);
        let bucket = self.bucket.clone();
        Box::pin(async move {
            let wait = bucket.reserve_at(Instant::now(), is_urgent());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            sent.await
        })
    }
}

/// The Kubernetes verb and the resource (with its subresource, `pods/status`) of a request,
/// read from its method and path.
pub fn classify(method: &Method, uri: &http::Uri) -> (&'static str, String) {
    let segs: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    // /api/v1/... or /apis/group/version/...
    let rest: &[&str] = match segs.first() {
        Some(&"api") if segs.len() >= 2 => &segs[2..],
        Some(&"apis") if segs.len() >= 3 => &segs[3..],
        _ => return (other_verb(method), "nonresource".into()),
    };
    let rest = match rest {
        ["namespaces", _ns, tail @ ..] if !tail.is_empty() => tail,
        r => r,
    };
    let (resource, named) = match rest {
        [] => return (other_verb(method), "discovery".into()),
        [r] => (r.to_string(), false),
        [r, _name] => (r.to_string(), true),
        [r, _name, sub, ..] => (format!("{r}/{sub}"), true),
    };
    let watch = uri
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
    let verb = match *method {
        Method::GET if watch => "watch",
        Method::GET if named => "get",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => "other",
    };
    (verb, resource)
}

fn other_verb(method: &Method) -> &'static str {
    match *method {
        Method::GET => "get",
        Method::POST => "create",
        _ => "other",
    }
}

/// A client from the default configuration (kubeconfig or in-cluster), rate limited and
/// counting its requests.
pub async fn client(qps: f64, burst: u32, metrics: Arc<Metrics>) -> Result<Client, kube::Error> {
    let config = Config::infer().await.map_err(kube::Error::InferConfig)?;
    let layer = ThrottleLayer::new(Arc::new(Bucket::new(qps, burst)), Some(metrics));
    Ok(ClientBuilder::try_from(config)?.with_layer(&layer).build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_requests_wait_their_turn() {
        let b = Bucket::new(10.0, 3);
        let t0 = Instant::now();
        let waits: Vec<Duration> = (0..5).map(|_| b.reserve_at(t0, false)).collect();
        assert_eq!(&waits[..3], &[Duration::ZERO; 3]);
        assert_eq!(waits[3], Duration::from_millis(100));
        assert_eq!(waits[4], Duration::from_millis(200));
        // A second later the debt is paid and 8 tokens are back (capped at the burst of 3).
        let later = t0 + Duration::from_secs(1);
        let waits: Vec<Duration> = (0..4).map(|_| b.reserve_at(later, false)).collect();
        assert_eq!(&waits[..3], &[Duration::ZERO; 3]);
        assert_eq!(waits[3], Duration::from_millis(100));
    }

    #[test]
    fn urgent_requests_do_not_wait_but_the_next_routine_one_pays() {
        let b = Bucket::new(10.0, 1);
        let t0 = Instant::now();
        assert_eq!(b.reserve_at(t0, false), Duration::ZERO);
        // The bucket is empty: routine requests would wait 100, 200 ms...
        assert_eq!(b.reserve_at(t0, true), Duration::ZERO);
        assert_eq!(b.reserve_at(t0, true), Duration::ZERO);
        // ...and the two urgent tokens are owed: the next routine request waits 300 ms.
        assert_eq!(b.reserve_at(t0, false), Duration::from_millis(300));
    }

    #[tokio::test]
    async fn the_urgent_lane_is_seen_from_inside_only() {
        assert!(!is_urgent());
        assert!(urgent(async { is_urgent() }).await);
        // Also across awaits and in nested futures of the same task.
        let nested = urgent(async {
            tokio::task::yield_now().await;
            async { is_urgent() }.await
        })
        .await;
        assert!(nested);
        // A task spawned from inside is not: it is not part of that work.
        let spawned = urgent(async { tokio::spawn(async { is_urgent() }).await })
            .await
            .expect("join");
        assert!(!spawned);
        assert!(!is_urgent());
    }

    #[test]
    fn no_limit_when_qps_is_zero() {
        let b = Bucket::new(0.0, 1);
        let t0 = Instant::now();
        assert!((0..1000).all(|_| b.reserve_at(t0, false).is_zero()));
    }

    #[test]
    fn requests_are_named_by_verb_and_resource() {
        let cases = [
            (
                "GET",
                "/api/v1/namespaces/a/pods?labelSelector=x",
                "list",
                "pods",
            ),
            (
                "GET",
                "/api/v1/namespaces/a/pods?watch=true&resourceVersion=1",
                "watch",
                "pods",
            ),
            (
                "GET",
                "/api/v1/namespaces/a/services/web",
                "get",
                "services",
            ),
            ("GET", "/api/v1/pods", "list", "pods"),
            ("GET", "/api/v1/namespaces/a", "get", "namespaces"),
            (
                "PUT",
                "/apis/sluice.dev/v1alpha1/namespaces/a/rollouts/web/status",
                "update",
                "rollouts/status",
            ),
            (
                "PATCH",
                "/apis/apps/v1/namespaces/a/replicasets/web-abc",
                "patch",
                "replicasets",
            ),
            (
                "POST",
                "/apis/events.k8s.io/v1/namespaces/a/events",
                "create",
                "events",
            ),
            (
                "GET",
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions?watch=1",
                "watch",
                "customresourcedefinitions",
            ),
            ("GET", "/version", "get", "nonresource"),
            ("GET", "/apis/apps/v1", "get", "discovery"),
        ];
        for (method, path, verb, resource) in cases {
            let m: Method = method.parse().expect("method");
            let uri: http::Uri = path.parse().expect("uri");
            assert_eq!(
                classify(&m, &uri),
                (verb, resource.to_string()),
                "{method} {path}"
            );
        }
    }
}
