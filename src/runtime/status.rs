//! Writing the status subresource of an object a controller reconciles.

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use kube::api::PostParams;
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::calls::timed;
use super::error::Error;
use super::writes::WriteCounter;
use crate::api::constants::FIELD_MANAGER_CONTROLLER;

/// Replaces the status of `updated` (the object as it was read, with the new status in place)
/// under the resourceVersion it was read at, as Sluice's controller field manager, and counts
/// the write. A conflict (409) means the object changed since it was read: nothing written
/// meanwhile is overwritten. The caller skips a write that changes nothing.
pub async fn replace_status<K>(
    client: &Client,
    writes: &WriteCounter,
    mut updated: K,
    what: &'static str,
) -> Result<K, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Serialize
        + DeserializeOwned
        + Debug,
{
    let ns = updated.namespace().ok_or(Error::NoNamespace)?;
    let name = updated.name_any();
    updated.meta_mut().managed_fields = None;
    let api: Api<K> = Api::namespaced(client.clone(), &ns);
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER_CONTROLLER.into()),
        ..Default::default()
    };
    writes.add();
    timed(what, api.replace_status(&name, &params, &updated)).await
}
