//! `kubectl sluice lint` as a user runs it: the built plugin, and, when `SLUICE_K8S_BIN` names
//! a directory with kubectl, the same plugin found by the real kubectl on the PATH.
//!
//! `tests/lint/bad/` holds one file per planted problem. Each starts with lines
//! `# expect: [error|warning] PATH SUBSTRING` (`-` for no path), and the line the finding
//! must name carries a `# <-` comment (`# <-2` for the second expectation of a file). Every
//! expectation must be found at its line, and nothing else may be reported as an error.
//! `tests/lint/good/` holds realistic manifests that must produce no finding at all.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, bail, ensure};
use serde_json::Value;

fn dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/lint")
        .join(name)
}

fn plugin() -> &'static str {
    env!("CARGO_BIN_EXE_kubectl-sluice")
}

/// Runs `kubectl sluice lint ARGS` one way.
type Runner = Box<dyn Fn(&[&str]) -> anyhow::Result<Output>>;

/// The ways to run `kubectl sluice lint`: the plugin itself, and through kubectl when one is
/// given.
fn runners() -> Vec<(&'static str, Runner)> {
    let mut out: Vec<(&'static str, Runner)> = vec![(
        "plugin",
        Box::new(|args: &[&str]| {
            Command::new(plugin())
                .arg("lint")
                .args(args)
                .output()
                .context("running the plugin")
        }),
    )];
    if let Ok(bin) = std::env::var("SLUICE_K8S_BIN") {
        out.push((
            "kubectl",
            Box::new(move |args: &[&str]| {
                let plugin_dir = Path::new(plugin()).parent().context("plugin dir")?;
                let path = format!(
                    "{}:{}",
                    plugin_dir.display(),
                    std::env::var("PATH").unwrap_or_default()
                );
                Command::new(Path::new(&bin).join("kubectl"))
                    .args(["sluice", "lint"])
                    .args(args)
                    .env("PATH", path)
                    .output()
                    .context("running kubectl")
            }),
        ));
    }
    out
}

#[derive(Debug)]
struct Expect {
    severity: Option<String>,
    path: String,
    text: String,
    line: usize,
}

/// The `# expect:` lines of a file, each with the line its `# <-` marker is on.
fn expectations(text: &str) -> anyhow::Result<Vec<Expect>> {
    let mut out = Vec::new();
    for l in text.lines() {
        let Some(rest) = l.strip_prefix("# expect: ") else {
            continue;
        };
        let mut words = rest.splitn(2, ' ');
        let mut first = words.next().unwrap_or_default().to_string();
        let mut rest = words.next().unwrap_or_default().to_string();
        let severity = if first == "error" || first == "warning" {
            let sev = first.clone();
            let mut w = rest.splitn(2, ' ');
            first = w.next().unwrap_or_default().to_string();
            rest = w.next().unwrap_or_default().to_string();
            Some(sev)
        } else {
            None
        };
        out.push(Expect {
            severity,
            path: if first == "-" { String::new() } else { first },
            text: rest.trim().to_string(),
            line: 0,
        });
    }
    let n = out.len();
    for (i, e) in out.iter_mut().enumerate() {
        let marker = format!("# <-{}", i + 1);
        let found = text.lines().position(|l| {
            l.trim_end().ends_with(&marker) || (n == 1 && l.trim_end().ends_with("# <-"))
        });
        e.line = found.context(format!("no `{marker}` marker for {e:?}"))? + 1;
    }
    Ok(out)
}

fn json_findings(out: &Output) -> anyhow::Result<Vec<Value>> {
    let v: Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "-o json must print JSON: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })?;
    let findings = v["findings"].as_array().context("findings")?.clone();
    let errors = findings.iter().filter(|f| f["severity"] == "error").count();
    ensure!(v["errors"] == errors, "error count: {v}");
    ensure!(
        v["warnings"] == findings.len() - errors,
        "warning count: {v}"
    );
    Ok(findings)
}

