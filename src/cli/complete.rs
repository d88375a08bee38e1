//! Shell completion for `kubectl sluice`. kubectl (1.26 and later) completes a plugin's words
//! by running `kubectl_complete-sluice WORDS... PARTIAL` and reading cobra's answer: one
//! candidate per line, then `:DIRECTIVE`. The plugin answers as that executable (a link to it)
//! and as `kubectl-sluice __complete`. What to offer is decided here, purely; rollout and
//! exercise names are read from the cluster by the binary.

/// Subcommands that take a Rollout's name, and what each does (the description shown).
pub const ROLLOUT_COMMANDS: &[(&str, &str)] = &[
    ("get", "show a rollout as a tree"),
    ("status", "wait until Healthy, Degraded or Paused"),
    ("promote", "lift a pause or go to the next step"),
    ("abort", "all traffic back to stable"),
    ("retry", "release an aborted revision again"),
    ("pause", "hold a release"),
    ("resume", "lift a pause made by request"),
    ("undo", "go back to an earlier revision (writes spec)"),
    ("restart", "new pods for the same revision (writes spec)"),
    ("set", "set image (writes spec)"),
];

/// Subcommands that take no Rollout.
pub const OTHER_COMMANDS: &[(&str, &str)] = &[
    ("list", "list rollouts"),
    ("lint", "check manifests offline"),
    ("migrate", "convert Argo Rollouts manifests"),
    ("dashboard", "a live web page of the rollouts"),
    (
        "backtest",
        "replay an analysis template over past Prometheus data",
    ),
    (
        "exercise",
        "rehearsed rollbacks: start, status, history, cancel",
    ),
    ("version", "print versions"),
    ("completion", "print a shell completion script"),
    ("crds", "print the CustomResourceDefinitions"),
];

/// `exercise` subcommands, each taking a RolloutExercise's name.
pub const EXERCISE_COMMANDS: &[(&str, &str)] = &[
    ("start", "ask for a run and follow it to its result"),
    ("status", "the run under way, else the last run"),
    ("history", "the runs, newest first"),
    ("cancel", "cancel the run under way"),
];

const GLOBAL_FLAGS: &[&str] = &[
    "--namespace",
    "--context",
    "--kubeconfig",
    "--request-timeout",
    "--no-color",
    "--help",
];

/// What to offer for the word being typed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Offer {
    /// These words, with descriptions where known.
    Words(Vec<(String, String)>),
    /// Names of the Rollouts in this namespace (None: the context's).
    Rollouts { namespace: Option<String> },
    /// Names of the RolloutExercises in this namespace (None: the context's).
    Exercises { namespace: Option<String> },
    /// Nothing (a free value such as an image).
    Nothing,
    /// File names (lint and migrate take files).
    Files,
}

fn words(list: &[(&str, &str)], partial: &str) -> Offer {
    Offer::Words(
        list.iter()
            .filter(|(w, _)| w.starts_with(partial))
            .map(|(w, d)| (w.to_string(), d.to_string()))
            .collect(),
    )
}

/// The namespace given so far, and the positional words (flags and their values left out).
fn scan(before: &[String]) -> (Option<String>, Vec<&str>) {
    let mut namespace = None;
    let mut positional: Vec<&str> = vec![];
    let mut i = 0;
    while i < before.len() {
        let w = before[i].as_str();
        if matches!(
            w,
            "-n" | "--namespace"
                | "--context"
                | "--kubeconfig"
                | "--request-timeout"
                | "-o"
                | "--output"
                | "--timeout"
                | "--to-revision"
                | "--port"
                | "--address"
                | "--rollout"
                | "--from"
                | "--to"
                | "--incidents"
                | "--prometheus"
                | "--arg"
                | "--interval"
                | "--grace"
        ) {
            if matches!(w, "-n" | "--namespace") {
                namespace = before.get(i + 1).cloned();
            }
            i += 2;
            continue;
        }
        if let Some(ns) = w.strip_prefix("--namespace=") {
            namespace = Some(ns.to_string());
        } else if !w.starts_with('-') {
            positional.push(w);
        }
        i += 1;
    }
    (namespace, positional)
}

/// The offer for `args`: the words typed after `kubectl sluice`, the last one being completed.
pub fn offer(args: &[String]) -> Offer {
    let (partial, before) = match args.split_last() {
        Some((p, b)) => (p.as_str(), b),
        None => ("", &[][..]),
    };
    let (namespace, positional) = scan(before);
    match before.last().map(String::as_str) {
        Some("--rollout") => return Offer::Rollouts { namespace },
        Some("--incidents") => return Offer::Files,
        Some("--from" | "--to" | "--prometheus" | "--arg" | "--interval" | "--grace") => {
            return Offer::Nothing;
        }
        Some("-o" | "--output") => {
            return words(&[("text", ""), ("json", ""), ("yaml", "")], partial);
        }
        Some(
            "-n" | "--namespace" | "--context" | "--kubeconfig" | "--timeout" | "--to-revision"
            | "--request-timeout" | "--port" | "--address",
        ) => {
            return if before.last().map(String::as_str) == Some("--kubeconfig") {
                Offer::Files
            } else {
                Offer::Nothing
            };
        }
        _ => {}
    }
    if partial.starts_with('-') {
        let flags: Vec<(&str, &str)> = GLOBAL_FLAGS.iter().map(|f| (*f, "")).collect();
        return words(&flags, partial);
    }
    let all: Vec<(&str, &str)> = ROLLOUT_COMMANDS
        .iter()
        .chain(OTHER_COMMANDS)
        .copied()
        .collect();
    match positional.as_slice() {
        [] => words(&all, partial),
        ["get"] => {
            if "rollout".starts_with(partial) && !partial.is_empty() {
                words(&[("rollout", "")], partial)
            } else {
                Offer::Rollouts { namespace }
            }
        }
        ["set"] => words(&[("image", "set a container's image")], partial),
        ["exercise"] => words(EXERCISE_COMMANDS, partial),
        ["exercise", sub] if EXERCISE_COMMANDS.iter().any(|(c, _)| c == sub) => {
            Offer::Exercises { namespace }
        }
        ["completion"] => words(&[("bash", ""), ("zsh", ""), ("fish", "")], partial),
        ["lint" | "migrate", ..] => Offer::Files,
        ["get", "rollout" | "rollouts" | "ro" | "sro"] | ["set", "image"] => {
            Offer::Rollouts { namespace }
        }
        [cmd] if ROLLOUT_COMMANDS.iter().any(|(c, _)| c == cmd) => Offer::Rollouts { namespace },
        _ => Offer::Nothing,
    }
}

