//! `kubectl sluice lint FILE|DIR...`: offline checks of Rollout and analysis manifests.
//!
//! Pure where it matters: [`lint_sources`] turns file texts into [`Finding`]s; [`run`] only
//! reads the files and prints. Each finding names the file, the document, the path in the
//! document (`spec.strategy.canary.steps[2].setWeight`), its line and what to do.
//!
//! What is checked (docs/cli/lint.md has the details):
//! - schema: what the API server checks against Sluice's CRDs (unknown fields, types,
//!   ranges, patterns, list keys, the CRDs' CEL rules), then that the document reads into
//!   Sluice's types; an Argo Rollouts manifest is pointed at `kubectl sluice migrate`;
//! - Sluice's own checks of a Rollout (`rollout::validate`) and of its templates
//!   (`analysis::template`, `analysis::judge`), and conditions compiled by Sluice's CEL;
//! - references: templates, arguments, Services and router objects among the files given;
//! - steps: a weight that goes down, a release that reaches 100% after its last pause with
//!   no analysis judging it.

mod analysis;
pub mod docs;
pub mod references;
pub mod schema;
mod steps;
pub mod yaml;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Serialize;

pub use docs::Doc;
pub use yaml::{Lines, Node, YamlError, parse_documents};

/// `kubectl sluice lint`.
#[derive(clap::Args, Debug, Clone)]
pub struct LintArgs {
    /// Manifest files, or directories (their *.yaml and *.yml files); `-` reads stdin.
    #[arg(required = true, value_name = "FILE|DIR")]
    pub files: Vec<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Text)]
    pub output: Format,
    /// Exit non-zero on warnings too.
    #[arg(long)]
    pub strict: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One problem found.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub file: String,
    /// 1-based index of the document in its file (empty documents not counted).
    pub document: usize,
    /// `Kind/name` of the object, when it has them.
    pub object: String,
    /// Where in the document, e.g. `spec.strategy.canary.steps[2].setWeight`.
    pub path: String,
    /// 1-based line in the file.
    pub line: usize,
    pub severity: Severity,
    pub message: String,
}

/// A file's name (as given) and its text.
#[derive(Clone, Debug)]
pub struct Source {
    pub file: String,
    pub text: String,
}

/// Every finding for a set of files, read together (references may cross files), sorted by
/// file, line and path.
pub fn lint_sources(sources: &[Source]) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut all = Vec::new();
    for s in sources {
        match parse_documents(&s.text) {
            Ok(nodes) => {
                for (i, node) in nodes.into_iter().enumerate() {
                    all.push(Doc::new(&s.file, i + 1, node));
                }
            }
            Err(e) => findings.push(Finding {
                file: s.file.clone(),
                document: 0,
                object: String::new(),
                path: String::new(),
                line: e.line,
                severity: Severity::Error,
                message: format!("not valid YAML: {}", e.message),
            }),
        }
    }
    let index = references::Index::new(&all);
    for d in &all {
        findings.extend(docs::check(d, &index));
    }
    findings.sort_by(|a, b| {
        (
            a.file.as_str(),
            a.line,
            a.document,
            a.path.as_str(),
            a.severity,
        )
            .cmp(&(
                b.file.as_str(),
                b.line,
                b.document,
                b.path.as_str(),
                b.severity,
            ))
    });
    findings.dedup();
    findings
}

/// Runs `kubectl sluice lint`. Exit code 0: no errors (warnings may be printed); 1: errors
/// found (or warnings, with `--strict`); 2: an input could not be read.
pub fn run(args: LintArgs) -> ExitCode {
    let (sources, unreadable) = read_inputs(&args.files);
    let findings = lint_sources(&sources);
    let out = match args.output {
        Format::Text => render_text(&findings, sources.len()),
        Format::Json => render_json(&findings),
    };
    let written = super::write_stdout(PROG, &out);
    for e in &unreadable {
        eprintln!("{PROG}: {e}");
    }
    if !unreadable.is_empty() || written != ExitCode::SUCCESS {
        ExitCode::from(2)
    } else if findings
        .iter()
        .any(|f| f.severity == Severity::Error || args.strict)
    {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

const PROG: &str = "kubectl sluice lint";

/// The texts of the files named (directories: their *.yaml and *.yml files, sorted), and a
/// message for each input that could not be read.
pub fn read_inputs(paths: &[PathBuf]) -> (Vec<Source>, Vec<String>) {
    let mut sources = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        if p.as_os_str() == "-" {
            let mut text = String::new();
            match std::io::stdin().read_to_string(&mut text) {
                Ok(_) => sources.push(Source {
                    file: "-".into(),
                    text,
                }),
                Err(e) => errors.push(format!("cannot read stdin: {e}")),
            }
            continue;
        }
        match manifest_files(p) {
            Ok(files) if files.is_empty() => errors.push(format!(
                "{}: no *.yaml or *.yml files in this directory",
                p.display()
            )),
            Ok(files) => {
                for f in files {
                    match std::fs::read_to_string(&f) {
                        Ok(text) => sources.push(Source {
                            file: f.display().to_string(),
                            text,
                        }),
                        Err(e) => errors.push(format!("cannot read {}: {e}", f.display())),
                    }
                }
            }
            Err(e) => errors.push(format!("cannot read {}: {e}", p.display())),
        }
    }
    (sources, errors)
}

/// `p` itself, or the *.yaml and *.yml files of directory `p`, sorted by name.
pub fn manifest_files(p: &Path) -> std::io::Result<Vec<PathBuf>> {
    if !std::fs::metadata(p)?.is_dir() {
        return Ok(vec![p.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(p)? {
        let path = entry?.path();
        let yaml = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e == "yaml" || e == "yml");
        if yaml && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// `file:line: severity: [Kind/name] path: message`, one a line, then a summary.
pub fn render_text(findings: &[Finding], files: usize) -> String {
    let mut out = String::new();
    for f in findings {
        let object = if f.object.is_empty() {
            String::new()
        } else {
            format!("[{}] ", f.object)
        };
        let path = if f.path.is_empty() {
            String::new()
        } else {
            format!("{}: ", f.path)
        };
        out.push_str(&format!(
            "{}:{}: {}: {object}{path}{}\n",
            f.file, f.line, f.severity, f.message
        ));
    }
    let errors = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    let warnings = findings.len() - errors;
    let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    out.push_str(&format!(
        "{}, {} in {}\n",
        plural(errors, "error"),
        plural(warnings, "warning"),
        plural(files, "file")
    ));
    out
}

/// `{"findings": [...], "errors": N, "warnings": M}`.
pub fn render_json(findings: &[Finding]) -> String {
    let errors = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    let doc = serde_json::json!({
        "findings": findings,
        "errors": errors,
        "warnings": findings.len() - errors,
    });
    serde_json::to_string_pretty(&doc)
        .map_or_else(|e| format!("{{\"error\": \"{e}\"}}\n"), |s| s + "\n")
}
