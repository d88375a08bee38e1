//! `kubectl sluice migrate FILE|DIR... [-o DIR]`: Argo Rollouts manifests
//! (`argoproj.io/v1alpha1` Rollout, AnalysisTemplate, ClusterAnalysisTemplate, AnalysisRun)
//! to Sluice's (`sluice.dev/v1alpha1`).
//!
//! Other kinds (Services, VirtualServices, Deployments...) pass through unchanged; an
//! Experiment is left out. For each document a report says what was carried over with changes,
//! what could not be and why; conditions are rewritten from expr-lang to CEL
//! ([`expr::to_cel`]), and every converted document is checked with the lint's own checks
//! (schema, Sluice's types, conditions compiled by Sluice's CEL): one that does not pass is
//! left out with the reason, never written half-right. docs/cli/migrate.md has the details.

pub mod convert;
pub mod expr;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use convert::{Change, Outcome, Remark};

use super::lint::yaml::parse_documents;
use super::lint::{Source, read_inputs};

/// `kubectl sluice migrate`.
#[derive(clap::Args, Debug, Clone)]
pub struct MigrateArgs {
    /// Argo Rollouts manifests, or directories (their *.yaml and *.yml files); `-` reads stdin.
    #[arg(required = true, value_name = "FILE|DIR")]
    pub files: Vec<PathBuf>,
    /// Write one converted file per input file into this directory, each starting with its
    /// report as comments, instead of printing the YAML stream to stdout.
    #[arg(short = 'o', long = "output-dir", value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
}

/// What became of one document.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DocReport {
    /// 1-based, empty documents not counted.
    pub document: usize,
    /// `Kind/name`.
    pub object: String,
    pub outcome: Outcome,
    pub remarks: Vec<Remark>,
}

/// One input file converted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Migrated {
    pub file: String,
    /// The output YAML stream (documents left out are not in it).
    pub yaml: String,
    pub reports: Vec<DocReport>,
    /// Why the file could not be read as YAML at all.
    pub error: Option<String>,
}

impl Migrated {
    pub fn failed(&self) -> bool {
        self.error.is_some() || self.reports.iter().any(|r| r.outcome == Outcome::Failed)
    }
}

/// Converts the text of one file. Pure.
pub fn migrate_text(file: &str, text: &str) -> Migrated {
    let nodes = match parse_documents(text) {
        Ok(n) => n,
        Err(e) => {
            return Migrated {
                file: file.to_string(),
                yaml: String::new(),
                reports: Vec::new(),
                error: Some(format!("not valid YAML (line {}): {}", e.line, e.message)),
            };
        }
    };
    let mut yaml = String::new();
    let mut reports = Vec::new();
    let mut error = None;
    for (i, node) in nodes.into_iter().enumerate() {
        let object = object_name(&node);
        let (out, outcome, remarks) = convert::document(file, i + 1, node);
        if let Some(out) = out {
            match serde_saphyr::to_string(&out) {
                Ok(text) => {
                    yaml.push_str("---\n");
                    yaml.push_str(&text);
                    if !text.ends_with('\n') {
                        yaml.push('\n');
                    }
                }
                Err(e) => error = Some(format!("document {}: cannot write YAML: {e}", i + 1)),
            }
        }
        reports.push(DocReport {
            document: i + 1,
            object,
            outcome,
            remarks,
        });
    }
    Migrated {
        file: file.to_string(),
        yaml,
        reports,
        error,
    }
}

/// `Kind/name`; `Kind/prefix*` for an object with only a generateName.
fn object_name(node: &crate::cli::lint::yaml::Node) -> String {
    let kind = node.get("kind").and_then(|k| k.as_str()).unwrap_or("?");
    let meta = |f: &str| {
        node.get("metadata")
            .and_then(|m| m.get(f))
            .and_then(|n| n.as_str())
    };
    match (meta("name"), meta("generateName")) {
        (Some(name), _) => format!("{kind}/{name}"),
        (None, Some(prefix)) => format!("{kind}/{prefix}*"),
        (None, None) => format!("{kind}/?"),
    }
}

/// The report of one file, one line per document and per remark.
pub fn render_report(m: &Migrated) -> String {
    let mut out = String::new();
    if let Some(e) = &m.error {
        out.push_str(&format!("{}: {e}\n", m.file));
    }
    for r in &m.reports {
        let outcome = match r.outcome {
            Outcome::Converted => "converted to sluice.dev/v1alpha1",
            Outcome::Unchanged => "passed through unchanged",
            Outcome::LeftOut => "LEFT OUT (no Sluice counterpart)",
            Outcome::Failed => "NOT CONVERTED (left out of the output)",
        };
        out.push_str(&format!(
            "{}: document {} {}: {outcome}\n",
            m.file, r.document, r.object
        ));
        for x in &r.remarks {
            let what = match x.change {
                Change::Changed => "changed",
                Change::Dropped => "dropped",
                Change::Note => "note   ",
                Change::Error => "error  ",
            };
            out.push_str(&format!("  {what} {}: {}\n", x.path, x.text));
        }
    }
    out
}

const PROG: &str = "kubectl sluice migrate";

/// Runs `kubectl sluice migrate`. Exit code 0: every document converted (or passed through);
/// 1: some document could not be converted, or a file is not YAML (the rest is still
/// written); 2: an input could not be read or an output not written.
pub fn run(args: MigrateArgs) -> ExitCode {
    let (sources, unreadable) = read_inputs(&args.files);
    for e in &unreadable {
        eprintln!("{PROG}: {e}");
    }
    let results: Vec<Migrated> = sources
        .iter()
        .map(|s: &Source| migrate_text(&s.file, &s.text))
        .collect();
    let mut trouble = !unreadable.is_empty();
    match &args.output_dir {
        None => {
            let stream: String = results.iter().map(|m| m.yaml.as_str()).collect();
            for m in &results {
                eprint!("{}", render_report(m));
            }
            if super::write_stdout(PROG, &stream) != ExitCode::SUCCESS {
                trouble = true;
            }
        }
        Some(dir) => {
            for m in &results {
                eprint!("{}", render_report(m));
                if let Err(e) = write_file(dir, m) {
                    eprintln!("{PROG}: {e}");
                    trouble = true;
                }
            }
        }
    }
    if trouble {
        ExitCode::from(2)
    } else if results.iter().any(Migrated::failed) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `DIR/<input file name>`, starting with the report as comments.
fn write_file(dir: &Path, m: &Migrated) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let name = Path::new(&m.file)
        .file_name()
        .map_or_else(|| "stdin.yaml".into(), |n| n.to_string_lossy().into_owned());
    let name = if name == "-" {
        "stdin.yaml".to_string()
    } else {
        name
    };
    let target = dir.join(&name);
    let mut text =
        format!("# Converted from Argo Rollouts by `kubectl sluice migrate` ({name}).\n");
    for line in render_report(m).lines() {
        text.push_str(&format!("# {line}\n"));
    }
    text.push_str(&m.yaml);
    std::fs::write(&target, text).map_err(|e| format!("cannot write {}: {e}", target.display()))
}