/// cobra's answer: candidates (with a tab and a description), then the directive: 4 (no file
/// completion) or 0 (the shell's default, files).
pub fn answer(candidates: &[(String, String)], files: bool) -> String {
    let mut out = String::new();
    for (w, d) in candidates {
        if d.is_empty() {
            out.push_str(&format!("{w}\n"));
        } else {
            out.push_str(&format!("{w}\t{d}\n"));
        }
    }
    out.push_str(if files { ":0\n" } else { ":4\n" });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer_for(line: &str) -> Offer {
        let mut args: Vec<String> = line.split(' ').map(String::from).collect();
        if line.is_empty() {
            args = vec![String::new()];
        }
        offer(&args)
    }

    fn names(o: Offer) -> Vec<String> {
        match o {
            Offer::Words(w) => w.into_iter().map(|(w, _)| w).collect(),
            other => panic!("not words: {other:?}"),
        }
    }

    #[test]
    fn subcommands_by_prefix() {
        assert_eq!(names(offer_for("pro")), ["promote"]);
        assert_eq!(names(offer_for("re")), ["retry", "resume", "restart"]);
        assert_eq!(
            names(offer_for("")).len(),
            ROLLOUT_COMMANDS.len() + OTHER_COMMANDS.len()
        );
    }

    #[test]
    fn rollout_names_after_a_command_that_takes_one_in_the_namespace_given() {
        assert_eq!(offer_for("promote "), Offer::Rollouts { namespace: None });
        assert_eq!(
            offer_for("-n shop abort w"),
            Offer::Rollouts {
                namespace: Some("shop".into())
            }
        );
        assert_eq!(
            offer_for("get rollout --namespace=shop "),
            Offer::Rollouts {
                namespace: Some("shop".into())
            }
        );
        assert_eq!(names(offer_for("get ro")), ["rollout"]);
        assert_eq!(offer_for("set image "), Offer::Rollouts { namespace: None });
        assert_eq!(offer_for("promote web "), Offer::Nothing, "one name only");
    }

    #[test]
    fn exercise_subcommands_then_exercise_names_in_the_namespace_given() {
        assert_eq!(names(offer_for("exe")), ["exercise"]);
        assert_eq!(
            names(offer_for("exercise ")),
            ["start", "status", "history", "cancel"]
        );
        assert_eq!(names(offer_for("exercise st")), ["start", "status"]);
        assert_eq!(
            offer_for("-n shop exercise start d"),
            Offer::Exercises {
                namespace: Some("shop".into())
            }
        );
        assert_eq!(
            offer_for("exercise history --namespace=shop "),
            Offer::Exercises {
                namespace: Some("shop".into())
            }
        );
        assert_eq!(
            offer_for("exercise start --timeout 10m "),
            Offer::Exercises { namespace: None }
        );
        assert_eq!(offer_for("exercise cancel drill "), Offer::Nothing);
        assert_eq!(offer_for("exercise nope "), Offer::Nothing);
    }

    #[test]
    fn flags_values_and_files() {
        assert_eq!(names(offer_for("get rollout web -o j")), ["json"]);
        assert_eq!(names(offer_for("list --co")), ["--context"]);
        assert_eq!(offer_for("list -n "), Offer::Nothing);
        assert_eq!(names(offer_for("completion z")), ["zsh"]);
        assert_eq!(offer_for("lint ./de"), Offer::Files);
    }

    #[test]
    fn backtest_completes_its_rollout_and_incidents_flags() {
        assert_eq!(names(offer_for("backt")), ["backtest"]);
        assert_eq!(
            offer_for("-n shop backtest errors --rollout "),
            Offer::Rollouts {
                namespace: Some("shop".into())
            }
        );
        assert_eq!(offer_for("backtest errors --incidents "), Offer::Files);
        assert_eq!(offer_for("backtest errors --from "), Offer::Nothing);
        assert_eq!(offer_for("backtest errors --rollout shop "), Offer::Nothing);
    }

    #[test]
    fn the_answer_is_cobras_format() {
        let c = vec![
            ("promote".to_string(), "lift a pause".to_string()),
            ("web".to_string(), String::new()),
        ];
        assert_eq!(answer(&c, false), "promote\tlift a pause\nweb\n:4\n");
        assert_eq!(answer(&[], true), ":0\n");
    }
}
