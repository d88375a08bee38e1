//! Checks the API server cannot make: a Rollout the schema accepts but Sluice cannot run.
//! Each problem names the field, so the `InvalidSpec` condition and its Event say what to fix.

use k8s_openapi::api::core::v1::PodTemplateSpec;

use crate::api::duration::int_or_string_duration;
use crate::api::rollout::{BlueGreenStrategy, CanaryStrategy, Rollout, TrafficRouting};

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
    selector(ro, template)?;
    quantities(template)?;
    if let Some(bg) = &spec.strategy.blue_green {
        // As Argo Rollouts: the revisions kept scaled up must be among those kept at all.
        if let Some(limit) = bg.scale_down_delay_revision_limit
            && spec.revision_history_limit() < limit
        {
            return Err(invalid(
                "spec.strategy.blueGreen.scaleDownDelayRevisionLimit",
                format!(
                    "{limit} is more than revisionHistoryLimit {}: the revision history limit cannot be smaller than the scale-down limit",
                    spec.revision_history_limit()
                ),
            ));
        }
        return blue_green(bg, obs);
    }
    let Some(canary) = &spec.strategy.canary else {
        return Err(invalid(
            "spec.strategy",
            "exactly one of canary and blueGreen must be set",
        ));
    };
    dynamic_stable_scale(canary)?;
    if let Some(tr) = &canary.traffic_routing {
        traffic_routing(canary, tr, obs)?;
    }
    Limits::resolve(
        spec.replicas(),
        &canary.max_surge(),
        &canary.max_unavailable(),
    )
    .map_err(|e| invalid("spec.strategy.canary", e.to_string()))?;
    canary_services(canary, obs)?;
    canary_steps(canary)
}

/// The selector is `matchLabels` only, not empty, and matches the pod template's labels.
fn selector(ro: &Rollout, template: &PodTemplateSpec) -> Result<(), InvalidSpec> {
    let Some(sel) = ro.spec.selector.as_ref() else {
        return Err(invalid("spec.selector", "a selector is required"));
    };
    let labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
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
    Ok(())
}

/// A named Service must exist in the namespace.
fn service_exists(obs: &Observed, field: String, name: Option<&String>) -> Result<(), InvalidSpec> {
    match name {
        Some(name) if obs.services.get(name) != Some(&true) => Err(invalid(
            field,
            format!("Service {name:?} not found in this namespace"),
        )),
        _ => Ok(()),
    }
}

/// Blue-green: both Services exist and differ.
fn blue_green(bg: &BlueGreenStrategy, obs: &Observed) -> Result<(), InvalidSpec> {
    let named = [
        ("activeService", Some(&bg.active_service)),
        ("previewService", bg.preview_service.as_ref()),
    ];
    for (field, name) in named {
        service_exists(obs, format!("spec.strategy.blueGreen.{field}"), name)?;
    }
    if bg.preview_service.as_ref() == Some(&bg.active_service) {
        return Err(invalid(
            "spec.strategy.blueGreen.previewService",
            "must differ from activeService",
        ));
    }
    Ok(())
}

/// As Argo Rollouts: only a router can send the stable less than its pods' share, and a
/// stable already shrunk with the weight has nothing left to keep after the switch.
fn dynamic_stable_scale(canary: &CanaryStrategy) -> Result<(), InvalidSpec> {
    if canary.dynamic_stable_scale != Some(true) {
        return Ok(());
    }
    if canary.traffic_routing.is_none() {
        return Err(invalid(
            "spec.strategy.canary.dynamicStableScale",
            "can only be used with trafficRouting",
        ));
    }
    if canary.scale_down_delay_seconds.is_some() {
        return Err(invalid(
            "spec.strategy.canary.dynamicStableScale",
            "cannot be used with scaleDownDelaySeconds",
        ));
    }
    Ok(())
}

