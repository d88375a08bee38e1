//! The controller's Kubernetes client: every request passes a client-side rate limit (a token
//! bucket: `qps` per second on average, bursts of up to `burst`), as client-go's is, so a
//! cold start or a release of every Rollout at once queues in the controller instead of
//! overloading the API server; and every request is counted by verb and resource in
//! `sluice_api_requests_total`, so "a reconcile that changes nothing makes no request" can be
//! checked from the outside.

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

/// Defaults of the rate limit, as Argo Rollouts' (`--qps 40 --burst 80`).
pub const DEFAULT_QPS: f64 = 40.0;
pub const DEFAULT_BURST: u32 = 80;

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

    /// Takes one token at `now`; returns how long to wait before using it.
    pub fn reserve_at(&self, now: Instant) -> Duration {
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
        if tokens >= 0.0 {
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
            wait: None,
            permitted: false,
        }
    }
}

/// Waits for a token in `poll_ready`, so requests leave in the order they were made (the
/// client's buffer calls one service in turn).
pub struct Throttled<S> {
    inner: S,
    bucket: Arc<Bucket>,
    metrics: Option<Arc<Metrics>>,
    wait: Option<Pin<Box<tokio::time::Sleep>>>,
    permitted: bool,
}

impl<S, B> Service<Request<B>> for Throttled<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        loop {
            if let Some(sleep) = self.wait.as_mut() {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.wait = None;
                self.permitted = true;
            }
            if self.permitted {
                return self.inner.poll_ready(cx);
            }
            let wait = self.bucket.reserve_at(Instant::now());
            if wait.is_zero() {
                self.permitted = true;
            } else {
                self.wait = Some(Box::pin(tokio::time::sleep(wait)));
            }
        }
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.permitted = false;
        if let Some(m) = &self.metrics {
            let (verb, resource) = classify(req.method(), req.uri());
            m.api_requests
                .get_or_create(&RequestLabels {
                    verb: verb.to_string(),
                    resource,
                })
                .inc();
        }
        self.inner.call(req)
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
        let waits: Vec<Duration> = (0..5).map(|_| b.reserve_at(t0)).collect();
        assert_eq!(&waits[..3], &[Duration::ZERO; 3]);
        assert_eq!(waits[3], Duration::from_millis(100));
        assert_eq!(waits[4], Duration::from_millis(200));
        // A second later the debt is paid and 8 tokens are back (capped at the burst of 3).
        let later = t0 + Duration::from_secs(1);
        let waits: Vec<Duration> = (0..4).map(|_| b.reserve_at(later)).collect();
        assert_eq!(&waits[..3], &[Duration::ZERO; 3]);
        assert_eq!(waits[3], Duration::from_millis(100));
    }

    #[test]
    fn no_limit_when_qps_is_zero() {
        let b = Bucket::new(0.0, 1);
        let t0 = Instant::now();
        assert!((0..1000).all(|_| b.reserve_at(t0).is_zero()));
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
