//! The dashboard's HTTP side: the page and its assets, the views as JSON, the views pushed as
//! Server-Sent Events on every change the watches see, and the controls.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::Stream;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use serde::Serialize;
use tokio::sync::watch;

use super::view::{self, ListView, RolloutView, Snapshot};
use super::watch::{Scope, Watches};
use crate::api::rollout::Rollout;
use crate::cli::cluster::{CliError, Cluster};
use crate::cli::commands;

/// The header every control request carries. A page of another origin cannot set it without
/// a CORS preflight, which this server never grants, so no other site can press a button.
pub const CONTROL_HEADER: &str = "x-sluice-dashboard";

/// Time allowed for each API call a control makes.
const CONTROL_LIMIT: Duration = Duration::from_secs(15);

/// Time the stores get to list everything before the first view is pushed anyway.
const FIRST_LIST: Duration = Duration::from_secs(10);

/// A change wakes the streams; changes closer together than this make one render.
const SETTLE: Duration = Duration::from_millis(100);

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// What every handler shares.
pub struct Shared {
    pub client: Client,
    pub scope: Scope,
    pub watches: Watches,
    /// Turns true when the server is stopping; the event streams end.
    pub stopping: watch::Receiver<bool>,
    /// The `Host` values the page may be asked for under (loopback names and the port), or
    /// `None` to take any (an address given with --address).
    pub hosts: Option<Vec<String>>,
}

impl Shared {
    /// The list page. Whether the watches are still loading is read before what they hold,
    /// so a view that says it is not loading holds every first list.
    fn list(&self) -> ListView {
        let loading = self.watches.loading();
        let view = self.with_snapshot(|snap| {
            view::list(snap, &self.scope.describe(), self.watches.problems())
        });
        ListView { loading, ..view }
    }

    fn rollout(&self, namespace: &str, name: &str) -> RolloutView {
        let loading = self.watches.loading();
        let view = self.with_snapshot(|snap| {
            view::rollout(
                snap,
                namespace,
                name,
                Timestamp::now(),
                self.watches.problems(),
            )
        });
        RolloutView { loading, ..view }
    }

    /// `f` over what the watches hold now.
    fn with_snapshot<T>(&self, f: impl FnOnce(Snapshot<'_>) -> T) -> T {
        let (rollouts, runs, replica_sets, events) = self.state();
        f(Snapshot {
            rollouts: &rollouts,
            runs: &runs,
            replica_sets: &replica_sets,
            events: &events,
        })
    }

    #[allow(clippy::type_complexity)]
    fn state(
        &self,
    ) -> (
        Vec<Arc<crate::runtime::malformed::Parsed<Rollout>>>,
        Vec<Arc<crate::runtime::malformed::Parsed<crate::api::analysis::AnalysisRun>>>,
        Vec<Arc<k8s_openapi::api::apps::v1::ReplicaSet>>,
        Vec<Arc<k8s_openapi::api::events::v1::Event>>,
    ) {
        let w = &self.watches;
        (
            w.rollouts.state(),
            w.runs.state(),
            w.replica_sets.state(),
            w.events.state(),
        )
    }
}

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/rollouts/{namespace}/{name}", get(page))
        .route("/assets/app.js", get(app_js))
        .route("/assets/style.css", get(style_css))
        .route("/api/list", get(list_json))
        .route("/api/rollouts/{namespace}/{name}", get(rollout_json))
        .route("/api/stream", get(list_stream))
        .route("/api/stream/{namespace}/{name}", get(rollout_stream))
        .route("/api/rollouts/{namespace}/{name}/{control}", post(control))
        .layer(middleware::from_fn_with_state(shared.clone(), known_host))
        .with_state(shared)
}

/// Refuses requests for another host name than the server's own: a page of another site
/// that rebinds its DNS name to 127.0.0.1 cannot read the dashboard.
async fn known_host(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    if let Some(hosts) = &shared.hosts {
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        if !hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
            return (
                StatusCode::MISDIRECTED_REQUEST,
                format!("this dashboard answers only to {}", hosts.join(", ")),
            )
                .into_response();
        }
    }
    next.run(request).await
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn page() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn style_css() -> Response {
    asset("text/css; charset=utf-8", STYLE_CSS)
}

async fn list_json(State(shared): State<Arc<Shared>>) -> Json<ListView> {
    Json(shared.list())
}

async fn rollout_json(
    State(shared): State<Arc<Shared>>,
    Path((namespace, name)): Path<(String, String)>,
) -> Json<RolloutView> {
    Json(shared.rollout(&namespace, &name))
}

async fn list_stream(
    State(shared): State<Arc<Shared>>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    views(shared, |s| s.list())
}

