//! A real GitOps loop: Flux's source-controller and kustomize-controller (built from their Go
//! modules, `e2e/flux`) sync a shop (Rollout, Services, Istio VirtualService,
//! AnalysisTemplate) from a git server on loopback (`git http-backend`) into the local control
//! plane, and Sluice releases what git says. Commits of v1, v2 and a bad v3; v3 is rolled back
//! by analysis while git still says v3, and neither Flux nor Sluice moves the other's fields
//! for a minute; Flux's health check reads the Rollout through kstatus; reverting v3 in git is
//! a fast-track rollback; Flux re-applying the VirtualService mid-canary moves no traffic with
//! the settings the docs recommend, and only until Sluice puts its weights back without them.
//! The figures are printed.

mod common;

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use common::analysis::Monitoring;
use common::fixture::promote;
use common::routers::{dynamic_api, istio_weights, spec, virtual_services};
use common::{events_for, phase, rollouts, selector_hash, wait_status};
use e2e::flux::Flux;
use e2e::gitserver::{GitServer, Repo};
use e2e::{TestEnv, wait_for};
use futures::StreamExt;
use kube::Api;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use sluice::api::rollout::{PauseReason, RolloutPhase, RolloutStatus};

const LIMIT: Duration = Duration::from_secs(180);
const GAUGE: &str = "sluice_flux_success_rate";
/// The annotation Flux's docs give for objects another controller edits after creation.
const CREATE_ONLY: &str = "kustomize.toolkit.fluxcd.io/ssa: IfNotPresent";

fn kustomizations(env: &TestEnv) -> Api<DynamicObject> {
    dynamic_api(env, "kustomize.toolkit.fluxcd.io", "Kustomization")
}

fn git_repositories(env: &TestEnv) -> Api<DynamicObject> {
    dynamic_api(env, "source.toolkit.fluxcd.io", "GitRepository")
}

/// The shop as committed: image `web:<version>`, the VirtualService marked create-only (the
/// docs' recommended setting) or not, the analysis reading `prometheus`.
fn shop(
    version: u32,
    create_only: bool,
    prometheus: &str,
    namespace: &str,
) -> Vec<(&'static str, String)> {
    let annotations = if create_only {
        format!("\n  annotations:\n    {CREATE_ONLY}")
    } else {
        String::new()
    };
    let rollout = format!(
        r#"apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata:
  name: web
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers: [{{name: web, image: "registry.example/web:{version}"}}]
  strategy:
    canary:
      stableService: web-stable
      canaryService: web-canary
      scaleDownDelaySeconds: 2
      abortScaleDownDelaySeconds: 2
      trafficRouting:
        istio: {{virtualService: {{name: web, routes: [primary]}}}}
      steps:
        - setWeight: 50
        - pause: {{}}
        - analysis: {{templates: [{{templateName: success-rate}}]}}
"#
    );
    let services = ["web-stable", "web-canary"]
        .map(|name| {
            format!(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}{annotations}\nspec:\n  selector: {{app: web}}\n  ports: [{{port: 80}}]\n"
            )
        })
        .join("---\n");
    let virtual_service = format!(
        r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: web{annotations}
spec:
  hosts: [web]
  http:
    - name: primary
      route:
        - {{destination: {{host: web-stable}}, weight: 100}}
        - {{destination: {{host: web-canary}}, weight: 0}}
"#
    );
    let template = format!(
        r#"apiVersion: sluice.dev/v1alpha1
kind: AnalysisTemplate
metadata:
  name: success-rate
spec:
  metrics:
    - name: success-rate
      interval: 2s
      count: 2
      successCondition: "result[0] >= 0.95"
      provider:
        prometheus:
          address: "{prometheus}"
          query: '{GAUGE}{{namespace="{namespace}"}}'
"#
    );
    vec![
        ("shop/rollout.yaml", rollout),
        ("shop/services.yaml", services),
        ("shop/virtualservice.yaml", virtual_service),
        ("shop/analysistemplate.yaml", template),
    ]
}

