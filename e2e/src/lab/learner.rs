//! Talking to the learner: the situation and the questions with the commands to try, the
//! commands the scripted mode runs in the learner's place (printed with their real output),
//! the keyboard in interactive mode, and the explanation at the end.

use std::fmt::Write as _;

use anyhow::bail;
use tokio::sync::mpsc;

use super::stack::{Kubectl, Out};
use crate::shop::say;

/// Width the lab's text is wrapped to.
const WIDTH: usize = 96;

/// What a lab tells the learner once the release is under way.
pub struct Brief {
    pub situation: String,
    pub questions: Vec<String>,
    /// Commands to try (`kubectl ...`), each with what it shows.
    pub commands: Vec<(String, String)>,
    /// What the lab waits for, and what the learner may do about it.
    pub waiting: String,
}

/// Wraps `text` at [`WIDTH`] columns, each line after `indent`.
pub fn wrap(text: &str, indent: &str) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && indent.len() + line.len() + 1 + word.len() > WIDTH {
            let _ = writeln!(out, "{indent}{line}");
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        let _ = writeln!(out, "{indent}{line}");
    }
    out
}

/// `text` wrapped as a list item: `  - ` before its first line, four spaces before the others.
pub fn bullet(text: &str) -> String {
    let wrapped = wrap(text, "    ");
    match wrapped.strip_prefix("    ") {
        Some(rest) => format!("  - {rest}"),
        None => wrapped,
    }
}

/// Prints the brief, with the lines that point another terminal at the lab's cluster.
pub fn print_brief(b: &Brief, kubectl: &Kubectl) {
    say("The situation");
    print!("{}", wrap(&b.situation, "  "));
    say("Questions");
    for q in &b.questions {
        print!("{}", bullet(q));
    }
    say("Try, in another terminal");
    for line in kubectl.exports().lines() {
        println!("  {line}");
    }
    for (cmd, why) in &b.commands {
        println!("  {cmd}");
        print!("{}", wrap(why, "      # "));
    }
    println!();
    print!("{}", wrap(&b.waiting, ""));
}

/// Splits a command line on spaces, taking `'...'` as one word without its quotes (the
/// only quoting the labs' commands use).
pub fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in line.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                any = true;
            }
            ' ' if !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

/// A command the scripted mode runs as the learner would, and what its output must show.
pub struct Cmd {
    /// The command as printed, starting with `kubectl`.
    pub line: String,
    /// Texts its output must contain.
    pub shows: Vec<String>,
    /// Its exit code, when it matters.
    pub code: Option<i32>,
}

impl Cmd {
    pub fn new(line: impl Into<String>) -> Cmd {
        Cmd {
            line: line.into(),
            shows: Vec::new(),
            code: Some(0),
        }
    }

    pub fn shows(mut self, text: impl Into<String>) -> Cmd {
        self.shows.push(text.into());
        self
    }

    pub fn code(mut self, code: i32) -> Cmd {
        self.code = Some(code);
        self
    }
}

/// Runs `cmd` through the real kubectl, prints it and its output, and fails when the output
/// does not show what it must.
pub async fn run(kubectl: &Kubectl, cmd: &Cmd) -> anyhow::Result<Out> {
    let args = words(&cmd.line);
    let Some(("kubectl", rest)) = args.split_first().map(|(h, t)| (h.as_str(), t)) else {
        bail!("not a kubectl command: {}", cmd.line);
    };
    println!("\n  $ {}", cmd.line);
    let out = kubectl.run(rest).await?;
    for l in out.text().lines() {
        println!("    {l}");
    }
    if let Some(code) = cmd.code
        && out.code != code
    {
        bail!("`{}` exited with {}, not {code}", cmd.line, out.code);
    }
    for s in &cmd.shows {
        if !out.text().contains(s.as_str()) {
            bail!("`{}` did not show {s:?}", cmd.line);
        }
    }
    Ok(out)
}

/// Lines typed in the lab's own terminal (interactive mode).
pub struct Keyboard {
    rx: mpsc::UnboundedReceiver<String>,
}

impl Keyboard {
    pub fn start() -> Keyboard {
        let (tx, rx) = mpsc::unbounded_channel();
        // A thread of its own: reading stdin blocks.
        std::thread::spawn(move || {
            for line in std::io::stdin().lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Keyboard { rx }
    }

    /// Whether Enter was pressed since the last call.
    pub fn pressed(&mut self) -> bool {
        let mut any = false;
        while self.rx.try_recv().is_ok() {
            any = true;
        }
        any
    }
}

/// Prints the explanation: a heading and paragraphs.
pub fn explain(paragraphs: &[String]) {
    say("What happened, and why");
    for p in paragraphs {
        print!("{}", wrap(p, "  "));
        println!();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_words_stay_whole() {
        assert_eq!(
            words("kubectl get pods -o 'jsonpath={.items[*].status.phase}' -n lab"),
            vec![
                "kubectl",
                "get",
                "pods",
                "-o",
                "jsonpath={.items[*].status.phase}",
                "-n",
                "lab"
            ]
        );
        assert_eq!(words("  a  b "), vec!["a", "b"]);
        assert_eq!(words("a '' b"), vec!["a", "", "b"]);
    }

    #[test]
    fn text_wraps_at_the_width_with_its_indent() {
        let text = "word ".repeat(40);
        let out = wrap(&text, "  ");
        assert!(out.lines().count() > 1);
        assert!(
            out.lines()
                .all(|l| l.len() <= WIDTH && l.starts_with("  word"))
        );
        assert_eq!(wrap("", "  "), "");
        let item = bullet(&text);
        assert!(item.starts_with("  - word"));
        assert!(item.lines().skip(1).all(|l| l.starts_with("    word")));
    }
}
