//! A failed analysis aborts its release at once, even while the controller's client budget is
//! spent on routine work: the failed verdict and the abort go in the urgent lane (no wait for
//! the rate limit, no turn in the reconcile queue). Real `sluice` binary with a tiny `--qps`,
//! real API server, the benchmark's workload and its `web` analysis endpoint.

mod common;

use std::time::Duration;

use anyhow::Context;
use common::fixture::{promote, set_image, wait_healthy, wait_paused_at};
use common::{ControllerProcess, phase, rollouts, wait_status};
use e2e::TestEnv;
use e2e::bench::web::GoodEndpoint;
use e2e::bench::workload::{self, Flavour, Slot};
use e2e::wait_for;
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::PostParams;
use sluice::api::analysis::AnalysisTemplate;
use sluice::api::rollout::{Rollout, RolloutPhase};

const LIMIT: Duration = Duration::from_secs(240);
/// Rollouts releasing at once beside the probe.
const OTHERS: usize = 16;
/// The controller's budget: 3 requests a second. Reaching step 1's pause costs each Rollout
/// about 8 requests, so the others' releases keep the budget spent for about 40 s, and in the
/// 5 s between two measurements of the probe's analysis at most 2 of them get there.
const QPS: &str = "3";

#[tokio::test]
async fn a_failed_analysis_aborts_at_once_while_the_budget_is_spent_elsewhere() {
    TestEnv::run("urgent-lane", |env| async move {
        let ep = GoodEndpoint::start().await?;
        let ns = env.namespace.clone();
        let slot = |name: String| Slot {
            namespace: ns.clone(),
            name,
        };
        let probe = slot(workload::PROBE.to_string());
        let others: Vec<Slot> = (0..OTHERS).map(|i| slot(format!("app-{i:02}"))).collect();

        let controller = ControllerProcess::start_with(&env, "a", &["--qps", QPS, "--burst", QPS])?;
        let templates: Api<AnalysisTemplate> = env.api();
        let template = workload::template(Flavour::Sluice, &ns, &ep.base);
        templates
            .create(&PostParams::default(), &serde_json::from_value(template)?)
            .await?;
        let services: Api<Service> = env.api();
        for s in others.iter().chain([&probe]) {
            for svc in workload::services(s, None) {
                services
                    .create(&PostParams::default(), &serde_json::from_value(svc)?)
                    .await?;
            }
            let ro: Rollout = serde_json::from_value(workload::rollout(Flavour::Sluice, s))?;
            rollouts(&env).create(&PostParams::default(), &ro).await?;
        }
        for s in others.iter().chain([&probe]) {
            wait_healthy(&env, &s.name, workload::REPLICAS, LIMIT).await?;
        }

        // The probe's analysis runs and has answered good at least once.
        set_image(&env, &probe.name, &workload::image(2)).await?;
        wait_paused_at(&env, &probe.name, 1, LIMIT).await?;
        promote(&env, &probe.name).await?;
        wait_for("the probe's analysis to measure", LIMIT, || async {
            Ok((ep.asked(&ns, &probe.name) > 0).then_some(()))
        })
        .await?;

        // Every other Rollout starts a release, and the probe's canary turns bad.
        for s in &others {
            set_image(&env, &s.name, &workload::image(2)).await?;
        }
        ep.set_bad(&ns, &probe.name, true);
        let aborted = wait_status(&env, &probe.name, "the probe aborted", LIMIT, |s| {
            s.abort == Some(true)
        })
        .await?;
        let all = rollouts(&env).list(&Default::default()).await?;
        let at_step_1 = all
            .items
            .iter()
            .filter(|r| r.metadata.name.as_deref() != Some(workload::PROBE))
            .filter(|r| {
                r.status.as_ref().is_some_and(|s| {
                    phase(s) == Some(RolloutPhase::Paused) && s.current_step_index == Some(1)
                })
            })
            .count();
        // Queued behind the others, the abort comes after most of them reached step 1 (10 of
        // 16 at 5 requests a second, measured with the urgent lane taken out); in the urgent
        // lane it comes while they still wait for the budget.
        anyhow::ensure!(
            at_step_1 <= OTHERS / 4,
            "the probe was aborted only after {at_step_1} of {OTHERS} others reached step 1 \
             (status {aborted:?})"
        );
        eprintln!("the probe was aborted when {at_step_1} of {OTHERS} others had reached step 1");

        // The log says the verdict and the abort went through the urgent lane, with their times.
        let line = wait_for(
            "the urgent lane's log line for the probe",
            LIMIT,
            || async {
                let log = std::fs::read_to_string(&controller.log).unwrap_or_default();
                Ok(log
                    .lines()
                    .find(|l| {
                        l.contains("urgent reconcile after a failed analysis")
                            && l.contains(&format!("rollout=\"{}\"", workload::PROBE))
                    })
                    .map(str::to_string))
            },
        )
        .await?;
        anyhow::ensure!(
            line.contains("waited_ms=") && line.contains(" ms=") && !line.contains("WARN"),
            "the urgent lane's line lacks its times or says it failed: {line}"
        );
        let log = std::fs::read_to_string(&controller.log)?;
        anyhow::ensure!(
            log.contains("failing verdict written (urgent lane) ms="),
            "the failing verdict's write is not in the log"
        );

        // The others still finish their step: the urgent lane only went first.
        for s in &others {
            wait_paused_at(&env, &s.name, 1, LIMIT)
                .await
                .with_context(|| format!("{} after the probe's abort", s.name))?;
        }
        Ok(())
    })
    .await
}
