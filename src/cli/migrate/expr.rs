//! Argo Rollouts conditions (expr-lang) to Sluice's (CEL).
//!
//! Most conditions Argo users write are already CEL: `result[0] >= 0.95`, `len(result) > 0`,
//! `isNaN(result[0]) || result[0] < 0.05`, `default(result[0], 0) >= 0.9`, `result == 'true'`
//! (Sluice adds `isNaN`, `isInf`, `len` and `default` to CEL). What differs is rewritten
//! token by token:
//!
//! | expr-lang                   | CEL                              |
//! |-----------------------------|----------------------------------|
//! | `a and b`, `a or b`, `not a`| `a && b`, `a \|\| b`, `!a`        |
//! | `asInt(x)`, `asFloat(x)`    | `int(x)`, `double(x)`            |
//! | `float(x)`                  | `double(x)`                      |
//! | `isNil(x)`                  | `(x == null)`                    |
//! | `nil`                       | `null`                           |
//! | `all(xs, {# > 1})`          | `xs.all(x, x > 1)`               |
//! | `any(xs, {...})`            | `xs.exists(x, ...)`              |
//! | `none(xs, {...})`           | `!xs.exists(x, ...)`             |
//! | `one(xs, {...})`            | `xs.exists_one(x, ...)`          |
//! | `filter(xs, {...})`         | `xs.filter(x, ...)`              |
//! | `map(xs, {...})`            | `xs.map(x, ...)`                 |
//! | `count(xs, {...})`          | `size(xs.filter(x, ...))`        |
//! | `1_000`                     | `1000`                           |
//!
//! `{{args.name}}` placeholders are kept as written: Sluice substitutes them the same way.
//! Anything else expr-lang has and CEL does not (other functions, `**`, `??`, `?.`, ranges,
//! slices, `matches`/`contains`/`startsWith`/`endsWith` operators, `not in`, map literals,
//! pipes, backtick strings, `let`) is refused with the reason: a condition is never guessed.

/// One lexical token, with whether whitespace came before it (kept in the output).
#[derive(Clone, Debug, PartialEq)]
struct Tok {
    text: String,
    kind: Kind,
    space: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Ident,
    Number,
    Str,
    /// `{{args.name}}`, kept verbatim.
    Placeholder,
    Punct,
}

/// The CEL form of an Argo Rollouts condition, or why it has none.
pub fn to_cel(expr: &str) -> Result<String, String> {
    let toks = tokenize(expr)?;
    let out = convert(&toks, None)?;
    Ok(out.trim().to_string())
}

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mut space = false;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            space = true;
            i += 1;
            continue;
        }
        let start = i;
        let kind = if c == '{' && chars.get(i + 1) == Some(&'{') {
            let close = (i + 2..chars.len().saturating_sub(1))
                .find(|&j| chars[j] == '}' && chars[j + 1] == '}')
                .ok_or("an unclosed `{{` placeholder")?;
            i = close + 2;
            Kind::Placeholder
        } else if c.is_ascii_alphabetic() || c == '_' || c == '$' {
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == '$')
            {
                i += 1;
            }
            Kind::Ident
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            i = number_end(&chars, i);
            Kind::Number
        } else if c == '"' || c == '\'' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            if i >= chars.len() {
                return Err("a string is not closed".into());
            }
            i += 1;
            Kind::Str
        } else if c == '`' {
            return Err("backtick strings have no CEL form; use a quoted string".into());
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let ops2 = ["==", "!=", "<=", ">=", "&&", "||", "**", "??", "?.", ".."];
            i += if ops2.contains(&two.as_str()) { 2 } else { 1 };
            Kind::Punct
        };
        let mut text: String = chars[start..i].iter().collect();
        if kind == Kind::Number {
            text = number(&text)?;
        }
        out.push(Tok { text, kind, space });
        space = false;
    }
    Ok(out)
}

fn number_end(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() {
        let c = chars[i];
        let exp_sign =
            (c == '+' || c == '-') && matches!(chars.get(i.wrapping_sub(1)), Some('e' | 'E'));
        let dot = c == '.' && chars.get(i + 1) != Some(&'.');
        if c.is_ascii_alphanumeric() || c == '_' || dot || exp_sign {
            i += 1;
        } else {
            break;
        }
    }
    i
}

