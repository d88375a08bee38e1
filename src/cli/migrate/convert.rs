//! One Argo Rollouts document to Sluice's, with a remark for everything changed, dropped or
//! worth knowing. Pure: a YAML tree in, a tree (or why not) and remarks out.

use super::expr::to_cel;
use crate::api::constants::GROUP;
use crate::cli::lint::docs::{Doc, crd_schema, own_errors};
use crate::cli::lint::schema;
use crate::cli::lint::yaml::{Node, Tree};

/// What a remark says about a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// Carried over in another form.
    Changed,
    /// Not carried over: Sluice has no counterpart.
    Dropped,
    /// Carried over as written; something to know.
    Note,
    /// The document cannot be converted.
    Error,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Remark {
    pub change: Change,
    pub path: String,
    pub text: String,
}

fn remark(change: Change, path: impl Into<String>, text: impl Into<String>) -> Remark {
    Remark {
        change,
        path: path.into(),
        text: text.into(),
    }
}

/// What became of a document.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Converted,
    /// Not an Argo Rollouts kind: written out as it was.
    Unchanged,
    /// An Argo Rollouts kind Sluice has no counterpart for (Experiment): left out.
    LeftOut,
    /// An error: left out of the output.
    Failed,
}

/// Argo Rollouts' kinds that have a Sluice twin.
const CONVERTED_KINDS: [&str; 4] = [
    "Rollout",
    "AnalysisTemplate",
    "ClusterAnalysisTemplate",
    "AnalysisRun",
];

/// Converts one document. Returns the document to write (none when left out or failed).
pub fn document(file: &str, index: usize, mut node: Node) -> (Option<Node>, Outcome, Vec<Remark>) {
    let api_version = node
        .get("apiVersion")
        .and_then(Node::as_str)
        .unwrap_or_default()
        .to_string();
    let kind = node
        .get("kind")
        .and_then(Node::as_str)
        .unwrap_or_default()
        .to_string();
    if !api_version.starts_with("argoproj.io/") {
        return (Some(node), Outcome::Unchanged, Vec::new());
    }
    if !CONVERTED_KINDS.contains(&kind.as_str()) {
        let why = if kind == "Experiment" {
            "Sluice has no Experiments (baseline and canary ReplicaSets run side by side); left out. Compare canary and stable with an analysis step instead, e.g. a query per pod-template hash ({{args.canary-hash}} from valueFrom.podTemplateHashValue)"
        } else {
            "no Sluice counterpart; left out"
        };
        return (
            None,
            Outcome::LeftOut,
            vec![remark(Change::Dropped, "kind", format!("{kind}: {why}"))],
        );
    }
    let mut remarks = vec![remark(
        Change::Changed,
        "apiVersion",
        format!("{api_version} -> {GROUP}/v1alpha1"),
    )];
    node.set("apiVersion", Node::string(&format!("{GROUP}/v1alpha1")));
    if node.remove("status").is_some() {
        let text = if kind == "AnalysisRun" {
            "the run's status (its verdict and measurements) is not carried over: once applied, Sluice measures the run again from the start"
        } else {
            "the controller's status is not carried over; Sluice writes its own"
        };
        remarks.push(remark(Change::Dropped, "status", text));
    }
    metadata(&mut node, &mut remarks);
    if let Some(spec) = node.get_mut("spec") {
        if kind == "Rollout" {
            rollout(spec, &mut remarks);
        } else {
            analysis(spec, &mut remarks);
        }
    }
    prune_unknown(&kind, &mut node, &mut remarks);
    if remarks.iter().any(|r| r.change == Change::Error) {
        return (None, Outcome::Failed, remarks);
    }
    let doc = Doc::new(file, index, node.clone());
    let errors: Vec<Remark> = own_errors(&doc)
        .into_iter()
        .map(|n| {
            remark(
                Change::Error,
                n.path,
                format!(
                    "the converted {kind} is not valid for Sluice: {}",
                    n.message
                ),
            )
        })
        .collect();
    remarks.extend(errors);
    if remarks.iter().any(|r| r.change == Change::Error) {
        return (None, Outcome::Failed, remarks);
    }
    (Some(node), Outcome::Converted, remarks)
}

