//! The `web` provider: an HTTP(S) request; `result` is the JSON value at `jsonPath` in the
//! response body (the whole body when no path is given).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::{
    MeasureContext, Provider, describe_error, http_client, timeout_or_default, value_or_error,
};
use crate::analysis::judge::Outcome;
use crate::analysis::value::MetricValue;
use crate::api::analysis::{Measurement, Metric, WebMetric, WebMetricMethod};

/// The most of a response body Sluice reads.
const MAX_BODY: usize = 1 << 20;

pub struct WebProvider;

impl Provider for WebProvider {
    type Spec = WebMetric;

    async fn measure(
        &self,
        ctx: &MeasureContext<'_>,
        _metric: &Metric,
        w: &WebMetric,
        _resume: Option<&Measurement>,
    ) -> Outcome {
        let mut metadata = BTreeMap::from([("url".to_string(), w.url.clone())]);
        if let Some(p) = &w.json_path {
            metadata.insert("jsonPath".into(), p.clone());
        }
        value_or_error(fetch(ctx, w).await.map(MetricValue::Json), metadata)
    }
}

async fn fetch(ctx: &MeasureContext<'_>, w: &WebMetric) -> Result<Value, String> {
    let timeout = timeout_or_default(w.timeout_seconds);
    let http = http_client(ctx, w.tls.as_ref(), w.insecure.unwrap_or(false), timeout).await?;
    let method = match w.method.unwrap_or(WebMetricMethod::Get) {
        WebMetricMethod::Get => reqwest::Method::GET,
        WebMetricMethod::Post => reqwest::Method::POST,
        WebMetricMethod::Put => reqwest::Method::PUT,
    };
    let mut req = http.request(method, &w.url);
    for h in w.headers.iter().flatten() {
        let (name, value) = ctx.header(h).await?;
        req = req.header(name, value);
    }
    if let Some(body) = &w.json_body {
        req = req
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
    } else if let Some(body) = &w.body {
        req = req.body(body.clone());
    }
    let run = async {
        let resp = req
            .send()
            .await
            .map_err(|e| format!("request failed: {}", describe_error(&e)))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| format!("reading the response failed: {}", describe_error(&e)))?;
        Ok::<_, String>((status, bytes))
    };
    let (status, bytes) = tokio::time::timeout(timeout + Duration::from_secs(1), run)
        .await
        .map_err(|_| format!("the request timed out after {}s", timeout.as_secs()))??;
    if !status.is_success() {
        return Err(format!("the server answered {status}"));
    }
    if bytes.len() > MAX_BODY {
        return Err(format!("the response is larger than {MAX_BODY} bytes"));
    }
    let body: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(_) if w.json_path.is_none() => {
            Value::String(String::from_utf8_lossy(&bytes).trim().to_string())
        }
        Err(e) => return Err(format!("the response is not JSON: {e}")),
    };
    match &w.json_path {
        None => Ok(body),
        Some(path) => select(&body, path),
    }
}

/// Follows a JSON path of the forms Argo users write: `{$.data.ok}`, `$.items[0].status`,
/// `$['key with dots']`. A path that leads nowhere gives `null` (no data).
pub fn select(root: &Value, path: &str) -> Result<Value, String> {
    let p = path.trim();
    let p = p
        .strip_prefix('{')
        .and_then(|p| p.strip_suffix('}'))
        .unwrap_or(p)
        .trim();
    let mut rest = p
        .strip_prefix('$')
        .ok_or_else(|| format!("jsonPath {path:?} must start with $"))?;
    let mut cur = root;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let end = after
                .find(']')
                .ok_or_else(|| format!("jsonPath {path:?} has an unclosed ["))?;
            let key = after[..end].trim();
            let next = if let Ok(i) = key.parse::<usize>() {
                cur.get(i)
            } else {
                cur.get(key.trim_matches(|c| c == '\'' || c == '"'))
            };
            match next {
                Some(v) => cur = v,
                None => return Ok(Value::Null),
            }
            rest = &after[end + 1..];
        } else if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            if end == 0 {
                return Err(format!("jsonPath {path:?} has an empty segment"));
            }
            match cur.get(&after[..end]) {
                Some(v) => cur = v,
                None => return Ok(Value::Null),
            }
            rest = &after[end..];
        } else {
            return Err(format!("jsonPath {path:?}: cannot read {rest:?}"));
        }
    }
    Ok(cur.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_paths_as_argo_users_write_them() {
        let body =
            json!({"data": {"ok": true, "rate": 0.99}, "items": [{"status": "healthy"}], "a.b": 1});
        assert_eq!(select(&body, "{$.data.ok}"), Ok(json!(true)));
        assert_eq!(select(&body, "$.data.rate"), Ok(json!(0.99)));
        assert_eq!(select(&body, "$.items[0].status"), Ok(json!("healthy")));
        assert_eq!(select(&body, "$['a.b']"), Ok(json!(1)));
        assert_eq!(select(&body, "$"), Ok(body.clone()));
        assert_eq!(select(&body, "$.data.missing"), Ok(Value::Null));
        assert_eq!(select(&body, "$.items[3]"), Ok(Value::Null));
        assert!(select(&body, "data.ok").is_err());
        assert!(select(&body, "$.items[0").is_err());
        assert!(select(&body, "$..x").is_err());
    }
}
