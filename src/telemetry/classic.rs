//! OpenMetrics text to the classic Prometheus text format. One file, also compiled into the
//! e2e crate's traffic simulator (`#[path]`), so both serve the same format the same way.

/// Converts OpenMetrics text to the classic Prometheus text format: a counter's HELP and
/// TYPE name its `_total` sample, `# UNIT` and `# EOF` go.
pub fn classic_text(openmetrics: &str) -> String {
    let counters: std::collections::BTreeSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_classic_format_names_counters_by_their_samples() {
        let om = "# HELP sluice_api_writes Writes.\n# TYPE sluice_api_writes counter\nsluice_api_writes_total 3\n# HELP sluice_leader Leading.\n# TYPE sluice_leader gauge\nsluice_leader 1\n# EOF\n";
        assert_eq!(
            classic_text(om),
            "# HELP sluice_api_writes_total Writes.\n# TYPE sluice_api_writes_total counter\nsluice_api_writes_total 3\n# HELP sluice_leader Leading.\n# TYPE sluice_leader gauge\nsluice_leader 1\n"
        );
    }
}
