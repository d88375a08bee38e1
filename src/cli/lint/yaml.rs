//! YAML documents as trees that remember the line of every node, so a finding about
//! `spec.strategy.canary.steps[2].setWeight` can name the line it is on.
//!
//! serde-saphyr (already Sluice's YAML parser) reports each node's position through
//! [`serde_saphyr::Spanned`]; [`Node`] keeps that position for every scalar, sequence item and
//! mapping key.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_saphyr::Spanned;

/// A YAML node and the line (1-based) it starts on.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub line: usize,
    pub value: Tree,
}

/// The shapes a node can have.
#[derive(Clone, Debug, PartialEq)]
pub enum Tree {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in the order written, each with the line of its key.
    Map(Vec<Entry>),
}

/// One `key: value` of a mapping.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_line: usize,
    pub value: Node,
}

/// A text that is not YAML: what is wrong and where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct YamlError {
    /// 1-based; 0 when the parser did not say.
    pub line: usize,
    pub message: String,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Spanned::<Tree>::deserialize(d)?;
        Ok(Node {
            line: usize::try_from(s.referenced.line()).unwrap_or(0),
            value: s.value,
        })
    }
}

impl<'de> Deserialize<'de> for Tree {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TreeVisitor)
    }
}

struct TreeVisitor;

