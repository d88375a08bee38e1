//! How the controller's caches read their first lists (`--initial-lists`, `runtime::lists`):
//! streamed from the API server's watch cache when the API server can (Kubernetes' WatchList,
//! beta and on by default in Kubernetes 1.37), else paged; both ways a Rollout is released, on a real API
//! server. An API server with WatchList turned off is started apart to see the fallback.

mod common;

use std::time::Duration;

use anyhow::ensure;
use common::fixture::{
    create_rollout, rollout, set_image, wait_healthy, wait_paused_at, web_canary,
};
use common::{ControllerProcess, create_services, http_get, wait_all_healthy, wait_log_line};
use e2e::controlplane::{ControlPlane, Options};
use e2e::promtext::samples;
use e2e::{TestEnv, wait_for};
use kube::Api;
use serde_json::json;
use sluice::api::rollout::Rollout;
use sluice::runtime::lists::{InitialLists, PROBE_LIMIT, Probe, decide, probe};

const LIMIT: Duration = Duration::from_secs(60);

/// A canary of one pod released to its pause: the caches hold what the release needs.
async fn release_to_the_pause(env: &TestEnv) -> anyhow::Result<()> {
    create_services(env, &["web-stable", "web-canary"]).await?;
    let ro = web_canary(1, json!({"steps": [{"setWeight": 50}, {"pause": {}}]}))?;
    create_rollout(env, &ro).await?;
    wait_healthy(env, "web", 1, LIMIT).await?;
    set_image(env, "web", "registry.example/web:2").await?;
    wait_paused_at(env, "web", 1, LIMIT).await?;
    Ok(())
}

/// This API server (Kubernetes 1.37) streams: asked on its own, the probe gets the bookmark
/// that ends the initial events, and a controller left on `auto` says it streams, then
/// releases a canary to its pause from caches filled that way.
#[tokio::test]
async fn the_controller_streams_its_first_lists_when_the_api_server_can() {
    TestEnv::run("lists-streamed", |env| async move {
        let rollouts: Api<Rollout> = Api::namespaced(env.client.clone(), &env.namespace);
        let p = probe(&rollouts, PROBE_LIMIT).await;
        ensure!(p == Probe::Streams, "the probe on Kubernetes 1.37: {p:?}");
        let controller = ControllerProcess::start(&env)?;
        wait_log_line(
            &controller,
            "the controller saying it streams",
            &["the API server streams initial lists"],
        )
        .await?;
        release_to_the_pause(&env).await
    })
    .await;
}

/// Told `--initial-lists paged`, the controller does not ask and fills its caches from paged
/// lists; the release goes the same way.
#[tokio::test]
async fn the_controller_told_to_page_its_lists_releases_the_same() {
    TestEnv::run("lists-paged", |env| async move {
        let controller = ControllerProcess::start_with(&env, "a", &["--initial-lists", "paged"])?;
        let line = wait_log_line(
            &controller,
            "the controller saying it pages",
            &["first lists as told"],
        )
        .await?;
        ensure!(line.contains("paged"), "{line}");
        release_to_the_pause(&env).await
    })
    .await;
}

/// An API server with the WatchList feature turned off refuses a streamed watch; `auto` then
/// falls back to paged lists, and the reason is the API server's own answer.
#[tokio::test]
async fn without_watch_list_the_api_server_gets_paged_lists() -> anyhow::Result<()> {
    paged_on(Options {
        apiserver_args: vec!["--feature-gates=WatchList=false".into()],
        ..Default::default()
    })
    .await
}

/// On an etcd without RequestWatchProgress (Debian's 3.4) the same API server, WatchList on,
/// answers a streamed watch with an error: paged lists again.
#[tokio::test]
async fn on_an_old_etcd_the_api_server_gets_paged_lists() -> anyhow::Result<()> {
    let debian = std::path::PathBuf::from("/usr/bin/etcd");
    ensure!(
        debian.is_file(),
        "Debian's etcd-server (scripts/deps.sh installs it)"
    );
    paged_on(Options {
        etcd: Some(debian),
        ..Default::default()
    })
    .await
}

