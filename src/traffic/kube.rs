//! The I/O edge of traffic routing: read the objects a router names (from the watch caches of
//! `traffic::watch`), edit them with the router's pure functions, and write them back only
//! when something changed, guarded by `resourceVersion` (a concurrent writer's change is
//! re-read, never overwritten).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kube::api::{ApiResource, DynamicObject, GroupVersionKind, PostParams};
use kube::{Api, Client};
use serde_json::Value;

use k8s_openapi::api::core::v1::Service;
use kube::ResourceExt;

use super::given_back::{self, ObjectKey, RoutedBy};
use super::router::{Target, TargetKind, TrafficRouter};
use super::watch::{Cached, RouterCaches};
use super::{RouteError, RouteState};
use crate::api::constants::{FIELD_MANAGER_TRAFFIC, LABEL_POD_TEMPLATE_HASH};
use crate::api::rollout::Rollout;
use crate::rollout::cache::{Caches, Reads};
use crate::runtime::calls::timed;
use crate::runtime::error::Error;
use crate::runtime::malformed::Parsed;
use crate::runtime::writes::WriteCounter;

/// Attempts at a write that keeps conflicting with another writer.
const CONFLICT_RETRIES: usize = 5;

fn api(client: &Client, rollout_ns: &str, t: &Target) -> Api<DynamicObject> {
    let (group, version, kind) = t.kind.gvk();
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
    let ns = t.namespace.as_deref().unwrap_or(rollout_ns);
    Api::namespaced_with(client.clone(), ns, &ar)
}

fn as_json(o: &DynamicObject) -> Result<Value, Error> {
    serde_json::to_value(o).map_err(Error::Serialize)
}

/// How reading a target went, when it could not be read.
enum Unreadable {
    /// Sluice may not read it (403).
    Refused(String),
    /// The kind is not served (its CRD is not installed).
    NoKind(String),
}

/// Reads a target: from the watch cache, or from the API server when it lies outside the
/// namespace Sluice watches (or `fresh` asks for the server's copy).
async fn read(
    caches: &RouterCaches,
    client: &Client,
    rollout_ns: &str,
    t: &Target,
    fresh: bool,
) -> Result<Result<Option<DynamicObject>, Unreadable>, Error> {
    let ns = t.namespace.as_deref().unwrap_or(rollout_ns);
    if !fresh {
        let cached = caches
            .get(t.kind, ns, &t.name)
            .await
            .map_err(|_| Error::Timeout {
                what: "first sync of a traffic router watch cache",
            })?;
        match cached {
            Cached::Found(o) => return Ok(Ok(Some(o.as_ref().clone()))),
            Cached::Missing => return Ok(Ok(None)),
            Cached::NoCrd => {
                return Ok(Err(Unreadable::NoKind(format!(
                    "{} cannot be read: the CRD {} is not installed",
                    t.describe(),
                    t.kind.crd()
                ))));
            }
            Cached::Unwatched => {}
        }
    }
    match timed(
        "read a traffic router object",
        api(client, rollout_ns, t).get_opt(&t.name),
    )
    .await
    {
        Ok(mut found) => {
            if let Some(o) = found.as_mut() {
                o.metadata.managed_fields = None;
            }
            Ok(Ok(found))
        }
        Err(Error::Kube {
            source: kube::Error::Api(e),
            ..
        }) if e.code == 403 => Ok(Err(Unreadable::Refused(format!(
            "Sluice may not read {}: {}",
            t.describe(),
            e.message
        )))),
        // 404 on get_opt: the kind itself is not served (CRD not installed).
        Err(Error::Kube {
            source: kube::Error::Api(e),
            ..
        }) if e.code == 404 => Ok(Err(Unreadable::NoKind(format!(
            "{} cannot be read: {} (is the CRD installed?)",
            t.describe(),
            e.message
        )))),
        Err(e) => Err(e),
    }
}

/// Checks every target has what the Rollout names. The result is by the Rollout field that
/// names the target: `Err` says what is missing (an `InvalidSpec`).
pub async fn verify(
    caches: &RouterCaches,
    client: &Client,
    rollout_ns: &str,
    router: &dyn TrafficRouter,
    state: &RouteState,
) -> Result<BTreeMap<String, Result<(), String>>, Error> {
    let mut out = BTreeMap::new();
    for t in router.targets() {
        let checked = match read(caches, client, rollout_ns, &t, false).await? {
            Err(Unreadable::Refused(why) | Unreadable::NoKind(why)) => Err(why),
            Ok(None) => Err(format!(
                "{} not found (or its CRD is not installed)",
                t.describe()
            )),
            Ok(Some(o)) => {
                let v = as_json(&o)?;
                router
                    .verify(&t, &v, state)
                    .map_err(|RouteError::Invalid(m)| m)
            }
        };
        out.insert(t.field.clone(), checked);
    }
    Ok(out)
}

