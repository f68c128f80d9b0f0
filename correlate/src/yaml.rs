//! A YAML tree that remembers the line of every node, so that a bad rule is
//! reported with its line. Built on `yaml-rust2`'s event parser.

use std::collections::HashMap;

use yaml_rust2::parser::{MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};
use yaml_rust2::Event;

/// One YAML node and the (1-based) line it starts on.
#[derive(Debug, Clone)]
pub struct Node {
    /// What the node holds.
    pub value: Value,
    /// 1-based line in the file.
    pub line: usize,
}

/// The value of a node. Mapping keys are kept as text, in file order.
#[derive(Debug, Clone)]
pub enum Value {
    /// A scalar; `plain` is false for quoted and block scalars.
    Scalar {
        /// The text of the scalar.
        text: String,
        /// Written without quotes (so `null`, `~` and numbers mean what YAML says).
        plain: bool,
    },
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping: key, key line, value.
    Map(Vec<(String, usize, Node)>),
}

impl Node {
    /// The text of a scalar node.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// True for a plain `null`, `~` or empty scalar.
    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, plain: true } if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// The entries of a mapping node.
    pub fn as_map(&self) -> Option<&[(String, usize, Node)]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// The items of a sequence node.
    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(items) => Some(items),
            _ => None,
        }
    }

    /// The value under `key` in a mapping node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, _, node)| node)
    }

    /// A short word for error messages.
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Scalar { .. } => "a scalar",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// A YAML syntax error with its line.
#[derive(Debug, Clone)]
pub struct SyntaxError {
    /// 1-based line.
    pub line: usize,
    /// What the parser said.
    pub reason: String,
}

/// Parses every document of a (multi-document) YAML text.
pub fn load_documents(text: &str) -> Result<Vec<Node>, SyntaxError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser
        .load(&mut builder, true)
        .map_err(|error| SyntaxError {
            line: error.marker().line(),
            reason: error.info().to_string(),
        })?;
    if let Some(error) = builder.error {
        return Err(error);
    }
    Ok(builder.documents)
}

enum Frame {
    Seq(Vec<Node>, usize, usize),
    Map(
        Vec<(String, usize, Node)>,
        Option<(String, usize)>,
        usize,
        usize,
    ),
}

#[derive(Default)]
struct Builder {
    documents: Vec<Node>,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    error: Option<SyntaxError>,
}

impl Builder {
    fn finish_node(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.documents.push(node),
            Some(Frame::Seq(items, _, _)) => items.push(node),
            Some(Frame::Map(entries, pending, _, _)) => match pending.take() {
                Some((key, key_line)) => entries.push((key, key_line, node)),
                None => match node.value {
                    Value::Scalar { text, .. } => *pending = Some((text, node.line)),
                    _ => {
                        if self.error.is_none() {
                            self.error = Some(SyntaxError {
                                line: node.line,
                                reason: "a mapping key must be a plain text".into(),
                            });
                        }
                        *pending = Some((String::new(), node.line));
                    }
                },
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        let line = mark.line();
        match event {
            Event::Scalar(text, style, anchor, _) => {
                let plain = style == TScalarStyle::Plain;
                self.finish_node(
                    Node {
                        value: Value::Scalar { text, plain },
                        line,
                    },
                    anchor,
                );
            }
            Event::SequenceStart(anchor, _) => {
                self.stack.push(Frame::Seq(Vec::new(), line, anchor))
            }
            Event::MappingStart(anchor, _) => {
                self.stack.push(Frame::Map(Vec::new(), None, line, anchor))
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Frame::Seq(items, line, anchor)) => (
                        Node {
                            value: Value::Seq(items),
                            line,
                        },
                        anchor,
                    ),
                    Some(Frame::Map(entries, _, line, anchor)) => (
                        Node {
                            value: Value::Map(entries),
                            line,
                        },
                        anchor,
                    ),
                    None => return,
                };
                self.finish_node(node, anchor);
            }
            Event::Alias(anchor) => {
                let node = self.anchors.get(&anchor).cloned().unwrap_or(Node {
                    value: Value::Scalar {
                        text: String::new(),
                        plain: true,
                    },
                    line,
                });
                self.finish_node(node, 0);
            }
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_keys_and_values() {
        let docs = load_documents("a: 1\nb:\n  - x\n  - 'y'\n---\nc: {d: e}\n").unwrap();
        assert_eq!(docs.len(), 2);
        let map = docs[0].as_map().unwrap();
        assert_eq!(map[1].0, "b");
        assert_eq!(map[1].1, 2);
        let seq = map[1].2.as_seq().unwrap();
        assert_eq!(seq[1].line, 4);
        assert!(matches!(&seq[1].value, Value::Scalar { plain: false, .. }));
        assert_eq!(
            docs[1].get("c").unwrap().get("d").unwrap().as_str(),
            Some("e")
        );
    }

    #[test]
    fn syntax_error_has_a_line() {
        let error = load_documents("a: 1\nb: [x\nc: 2\n").unwrap_err();
        assert!(error.line >= 2, "{error:?}");
    }
}
