//! `kubectl sluice exercise start|status|history|cancel` through the real kubectl (the plugin
//! found on the PATH) against the local control plane, with the real controller, the traffic
//! simulator and Prometheus as tests/exercise.rs runs them.

mod common;

use std::time::Duration;

use anyhow::{Context, ensure};
use common::exercise::{
    LIMIT, analysis_of, create, exercise, rollout, stable_hash, stack, wait_back_on, wait_runs,
};
use common::plugin::{Out, kubectl_cmd, scratch, sluice};
use e2e::TestEnv;
use kube::ResourceExt;
use serde_json::json;
use sluice::api::constants::FIELD_MANAGER_CLI;
use sluice::api::exercise::{ExerciseResult, ExerciseRun, RolloutExercise};
use sluice::exercise::run::{CANCEL_REQUESTED, RUN_REQUESTED};

/// A schedule that does not fall due during a test: runs start only when asked.
const YEARLY: &str = "0 0 1 1 *";

fn show(what: &str, out: &Out) {
    eprintln!(
        "--- {what}: exit {}\n{}{}",
        out.code,
        out.stdout,
        if out.stderr.is_empty() {
            String::new()
        } else {
            format!("stderr:\n{}", out.stderr)
        }
    );
}

async fn read(env: &TestEnv, name: &str) -> anyhow::Result<RolloutExercise> {
    Ok(env.api::<RolloutExercise>().get(name).await?)
}

/// The fields the plugin's field manager owns on the exercise: only metadata.
async fn cli_fields(env: &TestEnv, name: &str) -> anyhow::Result<Vec<String>> {
    let ex = read(env, name).await?;
    Ok(ex
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.manager.as_deref() == Some(FIELD_MANAGER_CLI))
        .map(|m| {
            let fields = m.fields_v1.map(|f| f.0).unwrap_or_default();
            format!("{}:{fields}", m.subresource.unwrap_or_default())
        })
        .collect())
}

#[tokio::test]
async fn exercise_start_follows_a_run_to_passed_and_history_and_status_show_it() {
    TestEnv::run("excli-pass", |env| async move {
        let steps = json!([{"setWeight": 25}, analysis_of("web-canary"), {"setWeight": 50}, {"pause": {}}]);
        let stack = stack(&env, steps).await?;
        let stable = stable_hash(&env).await?;
        let generation = rollout(&env).await?.metadata.generation;
        let spec = json!({"schedule": YEARLY, "objectives": {"maxTimeToSafe": "3m", "maxFailedRequests": 100000}});
        create(&env, &exercise("drill", &stack.prom.url(), spec)?).await?;

        nothing_yet(&env).await?;
        let out = sluice(&env, &["exercise", "start", "drill", "--timeout", "5m"]).await?;
        show("exercise start drill", &out);
        let run = wait_runs(&env, "drill", 1, LIMIT).await?;
        ensure!(out.code == 0, "a Passed run exits 0: {} {}", out.code, out.stderr);
        ensure!(run.result == Some(ExerciseResult::Passed) && run.trigger == "Request", "{run:?}");
        start_printed_its_progress_and_figures(&out.stdout, &run)?;
        ensure!(!out.stdout.contains('\x1b'), "piped output is plain:\n{}", out.stdout);

        // One annotation of the metadata was written; never the spec or the status.
        let ex = read(&env, "drill").await?;
        ensure!(ex.metadata.generation == Some(1), "the spec was written: {:?}", ex.metadata.generation);
        ensure!(ex.annotations().contains_key(RUN_REQUESTED), "{:?}", ex.annotations());
        let owned = cli_fields(&env, "drill").await?;
        ensure!(owned.len() == 1 && owned[0].starts_with(":{\"f:metadata\":{\"f:annotations\":"), "{owned:?}");
        ensure!(!owned[0].contains("f:spec") && !owned[0].contains("f:status"), "{owned:?}");
        ensure!(rollout(&env).await?.metadata.generation == generation, "the Rollout's spec was written");

        history_and_status_show_the_run(&env, &run).await?;
        wait_back_on(&env, &stable).await?;
        stack.stop().await;
        Ok(())
    })
    .await;
}