/// Fields the API server sets, and Argo Rollouts' own annotations, are not carried over.
fn metadata(node: &mut Node, remarks: &mut Vec<Remark>) {
    let Some(meta) = node.get_mut("metadata") else {
        return;
    };
    let server_set = [
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "managedFields",
        "selfLink",
    ];
    let mut removed: Vec<String> = server_set
        .into_iter()
        .filter(|f| meta.remove(f).is_some())
        .map(str::to_string)
        .collect();
    let mut now_empty = false;
    if let Some(Tree::Map(entries)) = meta.get_mut("annotations").map(|a| &mut a.value) {
        let argo = |k: &str| {
            k.starts_with("rollout.argoproj.io/")
                || k == "kubectl.kubernetes.io/last-applied-configuration"
        };
        removed.extend(
            entries
                .iter()
                .filter(|e| argo(&e.key))
                .map(|e| format!("annotation {}", e.key)),
        );
        entries.retain(|e| !argo(&e.key));
        now_empty = entries.is_empty();
    }
    if now_empty {
        meta.remove("annotations");
    }
    if !removed.is_empty() {
        remarks.push(remark(
            Change::Dropped,
            "metadata",
            format!(
                "{} (set by the API server or Argo Rollouts' controller)",
                removed.join(", ")
            ),
        ));
    }
    argo_owners(meta, remarks);
    if meta.get("name").is_none() && meta.get("generateName").is_some() {
        remarks.push(remark(
            Change::Note,
            "metadata.generateName",
            "kept: `kubectl apply` needs a name and refuses this document; create it with `kubectl create -f`, or give it a name",
        ));
    }
}

/// Owner references to Argo Rollouts' objects (an AnalysisRun exported from a cluster is owned
/// by Argo's Rollout) are dropped: kept, the garbage collector would delete the converted
/// object together with Argo's, or right after it is applied where Argo's owner is gone.
fn argo_owners(meta: &mut Node, remarks: &mut Vec<Remark>) {
    let Some(refs) = meta.get_mut("ownerReferences").and_then(Node::items_mut) else {
        return;
    };
    let argo = |r: &Node| {
        r.get("apiVersion")
            .and_then(Node::as_str)
            .is_some_and(|v| v.starts_with("argoproj.io/"))
    };
    let owners: Vec<String> = refs
        .iter()
        .filter(|r| argo(r))
        .map(|r| {
            let field = |f: &str| r.get(f).and_then(Node::as_str).unwrap_or("?").to_string();
            format!("{}/{}", field("kind"), field("name"))
        })
        .collect();
    if owners.is_empty() {
        return;
    }
    refs.retain(|r| !argo(r));
    let now_empty = refs.is_empty();
    if now_empty {
        meta.remove("ownerReferences");
    }
    remarks.push(remark(
        Change::Dropped,
        "metadata.ownerReferences",
        format!(
            "owned by Argo Rollouts' {}: kept, Kubernetes' garbage collector would delete the converted object together with Argo's, or right after it is applied where Argo's is gone",
            owners.join(", ")
        ),
    ));
}

/// A Rollout's spec.
fn rollout(spec: &mut Node, remarks: &mut Vec<Remark>) {
    if matches!(spec.get("paused").map(|p| &p.value), Some(Tree::Bool(true))) {
        remarks.push(remark(
            Change::Note,
            "spec.paused",
            "kept: Sluice honours spec.paused from git but never writes it; `kubectl sluice pause` and `resume` steer through the status instead, so Argo CD or Flux do not fight the controller",
        ));
    }
    if let Some(bg) = spec.at_mut("strategy.blueGreen") {
        for f in ["prePromotionAnalysis", "postPromotionAnalysis"] {
            if let Some(a) = bg.get_mut(f) {
                legacy_template_name(a, &format!("spec.strategy.blueGreen.{f}"), remarks);
            }
        }
    }
    if let Some(c) = spec.at_mut("strategy.canary") {
        canary(c, remarks);
    }
}

/// Argo's old `analysis.templateName: x` is `templates: [{templateName: x}]`.
fn legacy_template_name(a: &mut Node, at: &str, remarks: &mut Vec<Remark>) {
    if let Some(name) = a.remove("templateName") {
        let mut entry = Node::new(Tree::Map(Vec::new()));
        entry.set("templateName", name);
        a.set("templates", Node::new(Tree::Seq(vec![entry])));
        remarks.push(remark(
            Change::Changed,
            format!("{at}.templateName"),
            "the deprecated single templateName became templates: [{templateName: ...}]",
        ));
    }
}

