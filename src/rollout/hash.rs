//! The pod template hash: names a revision, labels its ReplicaSet and pods, and is what the
//! stable and canary Services select. It must be stable across Sluice versions, so it is a
//! hand-written FNV-1a over the template's canonical JSON, not `std`'s hasher.

use k8s_openapi::api::core::v1::PodTemplateSpec;

/// Letters that never spell words (as Kubernetes' `rand.SafeEncodeString` uses).
const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The name of the ReplicaSet of one revision.
pub fn replica_set_name(rollout: &str, hash: &str) -> String {
    format!("{rollout}-{hash}")
}

/// Removes nulls, empty objects and empty arrays, recursively.
pub fn prune_empty(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            for child in map.values_mut() {
                prune_empty(child);
            }
            map.retain(|_, c| {
                !(c.is_null()
                    || c.as_object().is_some_and(|o| o.is_empty())
                    || c.as_array().is_some_and(|a| a.is_empty()))
            });
        }
        Value::Array(items) => items.iter_mut().for_each(prune_empty),
        _ => {}
    }
}

/// The hash of a pod template, ten characters from a safe alphabet. Fields Sluice itself adds
/// to the template (the hash label) are left out, so the hash of a ReplicaSet's template equals
/// the hash of the Rollout's.
pub fn pod_template_hash(template: &PodTemplateSpec) -> String {
    let mut t = template.clone();
    if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(crate::api::constants::LABEL_POD_TEMPLATE_HASH);
    }
    // serde_json writes struct fields in declaration order and maps (BTreeMap) sorted, so the
    // bytes are canonical for a given template once empty maps and lists, which mean the same
    // as absent ones (`annotations: {}`), are dropped.
    let mut value = serde_json::to_value(&t).unwrap_or_default();
    prune_empty(&mut value);
    let bytes = serde_json::to_vec(&value).unwrap_or_default();
    short_hash(&bytes, 10)
}

/// `len` characters (at most 13) from the safe alphabet, from an FNV-1a hash of `bytes`.
pub fn short_hash(bytes: &[u8], len: usize) -> String {
    let mut h = fnv1a64(bytes);
    let mut out = String::with_capacity(len);
    for _ in 0..len.min(13) {
        out.push(ALPHABET[(h % ALPHABET.len() as u64) as usize] as char);
        h /= ALPHABET.len() as u64;
    }
    out
}

/// A DNS-1123 label from `parts` joined by `-`: lowercase, at most 63 characters. Too long,
/// it is cut and ends with a short hash of the whole, so different inputs stay different.
pub fn dns_label(parts: &[&str]) -> String {
    let joined = parts.join("-");
    let mut clean: String = joined
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() { c } else { '-' }
        })
        .collect();
    if clean.len() > 63 {
        clean.truncate(52);
        clean = format!(
            "{}-{}",
            clean.trim_end_matches('-'),
            short_hash(joined.as_bytes(), 10)
        );
    }
    clean.trim_matches('-').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dns_labels_are_valid_and_distinct() {
        assert_eq!(dns_label(&["shop", "abc", "Step_2"]), "shop-abc-step-2");
        let long_a = dns_label(&[&"a".repeat(70), "x"]);
        let long_b = dns_label(&[&"a".repeat(70), "y"]);
        assert!(long_a.len() <= 63 && long_b.len() <= 63);
        assert_ne!(long_a, long_b);
        assert!(
            long_a
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        );
    }

    fn template(image: &str, extra_label: Option<(&str, &str)>) -> PodTemplateSpec {
        let mut labels = serde_json::Map::new();
        labels.insert("app".into(), json!("web"));
        if let Some((k, v)) = extra_label {
            labels.insert(k.into(), json!(v));
        }
        serde_json::from_value(json!({
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": "web", "image": image}]}
        }))
        .expect("template")
    }

    #[test]
    fn same_template_same_hash_and_a_change_changes_it() {
        let a = pod_template_hash(&template("web:1", None));
        assert_eq!(a, pod_template_hash(&template("web:1", None)));
        assert_ne!(a, pod_template_hash(&template("web:2", None)));
        assert_eq!(a.len(), 10);
        assert!(a.bytes().all(|c| ALPHABET.contains(&c)));
    }

    #[test]
    fn the_hash_label_does_not_change_the_hash() {
        let plain = pod_template_hash(&template("web:1", None));
        let labelled = pod_template_hash(&template(
            "web:1",
            Some((crate::api::constants::LABEL_POD_TEMPLATE_HASH, "xyz")),
        ));
        assert_eq!(plain, labelled);
    }

    #[test]
    fn empty_maps_mean_the_same_as_absent_ones() {
        let plain = template("web:1", None);
        let mut with_empty = plain.clone();
        if let Some(m) = with_empty.metadata.as_mut() {
            m.annotations = Some(Default::default());
        }
        assert_eq!(pod_template_hash(&plain), pod_template_hash(&with_empty));
    }

    #[test]
    fn hash_is_pinned_across_versions() {
        // A change here renames every revision of every Rollout: never change it casually.
        assert_eq!(pod_template_hash(&template("web:1", None)), PINNED);
    }

    const PINNED: &str = "wmqnbst42q";
}
