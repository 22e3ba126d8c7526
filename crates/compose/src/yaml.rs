//! YAML to a tree that remembers where every value came from.
//!
//! serde-based YAML crates drop positions, and compose errors must name the
//! file, line and column; so the tree is built here from `yaml-rust2` events.
//! Anchors, aliases and `<<` merge keys are resolved while building, and the
//! compose-spec tags `!reset` and `!override` are kept on the node for the
//! merge step. Plain scalars are resolved with the YAML 1.2 core schema (as
//! compose-go does), so `8080:80` stays a string.

use indexmap::IndexMap;
use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Deeper nesting than this is refused: later passes recurse over the tree.
const MAX_DEPTH: usize = 128;
/// Upper bounds on nodes and on the bytes of their text once aliases are
/// expanded, so alias bombs ("billion laughs", or one long string aliased
/// many times) fail fast in bounded memory.
const MAX_NODES: usize = 1_000_000;
const MAX_BYTES: usize = 64 << 20;

/// A position in a source file, both 1-based.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mark {
    pub line: usize,
    pub column: usize,
    /// Which loaded file the value came from (an index kept by the loader).
    pub file: u32,
}

/// The compose-spec merge tags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tag {
    /// `!reset`: drop the value inherited from earlier files.
    Reset,
    /// `!override`: replace the inherited value instead of merging into it.
    Override,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Value,
    pub mark: Mark,
    pub tag: Option<Tag>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    Seq(Vec<Node>),
    Map(IndexMap<String, Node>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct YamlError {
    pub mark: Mark,
    pub message: String,
}

impl Node {
    pub fn new(value: Value, mark: Mark) -> Node {
        Node {
            value,
            mark,
            tag: None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&IndexMap<String, Node>> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_map_mut(&mut self) -> Option<&mut IndexMap<String, Node>> {
        match &mut self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&Vec<Node>> {
        match &self.value {
            Value::Seq(s) => Some(s),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map().and_then(|m| m.get(key))
    }

    /// Record which file every node of this tree came from.
    pub fn stamp(&mut self, file: u32) {
        self.mark.file = file;
        match &mut self.value {
            Value::Seq(items) => items.iter_mut().for_each(|n| n.stamp(file)),
            Value::Map(m) => m.values_mut().for_each(|n| n.stamp(file)),
            _ => {}
        }
    }

    /// A scalar as text, the way compose turns YAML scalars into strings.
    pub fn scalar_text(&self) -> Option<String> {
        match &self.value {
            Value::Null => Some(String::new()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(format_float(*f)),
            Value::String(s) => Some(s.clone()),
            Value::Seq(_) | Value::Map(_) => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match &self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::String(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// Convert to JSON (for schema validation and serde into typed structs).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(J::Number)
                .unwrap_or_else(|| J::String(format_float(*f))),
            Value::String(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(m) => J::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()),
        }
    }

    /// Build a tree from JSON; every node gets `mark`.
    pub fn from_json(json: &serde_json::Value, mark: Mark) -> Node {
        use serde_json::Value as J;
        let value = match json {
            J::Null => Value::Null,
            J::Bool(b) => Value::Bool(*b),
            J::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(0.0)),
            },
            J::String(s) => Value::String(s.clone()),
            J::Array(a) => Value::Seq(a.iter().map(|v| Node::from_json(v, mark)).collect()),
            J::Object(o) => Value::Map(
                o.iter()
                    .map(|(k, v)| (k.clone(), Node::from_json(v, mark)))
                    .collect(),
            ),
        };
        Node::new(value, mark)
    }
}

pub fn format_float(f: f64) -> String {
    if f.is_nan() {
        ".nan".into()
    } else if f.is_infinite() {
        if f > 0.0 { ".inf" } else { "-.inf" }.into()
    } else {
        f.to_string()
    }
}

/// Parse every document of a YAML stream.
pub fn parse(source: &str) -> Result<Vec<Node>, YamlError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(source);
    // Events are pulled one by one rather than through `Parser::load`, which
    // recurses once per nesting level and overflows the stack on a deep
    // document before the builder's depth limit can refuse it.
    loop {
        let (event, marker) = parser.next_token().map_err(|e| {
            let m = e.marker();
            YamlError {
                mark: Mark {
                    line: m.line(),
                    column: m.col() + 1,
                    file: 0,
                },
                message: e.info().to_string(),
            }
        })?;
        let end = event == Event::StreamEnd;
        builder.on_event(event, marker);
        if let Some(err) = builder.error.take() {
            return Err(err);
        }
        if end {
            return Ok(builder.documents);
        }
    }
}

enum Frame {
    Seq {
        items: Vec<Node>,
        mark: Mark,
        tag: Option<Tag>,
        anchor: usize,
    },
    Map {
        entries: IndexMap<String, Node>,
        key_lines: HashMap<String, usize>,
        pending_key: Option<(String, Mark)>,
        merges: Vec<Node>,
        mark: Mark,
        tag: Option<Tag>,
        anchor: usize,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    documents: Vec<Node>,
    nodes: usize,
    bytes: usize,
    error: Option<YamlError>,
}

fn mark_of(m: Marker) -> Mark {
    Mark {
        line: m.line(),
        column: m.col() + 1,
        file: 0,
    }
}

/// Nodes and bytes of text (keys and strings) in a tree.
fn size_of(node: &Node) -> (usize, usize) {
    match &node.value {
        Value::Seq(items) => items.iter().map(size_of).fold((1, 0), add),
        Value::Map(m) => m
            .iter()
            .map(|(k, v)| add(size_of(v), (0, k.len())))
            .fold((1, 0), add),
        Value::String(s) => (1, s.len()),
        _ => (1, 0),
    }
}

fn add(a: (usize, usize), b: (usize, usize)) -> (usize, usize) {
    (a.0.saturating_add(b.0), a.1.saturating_add(b.1))
}

fn merge_tag(tag: &Option<yaml_rust2::parser::Tag>) -> Option<Tag> {
    match tag {
        Some(t) if t.handle == "!" && t.suffix == "reset" => Some(Tag::Reset),
        Some(t) if t.handle == "!" && t.suffix == "override" => Some(Tag::Override),
        _ => None,
    }
}

fn resolve_plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::Float(f64::INFINITY)
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    // A leading zero means octal, as go-yaml (and so compose-go) reads
    // `mode: 0440`; YAML 1.2 proper would say decimal 440.
    if unsigned.len() > 1
        && unsigned.starts_with('0')
        && unsigned.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        if let Ok(i) = i64::from_str_radix(unsigned, 8) {
            return Value::Int(if text.starts_with('-') { -i } else { i });
        }
    }
    if !unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(i) = text.parse::<i64>() {
            return Value::Int(i);
        }
    }
    if let Some(hex) = text.strip_prefix("0x") {
        if let Ok(i) = i64::from_str_radix(hex, 16) {
            return Value::Int(i);
        }
    }
    if let Some(oct) = text.strip_prefix("0o") {
        if let Ok(i) = i64::from_str_radix(oct, 8) {
            return Value::Int(i);
        }
    }
    if looks_like_float(unsigned) {
        if let Ok(f) = text.parse::<f64>() {
            return Value::Float(f);
        }
    }
    Value::String(text.to_string())
}

/// YAML 1.2 core float: `(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`.
fn looks_like_float(s: &str) -> bool {
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((int, frac)) => {
            (int.bytes().all(|b| b.is_ascii_digit()) && frac.bytes().all(|b| b.is_ascii_digit()))
                && !(int.is_empty() && frac.is_empty())
        }
        None => !mantissa.is_empty() && mantissa.bytes().all(|b| b.is_ascii_digit()),
    };
    let exponent_ok = match exponent {
        None => true,
        Some(e) => {
            let digits = e.strip_prefix(['-', '+']).unwrap_or(e);
            !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
        }
    };
    mantissa_ok && exponent_ok
}

fn resolve_tagged(text: &str, tag: &yaml_rust2::parser::Tag) -> Value {
    if tag.handle == "tag:yaml.org,2002:" || tag.handle == "!!" {
        return match tag.suffix.as_str() {
            "str" => Value::String(text.to_string()),
            "null" => Value::Null,
            _ => resolve_plain(text),
        };
    }
    resolve_plain(text)
}

impl Builder {
    /// Account for `nodes` more nodes holding `bytes` of text; false (and the
    /// error set) once the document is over the limits.
    fn grow(&mut self, nodes: usize, bytes: usize, mark: Mark) -> bool {
        self.nodes = self.nodes.saturating_add(nodes);
        self.bytes = self.bytes.saturating_add(bytes);
        if self.nodes > MAX_NODES || self.bytes > MAX_BYTES {
            self.fail(
                mark,
                format!(
                    "document too large once aliases are expanded (limits: {MAX_NODES} values, {} MiB of text); an alias bomb?",
                    MAX_BYTES >> 20
                ),
            );
            return false;
        }
        true
    }

    fn fail(&mut self, mark: Mark, message: String) {
        if self.error.is_none() {
            self.error = Some(YamlError { mark, message });
        }
    }

    /// Attach a finished node to its parent (or finish the document).
    fn push_node(&mut self, node: Node, anchor: usize) {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        if let Err((mark, message)) = self.attach(node) {
            self.fail(mark, message);
        }
    }

    fn attach(&mut self, node: Node) -> Result<(), (Mark, String)> {
        let Some(frame) = self.stack.last_mut() else {
            self.documents.push(node);
            return Ok(());
        };
        match frame {
            Frame::Seq { items, .. } => items.push(node),
            Frame::Map {
                entries,
                key_lines,
                pending_key,
                merges,
                ..
            } => match pending_key.take() {
                None => {
                    let key = node
                        .scalar_text()
                        .ok_or((node.mark, "mapping keys must be scalars".to_string()))?;
                    *pending_key = Some((key, node.mark));
                }
                Some((key, _)) if key == "<<" => {
                    merges.push(node);
                }
                Some((key, key_mark)) => {
                    if let Some(line) = key_lines.get(&key) {
                        let message = format!("mapping key {key:?} already defined at line {line}");
                        return Err((key_mark, message));
                    }
                    key_lines.insert(key.clone(), key_mark.line);
                    let mut node = node;
                    // A collection's own start mark is where its first token
                    // was scanned; people look for the key that holds it.
                    if matches!(node.value, Value::Map(_) | Value::Seq(_)) {
                        node.mark = key_mark;
                    }
                    entries.insert(key, node);
                }
            },
        }
        Ok(())
    }

    fn finish_map(
        &mut self,
        mut entries: IndexMap<String, Node>,
        merges: Vec<Node>,
        mark: Mark,
    ) -> Option<Node> {
        // Explicit keys win over merged ones; among merged maps the first wins.
        for merge in merges {
            let sources = match merge.value {
                Value::Map(m) => vec![m],
                Value::Seq(items) => {
                    let mut maps = Vec::new();
                    for item in items {
                        match item.value {
                            Value::Map(m) => maps.push(m),
                            _ => {
                                self.fail(item.mark, "merge key `<<` expects mappings".into());
                                return None;
                            }
                        }
                    }
                    maps
                }
                _ => {
                    self.fail(
                        merge.mark,
                        "merge key `<<` expects a mapping or a list of mappings".into(),
                    );
                    return None;
                }
            };
            for source in sources {
                for (k, v) in source {
                    entries.entry(k).or_insert(v);
                }
            }
        }
        Some(Node::new(Value::Map(entries), mark))
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, marker: Marker) {
        if self.error.is_some() {
            return;
        }
        let mark = mark_of(marker);
        match ev {
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
            // Anchors are per document.
            Event::DocumentStart => self.anchors.clear(),
            Event::Alias(id) => match self.anchors.get(&id).map(size_of) {
                Some((nodes, bytes)) => {
                    // Counted before cloning: the clone is what would exhaust memory.
                    if !self.grow(nodes, bytes, mark) {
                        return;
                    }
                    if let Some(mut node) = self.anchors.get(&id).cloned() {
                        node.mark = mark;
                        self.push_node(node, 0);
                    }
                }
                None => self.fail(mark, "unknown anchor".into()),
            },
            Event::Scalar(text, style, anchor, tag) => {
                if !self.grow(1, text.len(), mark) {
                    return;
                }
                let value = match (&style, &tag) {
                    (_, Some(t)) if merge_tag(&tag).is_none() => resolve_tagged(&text, t),
                    (TScalarStyle::Plain, _) => resolve_plain(&text),
                    _ => Value::String(text),
                };
                let node = Node {
                    value,
                    mark,
                    tag: merge_tag(&tag),
                };
                self.push_node(node, anchor);
            }
            Event::SequenceStart(anchor, ref tag) | Event::MappingStart(anchor, ref tag) => {
                self.nodes += 1;
                if self.stack.len() >= MAX_DEPTH {
                    self.fail(mark, format!("nesting deeper than {MAX_DEPTH} levels"));
                    return;
                }
                let tag = merge_tag(tag);
                let is_seq = matches!(ev, Event::SequenceStart(..));
                self.stack.push(if is_seq {
                    Frame::Seq {
                        items: Vec::new(),
                        mark,
                        tag,
                        anchor,
                    }
                } else {
                    Frame::Map {
                        entries: IndexMap::new(),
                        key_lines: HashMap::new(),
                        pending_key: None,
                        merges: Vec::new(),
                        mark,
                        tag,
                        anchor,
                    }
                });
            }
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Seq {
                    items,
                    mark,
                    tag,
                    anchor,
                }) => {
                    let mut node = Node::new(Value::Seq(items), mark);
                    node.tag = tag;
                    self.push_node(node, anchor);
                }
                Some(Frame::Map {
                    entries,
                    merges,
                    mark,
                    tag,
                    anchor,
                    ..
                }) => {
                    if let Some(mut node) = self.finish_map(entries, merges, mark) {
                        node.tag = tag;
                        self.push_node(node, anchor);
                    }
                }
                None => self.fail(mark, "unbalanced collection end".into()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(src: &str) -> Node {
        let mut docs = parse(src).expect("parses");
        docs.remove(0)
    }

    #[test]
    fn scalars_follow_yaml_1_2_core() {
        let n = one("a: 8080:80\nb: 12\nc: 1.5\nd: yes\ne: ~\nf: '12'\ng: true\nh: 0x1F\n");
        assert_eq!(n.get("a").unwrap().value, Value::String("8080:80".into()));
        assert_eq!(n.get("b").unwrap().value, Value::Int(12));
        assert_eq!(n.get("c").unwrap().value, Value::Float(1.5));
        assert_eq!(n.get("d").unwrap().value, Value::String("yes".into()));
        assert_eq!(n.get("e").unwrap().value, Value::Null);
        assert_eq!(n.get("f").unwrap().value, Value::String("12".into()));
        assert_eq!(n.get("g").unwrap().value, Value::Bool(true));
        assert_eq!(n.get("h").unwrap().value, Value::Int(31));
    }

    #[test]
    fn anchors_aliases_and_merge_keys() {
        let n = one(
            "base: &b {image: a, tty: true}\nsvc:\n  <<: *b\n  image: c\nlist: &l [1, 2]\nother: *l\n",
        );
        let svc = n.get("svc").unwrap();
        assert_eq!(svc.get("image").unwrap().as_str(), Some("c"));
        assert_eq!(svc.get("tty").unwrap().value, Value::Bool(true));
        assert_eq!(n.get("other").unwrap().as_seq().unwrap().len(), 2);
    }

    #[test]
    fn merge_list_first_wins() {
        let n = one("a: &a {x: 1}\nb: &b {x: 2, y: 2}\nc:\n  <<: [*a, *b]\n");
        let c = n.get("c").unwrap();
        assert_eq!(c.get("x").unwrap().value, Value::Int(1));
        assert_eq!(c.get("y").unwrap().value, Value::Int(2));
    }

    #[test]
    fn tags_are_kept() {
        let n = one("ports: !reset []\nenv: !override {A: b}\n");
        assert_eq!(n.get("ports").unwrap().tag, Some(Tag::Reset));
        assert_eq!(n.get("env").unwrap().tag, Some(Tag::Override));
    }

    #[test]
    fn duplicate_keys_name_the_first_line() {
        let err = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(err.mark.line, 3);
        assert!(err.message.contains("already defined at line 1"), "{err}");
    }

    #[test]
    fn syntax_error_has_position() {
        let err = parse("services:\n  app:\n    image: a: b\n").unwrap_err();
        assert_eq!(err.mark.line, 3);
    }

    #[test]
    fn alias_bomb_is_refused() {
        let mut src = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            src.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let err = parse(&src).unwrap_err();
        assert!(err.message.contains("alias bomb"), "{err}");
    }

    #[test]
    fn deep_nesting_is_refused() {
        let src = "[".repeat(10_000);
        assert!(parse(&src).is_err());
    }
}