/// A number literal in CEL's form: no `_` separators, a leading `0` before `.5`.
fn number(text: &str) -> Result<String, String> {
    let t = text.replace('_', "");
    let t = if t.starts_with('.') {
        format!("0{t}")
    } else {
        t
    };
    let hex = t.starts_with("0x") || t.starts_with("0X");
    let ok = hex || t.parse::<f64>().is_ok();
    if ok {
        Ok(t)
    } else {
        Err(format!("`{text}` is not a number CEL reads"))
    }
}

/// Functions both languages have under the same name (Sluice adds the last four to CEL).
const SAME_FUNCTIONS: [&str; 6] = ["int", "string", "isNaN", "isInf", "len", "default"];

/// Functions that take a collection and a `{...}` predicate, with their CEL macro.
const CLOSURES: [(&str, &str); 7] = [
    ("all", "all"),
    ("any", "exists"),
    ("none", "exists"),
    ("one", "exists_one"),
    ("filter", "filter"),
    ("map", "map"),
    ("count", "filter"),
];

/// Converts a token run; `var` is the CEL name `#` stands for inside a predicate.
fn convert(toks: &[Tok], var: Option<&str>) -> Result<String, String> {
    let mut out = String::new();
    let mut i = 0;
    let mut bracket_depth = 0usize;
    while i < toks.len() {
        let t = &toks[i];
        let next_is_call = toks.get(i + 1).is_some_and(|n| n.text == "(");
        let piece = |s: &str, out: &mut String| {
            if t.space && !out.is_empty() {
                out.push(' ');
            }
            out.push_str(s);
        };
        match (t.kind, t.text.as_str()) {
            (Kind::Ident, "and") => piece("&&", &mut out),
            (Kind::Ident, "or") => piece("||", &mut out),
            (Kind::Ident, "not") => {
                if toks.get(i + 1).is_some_and(|n| n.text == "in") {
                    return Err("`not in` has no direct CEL form; write `!(x in list)`".into());
                }
                piece("!", &mut out);
            }
            (Kind::Ident, "nil") => piece("null", &mut out),
            (Kind::Ident, "true" | "false" | "in" | "result") => piece(&t.text, &mut out),
            (Kind::Ident, "matches" | "contains" | "startsWith" | "endsWith") if !next_is_call => {
                return Err(format!(
                    "the `{}` operator has no direct CEL form; write it as a method call, e.g. `s.{}(\"...\")`",
                    t.text, t.text
                ));
            }
            (Kind::Ident, "let") => return Err("`let` has no CEL form".into()),
            (Kind::Ident, name) if next_is_call => {
                let (args, end) = call_args(toks, i + 1)?;
                let method = i > 0 && toks[i - 1].text == ".";
                let text = if method {
                    // `s.contains("x")` is a CEL method call already.
                    let parts = args
                        .iter()
                        .map(|a| convert(a, var).map(|s| s.trim().to_string()))
                        .collect::<Result<Vec<_>, _>>()?;
                    format!("{name}({})", parts.join(", "))
                } else {
                    call(name, &args, var)?
                };
                piece(&text, &mut out);
                i = end;
            }
            (Kind::Ident, name) => {
                let after_dot = i > 0 && toks[i - 1].text == ".";
                if !after_dot && var != Some(name) {
                    return Err(format!("`{name}` is not something a condition can name (only `result` and the functions Sluice knows)"));
                }
                piece(name, &mut out);
            }
            (Kind::Punct, "#") => match var {
                Some(v) => piece(v, &mut out),
                None => return Err("`#` is only meaningful inside a predicate such as `all(result, {# > 0})`".into()),
            },
            (Kind::Punct, ".") if var.is_some() && starts_operand(toks, i) => {
                // `{.field}` in a predicate means `#.field`.
                piece(&format!("{}.", var.unwrap_or("x")), &mut out);
            }
            (Kind::Punct, op @ ("**" | "^")) => return Err(format!("`{op}` (power) has no CEL form")),
            (Kind::Punct, "??") => return Err("`??` has no CEL form; use `default(x, fallback)`".into()),
            (Kind::Punct, "?.") => return Err("optional chaining `?.` has no CEL form; use `has(x.field)` or `default(x.field, fallback)`".into()),
            (Kind::Punct, "..") => return Err("ranges `a..b` have no CEL form".into()),
            (Kind::Punct, "|") => return Err("pipes `|` have no CEL form".into()),
            (Kind::Punct, "{" | "}") => return Err("map literals and predicates outside all/any/none/one/filter/map/count have no CEL form here".into()),
            (Kind::Punct, "[") => {
                bracket_depth += 1;
                piece("[", &mut out);
            }
            (Kind::Punct, "]") => {
                bracket_depth = bracket_depth.saturating_sub(1);
                piece("]", &mut out);
            }
            (Kind::Punct, ":") if bracket_depth > 0 => return Err("slices `x[a:b]` have no CEL form".into()),
            _ => piece(&t.text, &mut out),
        }
        i += 1;
    }
    Ok(out)
}

