//! One YAML document: what it is, and the checks its kind gets.

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::references::Index;
use super::yaml::{Lines, Node};
use super::{Finding, Severity, analysis, references, schema, steps};
use crate::api::analysis::{
    AnalysisRun, AnalysisTemplate, AnalysisTemplateSpec, ClusterAnalysisTemplate,
};
use crate::api::constants::GROUP;
use crate::api::rollout::Rollout;

/// A problem at a path of a document, before it is placed in its file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub path: String,
    pub severity: Severity,
    pub message: String,
}

pub fn error(path: impl Into<String>, message: impl Into<String>) -> Note {
    Note {
        path: path.into(),
        severity: Severity::Error,
        message: message.into(),
    }
}

pub fn warning(path: impl Into<String>, message: impl Into<String>) -> Note {
    Note {
        path: path.into(),
        severity: Severity::Warning,
        message: message.into(),
    }
}

/// A parsed document and where it came from.
#[derive(Clone, Debug)]
pub struct Doc {
    pub file: String,
    /// 1-based.
    pub index: usize,
    pub json: Value,
    pub lines: Lines,
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub namespace: Option<String>,
}

impl Doc {
    pub fn new(file: &str, index: usize, node: Node) -> Doc {
        let json = node.to_json();
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        Doc {
            file: file.to_string(),
            index,
            lines: node.lines(),
            api_version: text(&json["apiVersion"]),
            kind: text(&json["kind"]),
            name: text(&json["metadata"]["name"]),
            namespace: json["metadata"]["namespace"].as_str().map(str::to_string),
            json,
        }
    }

    /// The API group (`sluice.dev`, `argoproj.io`; empty for the core group).
    pub fn group(&self) -> &str {
        self.api_version.rsplit_once('/').map_or("", |(g, _)| g)
    }

    pub fn finding(&self, n: Note) -> Finding {
        Finding {
            file: self.file.clone(),
            document: self.index,
            object: match (self.kind.is_empty(), self.name.is_empty()) {
                (true, _) => String::new(),
                (false, true) => self.kind.clone(),
                (false, false) => format!("{}/{}", self.kind, self.name),
            },
            line: self.lines.of(&n.path),
            path: n.path,
            severity: n.severity,
            message: n.message,
        }
    }
}

/// The kinds Argo Rollouts defines that `kubectl sluice migrate` converts.
const ARGO_KINDS: [&str; 5] = [
    "Rollout",
    "AnalysisTemplate",
    "ClusterAnalysisTemplate",
    "AnalysisRun",
    "Experiment",
];

/// Every finding for one document.
pub fn check(d: &Doc, index: &Index) -> Vec<Finding> {
    notes(d, index).into_iter().map(|n| d.finding(n)).collect()
}

fn notes(d: &Doc, index: &Index) -> Vec<Note> {
    if !d.json.is_object() {
        return vec![error(
            "",
            "a Kubernetes object must be a mapping with apiVersion and kind",
        )];
    }
    if d.api_version.is_empty() || d.kind.is_empty() {
        let missing = if d.api_version.is_empty() {
            "apiVersion"
        } else {
            "kind"
        };
        return vec![error(
            missing,
            format!("{missing} is missing: every object needs apiVersion and kind"),
        )];
    }
    match d.group() {
        "argoproj.io" if ARGO_KINDS.contains(&d.kind.as_str()) => vec![error(
            "apiVersion",
            format!(
                "this is an Argo Rollouts {} ({}); Sluice reads {GROUP}/v1alpha1: convert it with `kubectl sluice migrate {}`",
                d.kind, d.api_version, d.file
            ),
        )],
        g if g == GROUP => sluice_object(d, index),
        _ => Vec::new(),
    }
}

/// The errors a document has on its own, without looking at the objects it names (what
/// `kubectl sluice migrate` checks its output with): the API server's checks, Sluice's types,
/// Sluice's checks of the Rollout and of analysis (conditions compiled by Sluice's CEL).
pub fn own_errors(d: &Doc) -> Vec<Note> {
    notes(d, &Index::new(&[]))
        .into_iter()
        .filter(|n| n.severity == Severity::Error)
        .collect()
}

/// The CRD schema (`openAPIV3Schema`) of a Sluice kind.
pub fn crd_schema(kind: &str) -> Option<Value> {
    crate::api::crds::all().into_iter().find_map(|(_, crd)| {
        (crd.spec.names.kind == kind).then(|| {
            let v = crd
                .spec
                .versions
                .first()
                .map(|v| serde_json::to_value(&v.schema).unwrap_or_default());
            v.unwrap_or_default()["openAPIV3Schema"].clone()
        })
    })
}

fn sluice_object(d: &Doc, index: &Index) -> Vec<Note> {
    if d.api_version != format!("{GROUP}/v1alpha1") {
        return vec![error(
            "apiVersion",
            format!("Sluice serves {GROUP}/v1alpha1, not {}", d.api_version),
        )];
    }
    let Some(schema) = crd_schema(&d.kind) else {
        return vec![error(
            "kind",
            format!(
                "{GROUP} has no kind {:?}: Rollout, AnalysisTemplate, ClusterAnalysisTemplate or AnalysisRun",
                d.kind
            ),
        )];
    };
    let problems = schema::check(&schema, &d.json);
    if !problems.is_empty() {
        // The API server refuses the object: what Sluice would make of it does not matter yet.
        return problems
            .into_iter()
            .map(|p| error(p.path, p.message))
            .collect();
    }
    match d.kind.as_str() {
        "Rollout" => typed::<Rollout>(d).map_or_else(
            |n| vec![n],
            |ro| {
                let mut notes = steps::check(&ro);
                notes.extend(references::rollout(d, &ro, index));
                notes
            },
        ),
        "AnalysisTemplate" => {
            typed::<AnalysisTemplate>(d).map_or_else(|n| vec![n], |t| analysis::template(&t.spec))
        }
        "ClusterAnalysisTemplate" => typed::<ClusterAnalysisTemplate>(d).map_or_else(
            |n| vec![n],
            |t| analysis::template(&AnalysisTemplateSpec::from(t.spec)),
        ),
        "AnalysisRun" => {
            typed::<AnalysisRun>(d).map_or_else(|n| vec![n], |r| analysis::run(&r.spec))
        }
        _ => Vec::new(),
    }
}

/// The document read into Sluice's type, or where and why it does not read.
pub fn typed<T: DeserializeOwned>(d: &Doc) -> Result<T, Note> {
    serde_path_to_error::deserialize(&d.json).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        error(
            path,
            format!("does not read as a Sluice {}: {}", d.kind, e.inner()),
        )
    })
}

/// A template document's spec, when it reads and has no error of its own (a template with
/// errors is reported where it is written, not again in every Rollout that uses it).
pub fn sound_template(d: &Doc) -> Option<AnalysisTemplateSpec> {
    let schema = crd_schema(&d.kind)?;
    if !schema::check(&schema, &d.json).is_empty() {
        return None;
    }
    let spec = match d.kind.as_str() {
        "AnalysisTemplate" => typed::<AnalysisTemplate>(d).ok()?.spec,
        "ClusterAnalysisTemplate" => typed::<ClusterAnalysisTemplate>(d).ok()?.spec.into(),
        _ => return None,
    };
    let clean = analysis::template(&spec)
        .iter()
        .all(|n| n.severity != Severity::Error);
    clean.then_some(spec)
}
