//! `kubectl sluice backtest TEMPLATE --rollout NAME --from T1 --to T2`: what an analysis
//! template would have decided over past Prometheus data, as the Rollout's background
//! analysis, and (with `--incidents`) which incidents it would have caught and which
//! failures were false.
//!
//! The template and the Rollout are read from the cluster with the user's credentials; the
//! arguments are bound as the controller binds them (`observe::policy::arg_context`), `--arg`
//! overriding. The data is read by `providers::backtest`; the replay and the report are the
//! pure `analysis::backtest`; this module renders them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::ListParams;
use kube::core::ObjectMeta;
use serde::Serialize;

use super::cluster::{Action, Among, CliError, Cluster, hint_among};
use super::commands::{Output, encode, fetch};
use crate::analysis::backtest::{self, Incident, Replay, Report, RunEnd};
use crate::analysis::burn::prom_duration;
use crate::analysis::judge::{self, MetricPolicy};
use crate::analysis::template::{build_run, merge_templates, with_rollout_rules};
use crate::api::analysis::{
    AnalysisPhase, AnalysisRun, AnalysisRunSpec, AnalysisTemplate, AnalysisTemplateSpec, Argument,
    ClusterAnalysisTemplate, Metric,
};
use crate::api::rollout::{AnalysisTemplateRef, Rollout};
use crate::providers::backtest::{self as fetcher, Range, Skipped};
use crate::providers::prometheus::Connection;
use crate::providers::{MeasureContext, secret_value};
use crate::rollout::analysis::AnalysisKey;
use crate::rollout::observe::policy::{AnalysisUse, analysis_uses, arg_context};

/// More evaluations than this print progress on stderr.
const LONG: usize = 500;
/// The most evaluations of one metric a backtest takes (a week at 10 s is 60,480).
pub const MAX_EVALUATIONS: i64 = 200_000;

#[derive(clap::Args, Clone, Debug)]
pub struct BacktestArgs {
    /// The AnalysisTemplate to replay (a ClusterAnalysisTemplate with --cluster).
    pub template: String,
    /// The Rollout whose analysis uses the template: it gives the arguments.
    #[arg(long, value_name = "NAME")]
    pub rollout: String,
    /// Start: RFC 3339 (2026-12-02T10:00:00Z) or before now (-2h, -30m, -1d).
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub from: String,
    /// End: RFC 3339, before now (-1h), or now.
    #[arg(
        long,
        value_name = "TIME",
        allow_hyphen_values = true,
        default_value = "now"
    )]
    pub to: String,
    /// A YAML or JSON list of {name, start, end} (RFC 3339): which were caught, and how fast.
    #[arg(long, value_name = "FILE")]
    pub incidents: Option<PathBuf>,
    /// Query this Prometheus instead of every metric's address (e.g. through kubectl port-forward).
    #[arg(long, value_name = "URL")]
    pub prometheus: Option<String>,
    /// An argument's value, over the Rollout's (repeatable).
    #[arg(long = "arg", value_name = "NAME=VALUE")]
    pub args: Vec<String>,
    /// TEMPLATE is a ClusterAnalysisTemplate.
    #[arg(long)]
    pub cluster: bool,
    /// The interval of a metric that sets none.
    #[arg(long, value_name = "DURATION", default_value = "1m")]
    pub interval: String,
    /// How long after an incident's end a failure still counts as catching it.
    #[arg(long, value_name = "DURATION", default_value = "0s")]
    pub grace: String,
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// The command line, checked before anything is read.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub from: Timestamp,
    pub to: Timestamp,
    pub interval: Duration,
    pub grace: Duration,
    pub args: Vec<(String, String)>,
}

fn duration(flag: &str, s: &str) -> Result<Duration, String> {
    crate::api::duration::parse_duration(s)
        .map_err(|e| format!("--{flag} {s:?} is not a duration like 30s, 1m or 1h30m: {e}"))
}

