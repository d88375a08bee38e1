//! The Helm chart (`charts/sluice`) through real helm (built from its Go module by
//! e2e/helm/build.sh): `helm lint --strict` and `helm template` for each values combination,
//! the schema refusing mistyped values, the CRDs it ships, and `helm install` into a namespace
//! whose Pod Security admission enforces `restricted`.

mod common;

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use common::helm::{chart, grants, helm, install, of_kind, on_chart, one};
use e2e::{TestEnv, wait_for};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(90);
const RELEASE_NS: &str = "sluice-system";

/// `helm template` of the chart as release `rel` in [`RELEASE_NS`].
async fn render(values: &[&str], extra: &[&str]) -> anyhow::Result<Vec<Value>> {
    common::helm::render("rel", RELEASE_NS, values, extra).await
}

fn args_of(docs: &[Value]) -> anyhow::Result<Vec<String>> {
    let d = one(docs, "Deployment")?;
    Ok(d["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .context("the container has no args")?
        .iter()
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect())
}

/// The values combinations every check runs over: each mode the chart documents.
const COMBINATIONS: &[&[&str]] = &[
    &[],
    &["rbac.scope=namespace"],
    &["rbac.scope=namespace", "rbac.namespaces={apps}"],
    &["rbac.scope=namespace", "rbac.namespaces={apps,jobs}"],
    &["replicaCount=1", "leaderElection.enabled=false"],
    &[
        "networkPolicy.enabled=true",
        "networkPolicy.apiServer.cidrs={10.0.0.1/32}",
        "networkPolicy.prometheus.cidrs={10.1.0.0/16}",
    ],
    &["serviceMonitor.enabled=true", "podMonitor.enabled=true"],
    &[
        "prometheusRule.enabled=true",
        "prometheusRule.labels.release=kube-prometheus",
    ],
    &["dashboards.enabled=true", "dashboards.namespace=monitoring"],
    &[
        "serviceAccount.create=false",
        "serviceAccount.name=existing",
    ],
    &["image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"],
    &["notifications.enabled=true"],
    &["notifications.enabled=true", "rbac.scope=namespace"],
];

#[tokio::test]
async fn the_chart_ships_the_same_crds_as_the_repository() -> anyhow::Result<()> {
    let top = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    let names = |dir: &Path| -> anyhow::Result<Vec<String>> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        Ok(v)
    };
    let ours = names(&top)?;
    let shipped = names(&chart().join("crds"))?;
    ensure!(
        ours == shipped,
        "charts/sluice/crds holds {shipped:?}, crds/ holds {ours:?} (`make crds` writes both)"
    );
    ensure!(!ours.is_empty(), "no CRDs in crds/");
    for name in &ours {
        let a = std::fs::read(top.join(name))?;
        let b = std::fs::read(chart().join("crds").join(name))?;
        ensure!(
            a == b,
            "charts/sluice/crds/{name} differs from crds/{name} (`make crds` writes both)"
        );
    }
    Ok(())
}

#[tokio::test]
async fn helm_lint_strict_passes_for_every_values_combination() -> anyhow::Result<()> {
    for values in COMBINATIONS {
        let out = on_chart(&["lint", "--strict"], &[], values).await?;
        ensure!(
            out.success && out.stdout.contains("0 chart(s) failed"),
            "helm lint --strict {values:?}:\n{}\n{}",
            out.stdout,
            out.stderr
        );
        // Rendered with and without the Prometheus Operator's API: both must render.
        render(values, &[]).await?;
        render(values, &["--api-versions", "monitoring.coreos.com/v1"]).await?;
    }
    Ok(())
}