/// Whether token `i` starts an operand (nothing before it, or an operator or opening).
fn starts_operand(toks: &[Tok], i: usize) -> bool {
    i == 0
        || toks.get(i - 1).is_some_and(|p| {
            p.kind == Kind::Punct && !matches!(p.text.as_str(), ")" | "]" | "}")
                || p.kind == Kind::Ident && matches!(p.text.as_str(), "and" | "or" | "not" | "in")
        })
}

/// The arguments of the call whose `(` is at `open`, split at top-level commas, and the
/// index of its `)`.
fn call_args(toks: &[Tok], open: usize) -> Result<(Vec<Vec<Tok>>, usize), String> {
    let mut args = vec![Vec::new()];
    let mut depth = 0usize;
    for (j, t) in toks.iter().enumerate().skip(open + 1) {
        match t.text.as_str() {
            "(" | "[" | "{" => depth += 1,
            ")" if depth == 0 => {
                if args.len() == 1 && args[0].is_empty() {
                    args.clear();
                }
                return Ok((args, j));
            }
            ")" | "]" | "}" => depth = depth.saturating_sub(1),
            "," if depth == 0 => {
                args.push(Vec::new());
                continue;
            }
            _ => {}
        }
        if let Some(last) = args.last_mut() {
            last.push(t.clone());
        }
    }
    Err("a `(` is not closed".into())
}

/// One function call in CEL.
fn call(name: &str, args: &[Vec<Tok>], var: Option<&str>) -> Result<String, String> {
    let conv = |a: &[Tok]| convert(a, var).map(|s| s.trim().to_string());
    let plain = |cel_name: &str| -> Result<String, String> {
        let parts = args
            .iter()
            .map(|a| conv(a))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(format!("{cel_name}({})", parts.join(", ")))
    };
    match name {
        n if SAME_FUNCTIONS.contains(&n) => plain(n),
        "asInt" => plain("int"),
        "asFloat" | "float" => plain("double"),
        "isNil" => match args {
            [a] => Ok(format!("({} == null)", conv(a)?)),
            _ => Err("isNil takes one argument".into()),
        },
        n if CLOSURES.iter().any(|(c, _)| *c == n) => closure(n, args, var),
        // A method call after a `.` (`s.contains("x")`) is CEL already.
        other => Err(format!(
            "expr-lang's `{other}()` has no counterpart Sluice knows (Sluice's conditions have CEL's functions plus isNaN, isInf, len and default)"
        )),
    }
}