fn canary(c: &mut Node, remarks: &mut Vec<Remark>) {
    let mut removed = Vec::new();
    if let Some(steps) = c.get_mut("steps").and_then(Node::items_mut) {
        let mut kept = Vec::new();
        for (i, mut step) in std::mem::take(steps).into_iter().enumerate() {
            let at = format!("spec.strategy.canary.steps[{i}]");
            if step.get("experiment").is_some() {
                remarks.push(remark(Change::Dropped, format!("{at}.experiment"), "Sluice has no Experiments; the step was removed (an analysis step comparing canary and stable by pod-template hash can take its place)"));
                removed.push(i);
                continue;
            }
            if step.get("plugin").is_some() {
                remarks.push(remark(
                    Change::Dropped,
                    format!("{at}.plugin"),
                    "Sluice has no step plugins; the step was removed",
                ));
                removed.push(i);
                continue;
            }
            if let Some(a) = step.get_mut("analysis") {
                legacy_template_name(a, &format!("{at}.analysis"), remarks);
            }
            kept.push(step);
        }
        *steps = kept;
    }
    if let Some(a) = c.get_mut("analysis") {
        legacy_template_name(a, "spec.strategy.canary.analysis", remarks);
        if let Some(Tree::Int(start)) = a.get("startingStep").map(|s| s.value.clone())
            && !removed.is_empty()
        {
            let shift = removed.iter().filter(|&&i| (i as i64) < start).count() as i64;
            if shift > 0 {
                a.set("startingStep", Node::new(Tree::Int(start - shift)));
                remarks.push(remark(
                    Change::Changed,
                    "spec.strategy.canary.analysis.startingStep",
                    format!(
                        "{start} -> {} (steps before it were removed)",
                        start - shift
                    ),
                ));
            }
        }
    }
    if let Some(tr) = c.get_mut("trafficRouting") {
        traffic_routing(tr, remarks);
        let routed = tr.get("istio").is_some() || tr.get("gatewayAPI").is_some();
        if !routed {
            c.remove("trafficRouting");
            remarks.push(remark(
                Change::Dropped,
                "spec.strategy.canary.trafficRouting",
                "no router Sluice supports is left: without trafficRouting the canary's weight is its share of ready pods behind the Services (steps that set header or mirror routes need a router and make the Rollout invalid)",
            ));
        }
    }
}

/// Routers Sluice does not have.
const OTHER_ROUTERS: [&str; 7] = [
    "alb",
    "nginx",
    "smi",
    "ambassador",
    "appMesh",
    "traefik",
    "apisix",
];

fn traffic_routing(tr: &mut Node, remarks: &mut Vec<Remark>) {
    let at = "spec.strategy.canary.trafficRouting";
    for r in OTHER_ROUTERS {
        if tr.remove(r).is_some() {
            remarks.push(remark(Change::Dropped, format!("{at}.{r}"), format!("Sluice routes traffic through Istio or Gateway API only; the {r} router was removed")));
        }
    }
    for key in ["plugins", "plugin"] {
        let Some(Node {
            value: Tree::Map(entries),
            ..
        }) = tr.remove(key)
        else {
            continue;
        };
        for e in entries {
            let path = format!("{at}.{key}[{:?}]", e.key);
            if e.key == "gatewayAPI" || e.key.ends_with("/gatewayAPI") {
                let gw = gateway_plugin(&e.value, &path, remarks);
                tr.set("gatewayAPI", gw);
                remarks.push(remark(
                    Change::Changed,
                    path,
                    format!("the Gateway API plugin became Sluice's built-in {at}.gatewayAPI"),
                ));
            } else {
                remarks.push(remark(Change::Dropped, path, format!("traffic router plugin {:?} has no Sluice counterpart (Sluice has Istio and Gateway API built in); removed", e.key)));
            }
        }
    }
}

/// The Gateway API plugin's settings Sluice reads: the HTTPRoutes and their namespace.
fn gateway_plugin(cfg: &Node, at: &str, remarks: &mut Vec<Remark>) -> Node {
    let mut gw = Node::new(Tree::Map(Vec::new()));
    let Tree::Map(entries) = &cfg.value else {
        return gw;
    };
    for e in entries {
        match e.key.as_str() {
            "httpRoute" | "namespace" => gw.set(&e.key, e.value.clone()),
            "httpRoutes" => {
                let mut names = Vec::new();
                if let Tree::Seq(items) = &e.value.value {
                    for it in items {
                        let mut r = Node::new(Tree::Map(Vec::new()));
                        if let Some(n) = it.get("name") {
                            r.set("name", n.clone());
                        }
                        if it.get("useHeaderRoutes").is_some() {
                            remarks.push(remark(Change::Note, format!("{at}.httpRoutes"), "useHeaderRoutes dropped: Sluice writes header routes to every HTTPRoute it splits"));
                        }
                        names.push(r);
                    }
                }
                gw.set("httpRoutes", Node::new(Tree::Seq(names)));
            }
            other => remarks.push(remark(
                Change::Dropped,
                format!("{at}.{other}"),
                "not a Sluice gatewayAPI setting (Sluice splits HTTPRoutes only)",
            )),
        }
    }
    gw
}