fn check_bad_file(
    run: &dyn Fn(&[&str]) -> anyhow::Result<Output>,
    file: &Path,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file)?;
    let expects = expectations(&text)?;
    ensure!(!expects.is_empty(), "no `# expect:` line");
    let name = file.to_str().context("path")?;
    let out = run(&["-o", "json", name])?;
    let findings = json_findings(&out)?;
    let shown = serde_json::to_string_pretty(&findings)?;
    let mut matched = vec![false; findings.len()];
    for e in &expects {
        let hit = findings.iter().position(|f| {
            f["path"] == e.path.as_str()
                && f["message"].as_str().is_some_and(|m| m.contains(&e.text))
                && e.severity.as_deref().is_none_or(|s| f["severity"] == s)
        });
        let Some(i) = hit else {
            bail!("expected {e:?}, found {shown}");
        };
        ensure!(
            f64::from(u32::try_from(e.line)?) == findings[i]["line"].as_f64().unwrap_or(-1.0),
            "{e:?} is reported at line {}, not {}",
            findings[i]["line"],
            e.line
        );
        ensure!(findings[i]["file"] == name, "file: {}", findings[i]);
        matched[i] = true;
    }
    for (f, m) in findings.iter().zip(&matched) {
        ensure!(*m || f["severity"] != "error", "unexpected error {f}");
    }
    let want_error = findings.iter().any(|f| f["severity"] == "error");
    ensure!(
        out.status.code() == Some(if want_error { 1 } else { 0 }),
        "exit code {:?}",
        out.status.code()
    );
    if !want_error {
        // Warnings only: --strict makes them fail.
        let strict = run(&["--strict", name])?;
        ensure!(
            strict.status.code() == Some(1),
            "--strict: {:?}",
            strict.status
        );
    }
    Ok(())
}

#[test]
fn bad_manifests_report_what_was_planted_at_its_line() -> anyhow::Result<()> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir("bad"))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.sort();
    ensure!(files.len() >= 20, "{} bad files", files.len());
    let mut failures = Vec::new();
    for (how, run) in runners() {
        for f in &files {
            if let Err(e) = check_bad_file(run.as_ref(), f) {
                failures.push(format!("{how} {}: {e:#}", f.display()));
            }
        }
    }
    ensure!(failures.is_empty(), "{}", failures.join("\n\n"));
    Ok(())
}

#[test]
fn good_manifests_have_no_findings() -> anyhow::Result<()> {
    let good = dir("good");
    let name = good.to_str().context("path")?;
    for (how, run) in runners() {
        let out = run(&["-o", "json", name])?;
        let findings = json_findings(&out)?;
        ensure!(findings.is_empty(), "{how}: {findings:#?}");
        ensure!(out.status.success(), "{how}: {:?}", out.status);
        let out = run(&[name])?;
        let text = String::from_utf8_lossy(&out.stdout);
        ensure!(
            out.status.success() && text == "0 errors, 0 warnings in 4 files\n",
            "{how}: {text}"
        );
    }
    Ok(())
}

#[test]
fn text_output_names_file_line_object_and_path() -> anyhow::Result<()> {
    let file = dir("bad").join("weight-over-100.yaml");
    let name = file.to_str().context("path")?;
    let out = Command::new(plugin()).args(["lint", name]).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let want = format!(
        "{name}:23: error: [Rollout/too-heavy] spec.strategy.canary.steps[1].setWeight: 120 is more than the maximum 100\n1 error, 0 warnings in 1 file\n"
    );
    ensure!(text == want, "{text}");
    ensure!(out.status.code() == Some(1), "{:?}", out.status);
    Ok(())
}

#[test]
fn unreadable_input_is_a_clear_error() -> anyhow::Result<()> {
    for (how, run) in runners() {
        let out = run(&["does/not/exist.yaml"])?;
        let err = String::from_utf8_lossy(&out.stderr);
        ensure!(out.status.code() == Some(2), "{how}: {:?}", out.status);
        ensure!(
            err.contains("cannot read does/not/exist.yaml") && !err.contains("panicked"),
            "{how}: {err}"
        );
        let empty = tempdir()?;
        let out = run(&[empty.to_str().context("path")?])?;
        let err = String::from_utf8_lossy(&out.stderr);
        ensure!(
            out.status.code() == Some(2) && err.contains("no *.yaml or *.yml files"),
            "{how}: {err}"
        );
    }
    Ok(())
}

fn tempdir() -> anyhow::Result<PathBuf> {
    let d = std::env::temp_dir().join(format!("sluice-lint-empty-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

#[test]
fn the_examples_directory_lints() -> anyhow::Result<()> {
    // The repository's own examples must be valid (warnings allowed: they stand alone).
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let out = Command::new(plugin())
        .args(["lint", "-o", "json", examples.to_str().context("path")?])
        .output()?;
    let findings = json_findings(&out)?;
    let errors: Vec<&Value> = findings
        .iter()
        .filter(|f| f["severity"] == "error")
        .collect();
    ensure!(errors.is_empty(), "{errors:#?}");
    Ok(())
}