/// A traffic router: named, able to carry the header routes the steps set, with valid
/// managed route names, both Services (unless Istio subsets split), and router objects that
/// observe found usable.
fn traffic_routing(
    canary: &CanaryStrategy,
    tr: &TrafficRouting,
    obs: &Observed,
) -> Result<(), InvalidSpec> {
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
    let header_steps = canary
        .steps()
        .iter()
        .any(|s| s.set_header_route.is_some() || s.set_mirror_route.is_some());
    if l4 && header_steps {
        return Err(invalid(
            "spec.strategy.canary.trafficRouting.istio",
            "setHeaderRoute and setMirrorRoute need http routes; tlsRoutes and tcpRoutes cannot match requests",
        ));
    }
    if tr.gateway_api.is_some() {
        managed_route_names(tr)?;
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
    Ok(())
}

/// Gateway API: each managed route becomes an HTTPRoute rule name (a DNS label).
fn managed_route_names(tr: &TrafficRouting) -> Result<(), InvalidSpec> {
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
    Ok(())
}

/// Canary: the Services it names exist and differ.
fn canary_services(canary: &CanaryStrategy, obs: &Observed) -> Result<(), InvalidSpec> {
    for (field, name) in [
        ("stableService", &canary.stable_service),
        ("canaryService", &canary.canary_service),
    ] {
        service_exists(obs, format!("spec.strategy.canary.{field}"), name.as_ref())?;
    }
    if let (Some(a), Some(b)) = (&canary.stable_service, &canary.canary_service)
        && a == b
    {
        return Err(invalid(
            "spec.strategy.canary.canaryService",
            "must differ from stableService",
        ));
    }
    Ok(())
}

/// Canary steps: pause durations parse, header routes have a router and a managed route of
/// their name. A `setWeight` may be lower than an earlier one (as in Argo Rollouts): traffic
/// and replicas follow the lower weight.
fn canary_steps(canary: &CanaryStrategy) -> Result<(), InvalidSpec> {
    for (i, step) in canary.steps().iter().enumerate() {
        let field = format!("spec.strategy.canary.steps[{i}]");
        if let Some(d) = step.pause.as_ref().and_then(|p| p.duration.as_ref()) {
            int_or_string_duration(d)
                .map_err(|e| invalid(format!("{field}.pause.duration"), e.to_string()))?;
        }
        if let Some(m) = &step.set_mirror_route {
            mirror_step(canary, &field, &m.name)?;
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

/// A `setMirrorRoute` step needs Istio, and its route in `managedRoutes` (as Argo Rollouts'
/// validation: "SetMirrorRoute requires TrafficRouting, supports Istio only").
fn mirror_step(canary: &CanaryStrategy, field: &str, name: &str) -> Result<(), InvalidSpec> {
    let Some(tr) = canary
        .traffic_routing
        .as_ref()
        .filter(|t| t.istio.is_some())
    else {
        return Err(invalid(
            format!("{field}.setMirrorRoute"),
            "SetMirrorRoute requires TrafficRouting, supports Istio only",
        ));
    };
    if !tr.managed_routes.iter().flatten().any(|m| m.name == name) {
        return Err(invalid(
            format!("{field}.setMirrorRoute.name"),
            format!("{name:?} is not in spec.strategy.canary.trafficRouting.managedRoutes"),
        ));
    }
    Ok(())
}

/// Every resource quantity of the pod template must parse as Kubernetes parses quantities:
/// the Rollout's template keeps unknown fields, so the API server accepts `memory: invalid`
/// there, but refuses the ReplicaSet that would carry it.
fn quantities(template: &PodTemplateSpec) -> Result<(), InvalidSpec> {
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use std::collections::BTreeMap;
    let Some(pod) = template.spec.as_ref() else {
        return Ok(());
    };
    let check = |field: String, map: Option<&BTreeMap<String, Quantity>>| {
        for (name, q) in map.into_iter().flatten() {
            quantity(&q.0).map_err(|why| invalid(format!("{field}.{name}"), why))?;
        }
        Ok::<(), InvalidSpec>(())
    };
    let lists = [
        ("containers", Some(&pod.containers)),
        ("initContainers", pod.init_containers.as_ref()),
    ];
    for (list, containers) in lists {
        for (i, c) in containers.into_iter().flatten().enumerate() {
            let at = format!("spec.template.spec.{list}[{i}].resources");
            let r = c.resources.as_ref();
            check(format!("{at}.limits"), r.and_then(|r| r.limits.as_ref()))?;
            check(
                format!("{at}.requests"),
                r.and_then(|r| r.requests.as_ref()),
            )?;
        }
    }
    check("spec.template.spec.overhead".into(), pod.overhead.as_ref())?;
    for (i, v) in pod.volumes.iter().flatten().enumerate() {
        if let Some(q) = v.empty_dir.as_ref().and_then(|e| e.size_limit.as_ref()) {
            quantity(&q.0).map_err(|why| {
                invalid(
                    format!("spec.template.spec.volumes[{i}].emptyDir.sizeLimit"),
                    why,
                )
            })?;
        }
    }
    Ok(())
}

/// A resource quantity as Kubernetes reads it (`resource.ParseQuantity`), not negative: a
/// number (`1`, `0.5`, `.5`, `1.`) then a binary suffix (`Ki` .. `Ei`), a decimal one (`m`,
/// `k`, `M` .. `E`) or an exponent (`e3`, `E-2`).
pub fn quantity(s: &str) -> Result<(), String> {
    let bad = || format!("{s:?} is not a quantity (such as 128Mi, 0.5 or 250m)");
    let body = s.strip_prefix('+').unwrap_or(s);
    if body.starts_with('-') {
        return Err(format!(
            "{s:?} is negative; resource quantities must be 0 or more"
        ));
    }
    let digits_end = body
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(body.len());
    let (number, suffix) = body.split_at(digits_end);
    let mut parts = number.splitn(2, '.');
    let whole = parts.next().unwrap_or_default();
    let frac = parts.next();
    let digits_only = |p: &str| p.chars().all(|c| c.is_ascii_digit());
    let valid_number = match frac {
        None => !whole.is_empty() && digits_only(whole),
        Some(f) => (!whole.is_empty() || !f.is_empty()) && digits_only(whole) && digits_only(f),
    };
    if !valid_number {
        return Err(bad());
    }
    let known = [
        "", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "m", "k", "M", "G", "T", "P", "E",
    ];
    if known.contains(&suffix) {
        return Ok(());
    }
    let exponent = suffix
        .strip_prefix('e')
        .or_else(|| suffix.strip_prefix('E'))
        .ok_or_else(bad)?;
    let exponent = exponent
        .strip_prefix('+')
        .or_else(|| exponent.strip_prefix('-'))
        .unwrap_or(exponent);
    if exponent.is_empty() || !digits_only(exponent) {
        return Err(bad());
    }
    Ok(())
}

/// An analysis whose templates are missing or do not make a valid run (a condition that does
/// not compile, an argument without a value) is refused before the release starts.
pub fn analysis_problems(obs: &Observed) -> Result<(), InvalidSpec> {
    for (key, built) in &obs.analysis {
        if let Err(e) = built {
            return Err(invalid(key.field(), e.clone()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod quantity_tests {
    use super::*;

    #[test]
    fn quantities_parse_as_kubernetes_parses_them() {
        for good in [
            "1", "0", "128Mi", "1Gi", "250m", "0.5", ".5", "1.", "+1", "1e3", "1E-2", "2k",
            "1.5Gi", "100M", "3Ei",
        ] {
            assert_eq!(quantity(good), Ok(()), "{good}");
        }
        for bad in [
            "invalid", "", "Mi", "1 Mi", "1mi", "1KiB", ".", "1.2.3", "-1", "1e", "e3", "1e1.5",
            "12x",
        ] {
            assert!(quantity(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn an_unparsable_resource_names_its_field() {
        let template: k8s_openapi::api::core::v1::PodTemplateSpec =
            serde_json::from_value(serde_json::json!({
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [
                    {"name": "a", "image": "a", "resources": {"limits": {"memory": "64Mi"}}},
                    {"name": "b", "image": "b", "resources": {"limits": {"memory": "invalid"}}}
                ]}
            }))
            .expect("template");
        let e = quantities(&template).expect_err("refused");
        assert_eq!(
            e.field,
            "spec.template.spec.containers[1].resources.limits.memory"
        );
        assert!(
            e.message.contains("\"invalid\" is not a quantity"),
            "{}",
            e.message
        );
    }
}