/// The GitRepository (polled every 2 s) and the Kustomization (applied every 5 s, pruning,
/// waiting for every object's health through kstatus for up to 10 s) of the shop.
async fn sync(env: &TestEnv, url: &str) -> anyhow::Result<()> {
    let apply = |api: Api<DynamicObject>, name: &'static str, object: Value| async move {
        api.patch(
            name,
            &PatchParams::apply("sluice-tests").force(),
            &Patch::Apply(object),
        )
        .await
        .with_context(|| format!("applying {name}"))
    };
    apply(
        git_repositories(env),
        "shop",
        json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
               "metadata": {"name": "shop"},
               "spec": {"url": url, "interval": "2s", "timeout": "20s", "ref": {"branch": "main"}}}),
    )
    .await?;
    apply(
        kustomizations(env),
        "shop",
        json!({"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
               "metadata": {"name": "shop"},
               "spec": {"interval": "5s", "path": "./shop", "prune": true, "wait": true,
                        "timeout": "10s", "targetNamespace": env.namespace,
                        "sourceRef": {"kind": "GitRepository", "name": "shop"}}}),
    )
    .await?;
    Ok(())
}

/// The Kustomization's Ready condition: (status, reason, message), and the git revision it
/// last attempted (`lastAppliedRevision` waits for the health check to pass).
async fn ready(env: &TestEnv) -> anyhow::Result<((String, String, String), String)> {
    let k = kustomizations(env).get("shop").await?;
    let status = k.data.get("status").cloned().unwrap_or(Value::Null);
    let cond = status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .cloned()
        .unwrap_or(Value::Null);
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    Ok((
        (s(&cond["status"]), s(&cond["reason"]), s(&cond["message"])),
        s(&status["lastAttemptedRevision"]),
    ))
}

/// Waits until the Kustomization has attempted `commit` and its Ready condition satisfies
/// `check`; returns the condition.
async fn wait_ready(
    env: &TestEnv,
    commit: &str,
    what: &str,
    check: impl Fn(&(String, String, String)) -> bool,
) -> anyhow::Result<(String, String, String)> {
    wait_for(what, LIMIT, || async {
        let (cond, applied) = ready(env).await?;
        Ok((applied.ends_with(commit) && check(&cond)).then_some(cond))
    })
    .await
}

