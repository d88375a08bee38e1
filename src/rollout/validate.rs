//! Checks the API server cannot make: a Rollout the schema accepts but Sluice cannot run.
//! Each problem names the field, so the `InvalidSpec` condition and its Event say what to fix.

use crate::api::duration::int_or_string_duration;
use crate::api::rollout::Rollout;

use super::observe::Observed;
use super::replicas::Limits;

/// A problem with the spec, naming the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidSpec {
    pub field: String,
    pub message: String,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> InvalidSpec {
    InvalidSpec {
        field: field.into(),
        message: message.into(),
    }
}

/// Every check, in the order a person would fix them; the first problem found is reported.
pub fn validate(ro: &Rollout, obs: &Observed) -> Result<(), InvalidSpec> {
    let spec = &ro.spec;
    let Some(template) = obs.template.as_ref() else {
        return Err(match &spec.workload_ref {
            Some(w) => invalid(
                "spec.workloadRef",
                format!("{} {:?} not found in this namespace", w.kind, w.name),
            ),
            None => invalid("spec.template", "a pod template is required"),
        });
    };
    let labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let selector = spec.selector.as_ref();
    if let Some(sel) = selector {
        if sel
            .match_expressions
            .as_ref()
            .is_some_and(|e| !e.is_empty())
        {
            return Err(invalid(
                "spec.selector.matchExpressions",
                "not supported; use matchLabels",
            ));
        }
        let match_labels = sel.match_labels.clone().unwrap_or_default();
        if match_labels.is_empty() {
            return Err(invalid("spec.selector.matchLabels", "must not be empty"));
        }
        for (k, v) in &match_labels {
            if labels.get(k) != Some(v) {
                return Err(invalid(
                    "spec.selector",
                    format!("matchLabels {k}={v} does not match the pod template's labels"),
                ));
            }
        }
    } else {
        return Err(invalid("spec.selector", "a selector is required"));
    }

    if let Some(bg) = &spec.strategy.blue_green {
        let named = [
            ("activeService", Some(&bg.active_service)),
            ("previewService", bg.preview_service.as_ref()),
        ];
        for (field, name) in named {
            if let Some(name) = name
                && obs.services.get(name) != Some(&true)
            {
                return Err(invalid(
                    format!("spec.strategy.blueGreen.{field}"),
                    format!("Service {name:?} not found in this namespace"),
                ));
            }
        }
        if bg.preview_service.as_ref() == Some(&bg.active_service) {
            return Err(invalid(
                "spec.strategy.blueGreen.previewService",
                "must differ from activeService",
            ));
        }
        return Ok(());
    }
    let Some(canary) = &spec.strategy.canary else {
        return Err(invalid(
            "spec.strategy",
            "exactly one of canary and blueGreen must be set",
        ));
    };
    if let Some(tr) = &canary.traffic_routing {
        if tr.istio.is_none() && tr.gateway_api.is_none() {
            return Err(invalid(
                "spec.strategy.canary.trafficRouting",
                "name a router: istio or gatewayAPI",
            ));
        }
        let l4 = tr.istio.iter().any(|i| {
            i.virtual_service
                .iter()
                .chain(i.virtual_services.iter().flatten())
                .any(|v| v.tls_routes.is_some() || v.tcp_routes.is_some())
        });
        let header_steps = canary.steps().iter().any(|s| s.set_header_route.is_some());
        if l4 && header_steps {
            return Err(invalid(
                "spec.strategy.canary.trafficRouting.istio",
                "setHeaderRoute needs http routes; tlsRoutes and tcpRoutes cannot match headers",
            ));
        }
        if tr.gateway_api.is_some() {
            for (i, m) in tr.managed_routes.iter().flatten().enumerate() {
                let ok = !m.name.is_empty()
                    && m.name.len() <= 63
                    && m.name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !m.name.starts_with('-')
                    && !m.name.ends_with('-');
                if !ok {
                    return Err(invalid(
                        format!("spec.strategy.canary.trafficRouting.managedRoutes[{i}].name"),
                        format!(
                            "{:?} is not a valid HTTPRoute rule name (lowercase letters, digits and '-')",
                            m.name
                        ),
                    ));
                }
            }
        }
        let subsets = tr
            .istio
            .as_ref()
            .is_some_and(|i| i.destination_rule.is_some());
        if !subsets {
            for (field, svc) in [
                ("stableService", &canary.stable_service),
                ("canaryService", &canary.canary_service),
            ] {
                if svc.is_none() {
                    return Err(invalid(
                        format!("spec.strategy.canary.{field}"),
                        "a traffic router splits between the stable and canary Services: name both",
                    ));
                }
            }
        }
        for (field, problem) in &obs.traffic {
            if let Err(e) = problem {
                return Err(invalid(field.clone(), e.clone()));
            }
        }
    }
    Limits::resolve(
        spec.replicas(),
        &canary.max_surge(),
        &canary.max_unavailable(),
    )
    .map_err(|e| invalid("spec.strategy.canary", e.to_string()))?;
    for (field, name) in [
        ("stableService", &canary.stable_service),
        ("canaryService", &canary.canary_service),
    ] {
        if let Some(name) = name
            && obs.services.get(name) != Some(&true)
        {
            return Err(invalid(
                format!("spec.strategy.canary.{field}"),
                format!("Service {name:?} not found in this namespace"),
            ));
        }
    }
    if let (Some(a), Some(b)) = (&canary.stable_service, &canary.canary_service)
        && a == b
    {
        return Err(invalid(
            "spec.strategy.canary.canaryService",
            "must differ from stableService",
        ));
    }
    let mut last_weight: Option<(usize, i32)> = None;
    for (i, step) in canary.steps().iter().enumerate() {
        let field = format!("spec.strategy.canary.steps[{i}]");
        if let Some(w) = step.set_weight {
            if let Some((j, prev)) = last_weight
                && w < prev
            {
                return Err(invalid(
                    format!("{field}.setWeight"),
                    format!(
                        "{w} is lower than the {prev} of steps[{j}]; weights only grow during a release"
                    ),
                ));
            }
            last_weight = Some((i, w));
        }
        if let Some(d) = step.pause.as_ref().and_then(|p| p.duration.as_ref()) {
            int_or_string_duration(d)
                .map_err(|e| invalid(format!("{field}.pause.duration"), e.to_string()))?;
        }
        if let Some(h) = &step.set_header_route {
            let Some(tr) = &canary.traffic_routing else {
                return Err(invalid(
                    format!("{field}.setHeaderRoute"),
                    "header routes need a traffic router (spec.strategy.canary.trafficRouting)",
                ));
            };
            if !tr.managed_routes.iter().flatten().any(|m| m.name == h.name) {
                return Err(invalid(
                    format!("{field}.setHeaderRoute.name"),
                    format!(
                        "{:?} is not in spec.strategy.canary.trafficRouting.managedRoutes",
                        h.name
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// An analysis whose templates are missing or do not make a valid run (a condition that does
/// not compile, an argument without a value) is refused before the release starts.
pub fn analysis_problems(obs: &Observed) -> Result<(), InvalidSpec> {
    for (field, built) in &obs.analysis {
        if let Err(e) = built {
            return Err(invalid(field.clone(), e.clone()));
        }
    }
    Ok(())
}
