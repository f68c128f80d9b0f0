//! Sigma detection: selections of field matchers and the `condition:` expression,
//! compiled once at load time and evaluated against one `Event`.

use std::cell::OnceCell;

use parsers::Event;
use regex::{Regex, RegexBuilder};

use crate::yaml::{Node, Value};

/// Where a matcher looks in an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// `EventID`.
    EventId,
    /// `Provider_Name` (also `Provider`).
    Provider,
    /// `Channel`.
    Channel,
    /// `Computer` (also `Hostname`).
    Computer,
    /// `Level`.
    Level,
    /// `Message`: the rendered message, or each data value when there is none.
    Message,
    /// `VmId`: the normalized VM GUID.
    VmId,
    /// `VmName`.
    VmName,
    /// `Hresult`.
    Hresult,
    /// Any other name: that EventData/UserData field.
    Data(String),
}

impl Field {
    fn parse(name: &str) -> Field {
        match name {
            "EventID" | "EventId" | "event_id" => Field::EventId,
            "Provider_Name" | "Provider" | "provider" => Field::Provider,
            "Channel" | "channel" => Field::Channel,
            "Computer" | "Hostname" | "host" => Field::Computer,
            "Level" | "level" => Field::Level,
            "Message" | "message" => Field::Message,
            "VmId" => Field::VmId,
            "VmName" => Field::VmName,
            "Hresult" | "hresult" => Field::Hresult,
            other => Field::Data(other.to_string()),
        }
    }
}

/// One way of comparing a field value.
#[derive(Debug, Clone)]
enum Pattern {
    /// Case-insensitive equality (value kept lower-case).
    Equals(String),
    Contains(Box<memchr::memmem::Finder<'static>>),
    StartsWith(String),
    EndsWith(String),
    /// Wildcards and `|re` both end up as a regex.
    Regex(Regex),
    /// `EventID: 21502`.
    Number(u32),
    /// `Field: null`: the field is absent or empty.
    Null,
}

impl Pattern {
    fn matches(&self, value: &str, lower: &mut Lower<'_>) -> bool {
        match self {
            Pattern::Regex(re) => re.is_match(value),
            Pattern::Null => value.is_empty(),
            Pattern::Number(n) => value.trim().parse::<u32>() == Ok(*n),
            Pattern::Equals(p) if lower.given.is_none() && p.is_ascii() => {
                value.eq_ignore_ascii_case(p)
            }
            Pattern::Equals(p) => lower.get(value) == p,
            Pattern::Contains(f) => f.find(lower.get(value).as_bytes()).is_some(),
            Pattern::StartsWith(p) => lower.get(value).starts_with(p.as_str()),
            Pattern::EndsWith(p) => lower.get(value).ends_with(p.as_str()),
        }
    }
}

/// The lower-case form of a value, computed once and only when needed.
struct Lower<'a> {
    given: Option<&'a str>,
    owned: Option<String>,
}

impl<'a> Lower<'a> {
    fn new(given: Option<&'a str>) -> Self {
        Lower { given, owned: None }
    }

    fn get(&mut self, value: &str) -> &str {
        match self.given {
            Some(g) => g,
            None => self.owned.get_or_insert_with(|| lowercase(value)),
        }
    }
}

/// Lower case; the ASCII fast path covers nearly every Windows message.
fn lowercase(text: &str) -> String {
    if text.is_ascii() {
        text.to_ascii_lowercase()
    } else {
        text.to_lowercase()
    }
}

/// `Field|modifiers: values`.
#[derive(Debug, Clone)]
struct FieldMatch {
    field: Field,
    patterns: Vec<Pattern>,
    /// `|all`: every pattern must match (else any).
    all: bool,
    /// `|exists: true/false`.
    exists: Option<bool>,
}

/// A named search identifier: a list of alternatives, each an AND of field matches.
#[derive(Debug, Clone)]
pub struct Selection {
    alternatives: Vec<Vec<FieldMatch>>,
}

/// A compiled `condition:`.
#[derive(Debug, Clone)]
pub enum Condition {
    /// A selection by index.
    Sel(usize),
    /// All must hold.
    And(Vec<Condition>),
    /// One must hold.
    Or(Vec<Condition>),
    /// Must not hold.
    Not(Box<Condition>),
}