impl<'de> Visitor<'de> for TreeVisitor {
    type Value = Tree;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Tree, E> {
        Ok(Tree::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Tree, E> {
        Ok(Tree::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Tree, E> {
        Ok(i64::try_from(v).map_or(Tree::Float(v as f64), Tree::Int))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Tree, E> {
        Ok(i64::try_from(v).map_or(Tree::Float(v as f64), Tree::Int))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Tree, E> {
        Ok(i64::try_from(v).map_or(Tree::Float(v as f64), Tree::Int))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Tree, E> {
        Ok(Tree::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Tree, E> {
        Ok(Tree::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Tree, E> {
        Ok(Tree::Str(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Tree, E> {
        Ok(Tree::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Tree, E> {
        Ok(Tree::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Tree, D::Error> {
        Tree::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Tree, A::Error> {
        let mut items = Vec::new();
        while let Some(n) = seq.next_element::<Node>()? {
            items.push(n);
        }
        Ok(Tree::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Tree, A::Error> {
        let mut entries = Vec::new();
        while let Some(k) = map.next_key::<Spanned<String>>()? {
            let value = map.next_value::<Node>()?;
            entries.push(Entry {
                key: k.value,
                key_line: usize::try_from(k.referenced.line()).unwrap_or(0),
                value,
            });
        }
        Ok(Tree::Map(entries))
    }
}

/// Every document of a YAML stream, empty ones left out (as kubectl does).
pub fn parse_documents(text: &str) -> Result<Vec<Node>, YamlError> {
    let docs: Vec<Option<Node>> =
        serde_saphyr::from_str_multiple(text).map_err(|e| yaml_error(&e))?;
    Ok(docs
        .into_iter()
        .flatten()
        .filter(|n| n.value != Tree::Null)
        .collect())
}

fn yaml_error(e: &serde_saphyr::Error) -> YamlError {
    let line = e
        .location()
        .map(|l| usize::try_from(l.line()).unwrap_or(0))
        .unwrap_or(0);
    let message = e.to_string();
    // The parser's message may repeat a code snippet over several lines; the first says it.
    let first = message.lines().next().unwrap_or("not YAML").trim();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    let first = first
        .split(", set DuplicateKeyPolicy")
        .next()
        .unwrap_or(first)
        .to_string();
    YamlError {
        line,
        message: first,
    }
}

impl Node {
    /// The same value as JSON, as the API server reads it.
    pub fn to_json(&self) -> Value {
        match &self.value {
            Tree::Null => Value::Null,
            Tree::Bool(b) => Value::Bool(*b),
            Tree::Int(i) => Value::from(*i),
            Tree::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Tree::Str(s) => Value::String(s.clone()),
            Tree::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            Tree::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|e| (e.key.clone(), e.value.to_json()))
                    .collect(),
            ),
        }
    }

    /// The line of every path in the document (`spec.steps[2].setWeight`): a key's line for a
    /// mapping entry, an item's line for a sequence item.
    pub fn lines(&self) -> Lines {
        let mut out = BTreeMap::new();
        out.insert(String::new(), self.line);
        collect(self, "", &mut out);
        Lines(out)
    }
}

fn collect(node: &Node, at: &str, out: &mut BTreeMap<String, usize>) {
    match &node.value {
        Tree::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                let path = format!("{at}[{i}]");
                out.insert(path.clone(), item.line);
                collect(item, &path, out);
            }
        }
        Tree::Map(entries) => {
            for e in entries {
                let path = join(at, &e.key);
                out.entry(path.clone()).or_insert(e.key_line);
                collect(&e.value, &path, out);
            }
        }
        _ => {}
    }
}

/// `at.key`, or `at["key"]` for a key that is not a plain identifier (`sluice.dev/x`).
pub fn join(at: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (at.is_empty(), plain) {
        (true, true) => key.to_string(),
        (false, true) => format!("{at}.{key}"),
        (_, false) => format!("{at}[{key:?}]"),
    }
}

/// Paths of one document and their lines.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Lines(BTreeMap<String, usize>);

impl Lines {
    /// The line of `path`, or of the nearest enclosing node written in the document (a
    /// missing field is reported where its parent is).
    pub fn of(&self, path: &str) -> usize {
        let mut p = path;
        loop {
            if let Some(l) = self.0.get(p) {
                return *l;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => return self.0.get("").copied().unwrap_or(0),
            }
        }
    }
}

/// A path's segments: `spec.steps[2]["a.b"]` is `Key(spec) Key(steps) Index(2) Key(a.b)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// Splits a path as [`join`] writes it.
pub fn segments(path: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("[\"") {
            let end = after.find("\"]").unwrap_or(after.len());
            out.push(Segment::Key(after[..end].to_string()));
            rest = after.get(end + 2..).unwrap_or("");
        } else if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']').unwrap_or(after.len());
            out.push(Segment::Index(after[..end].parse().unwrap_or(usize::MAX)));
            rest = after.get(end + 1..).unwrap_or("");
        } else {
            let body = rest.strip_prefix('.').unwrap_or(rest);
            let end = body.find(['.', '[']).unwrap_or(body.len());
            out.push(Segment::Key(body[..end].to_string()));
            rest = &body[end..];
        }
    }
    out
}

impl Node {
    /// A new node (line 0: not from a file).
    pub fn new(value: Tree) -> Node {
        Node { line: 0, value }
    }

    pub fn string(s: &str) -> Node {
        Node::new(Tree::Str(s.to_string()))
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Tree::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Tree::Map(entries) => entries.iter().find(|e| e.key == key).map(|e| &e.value),
            _ => None,
        }
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        match &mut self.value {
            Tree::Map(entries) => entries
                .iter_mut()
                .find(|e| e.key == key)
                .map(|e| &mut e.value),
            _ => None,
        }
    }

    /// Removes a key of a mapping, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<Node> {
        match &mut self.value {
            Tree::Map(entries) => {
                let i = entries.iter().position(|e| e.key == key)?;
                Some(entries.remove(i).value)
            }
            _ => None,
        }
    }

    /// Sets a key of a mapping: in place when it exists, else at the end.
    pub fn set(&mut self, key: &str, value: Node) {
        if let Tree::Map(entries) = &mut self.value {
            match entries.iter_mut().find(|e| e.key == key) {
                Some(e) => e.value = value,
                None => entries.push(Entry {
                    key: key.to_string(),
                    key_line: 0,
                    value,
                }),
            }
        }
    }

    /// The items of a sequence.
    pub fn items_mut(&mut self) -> Option<&mut Vec<Node>> {
        match &mut self.value {
            Tree::Seq(items) => Some(items),
            _ => None,
        }
    }

    pub fn at_mut(&mut self, path: &str) -> Option<&mut Node> {
        let mut cur = self;
        for s in segments(path) {
            cur = match s {
                Segment::Key(k) => cur.get_mut(&k)?,
                Segment::Index(i) => cur.items_mut()?.get_mut(i)?,
            };
        }
        Some(cur)
    }

    /// Removes the node at `path`; true when there was one.
    pub fn remove_at(&mut self, path: &str) -> bool {
        let mut segs = segments(path);
        let Some(last) = segs.pop() else {
            return false;
        };
        let parent_path = segs.iter().fold(String::new(), |acc, s| match s {
            Segment::Key(k) => join(&acc, k),
            Segment::Index(i) => format!("{acc}[{i}]"),
        });
        let Some(parent) = self.at_mut(&parent_path) else {
            return false;
        };
        match last {
            Segment::Key(k) => parent.remove(&k).is_some(),
            Segment::Index(i) => parent
                .items_mut()
                .filter(|items| i < items.len())
                .map(|items| items.remove(i))
                .is_some(),
        }
    }
}

impl serde::Serialize for Node {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match &self.value {
            Tree::Null => s.serialize_unit(),
            Tree::Bool(b) => s.serialize_bool(*b),
            Tree::Int(i) => s.serialize_i64(*i),
            Tree::Float(f) => s.serialize_f64(*f),
            Tree::Str(v) => s.serialize_str(v),
            Tree::Seq(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for i in items {
                    seq.serialize_element(i)?;
                }
                seq.end()
            }
            Tree::Map(entries) => {
                let mut map = s.serialize_map(Some(entries.len()))?;
                for e in entries {
                    map.serialize_entry(&e.key, &e.value)?;
                }
                map.end()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# a comment\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  annotations:\n    sluice.dev/x: \"1\"\nspec:\n  ports:\n    - port: 80\n      name: http\n---\n---\nkind: Other\n";

    #[test]
    fn documents_and_lines() {
        let docs = parse_documents(TEXT).expect("parses");
        assert_eq!(docs.len(), 2, "the empty document is left out");
        let lines = docs[0].lines();
        assert_eq!(lines.of("apiVersion"), 2);
        assert_eq!(lines.of("metadata.name"), 5);
        assert_eq!(lines.of("metadata.annotations[\"sluice.dev/x\"]"), 7);
        assert_eq!(lines.of("spec.ports[0]"), 10);
        assert_eq!(lines.of("spec.ports[0].name"), 11);
        assert_eq!(
            lines.of("spec.ports[0].targetPort"),
            10,
            "missing: its parent"
        );
        assert_eq!(lines.of("spec.selector"), 8);
        assert_eq!(docs[1].lines().of("kind"), 14);
    }

    #[test]
    fn scalars_keep_their_yaml_types() {
        let docs =
            parse_documents("a: 1\nb: \"1\"\nc: 1.5\nd: true\ne: null\nf: 30s\n").expect("yaml");
        let j = docs[0].to_json();
        assert_eq!(j["a"], serde_json::json!(1));
        assert_eq!(j["b"], serde_json::json!("1"));
        assert_eq!(j["c"], serde_json::json!(1.5));
        assert_eq!(j["d"], serde_json::json!(true));
        assert_eq!(j["e"], serde_json::Value::Null);
        assert_eq!(j["f"], serde_json::json!("30s"));
    }

    #[test]
    fn paths_split_edit_and_serialize_in_order() {
        assert_eq!(
            segments("spec.steps[2][\"a.b\"].x"),
            vec![
                Segment::Key("spec".into()),
                Segment::Key("steps".into()),
                Segment::Index(2),
                Segment::Key("a.b".into()),
                Segment::Key("x".into())
            ]
        );
        let mut docs =
            parse_documents("kind: K\nspec:\n  b: 1\n  a: [x, {y: \"0.5\"}]\n  z: true\n")
                .expect("yaml");
        let d = &mut docs[0];
        assert!(d.remove_at("spec.a[1].y"));
        assert!(d.remove_at("spec.z"));
        assert!(!d.remove_at("spec.nothing"));
        d.set("kind", Node::string("L"));
        d.at_mut("spec")
            .expect("spec")
            .set("c", Node::string("0.95"));
        let text = serde_saphyr::to_string(&*d).expect("yaml");
        let back = parse_documents(&text).expect("reparse");
        assert_eq!(
            back[0].to_json(),
            serde_json::json!({"kind": "L", "spec": {"b": 1, "a": ["x", {}], "c": "0.95"}})
        );
        assert!(text.find("  b:") < text.find("  c:"), "order kept: {text}");
    }

    #[test]
    fn broken_yaml_is_an_error_with_a_line() {
        let e = parse_documents("a: 1\nb: [1, 2\nc: 3\n").expect_err("not yaml");
        assert!(e.line >= 2, "{e:?}");
        let e = parse_documents("a: 1\na: 2\n").expect_err("duplicate key");
        assert_eq!(e.line, 2, "{e:?}");
    }
}