/// Parses `NAME=VALUE`.
pub fn parse_arg(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((n, v)) if !n.trim().is_empty() => Ok((n.trim().to_string(), v.to_string())),
        _ => Err(format!("--arg {s:?} must be NAME=VALUE")),
    }
}

/// Checks the flags: times, durations, arguments.
pub fn plan(a: &BacktestArgs, now: Timestamp) -> Result<Plan, String> {
    let whole = |t: Timestamp| Timestamp::from_second(t.as_second()).unwrap_or(t);
    let from = whole(backtest::parse_time(&a.from, now).map_err(|e| format!("--from: {e}"))?);
    let to = whole(backtest::parse_time(&a.to, now).map_err(|e| format!("--to: {e}"))?);
    if from >= to {
        return Err(format!("--from ({from}) must be before --to ({to})"));
    }
    if to > now {
        return Err(format!(
            "--to ({to}) is in the future; the data does not exist yet"
        ));
    }
    let interval = duration("interval", &a.interval)?;
    if interval < Duration::from_secs(1) {
        return Err("--interval must be at least 1s".into());
    }
    if interval.subsec_nanos() != 0 {
        return Err(format!(
            "--interval {} is not a whole number of seconds, which a backtest needs: use e.g. {}",
            a.interval,
            prom_duration(interval)
        ));
    }
    Ok(Plan {
        from,
        to,
        interval,
        grace: duration("grace", &a.grace)?,
        args: a
            .args
            .iter()
            .map(|s| parse_arg(s))
            .collect::<Result<_, _>>()?,
    })
}

fn kind(cluster: bool) -> &'static str {
    if cluster {
        "ClusterAnalysisTemplate"
    } else {
        "AnalysisTemplate"
    }
}

fn where_used(key: AnalysisKey) -> String {
    match key {
        AnalysisKey::Step(i) => format!("step {i}"),
        AnalysisKey::Background => "background analysis".into(),
        AnalysisKey::PrePromotion => "prePromotionAnalysis".into(),
        AnalysisKey::PostPromotion => "postPromotionAnalysis".into(),
    }
}

/// The Rollout's analysis that uses the template (its background analysis first), or why
/// none does, naming the templates it references.
pub fn pick_use(
    ro: &Rollout,
    template: &str,
    cluster: bool,
) -> Result<(AnalysisKey, AnalysisUse, Vec<String>), String> {
    let uses = analysis_uses(ro);
    let names = |r: &AnalysisTemplateRef| {
        r.cluster_scope == Some(true) && cluster || r.cluster_scope != Some(true) && !cluster
    };
    let mut matching: Vec<&(AnalysisKey, AnalysisUse)> = uses
        .iter()
        .filter(|(_, u)| {
            u.templates
                .iter()
                .any(|r| names(r) && r.template_name == template)
        })
        .collect();
    matching.sort_by_key(|(k, _)| *k != AnalysisKey::Background);
    let name = ro.metadata.name.clone().unwrap_or_default();
    let Some((key, chosen)) = matching.first().map(|(k, u)| (*k, u.clone())) else {
        let referenced: BTreeSet<String> = uses
            .iter()
            .flat_map(|(k, u)| {
                u.templates.iter().map(move |r| {
                    format!(
                        "{} {} ({})",
                        kind(r.cluster_scope == Some(true)),
                        r.template_name,
                        where_used(*k)
                    )
                })
            })
            .collect();
        return Err(if referenced.is_empty() {
            format!(
                "rollout {name} has no analysis, so it does not use {} {template}",
                kind(cluster)
            )
        } else {
            format!(
                "rollout {name} does not use {} {template}; its analyses use: {}",
                kind(cluster),
                referenced.into_iter().collect::<Vec<_>>().join(", ")
            )
        });
    };
    let mut notes = Vec::new();
    for (k, u) in matching.iter().skip(1) {
        if u.args != chosen.args {
            notes.push(format!(
                "the {} also uses the template with other arguments; the {}'s are used",
                where_used(*k),
                where_used(key)
            ));
        }
    }
    Ok((key, chosen, notes))
}

