//! Label matchers in Alertmanager's syntax: `name="value"`, `name!="value"`,
//! `name=~"regex"`, `name!~"regex"` (quotes optional; regexes anchored at
//! both ends; a missing label matches as `""`).

use std::fmt;
use std::str::FromStr;

use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{ConfigError, Labels};

/// How a matcher compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~`
    Regex,
    /// `!~`
    NotRegex,
}

impl MatchOp {
    fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        }
    }
}

/// One label condition.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// Label name.
    pub name: String,
    /// Comparison.
    pub op: MatchOp,
    /// Value or regex as written.
    pub value: String,
    regex: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Matcher) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

impl Matcher {
    /// A matcher from its parts (a regex is anchored and checked).
    pub fn new(name: &str, op: MatchOp, value: &str) -> Result<Matcher, ConfigError> {
        let bad = |reason: String| ConfigError::Matcher {
            matcher: format!("{name}{}\"{value}\"", op.as_str()),
            reason,
        };
        if name.is_empty()
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            || name.as_bytes()[0].is_ascii_digit()
        {
            return Err(bad("a label name is letters, digits and _".into()));
        }
        let regex = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(
                regex::RegexBuilder::new(&format!("^(?:{value})$"))
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| bad(format!("not a regex: {e}")))?,
            ),
            _ => None,
        };
        Ok(Matcher {
            name: name.to_string(),
            op,
            value: value.to_string(),
            regex,
        })
    }

    /// Whether the labels satisfy it.
    pub fn matches(&self, labels: &Labels) -> bool {
        let value = labels.get(&self.name).map_or("", String::as_str);
        match (self.op, &self.regex) {
            (MatchOp::Equal, _) => value == self.value,
            (MatchOp::NotEqual, _) => value != self.value,
            (MatchOp::Regex, Some(re)) => re.is_match(value),
            (MatchOp::NotRegex, Some(re)) => !re.is_match(value),
            _ => false,
        }
    }
}

/// Whether every matcher holds (an empty list matches everything).
pub fn all_match(matchers: &[Matcher], labels: &Labels) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

impl FromStr for Matcher {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Matcher, ConfigError> {
        let text = text.trim();
        let bad = |reason: &str| ConfigError::Matcher {
            matcher: text.to_string(),
            reason: reason.to_string(),
        };
        let at = text
            .find(['=', '!'])
            .ok_or_else(|| bad("expected name=value, name!=value, name=~regex or name!~regex"))?;
        let name = text[..at].trim();
        let rest = &text[at..];
        let (op, value) = if let Some(v) = rest.strip_prefix("=~") {
            (MatchOp::Regex, v)
        } else if let Some(v) = rest.strip_prefix("!~") {
            (MatchOp::NotRegex, v)
        } else if let Some(v) = rest.strip_prefix("!=") {
            (MatchOp::NotEqual, v)
        } else if let Some(v) = rest.strip_prefix('=') {
            (MatchOp::Equal, v)
        } else {
            return Err(bad("expected =, !=, =~ or !~ after the label name"));
        };
        let value = value.trim();
        let value = match value.strip_prefix('"') {
            Some(inner) => inner
                .strip_suffix('"')
                .ok_or_else(|| bad("a quoted value needs its closing quote"))?
                .replace("\\\"", "\"")
                .replace("\\\\", "\\"),
            None => value.to_string(),
        };
        Matcher::new(name, op, &value)
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}\"{}\"",
            self.name,
            self.op.as_str(),
            self.value.replace('\\', "\\\\").replace('"', "\\\"")
        )
    }
}

impl Serialize for Matcher {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Matcher {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Matcher, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn matchers_parse_and_match_like_alertmanager() {
        let l = labels(&[
            ("root_cause", "shared-storage-path-missing"),
            ("vm", "ADFS1"),
        ]);
        let cases = [
            ("root_cause=\"shared-storage-path-missing\"", true),
            ("root_cause = shared-storage-path-missing", true),
            ("root_cause!=\"shared-storage-path-missing\"", false),
            ("root_cause=~\"shared-.*\"", true),
            ("root_cause=~\"shared\"", false),
            ("vm!~\"SQL.*\"", true),
            ("cluster=\"\"", true),
            ("cluster!=\"\"", false),
            ("vm=~\"(?i)adfs.*\"", true),
        ];
        for (text, want) in cases {
            let m: Matcher = text.parse().unwrap();
            assert_eq!(m.matches(&l), want, "{text}");
            let again: Matcher = m.to_string().parse().unwrap();
            assert_eq!(again, m, "{text} round trip");
        }
        for bad in ["novalue", "=x", "a=~\"(\"", "a=\"open", "1a=b", "a b=c"] {
            assert!(bad.parse::<Matcher>().is_err(), "{bad}");
        }
    }
}