/// A compile problem with the line of the node that caused it.
#[derive(Debug, Clone)]
pub struct CompileError {
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

fn err(line: usize, reason: impl Into<String>) -> CompileError {
    CompileError {
        line,
        reason: reason.into(),
    }
}

/// The values of an event one field names; `Message` may have several.
/// One view serves every rule evaluated against the event.
pub struct EventView<'e> {
    event: &'e Event,
    message_lower: OnceCell<String>,
}

impl<'e> EventView<'e> {
    /// A view of the event, for evaluating several rules.
    pub fn new(event: &'e Event) -> Self {
        EventView {
            event,
            message_lower: OnceCell::new(),
        }
    }

    fn any_value(&self, field: &Field, mut test: impl FnMut(&str, Option<&str>) -> bool) -> bool {
        let e = self.event;
        let single = |v: &str, test: &mut dyn FnMut(&str, Option<&str>) -> bool| test(v, None);
        match field {
            Field::EventId => single(&e.event_id.to_string(), &mut test),
            Field::Provider => single(&e.provider, &mut test),
            Field::Channel => single(&e.channel, &mut test),
            Field::Computer => single(&e.host, &mut test),
            Field::Level => single(e.level.as_str(), &mut test),
            Field::VmId => single(e.vm_id.as_deref().unwrap_or(""), &mut test),
            Field::VmName => single(e.vm_name.as_deref().unwrap_or(""), &mut test),
            Field::Hresult => single(e.hresult.as_deref().unwrap_or(""), &mut test),
            Field::Message => {
                if !e.message.is_empty() {
                    let lower = self.message_lower.get_or_init(|| lowercase(&e.message));
                    test(&e.message, Some(lower))
                } else if e.data.is_empty() {
                    test("", Some(""))
                } else {
                    e.data.iter().any(|(_, v)| test(v, None))
                }
            }
            Field::Data(name) => {
                let value = e
                    .data
                    .get(name)
                    .or_else(|| e.data.get_ignore_case(name))
                    .unwrap_or("");
                single(value, &mut test)
            }
        }
    }

    fn present(&self, field: &Field) -> bool {
        self.any_value(field, |v, _| !v.is_empty())
    }
}

impl FieldMatch {
    fn matches(&self, view: &EventView<'_>) -> bool {
        if let Some(want) = self.exists {
            return view.present(&self.field) == want;
        }
        if let Field::EventId = self.field {
            let id = view.event.event_id;
            let test = |p: &Pattern| match p {
                Pattern::Number(n) => *n == id,
                other => other.matches(&id.to_string(), &mut Lower::new(None)),
            };
            return if self.all {
                self.patterns.iter().all(test)
            } else {
                self.patterns.iter().any(test)
            };
        }
        view.any_value(&self.field, |value, lower| {
            let mut lower = Lower::new(lower);
            if self.all {
                self.patterns.iter().all(|p| p.matches(value, &mut lower))
            } else {
                self.patterns.iter().any(|p| p.matches(value, &mut lower))
            }
        })
    }

    /// The event ids this match admits, when it is an `EventID` equality.
    fn event_ids(&self) -> Option<Vec<u32>> {
        if self.field != Field::EventId || self.exists.is_some() || self.all {
            return None;
        }
        self.patterns
            .iter()
            .map(|p| match p {
                Pattern::Number(n) => Some(*n),
                _ => None,
            })
            .collect()
    }
}

impl Selection {
    /// Compiles a selection node: a mapping, a list of mappings, or a list of keywords.
    pub fn compile(node: &Node) -> Result<Selection, CompileError> {
        match &node.value {
            Value::Map(entries) => Ok(Selection {
                alternatives: vec![compile_map(entries)?],
            }),
            Value::Seq(items) => {
                let mut alternatives = Vec::new();
                for item in items {
                    match &item.value {
                        Value::Map(entries) => alternatives.push(compile_map(entries)?),
                        Value::Scalar { text, .. } => alternatives.push(vec![FieldMatch {
                            field: Field::Message,
                            patterns: vec![value_pattern(text, Modifier::Contains, item.line)?],
                            all: false,
                            exists: None,
                        }]),
                        Value::Seq(_) => {
                            return Err(err(
                                item.line,
                                "a selection list holds mappings or keywords, not lists",
                            ))
                        }
                    }
                }
                Ok(Selection { alternatives })
            }
            Value::Scalar { .. } => Err(err(
                node.line,
                "a selection is a mapping of field: value, or a list",
            )),
        }
    }