/// Before any run: a typo gets the close name, history has none, cancel writes nothing.
async fn nothing_yet(env: &TestEnv) -> anyhow::Result<()> {
    let out = sluice(env, &["exercise", "status", "drlil"]).await?;
    show("exercise status drlil", &out);
    let want = format!(
        "exercise \"drlil\" not found in namespace \"{}\"; did you mean drill?",
        env.namespace
    );
    ensure!(
        out.code == 1 && out.stderr.contains(&want),
        "{} {}",
        out.code,
        out.stderr
    );
    let out = sluice(env, &["exercise", "history", "drill"]).await?;
    ensure!(
        out.code == 0 && out.stdout == "exercise drill has no runs yet\n",
        "{} {}",
        out.stdout,
        out.stderr
    );
    let out = sluice(env, &["exercise", "cancel", "drill"]).await?;
    show("exercise cancel drill (nothing running)", &out);
    ensure!(
        out.code == 0
            && out
                .stdout
                .contains("has no run under way: nothing to cancel"),
        "{} {} {}",
        out.code,
        out.stdout,
        out.stderr
    );
    let ex = read(env, "drill").await?;
    ensure!(
        !ex.annotations().contains_key(CANCEL_REQUESTED),
        "a cancel with nothing running wrote {:?}",
        ex.annotations()
    );
    ensure!(
        cli_fields(env, "drill").await?.is_empty(),
        "the plugin wrote the exercise"
    );
    Ok(())
}

/// `start`'s output: the request, a line per change, then the run's figures as recorded.
fn start_printed_its_progress_and_figures(out: &str, run: &ExerciseRun) -> anyhow::Result<()> {
    ensure!(
        out.starts_with("exercise drill: run asked for (sluice.dev/run-requested-at: "),
        "{out}"
    );
    // A line per change: releasing (and live, under analysis), then counting the requests.
    let running = out
        .find("  Running    run 1: ")
        .with_context(|| format!("no Running line:\n{out}"))?;
    let measuring = out
        .find("  Measuring  run 1: safe; counting requests")
        .with_context(|| format!("no Measuring line:\n{out}"))?;
    ensure!(running < measuring, "{out}");
    let ttd = run.time_to_detect.clone().context("time to detect")?;
    let tts = run.time_to_safe.clone().context("time to safe")?;
    let (failed, all) = (
        run.failed_requests.context("failed")?,
        run.requests.context("requests")?,
    );
    for want in [
        "\nRun 1: Passed\n".to_string(),
        format!("  Time to detect:   {ttd}\n"),
        format!("  Time to safe:     {tts}\n"),
        "  Peak weight:      25%\n".to_string(),
        format!("  Requests:         {failed} failed of {all} ("),
        "  Aborted at:       ".to_string(),
        "    met        mustDetect: wanted caught by analysis or Sluice's checks; got caught by analysis ".to_string(),
        "    met        maxTimeToSafe: wanted at most 3m; got ".to_string(),
        "    met        maxFailedRequests: wanted at most 100000; got ".to_string(),
    ] {
        ensure!(out.contains(&want), "start's result lacks {want:?}:\n{out}");
    }
    ensure!(failed > 0 && all > failed, "{failed} of {all}");
    Ok(())
}