/// Asks Flux to sync now (what `flux reconcile` does): the requestedAt annotation.
async fn sync_now(env: &TestEnv) -> anyhow::Result<()> {
    let now = format!("{:?}", std::time::SystemTime::now());
    let patch = json!({"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": now}}});
    for api in [git_repositories(env), kustomizations(env)] {
        api.patch("shop", &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    Ok(())
}

/// Every change watched for `span` (see [`changes_while`]).
async fn changes_over(env: &TestEnv, span: Duration) -> anyhow::Result<Vec<(f64, String, String)>> {
    changes_while(env, async {
        tokio::time::sleep(span).await;
        Ok(())
    })
    .await
}

/// Waits until Flux has applied the shop more than `before` times (by its log).
async fn wait_apply(flux: &Flux, before: usize, what: &str) -> anyhow::Result<()> {
    wait_for(what, LIMIT, || async {
        Ok((applies(flux) > before).then_some(()))
    })
    .await
}

/// Every change of the VirtualService's weights and of the two Services' selected revisions,
/// watched until `until` resolves: (seconds since the start, what changed, the new value).
async fn changes_while(
    env: &TestEnv,
    until: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<Vec<(f64, String, String)>> {
    let start = Instant::now();
    let vs = watcher(
        virtual_services(env),
        watcher::Config::default().fields("metadata.name=web"),
    )
    .applied_objects()
    .map(|o| {
        o.map(|o| {
            (
                "weights".to_string(),
                format!("{:?}", istio_weights(&spec(&o))),
            )
        })
    });
    let services = watcher(
        env.api::<k8s_openapi::api::core::v1::Service>(),
        watcher::Config::default(),
    )
    .applied_objects()
    .map(|o| {
        o.map(|s| {
            let name = s.metadata.name.clone().unwrap_or_default();
            let hash = s
                .spec
                .and_then(|s| s.selector)
                .and_then(|m| {
                    m.get(sluice::api::constants::LABEL_POD_TEMPLATE_HASH)
                        .cloned()
                })
                .unwrap_or_default();
            (name, hash)
        })
    });
    let mut events = futures::stream::select(vs.boxed(), services.boxed());
    let mut last: std::collections::BTreeMap<String, String> = Default::default();
    let mut out = Vec::new();
    tokio::pin!(until);
    loop {
        tokio::select! {
            r = &mut until => {
                r?;
                break;
            }
            e = events.next() => {
                let Some(e) = e else { break };
                let (what, value) = e?;
                // The first value of each is where it starts, not a change.
                if let Some(before) = last.insert(what.clone(), value.clone())
                    && before != value
                {
                    out.push((start.elapsed().as_secs_f64(), what, value));
                }
            }
        }
    }
    Ok(out)
}

/// How long `what` held git's value (weights 100/0, a selector without a revision) each time
/// Flux wrote it, until Sluice wrote its own again; a value still held at the end counts as
/// held for ever (`f64::INFINITY`).
fn git_held(changes: &[(f64, String, String)], what: &str) -> Vec<f64> {
    let mut out = Vec::new();
    let mut since = None;
    for (at, _, value) in changes.iter().filter(|c| c.1 == what) {
        let gits = value == "(100, 0)" || value.is_empty();
        match (gits, since) {
            (true, None) => since = Some(*at),
            (false, Some(s)) => {
                out.push(at - s);
                since = None;
            }
            _ => {}
        }
    }
    if since.is_some() {
        out.push(f64::INFINITY);
    }
    out
}

/// Flux applied the shop this many times, by its log.
fn applies(flux: &Flux) -> usize {
    std::fs::read_to_string(&flux.kustomize_log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("server-side apply"))
        .count()
}

fn paused(s: &RolloutStatus) -> bool {
    s.pause_conditions
        .iter()
        .any(|p| p.reason == PauseReason::CanaryPauseStep)
}

#[tokio::test]
async fn flux_syncs_the_shop_from_git_and_sluice_releases_and_rolls_back_what_git_says() {
    TestEnv::run("flux-loop", |env| async move {
        let ns = env.namespace.clone();
        let dir = tokio::task::spawn_blocking(e2e::flux::build).await??;
        e2e::flux::install(&env.client, &dir).await?;
        e2e::routers::install_router_crds(&env.client).await?;
        let work = std::env::temp_dir().join(format!("sluice-flux-{ns}"));
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work)?;
        let flux = Flux::start(
            &dir,
            &env.cluster.kubeconfig,
            &env.cluster.bin_dir.join("kubectl"),
            &work,
        )?;
        env.attach_log(flux.source_log.clone());
        env.attach_log(flux.kustomize_log.clone());
        let server = GitServer::start(&work).await?;
        let repo = Repo::init(&work, "shop").await?;
        let mon = Monitoring::start(&env, GAUGE, 0.99).await?;
        let prom = mon.prometheus.url();
        let _sluice = common::ControllerProcess::start(&env)?;

        // v1: Flux creates the shop; Sluice makes v1 stable; Flux's health check is Ready.
        let c1 = repo.commit(&shop(1, true, &prom, &ns), "shop v1").await?;
        sync(&env, &format!("{}{}", server.url, repo.path)).await?;
        let v1 = common::fixture::wait_healthy(&env, "web", 2, LIMIT).await?;
        wait_ready(&env, &c1, "the Kustomization Ready on v1", |c| {
            c.0 == "True"
        })
        .await?;

        let v2 = release_v2(&env, &repo, &flux, &prom, &v1).await?;
        let (c3, v3) = roll_back_v3(&env, &repo, &mon, &flux, &v2).await?;

        // Revert v3 in git: back to v2 without steps or analysis.
        let t = Instant::now();
        let runs_before = env
            .api::<sluice::api::analysis::AnalysisRun>()
            .list(&Default::default())
            .await?
            .items
            .len();
        let revert = repo.revert(&c3).await?;
        sync_now(&env).await?;
        let back = wait_status(
            &env,
            "web",
            "v2 back in the template, Healthy",
            LIMIT,
            |s| {
                s.current_pod_hash.as_deref() == Some(v2.as_str())
                    && phase(s) == Some(RolloutPhase::Healthy)
            },
        )
        .await?;
        let rollback = t.elapsed().as_secs_f64();
        ensure!(
            back.stable_rs.as_deref() == Some(v2.as_str()) && back.abort.is_none(),
            "{back:?}"
        );
        let events = events_for(&env, "web").await?;
        ensure!(
            events.iter().any(|e| e.1 == "FastTrackRollback"),
            "{events:?}"
        );
        let runs_after = env
            .api::<sluice::api::analysis::AnalysisRun>()
            .list(&Default::default())
            .await?
            .items
            .len();
        ensure!(
            runs_after <= runs_before,
            "no analysis for the rollback: {runs_before} -> {runs_after}"
        );
        wait_ready(
            &env,
            &revert,
            "the Kustomization Ready after the revert",
            |c| c.0 == "True",
        )
        .await?;
        common::figure(&format!(
            "flux: revert of {v3} in git to Healthy on {v2} (fast-track, no steps): {rollback:.1} s"
        ));
        Ok(())
    })
    .await;
}

/// Commits v2: a release starts (its time from the commit printed); while it is paused at
/// 50%, Flux's health check says it is progressing, and Flux re-applying the VirtualService
/// moves no traffic when it is create-only, and only until Sluice puts its weights back when
/// it is not (both measured); promoted after the analysis passes, Flux Ready again.
async fn release_v2(
    env: &TestEnv,
    repo: &Repo,
    flux: &Flux,
    prom: &str,
    v1: &str,
) -> anyhow::Result<String> {
    let ns = &env.namespace;
    let t = Instant::now();
    let c2 = repo.commit(&shop(2, true, prom, ns), "shop v2").await?;
    let s = wait_status(env, "web", "v2's release started", LIMIT, |s| {
        s.current_pod_hash.as_deref().is_some_and(|h| h != v1)
    })
    .await?;
    let started = t.elapsed().as_secs_f64();
    let v2 = s.current_pod_hash.clone().context("v2")?;
    wait_status(env, "web", "v2 paused at 50%", LIMIT, paused).await?;
    let progressing = wait_ready(env, &c2, "Flux's health check waiting on v2", |c| {
        c.0 != "True"
    })
    .await?;
    let vs = virtual_services(env);
    ensure!(istio_weights(&spec(&vs.get("web").await?)) == (50, 50));

    // The docs' setting: Flux re-applies (after its health check of the paused release gives
    // up: 30 s at least), and the weights do not move.
    let before = applies(flux);
    sync_now(env).await?;
    let quiet = changes_while(env, async {
        wait_apply(flux, before, "Flux re-applying the shop").await?;
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok(())
    })
    .await?;
    let applied = applies(flux) - before;
    ensure!(
        quiet.is_empty(),
        "create-only VirtualService moved: {quiet:?}"
    );

    // Without it: each apply puts git's 100/0 back until Sluice restores 50/50.
    let before = applies(flux);
    let c = repo
        .commit(
            &shop(2, false, prom, ns),
            "v2, router and Services applied by Flux",
        )
        .await?;
    sync_now(env).await?;
    let flaps = changes_while(env, async {
        wait_apply(flux, before, "Flux applying the plain VirtualService").await?;
        wait_for("Sluice's weights and selectors back", LIMIT, || async {
            let w = istio_weights(&spec(&virtual_services(env).get("web").await?));
            let stable = selector_hash(env, "web-stable").await?;
            Ok((w == (50, 50) && stable.is_some()).then_some(()))
        })
        .await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        Ok(())
    })
    .await?;
    let (weights, selectors) = (git_held(&flaps, "weights"), git_held(&flaps, "web-stable"));
    ensure!(
        !weights.is_empty() && !selectors.is_empty(),
        "Flux put git's weights and selectors back: {flaps:?}"
    );
    let worst = |d: &[f64]| d.iter().copied().fold(0.0, f64::max);
    let (w_worst, s_worst) = (worst(&weights), worst(&selectors));
    ensure!(w_worst < 5.0 && s_worst < 5.0, "{flaps:?}");
    ensure!(
        ready(env).await?.1.ends_with(&c),
        "the plain objects came from Flux"
    );
    repo.commit(
        &shop(2, true, prom, ns),
        "v2, router and Services create-only again",
    )
    .await?;

    promote(env, "web").await?;
    let promoted = common::fixture::wait_promoted(env, "web", v1, LIMIT).await?;
    ensure!(promoted == v2);
    wait_for("Flux Ready on v2", LIMIT, || async {
        Ok((ready(env).await?.0.0 == "True").then_some(()))
    })
    .await?;
    common::figure(&format!(
        "flux: commit of v2 to its release started: {started:.1} s; health while paused: {progressing:?}; \
         Flux re-applying the VirtualService and Services mid-canary: create-only, no change ({applied} applies); \
         plain: git's weights held {weights:.3?} s and web-stable's selector without its revision {selectors:.3?} s \
         before Sluice wrote them again",
    ));
    Ok(v2)
}

/// Commits a bad v3: rolled back by analysis while git still says v3; for a minute after,
/// neither weights nor selectors move although Flux keeps applying; Flux's health check
/// reports the failure. Returns v3's commit and revision.
async fn roll_back_v3(
    env: &TestEnv,
    repo: &Repo,
    mon: &Monitoring,
    flux: &Flux,
    v2: &str,
) -> anyhow::Result<(String, String)> {
    let ns = &env.namespace;
    mon.set(0.2).await?;
    let t = Instant::now();
    let c3 = repo
        .commit(&shop(3, true, &mon.prometheus.url(), ns), "shop v3 (bad)")
        .await?;
    let s = wait_status(env, "web", "v3 paused at 50%", LIMIT, |s| {
        paused(s) && s.current_pod_hash.as_deref() != Some(v2)
    })
    .await?;
    let v3 = s.current_pod_hash.clone().context("v3")?;
    promote(env, "web").await?;
    let aborted = wait_status(env, "web", "v3 aborted by analysis", LIMIT, |s| {
        s.abort == Some(true) && phase(s) == Some(RolloutPhase::Degraded)
    })
    .await?;
    let to_abort = t.elapsed().as_secs_f64();
    ensure!(aborted.stable_rs.as_deref() == Some(v2));
    wait_for("all traffic back on v2", LIMIT, || async {
        Ok(
            (istio_weights(&spec(&virtual_services(env).get("web").await?)) == (100, 0))
                .then_some(()),
        )
    })
    .await?;
    let failed = wait_ready(env, &c3, "Flux's health check failing on v3", |c| {
        c.0 == "False"
    })
    .await?;
    ensure!(
        failed.2.contains("web") || failed.2.contains("Rollout"),
        "names the Rollout: {failed:?}"
    );

    let applied_before = applies(flux);
    let minute = changes_over(env, Duration::from_secs(60)).await?;
    let applied = applies(flux) - applied_before;
    ensure!(
        minute.is_empty(),
        "weights or selectors moved while git said v3: {minute:?}"
    );
    ensure!(
        applied >= 3,
        "Flux kept applying over the minute: {applied}"
    );
    let s = rollouts(env).get("web").await?.status.unwrap_or_default();
    ensure!(
        s.abort == Some(true) && s.current_pod_hash.as_deref() == Some(v3.as_str()),
        "{s:?}"
    );
    ensure!(selector_hash(env, "web-stable").await?.as_deref() == Some(v2));
    common::figure(&format!(
        "flux: commit of bad v3 to its abort by analysis: {to_abort:.1} s (one promotion by hand at the pause); \
         over 60 s with git on v3: {} weight or selector changes, {applied} Flux applies; health: {failed:?}",
        minute.len()
    ));
    mon.set(0.99).await?;
    Ok((c3, v3))
}