/// Edits one target with `edit` and writes it back if it changed, replacing the cached copy
/// under its resourceVersion. A conflict (someone wrote it since the cache saw it) reads the
/// server's copy and edits again. Returns whether a write was made.
async fn edit(
    caches: &RouterCaches,
    client: &Client,
    rollout_ns: &str,
    t: &Target,
    writes: &WriteCounter,
    edit: &(dyn Fn(&mut Value) -> Result<bool, RouteError> + Sync),
) -> Result<bool, Error> {
    let api = api(client, rollout_ns, t);
    for attempt in 0..CONFLICT_RETRIES {
        let current = match read(caches, client, rollout_ns, t, attempt > 0).await? {
            Ok(Some(o)) => o,
            Ok(None) => return Err(Error::Traffic(format!("{} not found", t.describe()))),
            Err(Unreadable::Refused(why) | Unreadable::NoKind(why)) => {
                return Err(Error::Traffic(why));
            }
        };
        let mut v = as_json(&current)?;
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("managedFields");
        }
        let changed = edit(&mut v).map_err(|RouteError::Invalid(m)| Error::Traffic(m))?;
        if !changed {
            return Ok(false);
        }
        let updated: DynamicObject = serde_json::from_value(v).map_err(Error::Serialize)?;
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER_TRAFFIC.into()),
            ..Default::default()
        };
        writes.add();
        match timed(
            "write a traffic router object",
            api.replace(&t.name, &params, &updated),
        )
        .await
        {
            Ok(_) => return Ok(true),
            Err(Error::Kube {
                source: kube::Error::Api(e),
                ..
            }) if e.code == 409 => {
                tracing::debug!(
                    object = t.describe(),
                    "another writer changed it; reading again"
                );
                continue;
            }
            Err(e) => return Err(e),
        }
    }
    Err(Error::Traffic(format!(
        "{} kept changing under another writer; trying again later",
        t.describe()
    )))
}

/// Makes every target say what `state` says, marked as routed by `mark` (see
/// [`given_back`]).
pub async fn apply(
    caches: &RouterCaches,
    client: &Client,
    rollout_ns: &str,
    router: &dyn TrafficRouter,
    state: &RouteState,
    mark: &str,
    writes: &WriteCounter,
) -> Result<(), Error> {
    for t in router.targets() {
        edit(caches, client, rollout_ns, &t, writes, &|v| {
            let routed = router.apply(&t, v, state)?;
            Ok(given_back::set_mark(v, mark) | routed)
        })
        .await?;
    }
    Ok(())
}