#[tokio::test]
async fn the_default_install_is_restricted_highly_available_and_cluster_wide() -> anyhow::Result<()>
{
    let docs = render(&[], &[]).await?;
    let d = one(&docs, "Deployment")?;
    ensure!(d["spec"]["replicas"] == 2, "two replicas by default");
    let pod = &d["spec"]["template"]["spec"];
    ensure!(
        pod["securityContext"]["runAsNonRoot"] == true,
        "pod runs as non-root"
    );
    ensure!(
        pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault",
        "pod seccomp RuntimeDefault"
    );
    let c = &pod["containers"][0];
    let sc = &c["securityContext"];
    ensure!(
        sc["allowPrivilegeEscalation"] == false,
        "no privilege escalation"
    );
    ensure!(
        sc["readOnlyRootFilesystem"] == true,
        "read-only root filesystem"
    );
    ensure!(
        sc["capabilities"]["drop"] == serde_json::json!(["ALL"]),
        "all capabilities dropped"
    );
    ensure!(
        c["livenessProbe"]["httpGet"]["path"] == "/healthz",
        "liveness on /healthz"
    );
    ensure!(
        c["readinessProbe"]["httpGet"]["path"] == "/readyz",
        "readiness on /readyz"
    );
    for k in ["requests", "limits"] {
        ensure!(
            c["resources"][k]["memory"].is_string() && c["resources"][k]["cpu"].is_string(),
            "resource {k} for cpu and memory"
        );
    }
    ensure!(
        c["image"] == "sluice:0.1.0",
        "image defaults to the appVersion: {}",
        c["image"]
    );
    let args = args_of(&docs)?;
    ensure!(
        args.first().map(String::as_str) == Some("run"),
        "runs `sluice run`: {args:?}"
    );
    ensure!(
        args.contains(&format!("--lease-namespace={RELEASE_NS}")),
        "the Lease in the release's namespace: {args:?}"
    );
    ensure!(
        !args
            .iter()
            .any(|a| a.starts_with("--namespace") || a == "--no-leader-elect"),
        "cluster-wide with leader election: {args:?}"
    );
    let pdb = one(&docs, "PodDisruptionBudget")?;
    ensure!(
        pdb["spec"]["minAvailable"] == 1,
        "the PDB keeps one replica"
    );
    let svc = one(&docs, "Service")?;
    ensure!(
        svc["spec"]["ports"][0]["port"] == 8080,
        "metrics Service on 8080"
    );

    let cr = one(&docs, "ClusterRole")?;
    one(&docs, "ClusterRoleBinding")?;
    for (g, r, v) in [
        ("sluice.dev", "rollouts", "watch"),
        ("sluice.dev", "rollouts/status", "update"),
        ("sluice.dev", "analysisruns", "patch"),
        ("sluice.dev", "clusteranalysistemplates", "list"),
        ("apps", "replicasets", "delete"),
        ("", "services", "patch"),
        ("", "pods/eviction", "create"),
        ("networking.istio.io", "virtualservices", "update"),
        ("gateway.networking.k8s.io", "httproutes", "update"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
    ] {
        ensure!(grants(cr, g, r, v), "the ClusterRole grants {v} on {g}/{r}");
    }
    for (g, r, v) in [
        ("", "secrets", "list"),
        ("", "secrets", "watch"),
        ("", "services", "delete"),
        ("", "pods", "delete"),
        ("coordination.k8s.io", "leases", "update"),
        ("sluice.dev", "rollouts", "delete"),
        ("apps", "deployments", "update"),
        ("apps", "replicasets", "update"),
        ("sluice.dev", "analysisruns", "update"),
    ] {
        ensure!(
            !grants(cr, g, r, v),
            "the ClusterRole must not grant {v} on {g}/{r}"
        );
    }
    let wildcard = cr["rules"].as_array().is_some_and(|rules| {
        rules.iter().any(|r| {
            ["apiGroups", "resources", "verbs"]
                .iter()
                .any(|k| r[*k].as_array().is_some_and(|a| a.iter().any(|x| x == "*")))
        })
    });
    ensure!(!wildcard, "no wildcard in the ClusterRole");
    // The Lease only in the release's namespace.
    let roles = of_kind(&docs, "Role");
    ensure!(
        roles.len() == 1
            && roles[0]["metadata"]["namespace"] == RELEASE_NS
            && grants(roles[0], "coordination.k8s.io", "leases", "patch"),
        "one Role, for the Lease, in {RELEASE_NS}"
    );
    ensure!(
        of_kind(&docs, "ServiceMonitor").is_empty(),
        "no ServiceMonitor unless asked"
    );
    ensure!(
        of_kind(&docs, "NetworkPolicy").is_empty(),
        "no NetworkPolicy unless asked"
    );
    Ok(())
}

#[tokio::test]
async fn namespace_scope_grants_roles_only() -> anyhow::Result<()> {
    // Watching the release's own namespace: one Role with the Lease in it.
    let docs = render(&["rbac.scope=namespace"], &[]).await?;
    ensure!(
        of_kind(&docs, "ClusterRole").is_empty() && of_kind(&docs, "ClusterRoleBinding").is_empty(),
        "no cluster-wide RBAC in scope namespace"
    );
    let role = one(&docs, "Role")?;
    ensure!(
        role["metadata"]["namespace"] == RELEASE_NS,
        "the Role is in {RELEASE_NS}"
    );
    ensure!(
        grants(role, "sluice.dev", "rollouts", "watch"),
        "the Role grants the Rollouts"
    );
    ensure!(
        grants(role, "coordination.k8s.io", "leases", "patch"),
        "and the Lease"
    );
    ensure!(
        !grants(role, "sluice.dev", "clusteranalysistemplates", "list"),
        "no cluster kinds in a Role"
    );
    let binding = one(&docs, "RoleBinding")?;
    ensure!(binding["roleRef"]["kind"] == "Role", "bound as a Role");
    let args = args_of(&docs)?;
    ensure!(
        args.contains(&format!("--namespace={RELEASE_NS}"))
            && args.contains(&"--no-cluster-reads".to_string()),
        "the controller watches {RELEASE_NS} only and reads no cluster-scoped kind: {args:?}"
    );

    // Watching another namespace: its Role there, the Lease's in the release's namespace.
    let docs = render(&["rbac.scope=namespace", "rbac.namespaces={apps}"], &[]).await?;
    ensure!(of_kind(&docs, "ClusterRole").is_empty(), "no ClusterRole");
    let roles = of_kind(&docs, "Role");
    let watched = roles
        .iter()
        .find(|r| r["metadata"]["namespace"] == "apps")
        .context("a Role in apps")?;
    ensure!(
        grants(watched, "apps", "replicasets", "patch"),
        "the watched namespace's Role"
    );
    ensure!(
        !grants(watched, "coordination.k8s.io", "leases", "patch"),
        "no Lease rights in the watched namespace"
    );
    let lease = roles
        .iter()
        .find(|r| r["metadata"]["namespace"] == RELEASE_NS)
        .context("a Role in the release's namespace")?;
    ensure!(
        grants(lease, "coordination.k8s.io", "leases", "patch")
            && !grants(lease, "sluice.dev", "rollouts", "get"),
        "the release's namespace holds the Lease's Role only"
    );
    ensure!(
        args_of(&docs)?.contains(&"--namespace=apps".to_string()),
        "watches apps"
    );

    // Several namespaces, the release's among them: a Role in each, the Lease's rights in the
    // release's, one controller watching all of them.
    let values = format!("rbac.namespaces={{{RELEASE_NS},apps,jobs}}");
    let docs = render(&["rbac.scope=namespace", &values], &[]).await?;
    ensure!(of_kind(&docs, "ClusterRole").is_empty(), "no ClusterRole");
    let roles = of_kind(&docs, "Role");
    let mut places: Vec<&str> = roles
        .iter()
        .filter_map(|r| r["metadata"]["namespace"].as_str())
        .collect();
    places.sort_unstable();
    let mut want = vec![RELEASE_NS, "apps", "jobs"];
    want.sort_unstable();
    ensure!(places == want, "one Role per namespace: {places:?}");
    for r in &roles {
        let ns = r["metadata"]["namespace"].as_str().unwrap_or_default();
        ensure!(
            grants(r, "sluice.dev", "rollouts", "watch"),
            "the Role in {ns} grants the Rollouts"
        );
        ensure!(
            grants(r, "coordination.k8s.io", "leases", "patch") == (ns == RELEASE_NS),
            "Lease rights in the release's namespace only (found in {ns}: {})",
            grants(r, "coordination.k8s.io", "leases", "patch")
        );
    }
    let bound: Vec<&str> = of_kind(&docs, "RoleBinding")
        .iter()
        .filter_map(|b| b["metadata"]["namespace"].as_str())
        .collect();
    ensure!(bound.len() == 3, "a RoleBinding per namespace: {bound:?}");
    let args = args_of(&docs)?;
    for ns in want {
        ensure!(
            args.contains(&format!("--namespace={ns}")),
            "watches {ns}: {args:?}"
        );
    }
    Ok(())
}

/// Notifications: the flag, and list and watch of their ConfigMap and Secret by name in the
/// release's namespace only; the ConfigMap itself when its config is given.
#[tokio::test]
async fn notifications_render_their_flag_a_role_by_name_and_their_configmap() -> anyhow::Result<()>
{
    let docs = render(&[], &[]).await?;
    ensure!(
        !args_of(&docs)?
            .iter()
            .any(|a| a.starts_with("--notifications"))
    );
    let on = [
        "notifications.enabled=true",
        "notifications.configMapName=team-alerts",
    ];
    let docs = render(&on, &["--set-string", "notifications.config=receivers: []"]).await?;
    ensure!(
        args_of(&docs)?.contains(&format!("--notifications={RELEASE_NS}/team-alerts")),
        "{:?}",
        args_of(&docs)?
    );
    let role = of_kind(&docs, "Role")
        .into_iter()
        .find(|r| r["metadata"]["name"] == "rel-sluice-notifications")
        .context("the notifications Role")?;
    ensure!(role["metadata"]["namespace"] == RELEASE_NS);
    ensure!(
        role["rules"]
            == serde_json::json!([{"apiGroups": [""], "resources": ["configmaps", "secrets"],
                                   "resourceNames": ["team-alerts"], "verbs": ["list", "watch"]}]),
        "{}",
        role["rules"]
    );
    let cm = one(&docs, "ConfigMap")?;
    ensure!(
        cm["metadata"]["name"] == "team-alerts" && cm["data"]["config.yaml"] == "receivers: []\n"
    );
    ensure!(
        of_kind(&render(&on, &[]).await?, "ConfigMap").is_empty(),
        "no ConfigMap without a config: the user's own is read"
    );
    Ok(())
}

#[tokio::test]
async fn optional_parts_render_only_when_asked_and_possible() -> anyhow::Result<()> {
    // One replica without leader election: no PDB, no Lease rights.
    let docs = render(&["replicaCount=1", "leaderElection.enabled=false"], &[]).await?;
    ensure!(
        args_of(&docs)?.contains(&"--no-leader-elect".to_string()),
        "--no-leader-elect"
    );
    ensure!(
        of_kind(&docs, "PodDisruptionBudget").is_empty(),
        "no PDB for one replica"
    );
    ensure!(
        of_kind(&docs, "Role").is_empty(),
        "no Lease Role without leader election"
    );

    // Monitors: only where the Prometheus Operator's API is served.
    let asked = ["serviceMonitor.enabled=true", "podMonitor.enabled=true"];
    let docs = render(&asked, &[]).await?;
    ensure!(
        of_kind(&docs, "ServiceMonitor").is_empty() && of_kind(&docs, "PodMonitor").is_empty(),
        "no monitors where monitoring.coreos.com/v1 is not served"
    );
    let docs = render(&asked, &["--api-versions", "monitoring.coreos.com/v1"]).await?;
    let sm = one(&docs, "ServiceMonitor")?;
    ensure!(
        sm["spec"]["endpoints"][0]["port"] == "metrics",
        "ServiceMonitor scrapes metrics"
    );
    one(&docs, "PodMonitor")?;

    // The alerts as a PrometheusRule: only where the operator's API is served, and exactly
    // the groups of dashboards/alerts.yaml.
    let asked = ["prometheusRule.enabled=true"];
    ensure!(
        of_kind(&render(&asked, &[]).await?, "PrometheusRule").is_empty(),
        "no PrometheusRule where monitoring.coreos.com/v1 is not served"
    );
    let docs = render(&asked, &["--api-versions", "monitoring.coreos.com/v1"]).await?;
    let rule = one(&docs, "PrometheusRule")?;
    let file = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards/alerts.yaml"),
    )?;
    let alerts: Value = serde_saphyr::from_str(&file)?;
    ensure!(
        rule["spec"]["groups"] == alerts["groups"],
        "the PrometheusRule holds dashboards/alerts.yaml's groups: {}",
        rule["spec"]
    );

    // The dashboards as ConfigMaps for Grafana's sidecar, each holding one of dashboards/.
    let docs = render(
        &[
            "dashboards.enabled=true",
            "dashboards.annotations.grafana_folder=Sluice",
        ],
        &[],
    )
    .await?;
    let maps = of_kind(&docs, "ConfigMap");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards");
    let mut files: Vec<_> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    ensure!(
        !files.is_empty() && maps.len() == files.len(),
        "one ConfigMap per dashboard: {} for {files:?}",
        maps.len()
    );
    for file in files {
        let name = file
            .file_name()
            .context("name")?
            .to_string_lossy()
            .into_owned();
        let map = maps
            .iter()
            .find(|m| m["data"].get(&name).is_some())
            .with_context(|| format!("no ConfigMap holds {name}"))?;
        ensure!(
            map["metadata"]["labels"]["grafana_dashboard"] == "1"
                && map["metadata"]["annotations"]["grafana_folder"] == "Sluice",
            "{name}: the sidecar's label and folder: {}",
            map["metadata"]
        );
        let shipped: Value = serde_json::from_str(map["data"][&name].as_str().unwrap_or(""))
            .with_context(|| format!("{name} in its ConfigMap is not JSON"))?;
        let ours: Value = serde_json::from_str(&std::fs::read_to_string(&file)?)?;
        ensure!(
            shipped == ours,
            "{name} in the ConfigMap differs from dashboards/{name} (make chart-files)"
        );
    }
    ensure!(
        of_kind(&render(&[], &[]).await?, "ConfigMap").is_empty(),
        "no dashboards unless asked"
    );

    // NetworkPolicy: egress to the API server, DNS and Prometheus.
    let docs = render(
        &[
            "networkPolicy.enabled=true",
            "networkPolicy.apiServer.cidrs={10.0.0.1/32}",
            "networkPolicy.prometheus.cidrs={10.1.0.0/16}",
        ],
        &[],
    )
    .await?;
    let np = one(&docs, "NetworkPolicy")?;
    ensure!(
        np["spec"]["policyTypes"] == serde_json::json!(["Egress"]),
        "egress policy"
    );
    let egress = np["spec"]["egress"].to_string();
    for want in ["10.0.0.1/32", "10.1.0.0/16", "kube-dns"] {
        ensure!(egress.contains(want), "egress allows {want}: {egress}");
    }
    Ok(())
}

