//! How `kubectl sluice` reaches the cluster (the user's kubeconfig, context and namespace, as
//! kubectl takes them) and how it turns the API server's answers into errors a person can act
//! on: not found with the close names, forbidden with the verb and the resource, no cluster.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use super::control::ControlError;

/// The flags kubectl has for choosing a cluster, a user and a namespace.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ClusterArgs {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster).
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// Namespace (default: the context's namespace, else "default").
    #[arg(short, long, global = true, value_name = "NAME")]
    pub namespace: Option<String>,
    /// Seconds to wait for each answer of the API server.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 15)]
    pub request_timeout: u64,
}

/// A client for the chosen cluster and the namespace to work in.
#[derive(Clone)]
pub struct Cluster {
    pub client: Client,
    pub namespace: String,
    /// The API server's address, for messages.
    pub server: String,
    /// The limit for each request.
    pub limit: Duration,
}

/// What a command was doing when the API server answered, for the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Action {
    pub verb: &'static str,
    /// The resource as RBAC names it, e.g. `rollouts.sluice.dev` or `rollouts.sluice.dev/status`.
    pub resource: &'static str,
    pub name: Option<String>,
    pub namespace: Option<String>,
}

impl Action {
    pub fn new(verb: &'static str, resource: &'static str) -> Action {
        Action {
            verb,
            resource,
            name: None,
            namespace: None,
        }
    }

    pub fn named(mut self, name: &str) -> Action {
        self.name = Some(name.to_string());
        self
    }

    pub fn in_ns(mut self, ns: &str) -> Action {
        self.namespace = Some(ns.to_string());
        self
    }

    fn scope(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("in namespace {ns:?}"),
            None => "at cluster scope".into(),
        }
    }
}

/// Everything that can stop a command, each worded so a person knows what to do next.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot load the kubeconfig: {0}")]
    Config(String),
    #[error(
        "cannot reach the API server at {server}: {detail}\n  check that the cluster is up and that the kubeconfig and context point at it (kubectl config current-context)"
    )]
    Unreachable { server: String, detail: String },
    #[error(
        "the API server at {server} did not answer within {secs} s (--request-timeout to wait longer)"
    )]
    Timeout { server: String, secs: u64 },
    #[error("{kind} {name:?} not found in namespace {namespace:?}{hint}")]
    NotFound {
        kind: &'static str,
        name: String,
        namespace: String,
        hint: String,
    },
    #[error(
        "forbidden: you may not {verb} {resource} {scope}\n  the API server said: {message}\n  ask your cluster admin for a Role granting `{verb}` on `{resource}`"
    )]
    Forbidden {
        verb: &'static str,
        resource: &'static str,
        scope: String,
        message: String,
    },
    #[error(
        "the API server at {server} refused your credentials (401 Unauthorized): log in again or refresh the token in your kubeconfig"
    )]
    Unauthorized { server: String },
    #[error(
        "the API server does not serve {resource}: Sluice's CustomResourceDefinitions are not installed (kubectl sluice crds | kubectl apply --server-side -f -)"
    )]
    NotInstalled { resource: &'static str },
    #[error("{0}")]
    Control(#[from] ControlError),
    #[error("{verb} {resource} {scope}: {message}")]
    Api {
        verb: &'static str,
        resource: &'static str,
        scope: String,
        message: String,
    },
    #[error(
        "{resource} {name:?} changed while this command ran (409 Conflict); nothing was written, run it again"
    )]
    Conflict {
        resource: &'static str,
        name: String,
    },
    #[error("{0}")]
    Usage(String),
    /// A RolloutExercise cannot do what was asked (invalid, deleted, waiting to start).
    #[error("{0}")]
    Exercise(String),
    /// Stdout was closed (`| head`): the command ends quietly.
    #[error("output closed")]
    Closed,
}

impl Cluster {
    /// Loads the kubeconfig as kubectl would and makes a client.
    pub async fn connect(args: &ClusterArgs) -> Result<Cluster, CliError> {
        let limit = Duration::from_secs(args.request_timeout.max(1));
        let opts = KubeConfigOptions {
            context: args.context.clone(),
            ..Default::default()
        };
        let loaded = match (&args.kubeconfig, &args.context) {
            (Some(path), _) => {
                let kc = Kubeconfig::read_from(path)
                    .map_err(|e| CliError::Config(format!("{}: {e}", path.display())))?;
                Config::from_custom_kubeconfig(kc, &opts)
                    .await
                    .map_err(|e| CliError::Config(format!("{}: {e}", path.display())))?
            }
            (None, Some(_)) => Config::from_kubeconfig(&opts)
                .await
                .map_err(|e| CliError::Config(e.to_string()))?,
            (None, None) => Config::infer()
                .await
                .map_err(|e| CliError::Config(e.to_string()))?,
        };
        let mut config = loaded;
        config.connect_timeout = Some(limit);
        config.read_timeout = Some(limit);
        config.write_timeout = Some(limit);
        let server = config.cluster_url.to_string();
        let namespace = args
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = Client::try_from(config).map_err(|e| CliError::Config(e.to_string()))?;
        Ok(Cluster {
            client,
            namespace,
            server,
            limit,
        })
    }