    fn matches(&self, view: &EventView<'_>) -> bool {
        self.alternatives
            .iter()
            .any(|fields| fields.iter().all(|m| m.matches(view)))
    }

    fn event_ids(&self) -> Option<Vec<u32>> {
        let mut ids = Vec::new();
        for fields in &self.alternatives {
            let constrained = fields.iter().find_map(FieldMatch::event_ids)?;
            ids.extend(constrained);
        }
        Some(ids)
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Modifier {
    Equals,
    Contains,
    StartsWith,
    EndsWith,
}

fn compile_map(entries: &[(String, usize, Node)]) -> Result<Vec<FieldMatch>, CompileError> {
    let mut out = Vec::with_capacity(entries.len());
    for (key, line, value) in entries {
        out.push(compile_field(key, *line, value)?);
    }
    Ok(out)
}

fn compile_field(key: &str, line: usize, value: &Node) -> Result<FieldMatch, CompileError> {
    let mut parts = key.split('|');
    let name = parts.next().unwrap_or_default();
    if name.is_empty() {
        return Err(err(line, format!("`{key}`: the field name is empty")));
    }
    let field = Field::parse(name);
    let mut modifier = Modifier::Equals;
    let mut all = false;
    let mut regex = false;
    let mut exists = false;
    let mut flags = String::new();
    for m in parts {
        match m {
            "contains" => modifier = Modifier::Contains,
            "startswith" => modifier = Modifier::StartsWith,
            "endswith" => modifier = Modifier::EndsWith,
            "all" => all = true,
            "re" => regex = true,
            "i" | "m" | "s" if regex => flags.push_str(m),
            "exists" => exists = true,
            other => {
                return Err(err(
                    line,
                    format!("`{key}`: modifier `{other}` is not supported (contains, startswith, endswith, all, re, re|i|m|s, exists)"),
                ))
            }
        }
    }
    let values: Vec<&Node> = match &value.value {
        Value::Seq(items) => items.iter().collect(),
        Value::Scalar { .. } => vec![value],
        Value::Map(_) => {
            return Err(err(
                value.line,
                format!("`{key}`: a value is a scalar or a list, not a mapping"),
            ))
        }
    };
    if exists {
        let want = match value.as_str() {
            Some("true") => true,
            Some("false") => false,
            _ => {
                return Err(err(
                    value.line,
                    format!("`{key}`: `exists` takes true or false"),
                ))
            }
        };
        return Ok(FieldMatch {
            field,
            patterns: Vec::new(),
            all: false,
            exists: Some(want),
        });
    }
    let mut patterns = Vec::with_capacity(values.len());
    for v in values {
        if v.is_null() {
            patterns.push(Pattern::Null);
            continue;
        }
        let text = v.as_str().ok_or_else(|| {
            err(
                v.line,
                format!("`{key}`: a value is a scalar, not {}", v.kind()),
            )
        })?;
        if regex {
            let mut builder = RegexBuilder::new(text);
            builder
                .case_insensitive(flags.contains('i'))
                .multi_line(flags.contains('m'))
                .dot_matches_new_line(flags.contains('s'))
                .size_limit(1 << 20);
            let re = builder.build().map_err(|e| {
                err(
                    v.line,
                    format!(
                        "`{key}`: bad regular expression: {}",
                        first_line(&e.to_string())
                    ),
                )
            })?;
            patterns.push(Pattern::Regex(re));
        } else if field == Field::EventId && modifier == Modifier::Equals {
            let n = text
                .trim()
                .parse::<u32>()
                .map_err(|_| err(v.line, format!("`{key}`: `{text}` is not an event id")))?;
            patterns.push(Pattern::Number(n));
        } else {
            patterns.push(value_pattern(text, modifier, v.line)?);
        }
    }
    if patterns.is_empty() {
        return Err(err(
            value.line,
            format!("`{key}`: the list of values is empty"),
        ));
    }
    Ok(FieldMatch {
        field,
        patterns,
        all,
        exists: None,
    })
}

fn first_line(text: &str) -> String {
    text.lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or(text)
        .trim()
        .to_string()
}

/// A plain value: Sigma wildcards `*` and `?` (escaped with `\`) make a regex,
/// anything else a lower-case comparison.
fn value_pattern(text: &str, modifier: Modifier, line: usize) -> Result<Pattern, CompileError> {
    let mut literal = String::with_capacity(text.len());
    let mut regex = String::with_capacity(text.len() + 8);
    let mut wild = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(n @ ('*' | '?' | '\\')) => {
                    literal.push(n);
                    regex.push_str(&regex::escape(&n.to_string()));
                }
                Some(n) => {
                    literal.push('\\');
                    literal.push(n);
                    regex.push_str(&regex::escape(&format!("\\{n}")));
                }
                None => {
                    literal.push('\\');
                    regex.push_str("\\\\");
                }
            },
            '*' => {
                wild = true;
                regex.push_str(".*");
            }
            '?' => {
                wild = true;
                regex.push('.');
            }
            c => {
                literal.push(c);
                regex.push_str(&regex::escape(&c.to_string()));
            }
        }
    }
    if !wild {
        let lower = literal.to_lowercase();
        return Ok(match modifier {
            Modifier::Equals => Pattern::Equals(lower),
            Modifier::Contains => Pattern::Contains(Box::new(
                memchr::memmem::Finder::new(lower.as_bytes()).into_owned(),
            )),
            Modifier::StartsWith => Pattern::StartsWith(lower),
            Modifier::EndsWith => Pattern::EndsWith(lower),
        });
    }
    let (head, tail) = match modifier {
        Modifier::Equals => ("^", "$"),
        Modifier::Contains => ("", ""),
        Modifier::StartsWith => ("^", ""),
        Modifier::EndsWith => ("", "$"),
    };
    RegexBuilder::new(&format!("{head}{regex}{tail}"))
        .case_insensitive(true)
        .dot_matches_new_line(true)
        .build()
        .map(Pattern::Regex)
        .map_err(|e| err(line, format!("bad wildcard value `{text}`: {e}")))
}