/// `all(xs, {pred})` and its kin, as CEL macros over a fresh variable.
fn closure(name: &str, args: &[Vec<Tok>], var: Option<&str>) -> Result<String, String> {
    let [coll, pred] = args else {
        return Err(format!(
            "`{name}` takes a collection and a predicate in braces"
        ));
    };
    let body = match pred.as_slice() {
        [open, inner @ .., close] if open.text == "{" && close.text == "}" => inner,
        _ => {
            return Err(format!(
                "`{name}`'s second argument must be a predicate in braces, such as {{# > 0}}"
            ));
        }
    };
    // Nested predicates get their own name, so an outer `#` is never shadowed by mistake.
    let inner_var = match var {
        None => "x",
        Some("x") => "y",
        Some(_) => "z",
    };
    let coll = convert(coll, var)?.trim().to_string();
    let coll = if coll
        .chars()
        .all(|c| c.is_alphanumeric() || "_.[]".contains(c))
    {
        coll
    } else {
        format!("({coll})")
    };
    let body = convert(body, Some(inner_var))?.trim().to_string();
    let macro_name = CLOSURES
        .iter()
        .find(|(c, _)| *c == name)
        .map_or(name, |(_, m)| m);
    let call = format!("{coll}.{macro_name}({inner_var}, {body})");
    Ok(match name {
        "none" => format!("!{call}"),
        "count" => format!("size({call})"),
        _ => call,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Converted, then compiled by Sluice's own compiler (placeholders as a number).
    fn cel(expr: &str) -> String {
        let out = to_cel(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
        let filled = regex::Regex::new(r"\{\{[^}]*\}\}")
            .expect("re")
            .replace_all(&out, "1");
        crate::analysis::condition::check(&filled)
            .unwrap_or_else(|e| panic!("{expr} -> {out}: {e}"));
        out
    }

    #[test]
    fn conversions() {
        let table = [
            ("result[0] >= 0.95", "result[0] >= 0.95"),
            ("result >= 0.95", "result >= 0.95"),
            (
                "result[0] >= 0.95 && result[0] <= 1",
                "result[0] >= 0.95 && result[0] <= 1",
            ),
            (
                "result[0] >= 0.95 and result[0] <= 1",
                "result[0] >= 0.95 && result[0] <= 1",
            ),
            ("len(result) > 0", "len(result) > 0"),
            ("isNaN(result[0])", "isNaN(result[0])"),
            (
                "isNaN(result[0]) or result[0] < 0.05",
                "isNaN(result[0]) || result[0] < 0.05",
            ),
            (
                "not isNaN(result[0]) and result[0] < 5",
                "! isNaN(result[0]) && result[0] < 5",
            ),
            ("!isInf(result)", "!isInf(result)"),
            (
                "default(result[0], 0) >= 0.9",
                "default(result[0], 0) >= 0.9",
            ),
            ("asInt(result) == 200", "int(result) == 200"),
            ("asFloat(result) >= 0.90", "double(result) >= 0.90"),
            ("result == 'true'", "result == 'true'"),
            ("result.ok == true", "result.ok == true"),
            ("isNil(result)", "(result == null)"),
            ("result != nil", "result != null"),
            ("result[0] < 1_000", "result[0] < 1000"),
            (
                "result[0] >= {{args.min-rate}}",
                "result[0] >= {{args.min-rate}}",
            ),
            (
                "result[0] >= {{ args.threshold }}",
                "result[0] >= {{ args.threshold }}",
            ),
            ("all(result, {# > 0.9})", "result.all(x, x > 0.9)"),
            ("any(result, {# < 0.5})", "result.exists(x, x < 0.5)"),
            ("none(result, {isNaN(#)})", "!result.exists(x, isNaN(x))"),
            ("one(result, {# == 1})", "result.exists_one(x, x == 1)"),
            (
                "count(result, {# > 1}) >= 2",
                "size(result.filter(x, x > 1)) >= 2",
            ),
            (
                "all(result.items, {.status == 'up'})",
                "result.items.all(x, x.status == 'up')",
            ),
            ("result in [200, 201]", "result in [200, 201]"),
            (
                "result[0] > 0 ? result[0] < 5 : true",
                "result[0] > 0 ? result[0] < 5 : true",
            ),
            (
                "result.status.contains('ok')",
                "result.status.contains('ok')",
            ),
        ];
        for (argo, want) in table {
            assert_eq!(cel(argo), want, "{argo}");
        }
    }

    #[test]
    fn refusals_say_why() {
        let table = [
            ("result[0] ** 2 > 4", "power"),
            ("result ?? 0 > 1", "??"),
            ("result?.ok == true", "?."),
            ("abs(result[0]) < 1", "`abs()`"),
            ("result matches '^ok'", "`matches` operator"),
            ("result.status contains 'ok'", "`contains` operator"),
            ("result not in [500]", "`not in`"),
            ("result[0:2] == [1, 2]", "slices"),
            ("result in 1..3", "ranges"),
            ("`raw` == result", "backtick"),
            ("foo > 1", "`foo` is not something"),
            ("# > 1", "predicate"),
            ("{a: 1} == result", "map literals"),
            ("result[0] > {{args.x", "unclosed"),
            ("all(result, # > 1)", "predicate in braces"),
        ];
        for (argo, why) in table {
            match to_cel(argo) {
                Ok(out) => panic!("{argo} converted to {out}, but must be refused ({why})"),
                Err(e) => assert!(e.contains(why), "{argo}: {e}"),
            }
        }
    }
}