async fn history_and_status_show_the_run(env: &TestEnv, run: &ExerciseRun) -> anyhow::Result<()> {
    let out = sluice(env, &["exercise", "history", "drill"]).await?;
    show("exercise history drill", &out);
    ensure!(out.code == 0, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    ensure!(
        lines.len() == 2 && lines[0].starts_with("RUN  TRIGGER  DUE/STARTED"),
        "{}",
        out.stdout
    );
    let ttd = run.time_to_detect.clone().unwrap_or_default();
    let counts = format!(
        "{}/{}",
        run.failed_requests.unwrap_or(-1),
        run.requests.unwrap_or(-1)
    );
    for cell in [
        "1 ",
        "Request",
        "Passed",
        ttd.as_str(),
        "25%",
        counts.as_str(),
        "caught by analysis",
    ] {
        ensure!(
            lines[1].contains(cell),
            "history row lacks {cell:?}: {}",
            lines[1]
        );
    }
    let out = sluice(env, &["exercise", "history", "drill", "-o", "json"]).await?;
    let listed: Vec<ExerciseRun> = serde_json::from_str(&out.stdout).context("history -o json")?;
    ensure!(listed.len() == 1 && &listed[0] == run, "{}", out.stdout);

    let out = sluice(env, &["exercise", "status", "drill"]).await?;
    show("exercise status drill", &out);
    ensure!(out.code == 0, "{}", out.stderr);
    for want in [
        "Name:             drill\n",
        "Rollout:          web\n",
        "Fault:            20% of requests fail (a strategic merge patch of the pod template)\n",
        "Phase:            Idle: next run at ",
        "Schedule:         0 0 1 1 * (UTC)\n",
        "Next run:         ",
        "Runs:             1 (1 in the history, which keeps 10)\n",
        "\nLast run\nRun 1: Passed\n",
        "  Peak weight:      25%\n",
        "    met        mustDetect",
    ] {
        ensure!(
            out.stdout.contains(want),
            "status lacks {want:?}:\n{}",
            out.stdout
        );
    }
    let out = sluice(env, &["exercise", "status", "drill", "-o", "yaml"]).await?;
    ensure!(
        out.stdout.contains("kind: RolloutExercise")
            && out.stdout.contains("result: Passed")
            && !out.stdout.contains("managedFields"),
        "{}",
        out.stdout
    );
    Ok(())
}

#[tokio::test]
async fn exercise_cancel_ends_a_run_started_with_no_wait_as_cancelled() {
    TestEnv::run("excli-cancel", |env| async move {
        let steps = json!([{"setWeight": 25}, {"pause": {"duration": "10m"}}, {"pause": {}}]);
        let stack = stack(&env, steps).await?;
        let stable = stable_hash(&env).await?;
        create(
            &env,
            &exercise("manual", &stack.prom.url(), json!({"schedule": YEARLY}))?,
        )
        .await?;

        let out = sluice(&env, &["exercise", "start", "manual", "--no-wait"]).await?;
        show("exercise start manual --no-wait", &out);
        ensure!(
            out.code == 0 && out.stdout.contains("not waiting (--no-wait)"),
            "{} {} {}",
            out.code,
            out.stdout,
            out.stderr
        );
        common::wait_status(&env, "web", "the faulty revision live", LIMIT, |s| {
            s.exercise.as_ref().is_some_and(|e| e.live_at.is_some())
        })
        .await?;
        get_says_the_release_is_a_drill(&env).await?;
        a_second_start_follows_instead_of_asking(&env).await?;
        status_shows_the_run_under_way(&env, &stable).await?;
        cancel_ends_it_and_a_following_start_exits_3(&env, &stable).await?;

        let out = sluice(&env, &["exercise", "history", "manual"]).await?;
        show("exercise history manual", &out);
        ensure!(
            out.stdout
                .lines()
                .nth(1)
                .is_some_and(|l| l.starts_with("1    Request")
                    && l.contains("Cancelled")
                    && l.contains("cancelled on request")),
            "{}",
            out.stdout
        );
        let out = sluice(&env, &["exercise", "cancel", "manual"]).await?;
        ensure!(
            out.code == 0 && out.stdout.contains("nothing to cancel"),
            "{}",
            out.stdout
        );
        wait_back_on(&env, &stable).await?;
        stack.stop().await;
        Ok(())
    })
    .await;
}

/// `kubectl sluice get rollout` on the Rollout under the exercise: its release is said to be
/// a drill, with the run and the faulty revision live, and what to do is the exercise's.
async fn get_says_the_release_is_a_drill(env: &TestEnv) -> anyhow::Result<()> {
    let out = sluice(env, &["get", "rollout", "web"]).await?;
    show("get rollout web", &out);
    ensure!(out.code == 0, "{}", out.stderr);
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("Exercise:"))
        .with_context(|| format!("no Exercise line:\n{}", out.stdout))?;
    ensure!(
        line.contains("manual run 1 (a rehearsed rollback, not a real release): faulty revision ")
            && line.contains(" live since "),
        "{line}"
    );
    ensure!(
        out.stdout
            .contains("Next:       kubectl sluice exercise status manual (or cancel manual)"),
        "{}",
        out.stdout
    );
    Ok(())
}