async fn rollout_stream(
    State(shared): State<Arc<Shared>>,
    Path((namespace, name)): Path<(String, String)>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    views(shared, move |s| s.rollout(&namespace, &name))
}

/// A `view` event with the whole view now, and again after every change the watches see,
/// until the server stops.
fn views<T, F>(
    shared: Arc<Shared>,
    make: F,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>>
where
    T: Serialize,
    F: Fn(&Shared) -> T + Send + Sync + 'static,
{
    let changes = shared.watches.changes.clone();
    let stopping = shared.stopping.clone();
    let first = true;
    let stream = futures::stream::unfold(
        (shared, make, changes, stopping, first),
        |(shared, make, mut changes, mut stopping, first)| async move {
            if first {
                shared.watches.ready(FIRST_LIST).await;
            } else {
                tokio::select! {
                    changed = changes.changed() => changed.ok()?,
                    _ = stopping.wait_for(|s| *s) => return None,
                }
                tokio::time::sleep(SETTLE).await;
            }
            changes.borrow_and_update();
            let data = serde_json::to_string(&make(&shared))
                .unwrap_or_else(|e| serde_json::json!({"error": e.to_string()}).to_string());
            let event = SseEvent::default().event("view").data(data);
            Some((Ok(event), (shared, make, changes, stopping, false)))
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// What a control answers: whether it was applied, and what happened or why not.
#[derive(Serialize)]
pub struct ControlAnswer {
    pub ok: bool,
    pub message: String,
    /// A short reason when not applied (`DoesNotApply`, `WriteFailed`, ...).
    pub reason: Option<&'static str>,
}

async fn control(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((namespace, name, control)): Path<(String, String, String)>,
) -> Response {
    let answer = |status: StatusCode, ok, message: String, reason| {
        (
            status,
            Json(ControlAnswer {
                ok,
                message,
                reason,
            }),
        )
            .into_response()
    };
    if !headers.contains_key(CONTROL_HEADER) {
        return answer(
            StatusCode::FORBIDDEN,
            false,
            format!("a control needs the {CONTROL_HEADER} header (the dashboard's page sends it)"),
            Some("MissingHeader"),
        );
    }
    let Some(c) = view::control_named(&control) else {
        return answer(
            StatusCode::NOT_FOUND,
            false,
            format!("no control named {control:?}"),
            Some("UnknownControl"),
        );
    };
    if let Scope::Namespace(ns) = &shared.scope
        && ns != &namespace
    {
        return answer(
            StatusCode::FORBIDDEN,
            false,
            format!("this dashboard shows namespace {ns}, not {namespace}"),
            Some("OutOfScope"),
        );
    }
    let cl = Cluster {
        client: shared.client.clone(),
        namespace: namespace.clone(),
        server: "the API server".into(),
        limit: CONTROL_LIMIT,
    };
    match commands::control(&cl, &name, c).await {
        Ok(message) => {
            let message = message.trim_end().to_string();
            eprintln!("dashboard: {namespace}/{name}: {message}");
            answer(StatusCode::OK, true, message, None)
        }
        Err(e) => {
            let (status, reason) = refusal(&e);
            answer(status, false, e.to_string(), Some(reason))
        }
    }
}

/// The HTTP status and the short reason for a control that was not applied: it does not
/// apply now or the Rollout kept changing (409), not there (404), refused (403), no answer (502).
fn refusal(e: &CliError) -> (StatusCode, &'static str) {
    match e {
        CliError::Control(_) => (StatusCode::CONFLICT, "DoesNotApply"),
        CliError::Conflict { .. } => (StatusCode::CONFLICT, "Conflict"),
        CliError::NotFound { .. } => (StatusCode::NOT_FOUND, "NotFound"),
        CliError::Forbidden { .. } | CliError::Unauthorized { .. } => {
            (StatusCode::FORBIDDEN, "Forbidden")
        }
        CliError::Timeout { .. } => (StatusCode::BAD_GATEWAY, "Timeout"),
        _ => (StatusCode::BAD_GATEWAY, "WriteFailed"),
    }
}

#[cfg(test)]
mod tests {
    use super::{APP_JS, INDEX_HTML, STYLE_CSS};

    /// The page works without internet: its assets name no other site (the only URL is the
    /// SVG namespace, an identifier that is never fetched).
    #[test]
    fn the_assets_load_nothing_from_another_site() {
        for (name, text) in [
            ("index.html", INDEX_HTML),
            ("app.js", APP_JS),
            ("style.css", STYLE_CSS),
        ] {
            let text = text.replace("\"http://www.w3.org/2000/svg\"", "");
            for needle in ["http://", "https://", "//cdn", "url(", "@import"] {
                assert!(
                    !text.contains(needle),
                    "{name} names {needle:?}: assets must be served by the dashboard itself"
                );
            }
        }
    }
}