/// The run spec of the template alone, bound as the controller would bind it for the
/// Rollout's use (with `--arg` over its arguments), and the Rollout's rules that apply to it.
pub fn build_spec(
    ro: &Rollout,
    u: &AnalysisUse,
    root: &AnalysisTemplateRef,
    lookup: &dyn Fn(&AnalysisTemplateRef) -> Option<AnalysisTemplateSpec>,
    overrides: &[(String, String)],
) -> Result<AnalysisRunSpec, String> {
    let merged = merge_templates(std::slice::from_ref(root), lookup).map_err(|e| e.to_string())?;
    let mut args = u.args.clone();
    for (n, v) in overrides {
        let a = Argument {
            name: n.clone(),
            value: Some(v.clone()),
            value_from: None,
        };
        match args.iter_mut().find(|x| &x.name == n) {
            Some(x) => *x = a,
            None => args.push(a),
        }
    }
    let declared: BTreeSet<&str> = merged
        .args
        .iter()
        .flatten()
        .map(|a| a.name.as_str())
        .collect();
    if let Some((n, _)) = overrides
        .iter()
        .find(|(n, _)| !declared.contains(n.as_str()))
    {
        return Err(format!(
            "--arg {n}: the template declares no such argument (it declares: {})",
            declared.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    let desired = ro
        .status
        .as_ref()
        .and_then(|s| s.current_pod_hash.clone().or_else(|| s.stable_rs.clone()))
        .unwrap_or_default();
    let spec = build_run(&merged, &args, &arg_context(ro, &desired)).map_err(|e| e.to_string())?;
    // The Rollout's rules may name metrics of its other templates: only those that select
    // one of this template's metrics apply.
    let selects = |pattern: &str| {
        let p = if pattern == "*" { ".*" } else { pattern };
        regex::Regex::new(p).is_ok_and(|re| spec.metrics.iter().any(|m| re.is_match(&m.name)))
    };
    let dry: Vec<_> = u
        .dry_run
        .iter()
        .flatten()
        .filter(|d| selects(&d.metric_name))
        .cloned()
        .collect();
    let keep: Vec<_> = u
        .retention
        .iter()
        .flatten()
        .filter(|r| selects(&r.metric_name))
        .cloned()
        .collect();
    with_rollout_rules(spec, Some(&dry), Some(&keep)).map_err(|e| e.to_string())
}

/// Every Prometheus address of the metrics replaced by `url`.
pub fn with_prometheus(spec: &mut AnalysisRunSpec, url: &str) {
    for m in &mut spec.metrics {
        if let Some(p) = &mut m.provider.prometheus {
            p.address = url.to_string();
        }
        if let Some(c) = &mut m.provider.compare {
            c.prometheus.address = url.to_string();
        }
        if let Some(b) = &mut m.provider.burn_rate {
            b.prometheus.address = url.to_string();
        }
    }
}

/// Each Prometheus the metrics query, with its server settings.
fn servers(spec: &AnalysisRunSpec) -> BTreeMap<String, crate::api::analysis::PrometheusServer> {
    let mut out = BTreeMap::new();
    for m in &spec.metrics {
        let s = if let Some(p) = &m.provider.prometheus {
            Some(p.server())
        } else if let Some(c) = &m.provider.compare {
            Some(c.prometheus.clone())
        } else {
            m.provider.burn_rate.as_ref().map(|b| b.prometheus.clone())
        };
        if let Some(s) = s {
            out.entry(s.address.clone()).or_insert(s);
        }
    }
    out
}

/// Reads the template and every template it includes.
async fn templates(
    cl: &Cluster,
    root: &AnalysisTemplateRef,
) -> Result<BTreeMap<(bool, String), AnalysisTemplateSpec>, CliError> {
    let mut found = BTreeMap::new();
    let mut queue = vec![root.clone()];
    while let Some(r) = queue.pop() {
        let cluster = r.cluster_scope == Some(true);
        let key = (cluster, r.template_name.clone());
        if found.contains_key(&key) || found.len() > 64 {
            continue;
        }
        let spec: Option<AnalysisTemplateSpec> = if cluster {
            let api: Api<ClusterAnalysisTemplate> = Api::all(cl.client.clone());
            let action =
                Action::new("get", "clusteranalysistemplates.sluice.dev").named(&r.template_name);
            cl.call(&action, api.get_opt(&r.template_name))
                .await?
                .map(|t| t.spec.into())
        } else {
            let api: Api<AnalysisTemplate> = Api::namespaced(cl.client.clone(), &cl.namespace);
            let action = Action::new("get", "analysistemplates.sluice.dev")
                .named(&r.template_name)
                .in_ns(&cl.namespace);
            cl.call(&action, api.get_opt(&r.template_name))
                .await?
                .map(|t| t.spec)
        };
        match spec {
            Some(s) => {
                queue.extend(s.templates.iter().flatten().cloned());
                found.insert(key, s);
            }
            None if &r == root => return Err(not_found(cl, &r.template_name, cluster).await),
            // An included template that is missing: merge_templates says which.
            None => {}
        }
    }
    Ok(found)
}

async fn not_found(cl: &Cluster, name: &str, cluster: bool) -> CliError {
    let names: Vec<String> = if cluster {
        let api: Api<ClusterAnalysisTemplate> = Api::all(cl.client.clone());
        let action = Action::new("list", "clusteranalysistemplates.sluice.dev");
        cl.call(&action, api.list_metadata(&ListParams::default()))
            .await
            .map(|l| {
                l.items
                    .into_iter()
                    .filter_map(|m| m.metadata.name)
                    .collect()
            })
            .unwrap_or_default()
    } else {
        let api: Api<AnalysisTemplate> = Api::namespaced(cl.client.clone(), &cl.namespace);
        let action = Action::new("list", "analysistemplates.sluice.dev").in_ns(&cl.namespace);
        cl.call(&action, api.list_metadata(&ListParams::default()))
            .await
            .map(|l| {
                l.items
                    .into_iter()
                    .filter_map(|m| m.metadata.name)
                    .collect()
            })
            .unwrap_or_default()
    };
    let among = Among {
        plural: if cluster {
            "clusteranalysistemplates"
        } else {
            "analysistemplates"
        },
        list: if cluster {
            "kubectl get clusteranalysistemplates".into()
        } else {
            format!("kubectl get analysistemplates -n {}", cl.namespace)
        },
        list_all: "kubectl get analysistemplates -A",
    };
    CliError::NotFound {
        kind: if cluster {
            "clusteranalysistemplate"
        } else {
            "analysistemplate"
        },
        name: name.to_string(),
        namespace: cl.namespace.clone(),
        hint: hint_among(&among, name, &names, &cl.namespace),
    }
}

/// The values of the run's secret arguments, read with the user's credentials, made plain.
async fn read_secrets(cl: &Cluster, spec: &mut AnalysisRunSpec) -> Result<Vec<String>, CliError> {
    let mut values = Vec::new();
    for a in spec.args.iter_mut().flatten() {
        let Some(r) = a.value_from.as_ref().and_then(|v| v.secret_key_ref.clone()) else {
            continue;
        };
        let v = secret_value(&cl.client, &cl.namespace, &r)
            .await
            .map_err(|e| CliError::Usage(format!("argument {:?}: {e}", a.name)))?;
        values.push(v.clone());
        a.value = Some(v);
        a.value_from = None;
    }
    Ok(values)
}

/// The whole backtest, as JSON shows it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Backtest {
    pub template: String,
    pub kind: &'static str,
    pub rollout: String,
    pub namespace: String,
    pub from: Timestamp,
    pub to: Timestamp,
    pub metrics: Vec<MetricInfo>,
    pub skipped: Vec<Skipped>,
    pub notes: Vec<String>,
    #[serde(flatten)]
    pub replay: Replay,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<Report>,
    pub summary: Summary,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricInfo {
    pub name: String,
    pub interval: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

#[derive(Serialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub evaluations: usize,
    pub runs_ended: usize,
    pub failed: usize,
    pub inconclusive: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incidents: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caught: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub false_failures: Option<usize>,
}

pub fn summary(replay: &Replay, report: Option<&Report>) -> Summary {
    let failed = replay
        .runs
        .iter()
        .filter(|r| matches!(r.phase, AnalysisPhase::Failed | AnalysisPhase::Error))
        .count();
    Summary {
        evaluations: replay.rows.len(),
        runs_ended: replay.runs.len(),
        failed,
        inconclusive: replay
            .runs
            .iter()
            .filter(|r| r.phase == AnalysisPhase::Inconclusive)
            .count(),
        incidents: report.map(|r| r.incidents.len()),
        caught: report.map(Report::caught),
        false_failures: report.map(|r| r.false_failures.len()),
    }
}

/// `backtest TEMPLATE ...`.
pub async fn run(cl: &Cluster, a: &BacktestArgs) -> Result<String, CliError> {
    let now = Timestamp::now();
    let plan = plan(a, now).map_err(CliError::Usage)?;
    let incidents = read_incidents(a)?;
    let Bound {
        spec,
        mut notes,
        mut secrets,
    } = bind(cl, a, &plan).await?;
    let policies = judge::policies(&spec)
        .map_err(|e| CliError::Usage(format!("{} {}: {e}", kind(a.cluster), a.template)))?;
    check_limits(&policies, &plan).map_err(CliError::Usage)?;

    let run = analysis_run(cl, a, &spec);
    let ctx = MeasureContext {
        client: &cl.client,
        run: &run,
        namespace: &cl.namespace,
        now,
        attempt: 1,
        secrets: std::sync::Mutex::new(Vec::new()),
    };
    check_reachable(&ctx, &spec, a.prometheus.is_some()).await?;

    let range = Range {
        from: plan.from,
        to: plan.to,
        default_interval: plan.interval,
    };
    let long = evaluations(&policies, &plan) > LONG;
    let progress = |line: &str| {
        if long {
            eprintln!("backtest: {line}");
        }
    };
    let fetched = fetcher::fetch(&ctx, &policies, &range, &progress).await;
    notes.extend(fetched.notes.iter().cloned());
    let bt = assemble(
        cl,
        a,
        &plan,
        &policies,
        fetched,
        notes,
        incidents.as_deref(),
    );
    secrets.extend(ctx.secrets_read());
    let text = match a.output {
        Output::Text => render(&bt),
        other => encode(&bt, other)?,
    };
    Ok(scrub(text, &secrets))
}

/// The incidents of `--incidents`, if given.
fn read_incidents(a: &BacktestArgs) -> Result<Option<Vec<Incident>>, CliError> {
    let Some(path) = &a.incidents else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Usage(format!("--incidents {}: {e}", path.display())))?;
    backtest::parse_incidents(&text)
        .map(Some)
        .map_err(|e| CliError::Usage(format!("--incidents {}: {e}", path.display())))
}

/// The run spec to replay, what the reader should know about its binding, and the secret
/// values it holds.
struct Bound {
    spec: AnalysisRunSpec,
    notes: Vec<String>,
    secrets: Vec<String>,
}

/// Reads the Rollout and the templates, and binds the template as the controller would.
async fn bind(cl: &Cluster, a: &BacktestArgs, plan: &Plan) -> Result<Bound, CliError> {
    let ro = fetch(cl, &a.rollout).await?;
    let root = AnalysisTemplateRef {
        template_name: a.template.clone(),
        cluster_scope: a.cluster.then_some(true),
    };
    let found = templates(cl, &root).await?;
    let (_, chosen, notes) = pick_use(&ro, &a.template, a.cluster).map_err(CliError::Usage)?;
    let lookup = |r: &AnalysisTemplateRef| {
        found
            .get(&(r.cluster_scope == Some(true), r.template_name.clone()))
            .cloned()
    };
    let mut spec = build_spec(&ro, &chosen, &root, &lookup, &plan.args)
        .map_err(|e| CliError::Usage(format!("{} {}: {e}", kind(a.cluster), a.template)))?;
    let secrets = read_secrets(cl, &mut spec).await?;
    if let Some(url) = &a.prometheus {
        with_prometheus(&mut spec, url);
    }
    Ok(Bound {
        spec,
        notes,
        secrets,
    })
}

/// Refuses, before any query, what a backtest cannot replay or would take too long to: an
/// interval that is not whole seconds (the evaluations would miss the query's timestamps),
/// more than [`MAX_EVALUATIONS`] evaluations of a metric, and a `compare` metric reading more
/// than `providers::backtest::MAX_COMPARE_POINTS` points a side.
pub fn check_limits(policies: &[(Metric, MetricPolicy)], plan: &Plan) -> Result<(), String> {
    let span = plan.to.as_second() - plan.from.as_second();
    for (m, p) in policies {
        let interval = p.interval.unwrap_or(plan.interval);
        if interval.subsec_nanos() != 0 {
            return Err(format!(
                "metric {:?}: its interval {} is not a whole number of seconds, which a backtest \
                 needs to evaluate it at the query's timestamps: use e.g. {}",
                m.name,
                fetcher::shown(interval),
                prom_duration(interval.max(Duration::from_secs(1)))
            ));
        }
        let i = interval.as_secs().max(1);
        let n = span / i64::try_from(i).unwrap_or(i64::MAX) + 1;
        if n > MAX_EVALUATIONS {
            return Err(format!(
                "metric {:?} would be evaluated {n} times (every {}) over this range; at most {MAX_EVALUATIONS}: narrow the range",
                m.name,
                prom_duration(Duration::from_secs(i))
            ));
        }
        if let Some(c) = &m.provider.compare {
            fetcher::check_compare(&m.name, c, plan.from.as_second(), plan.to.as_second())?;
        }
    }
    Ok(())
}

/// How many evaluations the backtest makes, over every metric.
fn evaluations(policies: &[(Metric, MetricPolicy)], plan: &Plan) -> usize {
    policies
        .iter()
        .map(|(_, p)| {
            let i = p.interval.unwrap_or(plan.interval).as_secs().max(1);
            ((plan.to.as_second() - plan.from.as_second()) as u64 / i) as usize
        })
        .sum()
}

/// The AnalysisRun the providers measure for: never created.
fn analysis_run(cl: &Cluster, a: &BacktestArgs, spec: &AnalysisRunSpec) -> AnalysisRun {
    AnalysisRun {
        metadata: ObjectMeta {
            name: Some(format!("{}-backtest", a.rollout)),
            namespace: Some(cl.namespace.clone()),
            ..Default::default()
        },
        spec: spec.clone(),
        status: None,
    }
}

/// The replay of the fetched outcomes, its report against the incidents, and the rest.
fn assemble(
    cl: &Cluster,
    a: &BacktestArgs,
    plan: &Plan,
    policies: &[(Metric, MetricPolicy)],
    fetched: fetcher::Fetched,
    notes: Vec<String>,
    incidents: Option<&[Incident]>,
) -> Backtest {
    let replay = backtest::replay(policies, &fetched.timelines);
    let report = incidents.map(|inc| backtest::against(&replay, inc, plan.grace));
    let summary = summary(&replay, report.as_ref());
    Backtest {
        template: a.template.clone(),
        kind: kind(a.cluster),
        rollout: a.rollout.clone(),
        namespace: cl.namespace.clone(),
        from: plan.from,
        to: plan.to,
        metrics: policies
            .iter()
            .filter(|(m, _)| fetched.timelines.contains_key(&m.name))
            .map(|(m, p)| info(m, p, plan.interval))
            .collect(),
        skipped: fetched.skipped,
        notes,
        replay,
        report,
        summary,
    }
}

fn info(m: &Metric, p: &MetricPolicy, default: Duration) -> MetricInfo {
    MetricInfo {
        name: m.name.clone(),
        interval: prom_duration(p.interval.unwrap_or(default)),
        dry_run: p.dry_run,
    }
}

/// Every secret value masked.
fn scrub(mut text: String, secrets: &[String]) -> String {
    for s in secrets.iter().filter(|s| s.len() >= 3) {
        text = text.replace(s.as_str(), "*****");
    }
    text
}

/// One query to each Prometheus before the long work: a server that does not answer is a
/// connection error, with the way round it.
async fn check_reachable(
    ctx: &MeasureContext<'_>,
    spec: &AnalysisRunSpec,
    overridden: bool,
) -> Result<(), CliError> {
    for (address, server) in servers(spec) {
        let answer = match Connection::open(ctx, &server).await {
            Ok(c) => c.instant("vector(1)", None).await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = answer {
            let hint = if overridden {
                "check that it is up and that the address is right".to_string()
            } else {
                "an address inside the cluster is usually unreachable from here: forward it \
                 (kubectl port-forward -n NAMESPACE svc/PROMETHEUS 9090) and pass \
                 --prometheus http://localhost:9090"
                    .to_string()
            };
            return Err(CliError::Usage(format!(
                "cannot query Prometheus at {address}: {e}\n  {hint}"
            )));
        }
    }
    Ok(())
}

/// A number as people read it: 4 significant figures at most.
fn short_number(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    if x.abs() >= 1000.0 {
        return format!("{x:.0}");
    }
    if x.abs() < 0.001 {
        return format!("{x:.2e}");
    }
    let digits = 3 - x.abs().log10().floor() as i32;
    let s = format!("{x:.*}", digits.max(0) as usize);
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A measured value shortened for a table: `[0.010050251]` → `[0.01005]`.
pub fn short_value(v: &str) -> String {
    if let Ok(x) = v.parse::<f64>() {
        return short_number(x);
    }
    if let Some(inner) = v.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        let parts: Vec<String> = inner
            .split(", ")
            .filter(|p| !p.is_empty())
            .map(|p| p.parse::<f64>().map_or(p.to_string(), short_number))
            .collect();
        return format!("[{}]", parts.join(", "));
    }
    v.to_string()
}

fn mark(phase: AnalysisPhase) -> &'static str {
    match phase {
        AnalysisPhase::Successful => "ok",
        AnalysisPhase::Failed => "FAIL",
        AnalysisPhase::Inconclusive => "INCONCLUSIVE",
        AnalysisPhase::Error => "ERROR",
        _ => "…",
    }
}

fn delay(seconds: i64) -> String {
    prom_duration(Duration::from_secs(seconds.max(0) as u64))
}

fn end_line(r: &RunEnd) -> String {
    let value = r
        .value
        .as_deref()
        .map(|v| format!(" = {}", short_value(v)))
        .unwrap_or_default();
    format!(
        "  run {} {} → {}  {:?}: {}{value}: {}\n",
        r.run, r.started, r.ended, r.phase, r.metric, r.message
    )
}

/// The text output.
pub fn render(bt: &Backtest) -> String {
    let mut out = heading(bt);
    out.push('\n');
    out.push_str(&table(bt));
    out.push('\n');
    out.push_str(&run_ends(&bt.replay.runs));
    if let Some(report) = &bt.report {
        out.push_str(&incidents_text(report));
    }
    out.push_str(&summary_line(&bt.summary));
    out
}

/// What was replayed, what was skipped, and the notes.
fn heading(bt: &Backtest) -> String {
    let metrics = if bt.metrics.is_empty() {
        "none to replay".to_string()
    } else {
        bt.metrics
            .iter()
            .map(|m| {
                format!(
                    "{} every {}{}",
                    m.name,
                    m.interval,
                    if m.dry_run { " (dry run)" } else { "" }
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = format!(
        "Backtest of {} {} for rollout {} in namespace {}\n{} to {}; metrics: {metrics}\n",
        bt.kind, bt.template, bt.rollout, bt.namespace, bt.from, bt.to,
    );
    for s in &bt.skipped {
        out.push_str(&format!(
            "skipped: {} ({}): {}\n",
            s.metric, s.provider, s.why
        ));
    }
    for n in &bt.notes {
        out.push_str(&format!("note: {n}\n"));
    }
    out
}

/// The table: a row per evaluation, one column per metric, each cell "value mark".
fn table(bt: &Backtest) -> String {
    let names: Vec<&str> = bt.metrics.iter().map(|m| m.name.as_str()).collect();
    let cells: Vec<Vec<String>> = bt
        .replay
        .rows
        .iter()
        .map(|row| {
            names
                .iter()
                .map(|n| match row.cells.iter().find(|c| c.metric == *n) {
                    None => String::new(),
                    Some(c) => format!(
                        "{} {}",
                        c.value.as_deref().map_or("-".to_string(), short_value),
                        mark(c.phase)
                    ),
                })
                .collect()
        })
        .collect();
    let widths: Vec<usize> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([n.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut header = format!("{:<20}  {:>3}", "TIME", "RUN");
    for (n, w) in names.iter().zip(&widths) {
        header.push_str(&format!("  {n:<w$}"));
    }
    let mut out = format!("{}\n", header.trim_end());
    for (row, cells) in bt.replay.rows.iter().zip(&cells) {
        let mut line = format!("{:<20}  {:>3}", row.at.to_string(), row.run);
        for (c, w) in cells.iter().zip(&widths) {
            line.push_str(&format!("  {c:<w$}"));
        }
        if let Some(end) = bt.replay.runs.iter().find(|r| r.ended == row.at) {
            line.push_str(&format!("  ← run {} ends {:?}", end.run, end.phase));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The runs that ended, or that none did.
fn run_ends(runs: &[RunEnd]) -> String {
    if runs.is_empty() {
        return "No run ended: the analysis passed over the whole range.\n".into();
    }
    let mut out = format!("Runs that ended ({}):\n", runs.len());
    for r in runs {
        out.push_str(&end_line(r));
    }
    out
}

/// Each incident caught or missed, the false failures and the inconclusive run-ends.
fn incidents_text(report: &Report) -> String {
    let mut out = format!(
        "\nIncidents ({}, grace {}):\n",
        report.incidents.len(),
        delay(i64::try_from(report.grace_seconds).unwrap_or(i64::MAX))
    );
    for d in &report.incidents {
        let i = &d.incident;
        match (&d.caught_by, d.delay_seconds) {
            (Some(r), Some(s)) => out.push_str(&format!(
                "  caught  {} ({} to {}): run {} failed at {}, {} after it began\n",
                i.name,
                i.start,
                i.end,
                r.run,
                r.ended,
                delay(s)
            )),
            _ => out.push_str(&format!(
                "  MISSED  {} ({} to {}): no run failed during it\n",
                i.name, i.start, i.end
            )),
        }
    }
    out.push_str(&false_failures(report));
    if !report.inconclusive.is_empty() {
        out.push_str(&format!(
            "Inconclusive ({}), a release would pause, not counted as failures:\n",
            report.inconclusive.len()
        ));
        for r in &report.inconclusive {
            out.push_str(&format!("  {}  {}: {}\n", r.ended, r.metric, r.message));
        }
    }
    out
}

fn false_failures(report: &Report) -> String {
    if report.false_failures.is_empty() {
        return "False failures: none\n".into();
    }
    let mut out = format!(
        "False failures ({}), outside every incident:\n",
        report.false_failures.len()
    );
    for r in &report.false_failures {
        out.push_str(&format!(
            "  {}  {} = {}  (run {})\n",
            r.ended,
            r.metric,
            r.value.as_deref().map_or("-".into(), short_value),
            r.run
        ));
    }
    out
}

fn summary_line(s: &Summary) -> String {
    let mut line = format!(
        "\nSummary: {} evaluations, {} runs ended ({} failed, {} inconclusive)",
        s.evaluations, s.runs_ended, s.failed, s.inconclusive
    );
    if let (Some(n), Some(c), Some(f)) = (s.incidents, s.caught, s.false_failures) {
        line.push_str(&format!(
            "; {c} of {n} incidents caught; {f} false failures"
        ));
    }
    line.push('\n');
    line
}

#[cfg(test)]
#[path = "backtest_tests.rs"]
mod tests;
