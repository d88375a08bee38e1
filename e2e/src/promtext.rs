//! Prometheus text exposition, as the controller, the API server, Argo Rollouts and the traffic
//! simulator serve it: the samples of one metric with their labels.

use std::collections::BTreeMap;

/// One sample of Prometheus text: its labels and value.
pub type Sample = (BTreeMap<String, String>, f64);

/// Every sample of metric `name` (exact name, e.g. `x_bucket`) in Prometheus text.
pub fn samples(text: &str, name: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (labels, value) = match rest.chars().next() {
            Some('{') => match rest.rfind('}') {
                Some(end) => (parse_labels(&rest[1..end]), &rest[end + 1..]),
                None => continue,
            },
            Some(' ') => (BTreeMap::new(), rest),
            _ => continue,
        };
        let Some(v) = value.split_whitespace().next() else {
            continue;
        };
        let v = match v {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => match v.parse::<f64>() {
                Ok(v) => v,
                Err(_) => continue,
            },
        };
        out.push((labels, v));
    }
    out
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s;
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim().trim_start_matches(',').trim().to_string();
        let after = &rest[eq + 1..];
        let Some(body) = after.strip_prefix('"') else {
            break;
        };
        let mut value = String::new();
        let mut chars = body.char_indices();
        let mut end = body.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(match n {
                            'n' => '\n',
                            other => other,
                        });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.insert(key, value);
        rest = &body[end.min(body.len())..];
    }
    out
}

/// The sum of every sample of `name`.
pub fn total(text: &str, name: &str) -> f64 {
    samples(text, name).into_iter().map(|(_, v)| v).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP x_total A counter.
# TYPE x_total counter
x_total{verb="get"} 2.5
x_total{verb="list",resource="pods"} 5
x_total_other 9
odd{msg="a \"quoted\", comma",x="y"} 7
bare 3
inf_bucket{le="+Inf"} +Inf
"#;

    #[test]
    fn samples_are_read_by_exact_name_with_labels() {
        assert_eq!(samples(TEXT, "bare"), vec![(BTreeMap::new(), 3.0)]);
        assert_eq!(samples(TEXT, "inf_bucket")[0].1, f64::INFINITY);
        assert!(samples(TEXT, "x").is_empty());
        let s = samples(TEXT, "x_total");
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].0.get("verb").map(String::as_str), Some("list"));
        assert_eq!(total(TEXT, "x_total"), 7.5);
        let odd = samples(TEXT, "odd");
        assert_eq!(
            odd[0].0.get("msg").map(String::as_str),
            Some("a \"quoted\", comma")
        );
        assert_eq!(odd[0].0.get("x").map(String::as_str), Some("y"));
        assert_eq!(odd[0].1, 7.0);
    }
}
