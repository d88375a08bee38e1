//! `kubectl sluice` through the real kubectl: plugin discovery, get, promote, pause, resume,
//! abort, retry and promote --full against a Rollout the real controller runs.

mod common;

use std::time::Duration;

use anyhow::{Context, ensure};
use common::fixture::{create_rollout, rollout, set_image, wait_healthy, wait_paused_at};
use common::plugin::{kubectl_cmd, kubectl_run, plugin_path, scratch, sluice};
use common::{ControllerProcess, create_services, phase, rollouts, wait_status};
use e2e::TestEnv;
use serde_json::json;
use sluice::api::rollout::{PauseReason, RolloutPhase};

const LIMIT: Duration = Duration::from_secs(90);

/// Runs `kubectl sluice ARGS` with the plugin found on the PATH, as a user would.
async fn plugin(env: &TestEnv, args: &[&str]) -> anyhow::Result<(bool, String, String)> {
    let out = sluice(env, args).await?;
    Ok((out.code == 0, out.stdout, out.stderr))
}

/// The controller, and Rollout `web` (2 pods; a canary of setWeight 50, pause, setWeight 100
/// over the Service `web-canary`) once Healthy.
async fn start_healthy_web(env: &TestEnv) -> anyhow::Result<ControllerProcess> {
    let controller = ControllerProcess::start(env)?;
    create_services(env, &["web-canary"]).await?;
    let ro = rollout(
        "web",
        2,
        json!({"canary": {"canaryService": "web-canary", "abortScaleDownDelaySeconds": 1,
            "steps": [{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]}}),
    )?;
    create_rollout(env, &ro).await?;
    wait_healthy(env, "web", 2, LIMIT).await?;
    Ok(controller)
}

#[tokio::test]
async fn kubectl_sluice_steers_a_release() {
    TestEnv::run("cli-steer", |env| async move {
        let _controller = start_healthy_web(&env).await?;

        let (ok, _, err) = plugin(&env, &["abort", "web"]).await?;
        ensure!(
            !ok && err.contains("nothing to abort"),
            "abort of a settled Rollout must be refused clearly: {err}"
        );
        let (ok, _, err) = plugin(&env, &["get", "nope"]).await?;
        ensure!(!ok && err.contains("not found"), "{err}");

        set_image(&env, "web", "registry.example/web:2").await?;
        wait_paused_at(&env, "web", 1, LIMIT).await?;
        let (ok, out, err) = plugin(&env, &["get", "web"]).await?;
        ensure!(ok, "{err}");
        ensure!(
            out.contains("Step:       1/3") && out.contains("Paused") && out.contains("canary 50%"),
            "{out}"
        );

        // A pause by request sits beside the step's own pause; resume lifts only it.
        let (ok, out, err) = plugin(&env, &["pause", "web"]).await?;
        ensure!(ok && out.contains("paused"), "{err}");
        let st = rollouts(&env).get("web").await?.status.context("status")?;
        ensure!(
            st.pause_conditions
                .iter()
                .any(|p| p.reason == PauseReason::UserPause),
            "{:?}",
            st.pause_conditions
        );
        let (ok, _, err) = plugin(&env, &["resume", "web"]).await?;
        ensure!(ok, "{err}");
        let st = rollouts(&env).get("web").await?.status.context("status")?;
        ensure!(
            st.pause_conditions.len() == 1
                && st.pause_conditions[0].reason == PauseReason::CanaryPauseStep,
            "{:?}",
            st.pause_conditions
        );

        let (ok, _, err) = plugin(&env, &["promote", "web"]).await?;
        ensure!(ok, "{err}");
        let v2 = wait_status(&env, "web", "v2 promoted", LIMIT, |s| {
            phase(s) == Some(RolloutPhase::Healthy) && s.current_pod_hash == s.stable_rs
        })
        .await?
        .stable_rs
        .context("stableRS")?;

        // Abort, retry and promote --full.
        set_image(&env, "web", "registry.example/web:3").await?;
        wait_status(&env, "web", "v3 paused at step 1", LIMIT, |s| {
            s.current_step_index == Some(1) && phase(s) == Some(RolloutPhase::Paused)
        })
        .await?;
        let (ok, out, err) = plugin(&env, &["abort", "web"]).await?;
        ensure!(ok && out.contains("aborted"), "{err}");
        wait_status(&env, "web", "Degraded after abort", LIMIT, |s| {
            phase(s) == Some(RolloutPhase::Degraded)
        })
        .await?;
        let (ok, _, err) = plugin(&env, &["retry", "web"]).await?;
        ensure!(ok, "{err}");
        wait_status(&env, "web", "paused again after retry", LIMIT, |s| {
            s.current_step_index == Some(1) && phase(s) == Some(RolloutPhase::Paused)
        })
        .await?;
        let (ok, _, err) = plugin(&env, &["promote", "web", "--full"]).await?;
        ensure!(ok, "{err}");
        let done = wait_status(&env, "web", "v3 promoted in full", LIMIT, |s| {
            phase(s) == Some(RolloutPhase::Healthy)
                && s.stable_rs.as_deref().is_some_and(|h| h != v2)
                && s.current_pod_hash == s.stable_rs
        })
        .await?;
        ensure!(
            done.current_step_index == Some(3),
            "{:?}",
            done.current_step_index
        );
        Ok(())
    })
    .await;
}

/// Reads a child's stdout as it comes, into a buffer a test can wait on.
fn collect(
    child: &mut tokio::process::Child,
) -> anyhow::Result<std::sync::Arc<std::sync::Mutex<String>>> {
    use tokio::io::AsyncReadExt;
    let mut stdout = child.stdout.take().context("stdout")?;
    let buf = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = buf.clone();
    tokio::spawn(async move {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            if let Ok(mut b) = sink.lock() {
                b.push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        }
    });
    Ok(buf)
}

/// Waits until `buf` satisfies `ok`, or fails with what it holds.
async fn wait_output(
    buf: &std::sync::Arc<std::sync::Mutex<String>>,
    what: &str,
    ok: impl Fn(&str) -> bool,
) -> anyhow::Result<String> {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let text = buf.lock().map(|b| b.clone()).unwrap_or_default();
        if ok(&text) {
            return Ok(text);
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "{what}: not seen within {LIMIT:?}; output so far:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The names of the pods of Rollout `name`.
async fn pod_names(env: &TestEnv, name: &str) -> anyhow::Result<Vec<String>> {
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(env.client.clone(), &env.namespace);
    let lp = kube::api::ListParams::default().labels(&format!("sluice.dev/rollout={name}"));
    Ok(pods
        .list(&lp)
        .await?
        .items
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect())
}

#[tokio::test]
async fn kubectl_sluice_day_to_day() {
    TestEnv::run("cli-daily", |env| async move {
        let _controller = start_healthy_web(&env).await?;
        let out = sluice(&env, &["status", "web"]).await?;
        ensure!(
            out.code == 0 && out.stdout.contains("web: Healthy"),
            "status of a Healthy rollout: {} {}",
            out.code,
            out.stdout
        );

        set_image_then_paused(&env).await?;
        let v1 = get_and_list(&env).await?;
        watch_across_promotion(&env).await?;
        undo_to_revision_one(&env, &v1).await?;
        restart_same_revision(&env, &v1).await?;
        // An aborted release: status exits 2.
        set_image(&env, "web", "registry.example/web:3").await?;
        wait_paused_at(&env, "web", 1, LIMIT).await?;
        let out = sluice(&env, &["abort", "web"]).await?;
        ensure!(out.code == 0, "{}", out.stderr);
        let out = sluice(&env, &["status", "web", "--timeout", "120s"]).await?;
        ensure!(
            out.code == 2 && out.stdout.contains("web: Degraded"),
            "status of an aborted release: {} {}",
            out.code,
            out.stdout
        );
        undo_to_a_numbered_revision(&env).await?;
        Ok(())
    })
    .await;
}

/// `set image` writes the spec and says so; the release pauses at step 1 and `status` exits 3.
async fn set_image_then_paused(env: &TestEnv) -> anyhow::Result<()> {
    let out = sluice(env, &["set", "image", "web", "web=registry.example/web:2"]).await?;
    ensure!(out.code == 0, "{}", out.stderr);
    ensure!(
        out.stdout
            .contains("image set (web=registry.example/web:2) in spec.template")
            && out.stdout.contains("note: this wrote the Rollout's spec"),
        "{}",
        out.stdout
    );
    let out = sluice(env, &["set", "image", "web", "web=registry.example/web:2"]).await?;
    ensure!(
        out.code == 0 && out.stdout.contains("nothing written"),
        "{}",
        out.stdout
    );
    let out = sluice(env, &["set", "image", "web", "api=x:1"]).await?;
    ensure!(
        out.code == 1
            && out
                .stderr
                .contains("no container named \"api\"; its containers: web"),
        "{}",
        out.stderr
    );
    let out = sluice(env, &["status", "web", "--timeout", "120s"]).await?;
    ensure!(
        out.code == 3 && out.stdout.contains("web: Paused (step 1/3)"),
        "status at a pause: {} {}",
        out.code,
        out.stdout
    );
    Ok(())
}

/// `get rollout` as a tree, JSON and YAML, and `list` here and in all namespaces; returns revision 1's hash.
async fn get_and_list(env: &TestEnv) -> anyhow::Result<String> {
    let out = sluice(env, &["get", "rollout", "web"]).await?;
    ensure!(out.code == 0, "{}", out.stderr);
    for want in [
        "Step:       1/3",
        "canary 50%",
        "├── revision 2 (canary)",
        "revision 1 (stable)",
        "registry.example/web:2",
        "pod web-",
        "Running",
        "ready 1/1  restarts 0",
        "1/1 ready, desired 1",
    ] {
        ensure!(
            out.stdout.contains(want),
            "get rollout lacks {want:?}:\n{}",
            out.stdout
        );
    }
    ensure!(
        !out.stdout.contains('\x1b'),
        "piped output is plain:\n{}",
        out.stdout
    );
    let out = sluice(env, &["get", "rollout", "web", "-o", "json"]).await?;
    let view: serde_json::Value = serde_json::from_str(&out.stdout).context("get -o json")?;
    ensure!(
        view["step"] == 1 && view["steps"] == 3 && view["weights"]["canary"] == 50,
        "{view}"
    );
    let revisions = view["revisions"].as_array().context("revisions")?;
    ensure!(
        revisions.len() == 2 && revisions[1]["roles"] == json!(["canary"]),
        "{view}"
    );
    let v1 = revisions[0]["hash"].as_str().context("hash")?.to_string();
    ensure!(
        revisions[0]["pods"].as_array().map(Vec::len) == Some(1),
        "one stable pod at 50% of 2: {view}"
    );
    let out = sluice(env, &["get", "web", "-o", "yaml"]).await?;
    ensure!(
        out.stdout.contains("step: 1") && out.stdout.contains("strategy: canary"),
        "{}",
        out.stdout
    );

    // list, here and everywhere.
    let out = sluice(env, &["list"]).await?;
    let row = out
        .stdout
        .lines()
        .find(|l| l.starts_with("web "))
        .with_context(|| out.stdout.clone())?;
    ensure!(
        row.contains("Paused") && row.contains("1/3") && row.contains(" 50 "),
        "{row}"
    );
    let out = sluice(env, &["list", "-A"]).await?;
    ensure!(
        out.stdout.starts_with("NAMESPACE")
            && out
                .stdout
                .lines()
                .any(|l| l.starts_with(&env.namespace) && l.contains(" web ")),
        "{}",
        out.stdout
    );
    Ok(v1)
}

/// `get --watch` redraws from watches across the promotion to Healthy.
async fn watch_across_promotion(env: &TestEnv) -> anyhow::Result<()> {
    let mut watch = kubectl_cmd(
        env,
        &env.cluster.kubeconfig,
        &[
            "sluice",
            "get",
            "rollout",
            "web",
            "--watch",
            "-n",
            &env.namespace,
        ],
    )?
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()?;
    let buf = collect(&mut watch)?;
    wait_output(&buf, "the first view", |t| t.contains("Step:       1/3")).await?;
    let out = sluice(env, &["promote", "web"]).await?;
    ensure!(out.code == 0, "{}", out.stderr);
    let text = wait_output(&buf, "the view after the promotion", |t| {
        t.split("Name:").last().is_some_and(|last| {
            last.contains("Phase:      Healthy") && last.contains("Step:       3/3")
        })
    })
    .await?;
    watch.kill().await?;
    let frames = text.matches("Name:").count();
    ensure!(frames >= 2, "one view per change, {frames} seen:\n{text}");
    ensure!(!text.contains('\x1b'), "no escape codes when piped");
    common::figure(&format!(
        "get --watch: {frames} views from the pause at step 1 to Healthy"
    ));
    let out = sluice(env, &["status", "web"]).await?;
    ensure!(out.code == 0, "{} {}", out.code, out.stdout);
    Ok(())
}

/// `undo` goes back to revision 1's ReplicaSet itself (its template rebuilt exactly).
async fn undo_to_revision_one(env: &TestEnv, v1: &str) -> anyhow::Result<()> {
    let out = sluice(env, &["undo", "web", "--to-revision", "9"]).await?;
    ensure!(
        out.code == 1
            && out
                .stderr
                .contains(&format!("the revisions kept: 1 ({v1}), 2 (")),
        "{}",
        out.stderr
    );
    let out = sluice(env, &["undo", "web"]).await?;
    ensure!(out.code == 0, "{}", out.stderr);
    ensure!(
        out.stdout.contains(&format!(
            "spec.template set to revision 1 ({v1}); Sluice goes back to that ReplicaSet"
        )),
        "{}",
        out.stdout
    );
    wait_status(env, "web", "the undo's release of revision 1", LIMIT, |s| {
        s.current_pod_hash.as_deref() == Some(v1)
    })
    .await?;
    let out = sluice(env, &["promote", "web", "--full"]).await?;
    ensure!(out.code == 0, "{}", out.stderr);
    let out = sluice(env, &["status", "web", "--timeout", "120s"]).await?;
    ensure!(
        out.code == 0,
        "back on revision 1: {} {}",
        out.code,
        out.stdout
    );
    let st = rollouts(env).get("web").await?.status.context("status")?;
    ensure!(st.stable_rs.as_deref() == Some(v1), "{:?}", st.stable_rs);
    Ok(())
}

/// `undo --to-revision N`, N as `get -o json` numbers the revisions: the aborted release's
/// Rollout goes back to the ReplicaSet of image 2, which Sluice releases.
async fn undo_to_a_numbered_revision(env: &TestEnv) -> anyhow::Result<()> {
    let out = sluice(env, &["get", "rollout", "web", "-o", "json"]).await?;
    let view: serde_json::Value = serde_json::from_str(&out.stdout).context("get -o json")?;
    let two = view["revisions"]
        .as_array()
        .context("revisions")?
        .iter()
        .find(|r| r["images"] == json!(["registry.example/web:2"]))
        .with_context(|| format!("no revision of image 2 kept: {view}"))?;
    let (number, hash) = (
        two["revision"].as_u64().context("revision")?.to_string(),
        two["hash"].as_str().context("hash")?.to_string(),
    );
    let out = sluice(env, &["undo", "web", "--to-revision", &number]).await?;
    ensure!(
        out.code == 0
            && out.stdout.contains(&format!(
                "spec.template set to revision {number} ({hash}); Sluice goes back to that ReplicaSet"
            )),
        "{} {}",
        out.stdout,
        out.stderr
    );
    wait_status(
        env,
        "web",
        "the release of image 2's ReplicaSet",
        LIMIT,
        |s| s.current_pod_hash.as_deref() == Some(hash.as_str()),
    )
    .await?;
    let ro = rollouts(env).get("web").await?;
    let image = ro.spec.template.as_ref().and_then(|t| {
        t.spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .and_then(|c| c.image.clone())
    });
    ensure!(
        image.as_deref() == Some("registry.example/web:2"),
        "{image:?}"
    );
    Ok(())
}

/// `restart`: new pods for the same revision.
async fn restart_same_revision(env: &TestEnv, v1: &str) -> anyhow::Result<()> {
    let before = pod_names(env, "web").await?;
    let out = sluice(env, &["restart", "web"]).await?;
    ensure!(
        out.code == 0 && out.stdout.contains("restart requested (spec.restartAt)"),
        "{} {}",
        out.stdout,
        out.stderr
    );
    wait_status(env, "web", "restarted", LIMIT, |s| s.restarted_at.is_some()).await?;
    let after = pod_names(env, "web").await?;
    ensure!(
        after.len() == 2 && after.iter().all(|p| !before.contains(p)),
        "before {before:?}, after {after:?}"
    );
    ensure!(
        rollouts(env)
            .get("web")
            .await?
            .status
            .and_then(|s| s.stable_rs)
            .as_deref()
            == Some(v1),
        "same revision"
    );
    Ok(())
}

#[tokio::test]
async fn kubectl_sluice_errors_version_and_completion() {
    TestEnv::run("cli-errors", |env| async move {
        // No controller runs here: the Rollout stays unobserved, so status times out (exit 4).
        create_rollout(&env, &rollout("idle", 1, json!({"canary": {"steps": [{"setWeight": 50}]}}))?).await?;
        let out = sluice(&env, &["status", "idle", "--timeout", "2s"]).await?;
        ensure!(out.code == 4 && out.stdout.contains("idle: still progressing after 2s"), "{} {}", out.code, out.stdout);
        let out = sluice(&env, &["status", "idle", "--no-wait"]).await?;
        ensure!(out.code == 4, "{}", out.code);

        let out = sluice(&env, &["get", "rollout", "idel"]).await?;
        ensure!(out.code == 1 && out.stderr.contains(&format!("rollout \"idel\" not found in namespace \"{}\"; did you mean idle?", env.namespace)), "{}", out.stderr);
        let out = sluice(&env, &["promote", "idle"]).await?;
        ensure!(out.code == 1 && out.stderr.contains("not releasing a new revision: nothing to promote"), "{}", out.stderr);

        // A user who may only read: the write is refused with the verb and the resource.
        let role = format!(r#"{{"apiVersion": "v1", "kind": "List", "items": [
            {{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {{"name": "viewer"}}}},
            {{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {{"name": "viewer"}},
              "rules": [{{"apiGroups": ["sluice.dev"], "resources": ["rollouts"], "verbs": ["get", "list", "watch"]}}]}},
            {{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {{"name": "viewer"}},
              "roleRef": {{"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "viewer"}},
              "subjects": [{{"kind": "ServiceAccount", "name": "viewer", "namespace": "{ns}"}}]}}]}}"#, ns = env.namespace);
        let applied = env.kubectl(&["apply", "-f", "-"], Some(&role)).await?;
        ensure!(applied.success, "{}", applied.stderr);
        let dir = scratch(&env)?;
        let viewer = e2e::identity::token_kubeconfig(&env.client, &env.cluster.kubeconfig, &env.namespace, "viewer", &dir.join("viewer.kubeconfig")).await?;
        let viewer_s = viewer.to_string_lossy().to_string();
        let out = kubectl_run(&env, &env.cluster.kubeconfig, &["sluice", "list", "--kubeconfig", &viewer_s]).await?;
        ensure!(out.code == 0 && out.stdout.contains("idle"), "a viewer lists: {} {}", out.stdout, out.stderr);
        let out = kubectl_run(&env, &env.cluster.kubeconfig, &["sluice", "restart", "idle", "--kubeconfig", &viewer_s]).await?;
        ensure!(
            out.code == 1 && out.stderr.contains(&format!("forbidden: you may not patch rollouts.sluice.dev in namespace \"{}\"", env.namespace)),
            "{}",
            out.stderr
        );

        // No cluster behind the kubeconfig; and --context picks the live one from the same file.
        let admin = kube::config::Kubeconfig::read_from(&env.cluster.kubeconfig)?;
        let live = admin.current_context.clone().context("current context")?;
        let mut two = serde_json::to_value(&admin)?;
        two["clusters"].as_array_mut().context("clusters")?.push(json!({"name": "dead", "cluster": {"server": "https://127.0.0.1:1"}}));
        let user = two["contexts"][0]["context"]["user"].clone();
        two["contexts"].as_array_mut().context("contexts")?.push(json!({"name": "dead", "context": {"cluster": "dead", "user": user}}));
        two["current-context"] = json!("dead");
        let two_path = dir.join("two.kubeconfig");
        std::fs::write(&two_path, serde_json::to_vec(&two)?)?;
        let out = kubectl_run(&env, &two_path, &["sluice", "list", "-n", &env.namespace]).await?;
        ensure!(out.code == 1 && out.stderr.contains("cannot reach the API server at https://127.0.0.1:1/"), "{}", out.stderr);
        let out = kubectl_run(&env, &two_path, &["sluice", "list", "-n", &env.namespace, "--context", &live]).await?;
        ensure!(out.code == 0 && out.stdout.contains("idle"), "--context {live}: {} {}", out.stdout, out.stderr);

        // version: the plugin's always, the cluster's and the CRDs' when reachable.
        let out = sluice(&env, &["version"]).await?;
        ensure!(out.code == 0, "{}", out.stderr);
        for want in [format!("kubectl-sluice {}", env!("CARGO_PKG_VERSION")), "server: Kubernetes v1.37".into(), "crd rollouts.sluice.dev: installed, serving v1alpha1".into()] {
            ensure!(out.stdout.contains(&want), "version lacks {want:?}: {}", out.stdout);
        }
        let out = kubectl_run(&env, &two_path, &["sluice", "version"]).await?;
        ensure!(out.code == 0 && out.stdout.contains("server: unknown (cannot reach the API server"), "{}", out.stdout);

        // Completion scripts, and kubectl's own completion of the plugin's words and names.
        for (shell, want) in [("bash", "complete -F"), ("zsh", "#compdef kubectl-sluice"), ("fish", "complete -c kubectl-sluice")] {
            let out = sluice(&env, &["completion", shell]).await?;
            ensure!(out.code == 0 && out.stdout.contains(want), "completion {shell}: {}", out.stderr);
        }
        let link = dir.join("kubectl_complete-sluice");
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_kubectl-sluice"), &link)?;
        let path = format!("{}:{}", dir.display(), plugin_path()?);
        let complete = |args: Vec<String>| {
            let mut cmd = tokio::process::Command::new(env.cluster.bin_dir.join("kubectl"));
            cmd.arg("__complete").args(args).env("PATH", &path).env("KUBECONFIG", &env.cluster.kubeconfig).kill_on_drop(true);
            cmd
        };
        let words = complete(vec!["sluice".into(), "pro".into()]).output().await?;
        let words = String::from_utf8_lossy(&words.stdout).to_string();
        ensure!(words.lines().any(|l| l.starts_with("promote")), "kubectl __complete sluice pro: {words}");
        let names = complete(vec!["sluice".into(), "-n".into(), env.namespace.clone(), "status".into(), "i".into()]).output().await?;
        let names = String::from_utf8_lossy(&names.stdout).to_string();
        ensure!(names.lines().next() == Some("idle") && names.contains(":4"), "rollout names: {names}");
        Ok(())
    })
    .await;
}

/// `crds` prints the five CRDs, the same documents as `crds/`, and the API server takes them
/// as they come (`kubectl sluice crds | kubectl apply --server-side -f -`, dry run).
#[tokio::test]
async fn kubectl_sluice_crds_apply() {
    TestEnv::run("cli-crds", |env| async move {
        let out = sluice(&env, &["crds"]).await?;
        ensure!(out.code == 0, "{}", out.stderr);
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
        let mut files: Vec<_> = std::fs::read_dir(&dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        files.sort();
        ensure!(files.len() == 5, "{files:?}");
        for f in &files {
            let text = std::fs::read_to_string(f)?;
            // The file's document, after its "generated by" comment.
            let doc = text.split_once("---\n").map_or(text.as_str(), |(_, d)| d);
            ensure!(
                out.stdout.contains(doc.trim()),
                "crds does not print {} as it is in crds/",
                f.display()
            );
        }
        let applied = env
            .kubectl(
                &["apply", "--server-side", "--dry-run=server", "-f", "-"],
                Some(&out.stdout),
            )
            .await?;
        ensure!(applied.success, "{}", applied.stderr);
        for name in [
            "rollouts",
            "analysistemplates",
            "clusteranalysistemplates",
            "analysisruns",
            "rolloutexercises",
        ] {
            ensure!(
                applied.stdout.contains(&format!(
                    "customresourcedefinition.apiextensions.k8s.io/{name}.sluice.dev serverside-applied (server dry run)"
                )),
                "{}",
                applied.stdout
            );
        }
        Ok(())
    })
    .await;
}