#[tokio::test]
async fn mistyped_or_unsafe_values_are_refused_with_a_reason() -> anyhow::Result<()> {
    let cases: &[(&[&str], &str)] = &[
        (&["replicaCount=two"], "replicaCount"),
        (&["rbac.scope=everywhere"], "scope"),
        (&["rbac.namespace=apps"], "namespace"),
        (&["rbac.namespaces={Apps}"], "namespaces"),
        (&["rbac.namespaces={apps,apps}"], "namespaces"),
        (&["imagee.tag=v2"], "imagee"),
        (&["controller.qps=-1"], "qps"),
        (&["image.pullPolicy=Sometimes"], "pullPolicy"),
        (
            &["leaderElection.enabled=false"],
            "leaderElection.enabled=false needs replicaCount=1",
        ),
        (
            &["networkPolicy.enabled=true"],
            "networkPolicy.apiServer.cidrs is needed",
        ),
    ];
    for (values, reason) in cases {
        let out = on_chart(&["template", "rel"], &[], values).await?;
        ensure!(!out.success, "helm template {values:?} must be refused");
        ensure!(
            out.stderr.contains(reason),
            "helm template {values:?}: the error names {reason:?}: {}",
            out.stderr
        );
    }
    Ok(())
}

/// Whether the pod template of release `release` was admitted: (pods created, the
/// ReplicaSet's ReplicaFailure message if any).
async fn admitted(env: &TestEnv, release: &str) -> anyhow::Result<(usize, Option<String>)> {
    let selector = format!("app.kubernetes.io/instance={release}");
    let lp = ListParams::default().labels(&selector);
    let pods = env.api::<Pod>().list(&lp).await?.items.len();
    let failure = env
        .api::<ReplicaSet>()
        .list(&lp)
        .await?
        .items
        .iter()
        .flat_map(|rs| rs.status.iter().flat_map(|s| s.conditions.iter().flatten()))
        .find(|c| c.type_ == "ReplicaFailure" && c.status == "True")
        .and_then(|c| c.message.clone());
    Ok((pods, failure))
}