async fn run_requested(env: &TestEnv) -> anyhow::Result<Option<String>> {
    Ok(read(env, "manual")
        .await?
        .annotations()
        .get(RUN_REQUESTED)
        .cloned())
}

/// A second start follows the run under way instead of asking again; 4 at --timeout.
async fn a_second_start_follows_instead_of_asking(env: &TestEnv) -> anyhow::Result<()> {
    let before = run_requested(env).await?;
    let out = sluice(env, &["exercise", "start", "manual", "--timeout", "3s"]).await?;
    show("exercise start manual --timeout 3s (under way)", &out);
    ensure!(
        out.code == 4,
        "still under way at --timeout exits 4: {} {}",
        out.code,
        out.stderr
    );
    ensure!(
        out.stdout
            .starts_with("exercise manual: run 1 (Request) is already under way (Running: "),
        "{}",
        out.stdout
    );
    ensure!(
        out.stdout.contains("still under way after 3s (--timeout)"),
        "{}",
        out.stdout
    );
    let after = run_requested(env).await?;
    ensure!(
        before == after,
        "a run under way was asked for again: {before:?} -> {after:?}"
    );
    Ok(())
}

/// `status` of the run under way: what the Rollout's block says.
async fn status_shows_the_run_under_way(env: &TestEnv, stable: &str) -> anyhow::Result<()> {
    let out = sluice(env, &["exercise", "status", "manual"]).await?;
    show("exercise status manual (under way)", &out);
    for want in [
        "\nRun 1 (under way)\n",
        "  Trigger:          Request\n",
        &format!("  Stable revision:  {stable}\n"),
        "  Peak weight:      25%\n",
        "  Aborted at:       not yet\n",
    ] {
        ensure!(
            out.stdout.contains(want),
            "status lacks {want:?}:\n{}",
            out.stdout
        );
    }
    ensure!(
        !out.stdout.contains("  Live at:          not yet"),
        "{}",
        out.stdout
    );
    Ok(())
}

/// `cancel` says the Rollout goes back to stable; a `start` following the run ends with it,
/// Cancelled, exit 3.
async fn cancel_ends_it_and_a_following_start_exits_3(
    env: &TestEnv,
    stable: &str,
) -> anyhow::Result<()> {
    let args = [
        "sluice",
        "exercise",
        "start",
        "manual",
        "-n",
        &env.namespace,
    ];
    let mut follower = kubectl_cmd(env, &env.cluster.kubeconfig, &args)?;
    let follower = tokio::spawn(async move { follower.output().await });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let out = sluice(env, &["exercise", "cancel", "manual"]).await?;
    show("exercise cancel manual", &out);
    ensure!(out.code == 0, "{}", out.stderr);
    ensure!(
        out.stdout.contains(&format!(
            "Rollout web goes back to its stable revision {stable}"
        )),
        "{}",
        out.stdout
    );
    let run = wait_runs(env, "manual", 1, LIMIT).await?;
    ensure!(
        run.result == Some(ExerciseResult::Cancelled)
            && run.message.as_deref() == Some("cancelled on request"),
        "{run:?}"
    );
    let followed = tokio::time::timeout(LIMIT, follower).await???;
    let stdout = String::from_utf8_lossy(&followed.stdout);
    eprintln!(
        "--- exercise start manual (following, cancelled): exit {:?}\n{stdout}",
        followed.status.code()
    );
    ensure!(
        followed.status.code() == Some(3)
            && stdout.contains("\nRun 1: Cancelled\n  Message:          cancelled on request\n"),
        "{:?} {stdout}",
        followed.status.code()
    );
    Ok(())
}

