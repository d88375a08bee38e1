//! What a provider measured: the `result` that conditions judge.

use std::fmt;

/// A measured value. Prometheus gives a scalar or a vector of sample values (in the order
/// Prometheus returned them); the web provider gives the JSON value its `jsonPath` selects;
/// the job provider gives a boolean (the Job succeeded).
#[derive(Clone, Debug, PartialEq)]
pub enum MetricValue {
    Scalar(f64),
    Vector(Vec<f64>),
    Json(serde_json::Value),
}

impl MetricValue {
    /// True for an empty vector or a JSON `null`: the query matched nothing.
    pub fn is_empty(&self) -> bool {
        match self {
            MetricValue::Vector(v) => v.is_empty(),
            MetricValue::Json(v) => v.is_null(),
            MetricValue::Scalar(_) => false,
        }
    }
}

fn number(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        // Shortest form that reads back as the same number: 0.95, 12, 1e-7.
        format!("{f}")
    }
}

/// The form kept in a measurement's `value`: `0.95`, `[0.95, 0.9]`, or compact JSON.
impl fmt::Display for MetricValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetricValue::Scalar(x) => f.write_str(&number(*x)),
            MetricValue::Vector(v) => {
                f.write_str("[")?;
                for (i, x) in v.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    f.write_str(&number(*x))?;
                }
                f.write_str("]")
            }
            MetricValue::Json(v) => write!(f, "{v}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_print_as_people_read_them() {
        assert_eq!(MetricValue::Scalar(0.95).to_string(), "0.95");
        assert_eq!(MetricValue::Scalar(12.0).to_string(), "12");
        assert_eq!(MetricValue::Scalar(f64::NAN).to_string(), "NaN");
        assert_eq!(
            MetricValue::Vector(vec![0.5, f64::INFINITY]).to_string(),
            "[0.5, +Inf]"
        );
        assert_eq!(MetricValue::Vector(vec![]).to_string(), "[]");
        assert_eq!(
            MetricValue::Json(serde_json::json!({"ok": true})).to_string(),
            r#"{"ok":true}"#
        );
        assert!(MetricValue::Vector(vec![]).is_empty());
        assert!(!MetricValue::Scalar(f64::NAN).is_empty());
    }
}
