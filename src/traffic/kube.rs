//! The I/O edge of traffic routing: read the objects a router names, edit them with the
//! router's pure functions, and write them back only when something changed, guarded by
//! `resourceVersion` (a concurrent writer's change is re-read, never overwritten).

use std::collections::BTreeMap;

use kube::api::{ApiResource, DynamicObject, GroupVersionKind, PostParams};
use kube::{Api, Client};
use serde_json::Value;

use super::router::{Target, TrafficRouter};
use super::{RouteError, RouteState};
use crate::api::constants::FIELD_MANAGER_TRAFFIC;
use crate::rollout::apply::timed;
use crate::rollout::controller::WriteCounter;
use crate::rollout::error::Error;

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

/// Reads every target and checks it has what the Rollout names. The result is by the
/// Rollout field that names the target: `Err` says what is missing (an `InvalidSpec`).
pub async fn verify(
    client: &Client,
    rollout_ns: &str,
    router: &dyn TrafficRouter,
    state: &RouteState,
) -> Result<BTreeMap<String, Result<(), String>>, Error> {
    let mut out = BTreeMap::new();
    for t in router.targets() {
        let found = match timed(
            "read a traffic router object",
            api(client, rollout_ns, &t).get_opt(&t.name),
        )
        .await
        {
            Ok(found) => found,
            Err(Error::Kube {
                source: kube::Error::Api(e),
                ..
            }) if e.code == 403 || e.code == 404 => {
                // 404 on get_opt: the kind itself is not served (CRD not installed).
                let why = if e.code == 403 {
                    format!("Sluice may not read {}: {}", t.describe(), e.message)
                } else {
                    format!(
                        "{} cannot be read: {} (is the CRD installed?)",
                        t.describe(),
                        e.message
                    )
                };
                out.insert(t.field.clone(), Err(why));
                continue;
            }
            Err(e) => return Err(e),
        };
        let checked = match found {
            None => Err(format!(
                "{} not found (or its CRD is not installed)",
                t.describe()
            )),
            Some(o) => {
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

/// Edits one target with `edit` and writes it back if it changed; a conflict re-reads and
/// edits again. Returns whether a write was made.
async fn edit(
    client: &Client,
    rollout_ns: &str,
    t: &Target,
    writes: &WriteCounter,
    edit: &(dyn Fn(&mut Value) -> Result<bool, RouteError> + Sync),
) -> Result<bool, Error> {
    let api = api(client, rollout_ns, t);
    for _ in 0..CONFLICT_RETRIES {
        let Some(current) = timed("read a traffic router object", api.get_opt(&t.name)).await?
        else {
            return Err(Error::Traffic(format!("{} not found", t.describe())));
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

/// Makes every target say what `state` says.
pub async fn apply(
    client: &Client,
    rollout_ns: &str,
    router: &dyn TrafficRouter,
    state: &RouteState,
    writes: &WriteCounter,
) -> Result<(), Error> {
    for t in router.targets() {
        edit(client, rollout_ns, &t, writes, &|v| {
            router.apply(&t, v, state)
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
        match edit(client, rollout_ns, &t, writes, &|v| {
            Ok(router.restore(&t, v))
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