/// Starts a control plane with `opts` and checks that `auto` chooses paged lists there (and
/// that `streamed`, told, is kept).
async fn paged_on(opts: Options) -> anyhow::Result<()> {
    let mut cp = ControlPlane::start(opts).await?;
    let result = async {
        let client = cp.client().await?;
        e2e::harness::install_crds(&client, &e2e::harness::crds_dir()).await?;
        let rollouts: Api<Rollout> = Api::all(client);
        let p = probe(&rollouts, PROBE_LIMIT).await;
        let Probe::Refused(why) = p else {
            anyhow::bail!("a streamed watch worked with WatchList off");
        };
        ensure!(!why.is_empty(), "the refusal says why");
        eprintln!("the probe was refused: {why}");
        let chosen = decide(InitialLists::Auto, &rollouts).await;
        ensure!(chosen == InitialLists::Paged, "auto chose {chosen:?}");
        let told = decide(InitialLists::Streamed, &rollouts).await;
        ensure!(told == InitialLists::Streamed, "as told: {told:?}");
        Ok(())
    }
    .await;
    if result.is_err() {
        eprintln!("{}", cp.logs(20));
    }
    cp.stop();
    result
}

/// How many quiet Rollouts the restart below finds.
const QUIET: usize = 20;

/// From the controller's /metrics: Rollout reconciles begun, and its requests other than
/// watches, lists and the Lease's (what a reconcile of an unchanged Rollout must not send).
async fn reconciles_and_requests(c: &ControllerProcess) -> anyhow::Result<(u64, u64)> {
    let (code, text) = http_get(c, "/metrics").await?;
    ensure!(code == 200, "/metrics answered {code}");
    let reconciles = samples(&text, "sluice_reconciles_total")
        .first()
        .map(|(_, v)| *v as u64)
        .unwrap_or(0);
    let requests = samples(&text, "sluice_api_requests_total")
        .into_iter()
        .filter(|(l, _)| {
            let verb = l.get("verb").map(String::as_str);
            let resource = l.get("resource").map(String::as_str).unwrap_or_default();
            !matches!(verb, Some("watch" | "list")) && !resource.starts_with("leases")
        })
        .map(|(_, v)| v as u64)
        .sum();
    Ok((reconciles, requests))
}

/// After a restart each Rollout is reconciled once, as its own cache brings it, and the
/// reconcile of a Rollout nothing changed sends no request. (At this size the lists are in
/// before any reconcile runs, so this does not tell whether the first lists of pods and
/// ReplicaSets wake Rollouts, `rollout::cache::Wakes`: it passes with them waking too. Their
/// unit tests show that, and the benchmark's first pass at N = 3,000 and 10,000.)
#[tokio::test]
async fn after_a_restart_each_rollout_is_reconciled_once_and_nothing_is_sent() {
    TestEnv::run("lists-restart", |env| async move {
        let mut controller = ControllerProcess::start(&env)?;
        for i in 0..QUIET {
            let strategy = json!({"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}});
            create_rollout(&env, &rollout(&format!("quiet-{i}"), 2, strategy)?).await?;
        }
        wait_all_healthy(&env, QUIET, LIMIT * 2).await?;

        controller.restart()?;
        // The new process's counters start at zero.
        wait_for(
            "every Rollout reconciled after the restart",
            LIMIT,
            || async {
                let (reconciles, _) = reconciles_and_requests(&controller).await?;
                Ok((reconciles >= QUIET as u64).then_some(()))
            },
        )
        .await?;
        // Every cache has its first list by now (each reconcile waited for them), so every
        // wake-up those lists could give has been given; a window for a second reconcile to
        // show (not a wait for something to happen).
        tokio::time::sleep(Duration::from_secs(10)).await;
        let (reconciles, requests) = reconciles_and_requests(&controller).await?;
        ensure!(
            reconciles == QUIET as u64,
            "{reconciles} reconciles of {QUIET} unchanged Rollouts after the restart"
        );
        ensure!(
            requests == 0,
            "{requests} requests other than watches, lists and the Lease's for unchanged Rollouts"
        );
        Ok(())
    })
    .await;
}