/// Gives every target back (the Rollout is deleted): all traffic on stable, no managed
/// routes, no Sluice labels. Objects that are gone are skipped.
/// Objects in `skip` (routed by another Rollout) are left alone, as are objects Sluice may
/// not read or write: deleting a Rollout must not hang on them.
pub async fn restore(
    caches: &RouterCaches,
    client: &Client,
    rollout_ns: &str,
    router: &dyn TrafficRouter,
    skip: &[String],
    writes: &WriteCounter,
) -> Result<(), Error> {
    for t in router
        .targets()
        .into_iter()
        .filter(|t| !skip.contains(&t.field))
    {
        match edit(caches, client, rollout_ns, &t, writes, &|v| {
            Ok(router.restore(&t, v) | given_back::clear_mark(v))
        })
        .await
        {
            Ok(_) | Err(Error::Traffic(_)) => {}
            Err(Error::Kube {
                source: kube::Error::Api(e),
                ..
            }) if e.code == 403 || e.code == 404 => {
                tracing::warn!(object = t.describe(), error = %e.message, "cannot give the object back");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Gives back what Rollout `ro` no longer names (see [`given_back`]): the router objects it
/// marked that no Rollout routes now, and the Services of its namespace whose selector Sluice
/// set to one of `hashes` (its revisions) that no Rollout names. Writes only what changes.
/// Reads only the objects marked by `ro` or pinned to its revisions, and the Rollouts that
/// name those: never every Rollout or every Service.
pub async fn give_back_left_behind(
    caches: &Caches,
    client: &Client,
    ro: &Rollout,
    hashes: &BTreeSet<String>,
    writes: &WriteCounter,
) -> Result<(), Error> {
    let (ns, name) = (ro.namespace().unwrap_or_default(), ro.name_any());
    // The other Rollouts that read `what`: this one counts as it is now (its selector
    // resolved), in place of its cached copy.
    let others_reading = |what: Reads| -> Vec<Parsed<Rollout>> {
        caches
            .rollouts_reading(&what)
            .into_iter()
            .filter(|r| r.reads() && r.uid() != ro.uid())
            .map(|r| r.to_parsed())
            .collect()
    };
    for kind in TargetKind::ALL {
        for obj in caches.routers.marked_by(kind, &ns, &name) {
            let key: ObjectKey = (kind, obj.namespace().unwrap_or_default(), obj.name_any());
            let marked = obj
                .annotations()
                .get(given_back::ANNOTATION_ROUTED_BY)
                .and_then(|m| serde_json::from_str::<RoutedBy>(m).ok());
            let routing = others_reading(Reads::RouterObject {
                kind,
                namespace: key.1.clone(),
                name: key.2.clone(),
            });
            let routed = given_back::routed_now(routing.iter().filter_map(|r| r.ok()).chain([ro]));
            if !marked.is_some_and(|m| given_back::is_left_behind(&m, &key, &ns, &name, &routed)) {
                continue;
            }
            let target = Target {
                kind,
                namespace: Some(key.1.clone()),
                name: key.2.clone(),
                field: String::new(),
                index: 0,
            };
            tracing::info!(
                object = target.describe(),
                "no longer named by the Rollout; giving it back"
            );
            match edit(&caches.routers, client, &ns, &target, writes, &|v| {
                Ok(given_back::give_back(v, &key))
            })
            .await
            {
                Ok(_) | Err(Error::Traffic(_)) => {}
                Err(e) => return Err(e),
            }
        }
    }
    // Each Service pins one revision: no Service is found twice.
    let pinned: Vec<Arc<Service>> = hashes
        .iter()
        .flat_map(|h| caches.services_pinned_to(&ns, h))
        .collect();
    if pinned.is_empty() {
        return Ok(());
    }
    let own = crate::rollout::observe::policy::named_services(ro);
    let named: BTreeSet<String> = pinned
        .iter()
        .map(|s| s.name_any())
        .filter(|svc| {
            own.contains(&svc)
                || !others_reading(Reads::Service {
                    namespace: ns.clone(),
                    name: svc.clone(),
                })
                .is_empty()
        })
        .collect();
    let api: Api<Service> = Api::namespaced(client.clone(), &ns);
    for svc in given_back::services_left_behind(&pinned, hashes, &named) {
        tracing::info!(
            service = svc,
            "no longer named by any Rollout; taking Sluice's key out of its selector"
        );
        writes.add();
        let patch = kube::api::Patch::Merge(
            serde_json::json!({"spec": {"selector": {LABEL_POD_TEMPLATE_HASH: null}}}),
        );
        let params = kube::api::PatchParams {
            field_manager: Some(FIELD_MANAGER_TRAFFIC.into()),
            ..Default::default()
        };
        timed("give a Service back", api.patch(&svc, &params, &patch)).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::cache::fake;
    use kube::runtime::watcher::Event;
    use serde_json::json;

    fn pinned(name: &str, hash: &str) -> crate::rollout::cached::CachedService {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns0"},
            "spec": {"selector": {LABEL_POD_TEMPLATE_HASH: hash}}
        }))
        .expect("service")
    }

    #[tokio::test]
    async fn only_a_service_pinned_to_the_rollouts_revision_that_no_rollout_names_is_given_back() {
        let (caches, mut feeds) = fake::caches(fake::offline_routers());
        // r0 and r1 in ns0; r0's revisions are a0x0 and b0x0.
        fake::fill(&mut feeds, 1, 2);
        let client = fake::offline_client();
        let writes = WriteCounter::new(Arc::new(crate::telemetry::Metrics::new()));
        let r0 = caches
            .rollouts_in("ns0")
            .into_iter()
            .find(|r| r.name_any() == "r0")
            .expect("r0");
        let r0 = r0.to_parsed();
        let r0 = r0.ok().expect("reads");
        let hashes: BTreeSet<String> = ["a0x0".to_string(), "b0x0".to_string()].into();
        // Another Rollout's Service pinned to r0's revision: r1 names it, it stays.
        feeds
            .services
            .event(Event::Apply(pinned("r1-stable", "a0x0")));
        // Pinned to a revision that is not r0's: not r0's to give back.
        feeds.services.event(Event::Apply(pinned("stray", "zzz")));
        give_back_left_behind(&caches, &client, r0, &hashes, &writes)
            .await
            .expect("nothing to give back");
        assert_eq!(writes.get(), 0);
        // Pinned to r0's revision and named by no Rollout: given back (the offline client
        // fails the write, after it was counted).
        feeds.services.event(Event::Apply(pinned("old", "b0x0")));
        let given = give_back_left_behind(&caches, &client, r0, &hashes, &writes).await;
        assert!(given.is_err());
        assert_eq!(writes.get(), 1);
    }
}