/// Providers Sluice measures with.
const PROVIDERS: [&str; 3] = ["prometheus", "web", "job"];

/// An AnalysisTemplate's, ClusterAnalysisTemplate's or AnalysisRun's spec: conditions to
/// CEL, metrics of providers Sluice lacks removed.
fn analysis(spec: &mut Node, remarks: &mut Vec<Remark>) {
    let Some(metrics) = spec.get_mut("metrics").and_then(Node::items_mut) else {
        return;
    };
    let mut kept = Vec::new();
    for (i, mut m) in std::mem::take(metrics).into_iter().enumerate() {
        let at = format!("spec.metrics[{i}]");
        for field in ["successCondition", "failureCondition"] {
            let Some(cond) = m.get(field).and_then(Node::as_str).map(str::to_string) else {
                continue;
            };
            match to_cel(&cond) {
                Ok(cel) if cel == cond.trim() => {}
                Ok(cel) => {
                    remarks.push(remark(
                        Change::Changed,
                        format!("{at}.{field}"),
                        format!("`{cond}` -> `{cel}` (CEL)"),
                    ));
                    m.set(field, Node::string(&cel));
                }
                Err(why) => remarks.push(remark(
                    Change::Error,
                    format!("{at}.{field}"),
                    format!("`{cond}` cannot be converted to CEL: {why}"),
                )),
            }
        }
        let provider: Vec<String> = match m.get("provider").map(|p| &p.value) {
            Some(Tree::Map(entries)) => entries.iter().map(|e| e.key.clone()).collect(),
            _ => Vec::new(),
        };
        if let Some(other) = provider.iter().find(|p| !PROVIDERS.contains(&p.as_str())) {
            let name = m
                .get("name")
                .and_then(Node::as_str)
                .unwrap_or_default()
                .to_string();
            let hint = if other == "kayenta" {
                "; Sluice's compare provider judges the canary against the stable the way \
                 Kayenta does, inside the controller (docs/statistics.md): rewrite the \
                 metric's Kayenta canary config as compare metrics"
            } else {
                ""
            };
            remarks.push(remark(
                Change::Dropped,
                format!("{at}.provider.{other}"),
                format!("metric {name:?} removed: of Argo Rollouts' providers, Sluice measures with prometheus, web and job, not {other}{hint}"),
            ));
            continue;
        }
        kept.push(m);
    }
    *metrics = kept;
}

/// Why some fields Sluice lacks are not missed, for the remark that drops them.
fn why_missing(path: &str) -> &'static str {
    if path == "spec.analysis" {
        return "Argo's AnalysisRun history limits; Sluice keeps a release's AnalysisRuns as long as its ReplicaSet (revisionHistoryLimit)";
    }
    if path == "spec.templates" {
        // Only an AnalysisRun lacks it (templates may include templates).
        return "an AnalysisRun names no templates (in Argo Rollouts neither): write the templates' metrics into the run";
    }
    let last = path.rsplit(['.', '[']).next().unwrap_or(path);
    match last {
        "antiAffinity" => {
            "Sluice has no anti-affinity between revisions; set pod anti-affinity in the template"
        }
        "pingPong" => "ping-pong Services are an ALB feature Sluice lacks",
        "maxTrafficWeight" => "Sluice's weights are percentages (0-100)",
        "analysisRunMetadata" => "Sluice labels its AnalysisRuns itself",
        "consecutiveSuccessLimit" => {
            "Sluice counts judged measurements with count and failureLimit"
        }
        "sigv4" | "oauth2" => {
            "Sluice's Prometheus authentication is bearerToken or basic from Secrets"
        }
        "minPodsPerReplicaSet" => "Sluice sizes the canary from the weight or setCanaryScale",
        _ => "Sluice has no such field",
    }
}

/// Fields Sluice's schema does not have would be refused by the API server: drop them.
fn prune_unknown(kind: &str, node: &mut Node, remarks: &mut Vec<Remark>) {
    let Some(schema) = crd_schema(kind) else {
        return;
    };
    for _ in 0..8 {
        let unknown: Vec<String> = schema::check(&schema, &node.to_json())
            .into_iter()
            .filter(|p| p.message.starts_with("unknown field"))
            .map(|p| p.path)
            .collect();
        if unknown.is_empty() {
            return;
        }
        for path in unknown.iter().rev() {
            if node.remove_at(path) {
                remarks.push(remark(Change::Dropped, path.clone(), why_missing(path)));
            }
        }
    }
}

#[cfg(test)]
#[path = "convert_tests.rs"]
mod tests;