impl Condition {
    /// Parses a `condition:` text against the selection names.
    pub fn parse(text: &str, names: &[String], line: usize) -> Result<Condition, CompileError> {
        let tokens = tokenize(text);
        let mut parser = CondParser {
            tokens: &tokens,
            pos: 0,
            names,
            line,
        };
        let cond = parser.or()?;
        if parser.pos != tokens.len() {
            return Err(err(
                line,
                format!("condition `{text}`: unexpected `{}`", tokens[parser.pos]),
            ));
        }
        Ok(cond)
    }

    fn eval(&self, sels: &[Selection], view: &EventView<'_>, cache: &mut [Option<bool>]) -> bool {
        match self {
            Condition::Sel(i) => *cache[*i].get_or_insert_with(|| sels[*i].matches(view)),
            Condition::And(items) => items.iter().all(|c| c.eval(sels, view, cache)),
            Condition::Or(items) => items.iter().any(|c| c.eval(sels, view, cache)),
            Condition::Not(inner) => !inner.eval(sels, view, cache),
        }
    }

    /// The event ids an event must have to satisfy this condition, if bounded.
    fn event_ids(&self, sels: &[Selection]) -> Option<Vec<u32>> {
        match self {
            Condition::Sel(i) => sels[*i].event_ids(),
            Condition::And(items) => items.iter().find_map(|c| c.event_ids(sels)),
            Condition::Or(items) => {
                let mut all = Vec::new();
                for c in items {
                    all.extend(c.event_ids(sels)?);
                }
                Some(all)
            }
            Condition::Not(_) => None,
        }
    }
}