#[tokio::test]
async fn exercise_commands_refuse_an_invalid_spec_a_reader_and_complete_names() {
    TestEnv::run("excli-errors", |env| async move {
        let _controller = common::ControllerProcess::start(&env)?;
        let bad = exercise("nightly", "http://127.0.0.1:9", json!({"schedule": "* * * * * *"}))?;
        create(&env, &bad).await?;
        env.api::<RolloutExercise>().get("nightly").await?;
        e2e::wait_for("the exercise Invalid", LIMIT, || async {
            let ex = read(&env, "nightly").await?;
            Ok(sluice::cli::exercise::follow::invalid(&ex))
        })
        .await?;
        let out = sluice(&env, &["exercise", "start", "nightly"]).await?;
        show("exercise start nightly (invalid)", &out);
        ensure!(out.code == 1 && out.stderr.contains("kubectl sluice: exercise nightly cannot run: InvalidSpec: "), "{} {}", out.code, out.stderr);
        ensure!(!read(&env, "nightly").await?.annotations().contains_key(RUN_REQUESTED), "an invalid exercise was asked to run");

        // A user who may only read exercises: start is refused with the verb and the resource.
        let role = format!(r#"{{"apiVersion": "v1", "kind": "List", "items": [
            {{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {{"name": "viewer"}}}},
            {{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {{"name": "viewer"}},
              "rules": [{{"apiGroups": ["sluice.dev"], "resources": ["rolloutexercises"], "verbs": ["get", "list", "watch"]}}]}},
            {{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {{"name": "viewer"}},
              "roleRef": {{"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "viewer"}},
              "subjects": [{{"kind": "ServiceAccount", "name": "viewer", "namespace": "{ns}"}}]}}]}}"#, ns = env.namespace);
        let applied = env.kubectl(&["apply", "-f", "-"], Some(&role)).await?;
        ensure!(applied.success, "{}", applied.stderr);
        let dir = scratch(&env)?;
        let viewer = e2e::identity::token_kubeconfig(&env.client, &env.cluster.kubeconfig, &env.namespace, "viewer", &dir.join("viewer.kubeconfig")).await?;
        let good = exercise("drill", "http://127.0.0.1:9", json!({"schedule": YEARLY}))?;
        create(&env, &good).await?;
        e2e::wait_for("drill seen by the controller", LIMIT, || async {
            Ok(read(&env, "drill").await?.status.filter(|s| s.observed_generation == Some(1)))
        })
        .await?;
        let viewer_s = viewer.to_string_lossy().to_string();
        let out = common::plugin::kubectl_run(&env, &env.cluster.kubeconfig, &["sluice", "exercise", "start", "drill", "-n", &env.namespace, "--kubeconfig", &viewer_s]).await?;
        show("exercise start drill (a viewer)", &out);
        let want = format!("forbidden: you may not patch rolloutexercises.sluice.dev in namespace \"{}\"", env.namespace);
        ensure!(out.code == 1 && out.stderr.contains(&want), "{} {}", out.code, out.stderr);
        // A reader sees the status even without the right to read the Rollout.
        let out = common::plugin::kubectl_run(&env, &env.cluster.kubeconfig, &["sluice", "exercise", "status", "drill", "-n", &env.namespace, "--kubeconfig", &viewer_s]).await?;
        ensure!(out.code == 0 && out.stdout.contains("Name:             drill"), "{} {} {}", out.code, out.stdout, out.stderr);

        // kubectl's completion of the plugin's words and of the exercises' names.
        let link = dir.join("kubectl_complete-sluice");
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_kubectl-sluice"), &link)?;
        let path = format!("{}:{}", dir.display(), common::plugin::plugin_path()?);
        let complete = |args: &[&str]| {
            let mut cmd = tokio::process::Command::new(env.cluster.bin_dir.join("kubectl"));
            cmd.arg("__complete").args(args).env("PATH", &path).env("KUBECONFIG", &env.cluster.kubeconfig).kill_on_drop(true);
            cmd
        };
        let words = complete(&["sluice", "exercise", "st"]).output().await?;
        let words = String::from_utf8_lossy(&words.stdout).to_string();
        ensure!(words.lines().filter(|l| l.starts_with("start") || l.starts_with("status")).count() == 2, "kubectl __complete sluice exercise st: {words}");
        let names = complete(&["sluice", "-n", &env.namespace, "exercise", "history", "d"]).output().await?;
        let names = String::from_utf8_lossy(&names.stdout).to_string();
        ensure!(names.lines().next() == Some("drill") && !names.contains("nightly") && names.contains(":4"), "exercise names: {names}");
        Ok(())
    })
    .await;
}