    /// The `timeoutSeconds` of a watch: the API server ends it before the client's read
    /// timeout (`--request-timeout`) would break it on a quiet stream, so the watcher resumes
    /// where it was instead of failing.
    pub fn watch_timeout(&self) -> u32 {
        let secs = self.limit.as_secs().saturating_sub(2).max(1);
        u32::try_from(secs).unwrap_or(u32::MAX)
    }

    /// Runs one request under the time limit and words its error for `action`.
    pub async fn call<T>(
        &self,
        action: &Action,
        fut: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, CliError> {
        match tokio::time::timeout(self.limit, fut).await {
            Err(_) => Err(CliError::Timeout {
                server: self.server.clone(),
                secs: self.limit.as_secs(),
            }),
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.explain(action, e)),
        }
    }

    /// The error a person reads for `e`, met while doing `action`.
    pub fn explain(&self, action: &Action, e: kube::Error) -> CliError {
        match e {
            kube::Error::Api(s) => match s.code {
                409 => CliError::Conflict {
                    resource: action.resource,
                    name: action.name.clone().unwrap_or_default(),
                },
                401 => CliError::Unauthorized {
                    server: self.server.clone(),
                },
                403 => CliError::Forbidden {
                    verb: action.verb,
                    resource: action.resource,
                    scope: action.scope(),
                    message: s.message,
                },
                // A 404 on a collection means the resource itself is not served.
                404 if action.name.is_none() || s.details.is_none() => CliError::NotInstalled {
                    resource: action.resource,
                },
                _ => CliError::Api {
                    verb: action.verb,
                    resource: action.resource,
                    scope: action.scope(),
                    message: s.message,
                },
            },
            other => CliError::Unreachable {
                server: self.server.clone(),
                detail: other.to_string(),
            },
        }
    }
}

/// The "did you mean" part of a not-found message: names close to `wanted` among `names`.
pub fn not_found_hint(wanted: &str, names: &[String], namespace: &str) -> String {
    hint_among(
        &Among {
            plural: "rollouts",
            list: format!("kubectl sluice list -n {namespace}"),
            list_all: "kubectl sluice list -A",
        },
        wanted,
        names,
        namespace,
    )
}

/// The objects a name was looked for among, for a not-found hint.
pub struct Among {
    /// What they are, e.g. `rollouts`.
    pub plural: &'static str,
    /// The command that lists them in the namespace.
    pub list: String,
    /// The command that lists them everywhere.
    pub list_all: &'static str,
}

/// The "did you mean" part of a not-found message for any kind: names close to `wanted`
/// among `names`, else the command that lists them.
pub fn hint_among(among: &Among, wanted: &str, names: &[String], namespace: &str) -> String {
    if names.is_empty() {
        return format!(
            "; there are no {} in namespace {namespace:?} (-n to choose another, {} to see all)",
            among.plural, among.list_all
        );
    }
    let close = close_names(wanted, names);
    if close.is_empty() {
        format!("; {} shows the {} there", among.list, names.len())
    } else {
        format!("; did you mean {}?", close.join(", "))
    }
}

/// Up to five of `names` close to `wanted` (edit distance at most a third of its length, at
/// least 2, or one containing the other), closest first.
pub fn close_names(wanted: &str, names: &[String]) -> Vec<String> {
    let bound = (wanted.chars().count() / 3).max(2);
    let mut scored: Vec<(usize, &String)> = names
        .iter()
        .filter_map(|n| {
            let d = edit_distance(wanted, n);
            let related = n.contains(wanted) || wanted.contains(n.as_str());
            (d <= bound || related).then_some((d, n))
        })
        .collect();
    scored.sort();
    scored.into_iter().take(5).map(|(_, n)| n.clone()).collect()
}

/// Levenshtein distance over characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn edit_distance_counts_insertions_deletions_and_substitutions() {
        assert_eq!(edit_distance("web", "web"), 0);
        assert_eq!(edit_distance("web", "webb"), 1);
        assert_eq!(edit_distance("wbe", "web"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn close_names_are_typos_and_prefixes_closest_first() {
        let all = names(&["web", "web-api", "checkout", "payments", "webhook"]);
        assert_eq!(close_names("wbe", &all), names(&["web"]));
        assert_eq!(close_names("web-ap", &all), names(&["web-api", "web"]));
        assert_eq!(close_names("checkuot", &all), names(&["checkout"]));
        assert!(close_names("zzzzzz", &all).is_empty());
    }

    #[test]
    fn the_hint_says_what_to_do_when_nothing_is_close() {
        let hint = not_found_hint("zzz", &names(&["web", "api"]), "shop");
        assert!(
            hint.contains("kubectl sluice list -n shop shows the 2"),
            "{hint}"
        );
        let hint = not_found_hint("web", &[], "shop");
        assert!(hint.contains("no rollouts in namespace \"shop\""), "{hint}");
        let hint = not_found_hint("wbe", &names(&["web", "api"]), "shop");
        assert_eq!(hint, "; did you mean web?");
    }
}