fn tokenize(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        match c {
            '(' | ')' => {
                if !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
                out.push(c.to_string());
            }
            c if c.is_whitespace() => {
                if !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

struct CondParser<'a> {
    tokens: &'a [String],
    pos: usize,
    names: &'a [String],
    line: usize,
}

impl CondParser<'_> {
    fn peek(&self) -> Option<&str> {
        self.tokens.get(self.pos).map(String::as_str)
    }

    fn or(&mut self) -> Result<Condition, CompileError> {
        let mut items = vec![self.and()?];
        while self.peek() == Some("or") {
            self.pos += 1;
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.pop().expect("one item")
        } else {
            Condition::Or(items)
        })
    }

    fn and(&mut self) -> Result<Condition, CompileError> {
        let mut items = vec![self.not()?];
        while self.peek() == Some("and") {
            self.pos += 1;
            items.push(self.not()?);
        }
        Ok(if items.len() == 1 {
            items.pop().expect("one item")
        } else {
            Condition::And(items)
        })
    }

    fn not(&mut self) -> Result<Condition, CompileError> {
        if self.peek() == Some("not") {
            self.pos += 1;
            return Ok(Condition::Not(Box::new(self.not()?)));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Condition, CompileError> {
        let line = self.line;
        let Some(token) = self.peek().map(str::to_string) else {
            return Err(err(line, "condition ends too early"));
        };
        self.pos += 1;
        if token == "(" {
            let inner = self.or()?;
            if self.peek() != Some(")") {
                return Err(err(line, "condition: missing `)`"));
            }
            self.pos += 1;
            return Ok(inner);
        }
        if self.peek() == Some("of") {
            self.pos += 1;
            let Some(pattern) = self.peek().map(str::to_string) else {
                return Err(err(
                    line,
                    format!("condition: `{token} of` needs a name pattern or `them`"),
                ));
            };
            self.pos += 1;
            let selected: Vec<Condition> = self
                .names
                .iter()
                .enumerate()
                .filter(|(_, n)| pattern == "them" && !n.starts_with('_') || glob_name(&pattern, n))
                .map(|(i, _)| Condition::Sel(i))
                .collect();
            if selected.is_empty() {
                return Err(err(
                    line,
                    format!("condition: `{pattern}` names no selection"),
                ));
            }
            return match token.as_str() {
                "1" | "any" => Ok(Condition::Or(selected)),
                "all" => Ok(Condition::And(selected)),
                other => Err(err(
                    line,
                    format!("condition: `{other} of` is not supported (1 of, all of)"),
                )),
            };
        }
        match self.names.iter().position(|n| *n == token) {
            Some(i) => Ok(Condition::Sel(i)),
            None if matches!(token.as_str(), "and" | "or" | ")") => {
                Err(err(line, format!("condition: unexpected `{token}`")))
            }
            None => Err(err(
                line,
                format!("condition: `{token}` is not a selection of this rule"),
            )),
        }
    }
}

fn glob_name(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// A compiled single-event rule's detection.
#[derive(Debug, Clone)]
pub struct Detection {
    selections: Vec<Selection>,
    condition: Condition,
}

impl Detection {
    /// Compiles a `detection:` mapping.
    pub fn compile(node: &Node) -> Result<Detection, CompileError> {
        let entries = node
            .as_map()
            .ok_or_else(|| err(node.line, "`detection` must be a mapping"))?;
        let mut names = Vec::new();
        let mut selections = Vec::new();
        let mut condition = None;
        for (key, line, value) in entries {
            if key == "condition" {
                let text = match &value.value {
                    Value::Scalar { text, .. } => text.clone(),
                    Value::Seq(items) if items.len() == 1 => items[0]
                        .as_str()
                        .ok_or_else(|| err(value.line, "`condition` is a text"))?
                        .to_string(),
                    _ => return Err(err(value.line, "`condition` is one text")),
                };
                condition = Some((text, *line));
            } else if key == "timeframe" {
                return Err(err(
                    *line,
                    "`timeframe` is the old Sigma form: write a correlation rule with `timespan`",
                ));
            } else {
                names.push(key.clone());
                selections.push(Selection::compile(value)?);
            }
        }
        let (text, line) =
            condition.ok_or_else(|| err(node.line, "`detection` has no `condition`"))?;
        if text.contains('|') {
            return Err(err(line, "aggregations in `condition` (`| count()`) are the old form: write a correlation rule"));
        }
        let condition = Condition::parse(&text, &names, line)?;
        Ok(Detection {
            selections,
            condition,
        })
    }

    /// Whether the event satisfies the detection.
    pub fn matches(&self, event: &Event) -> bool {
        self.matches_view(&EventView::new(event))
    }

    /// The same through a shared view (the lower-cased message is reused).
    pub fn matches_view(&self, view: &EventView<'_>) -> bool {
        let mut small = [None; 8];
        let mut large;
        let cache: &mut [Option<bool>] = if self.selections.len() <= small.len() {
            &mut small[..self.selections.len()]
        } else {
            large = vec![None; self.selections.len()];
            &mut large
        };
        self.condition.eval(&self.selections, view, cache)
    }

    /// The event ids that can satisfy the detection (`None` = any event).
    pub fn event_ids(&self) -> Option<Vec<u32>> {
        let mut ids = self.condition.event_ids(&self.selections)?;
        ids.sort_unstable();
        ids.dedup();
        Some(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::load_documents;

    fn detection(yaml: &str) -> Result<Detection, CompileError> {
        let docs = load_documents(yaml).unwrap();
        Detection::compile(&docs[0])
    }

    fn event(id: u32, message: &str) -> Event {
        Event {
            event_id: id,
            provider: "Microsoft-Windows-Hyper-V-VMMS".into(),
            message: message.into(),
            ..Event::default()
        }
    }

    #[test]
    fn modifiers_lists_and_conditions() {
        let d = detection(
            "sel:\n  EventID: [21066, 21024]\n  Message|contains|all: ['Collection Registry', '0x80070002']\nfilter:\n  Message|contains: denied\ncondition: sel and not filter\n",
        )
        .unwrap();
        assert!(d.matches(&event(
            21066,
            "Failed to verify collection registry ... (0x80070002)"
        )));
        assert!(!d.matches(&event(21066, "collection registry only")));
        assert!(!d.matches(&event(
            21066,
            "collection registry 0x80070002 access DENIED"
        )));
        assert!(!d.matches(&event(1106, "collection registry 0x80070002")));
        assert_eq!(d.event_ids(), Some(vec![21024, 21066]));
    }

    #[test]
    fn wildcards_regex_and_of() {
        let d = detection(
            "sel_a:\n  Message: '*limit \"?\" was reached*'\nsel_b:\n  Message|re: '0x8007274[CD]'\ncondition: 1 of sel_*\n",
        )
        .unwrap();
        assert!(d.matches(&event(
            21501,
            "because virtual machine migration limit \"2\" was reached, please"
        )));
        assert!(d.matches(&event(21502, "refused (0x8007274D)")));
        assert!(
            !d.matches(&event(21502, "refused (0x8007274d)")),
            "re is case-sensitive"
        );
        assert_eq!(d.event_ids(), None);
    }

    #[test]
    fn bad_input_is_refused_with_a_line() {
        let e = detection("sel:\n  Message|re: '(unclosed'\ncondition: sel\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.reason.contains("regular expression"), "{}", e.reason);
        let e = detection("sel:\n  Message|sounds_like: x\ncondition: sel\n").unwrap_err();
        assert_eq!(e.line, 2);
        let e = detection("sel:\n  EventID: 1\ncondition: sel and nope\n").unwrap_err();
        assert!(e.reason.contains("nope"));
        assert!(detection("sel:\n  EventID: 1\ncondition: (sel\n").is_err());
        assert!(detection("sel:\n  EventID: x1\ncondition: sel\n").is_err());
    }

    #[test]
    fn message_falls_back_to_data_values() {
        let d =
            detection("sel:\n  Message|contains: 'collection registry'\ncondition: sel\n").unwrap();
        let mut e = event(21066, "");
        e.data
            .push("Parameter2", "Failed to verify collection registry");
        assert!(d.matches(&e));
    }
}
