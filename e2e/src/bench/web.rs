//! The endpoint both controllers' `web` metrics ask: `GET /good/<namespace>/<name>` answers
//! `{"good": true}` unless the benchmark has turned that Rollout's canary bad. It counts the
//! questions per Rollout, so the benchmark knows when an analysis has measured.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use tokio::task::JoinHandle;

#[derive(Default)]
struct Inner {
    bad: HashSet<(String, String)>,
    asked: HashMap<(String, String), u64>,
    /// When the first bad answer since the Rollout was turned bad was given.
    first_bad: HashMap<(String, String), Instant>,
}

/// The running endpoint; stops when dropped.
pub struct GoodEndpoint {
    pub base: String,
    inner: Arc<Mutex<Inner>>,
    task: JoinHandle<()>,
}

impl Drop for GoodEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path((namespace, name)): Path<(String, String)>,
) -> impl axum::response::IntoResponse {
    let mut g = inner.lock().unwrap_or_else(PoisonError::into_inner);
    let key = (namespace, name);
    let good = !g.bad.contains(&key);
    if !good {
        g.first_bad.entry(key.clone()).or_insert_with(Instant::now);
    }
    *g.asked.entry(key).or_insert(0) += 1;
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "good": good }).to_string(),
    )
}

impl GoodEndpoint {
    /// Serves on a free loopback port.
    pub async fn start() -> anyhow::Result<Self> {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .route("/good/{namespace}/{name}", get(answer))
            .with_state(inner.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(GoodEndpoint {
            base: format!("http://{addr}"),
            inner,
            task,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes the answer for `namespace/name` bad (or good again).
    pub fn set_bad(&self, namespace: &str, name: &str, bad: bool) {
        let key = (namespace.to_string(), name.to_string());
        let mut g = self.lock();
        g.first_bad.remove(&key);
        if bad {
            g.bad.insert(key);
        } else {
            g.bad.remove(&key);
        }
    }

    /// When `namespace/name` was first answered bad since it was last turned bad.
    pub fn answered_bad_at(&self, namespace: &str, name: &str) -> Option<Instant> {
        self.lock()
            .first_bad
            .get(&(namespace.to_string(), name.to_string()))
            .copied()
    }

    /// How often `namespace/name` was asked.
    pub fn asked(&self, namespace: &str, name: &str) -> u64 {
        self.lock()
            .asked
            .get(&(namespace.to_string(), name.to_string()))
            .copied()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_good_until_turned_bad_and_counts_questions() {
        let ep = GoodEndpoint::start().await.expect("endpoint");
        let get = |path: &'static str| {
            let url = format!("{}{path}", ep.base);
            async move {
                let text = reqwest::get(url)
                    .await
                    .expect("request")
                    .text()
                    .await
                    .expect("body");
                serde_json::from_str::<serde_json::Value>(&text).expect("json")
            }
        };
        assert_eq!(get("/good/ns/a").await["good"], true);
        ep.set_bad("ns", "a", true);
        assert_eq!(ep.answered_bad_at("ns", "a"), None);
        let before = Instant::now();
        assert_eq!(get("/good/ns/a").await["good"], false);
        let first = ep.answered_bad_at("ns", "a").expect("answered bad");
        assert!(
            first >= before,
            "the bad answer's time is when it was given"
        );
        assert_eq!(get("/good/ns/a").await["good"], false);
        assert_eq!(
            ep.answered_bad_at("ns", "a"),
            Some(first),
            "the first one is kept"
        );
        assert_eq!(get("/good/ns/b").await["good"], true);
        ep.set_bad("ns", "a", false);
        assert_eq!(
            ep.answered_bad_at("ns", "a"),
            None,
            "turning it good forgets it"
        );
        assert_eq!(get("/good/ns/a").await["good"], true);
        assert_eq!(ep.asked("ns", "a"), 4);
        assert_eq!(ep.asked("ns", "b"), 1);
        assert_eq!(ep.asked("ns", "c"), 0);
    }
}
