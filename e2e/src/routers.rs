//! Istio's and Gateway API's CRDs, for traffic-routing tests: taken at test time from the Go
//! modules pinned in `e2e/routercrds/go.mod` (istio.io/api ships
//! `kubernetes/customresourcedefinitions.gen.yaml`, sigs.k8s.io/gateway-api
//! `config/crd/standard/`), never copied into the repository.

use std::path::{Path, PathBuf};

use anyhow::Context;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};

use crate::harness::wait_established;

/// The CRDs the routers use.
pub const ROUTER_CRDS: &[&str] = &[
    "virtualservices.networking.istio.io",
    "destinationrules.networking.istio.io",
    "gatewayclasses.gateway.networking.k8s.io",
    "gateways.gateway.networking.k8s.io",
    "httproutes.gateway.networking.k8s.io",
    "referencegrants.gateway.networking.k8s.io",
];

static INSTALLED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();

/// The CRD files of the pinned releases (downloads the modules once, through `crds.sh`).
pub fn crd_files() -> anyhow::Result<Vec<PathBuf>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("routercrds/crds.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    anyhow::ensure!(out.status.success(), "{} failed", script.display());
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(PathBuf::from)
        .collect())
}

/// Installs the router CRDs into the cluster (once per test process) and waits until they
/// are Established.
pub async fn install_router_crds(client: &Client) -> anyhow::Result<()> {
    INSTALLED
        .get_or_try_init(|| async {
            let files = tokio::task::spawn_blocking(crd_files).await??;
            let api: Api<CustomResourceDefinition> = Api::all(client.clone());
            let mut found = Vec::new();
            for path in files {
                let text = tokio::fs::read_to_string(&path)
                    .await
                    .with_context(|| format!("reading {}", path.display()))?;
                let docs: Vec<serde_json::Value> = serde_saphyr::from_str_multiple(&text)
                    .with_context(|| format!("parsing {}", path.display()))?;
                for doc in docs {
                    let name = doc
                        .pointer("/metadata/name")
                        .and_then(|n| n.as_str())
                        .unwrap_or_default()
                        .to_string();
                    if doc.get("kind").and_then(|k| k.as_str()) != Some("CustomResourceDefinition")
                        || !ROUTER_CRDS.contains(&name.as_str())
                    {
                        continue;
                    }
                    let crd: CustomResourceDefinition = serde_json::from_value(doc)
                        .with_context(|| format!("reading CRD {name}"))?;
                    api.patch(
                        &crd.name_any(),
                        &PatchParams::apply("sluice-e2e").force(),
                        &Patch::Apply(&crd),
                    )
                    .await
                    .with_context(|| format!("applying {name}"))?;
                    found.push(name);
                }
            }
            for want in ROUTER_CRDS {
                anyhow::ensure!(
                    found.iter().any(|f| f == want),
                    "CRD {want} is not in the pinned releases"
                );
                wait_established(&api, want).await?;
            }
            Ok(())
        })
        .await
        .map(|_| ())
}