#[tokio::test]
async fn the_chart_installs_into_a_namespace_that_enforces_restricted_pods() {
    TestEnv::run("chart-install", |env| async move {
        let ns = env.namespace.clone();
        let label = env
            .kubectl(
                &[
                    "label",
                    "namespace",
                    &ns,
                    "pod-security.kubernetes.io/enforce=restricted",
                    "pod-security.kubernetes.io/enforce-version=latest",
                ],
                None,
            )
            .await?;
        ensure!(label.success, "labelling the namespace: {}", label.stderr);
        let kubeconfig = env.cluster.kubeconfig.display().to_string();
        // The suffix of the namespace keeps the cluster-wide names of this run its own.
        let suffix = ns.rsplit('-').next().unwrap_or("x").to_string();
        let good = format!("ok-{suffix}");
        let out = install(&env.cluster.kubeconfig, &good, &ns, &[]).await?;
        ensure!(out.success, "helm install: {}\n{}", out.stdout, out.stderr);
        ensure!(
            out.stdout.contains("kubectl") && out.stdout.contains("rollout status"),
            "NOTES.txt tells the next command: {}",
            out.stdout
        );
        // The API server's Pod Security admission lets both pods in.
        wait_for("the chart's two pods admitted", LIMIT, || async {
            let (pods, failure) = admitted(&env, &good).await?;
            if let Some(f) = failure {
                bail!("the chart's pods were refused: {f}");
            }
            Ok((pods == 2).then_some(()))
        })
        .await?;

        // The same chart with one setting loosened is refused by the same admission: the
        // namespace really enforces `restricted`, so the pass above means something.
        let loose = format!("loose-{suffix}");
        let out = install(
            &env.cluster.kubeconfig,
            &loose,
            &ns,
            &[
                "securityContext.allowPrivilegeEscalation=true",
                "rbac.scope=namespace",
            ],
        )
        .await?;
        ensure!(out.success, "helm install (loosened): {}", out.stderr);
        let why = wait_for("the loosened chart's pods refused", LIMIT, || async {
            let (pods, failure) = admitted(&env, &loose).await?;
            ensure!(
                pods == 0,
                "a pod allowing privilege escalation was admitted"
            );
            Ok(failure)
        })
        .await?;
        ensure!(
            why.contains("violates PodSecurity") && why.contains("allowPrivilegeEscalation"),
            "refused by Pod Security for allowPrivilegeEscalation: {why}"
        );

        for release in [&good, &loose] {
            let out = helm(&[
                "uninstall",
                release,
                "--kubeconfig",
                &kubeconfig,
                "--namespace",
                &ns,
                "--wait",
                "--timeout",
                "60s",
            ])
            .await?;
            ensure!(out.success, "helm uninstall {release}: {}", out.stderr);
        }
        let left = env
            .kubectl(
                &[
                    "get",
                    "deployments,services,roles,rolebindings",
                    "-o",
                    "name",
                ],
                None,
            )
            .await?;
        ensure!(
            left.success && left.stdout.trim().is_empty(),
            "helm uninstall leaves nothing behind: {}{}",
            left.stdout,
            left.stderr
        );
        let crb = env
            .kubectl(
                &["get", "clusterrolebinding", &format!("{good}-sluice")],
                None,
            )
            .await?;
        ensure!(!crb.success, "the ClusterRoleBinding is gone");
        Ok(())
    })
    .await;
}
