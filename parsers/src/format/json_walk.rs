//! Walks a JSON object and reports every scalar with its dotted path
//! (`winlog.event_data.VmName`), without building a tree: nested objects
//! and flat dotted keys give the same paths. Strings are borrowed from the
//! input when they contain no escapes.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// A scalar JSON value.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar<'a> {
    /// A string.
    Str(Cow<'a, str>),
    /// A signed integer.
    I64(i64),
    /// An unsigned integer.
    U64(u64),
    /// A float.
    F64(f64),
    /// A boolean.
    Bool(bool),
    /// `null`.
    Null,
}

impl Scalar<'_> {
    /// The value as text (numbers formatted, `null` empty).
    pub fn as_text(&self) -> Cow<'_, str> {
        match self {
            Scalar::Str(s) => Cow::Borrowed(s.as_ref()),
            Scalar::I64(n) => Cow::Owned(n.to_string()),
            Scalar::U64(n) => Cow::Owned(n.to_string()),
            Scalar::F64(n) => Cow::Owned(n.to_string()),
            Scalar::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
            Scalar::Null => Cow::Borrowed(""),
        }
    }

    /// The value as an unsigned integer (numbers, or strings of digits).
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Scalar::U64(n) => Some(*n),
            Scalar::I64(n) => u64::try_from(*n).ok(),
            Scalar::F64(n) if *n >= 0.0 && n.fract() == 0.0 => Some(*n as u64),
            Scalar::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// The value as a float.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Scalar::U64(n) => Some(*n as f64),
            Scalar::I64(n) => Some(*n as f64),
            Scalar::F64(n) => Some(*n),
            Scalar::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// True for `null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Scalar::Null)
    }
}

/// Receives `(path, value)` pairs.
pub trait FieldSink<'de> {
    /// One scalar at `path`. Array elements repeat their array's path.
    fn field(&mut self, path: &str, value: Scalar<'de>);
}

/// Walks `json` (one value) into `sink`; errors carry line and column.
/// (`sonic-rs`, already in the tree through `evtx`, measured the same
/// instruction count through this serde interface, so serde_json stays.)
pub fn walk<'de, S: FieldSink<'de>>(json: &'de str, sink: &mut S) -> Result<(), String> {
    let mut path = String::with_capacity(64);
    let mut de = serde_json::Deserializer::from_str(json);
    Walker {
        path: &mut path,
        sink,
    }
    .deserialize(&mut de)
    .map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())
}

struct Walker<'p, 's, S> {
    path: &'p mut String,
    sink: &'s mut S,
}

impl<'de, S: FieldSink<'de>> DeserializeSeed<'de> for Walker<'_, '_, S> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

struct Key<'de>(Cow<'de, str>);

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key<'de>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Key<'de>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Key<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
        Ok(Key(Cow::Owned(v.to_owned())))
    }
}

impl<'de, S: FieldSink<'de>> Visitor<'de> for Walker<'_, '_, S> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<(), E> {
        self.sink.field(self.path, Scalar::Str(Cow::Borrowed(v)));
        Ok(())
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.sink
            .field(self.path, Scalar::Str(Cow::Owned(v.to_owned())));
        Ok(())
    }
    fn visit_string<E>(self, v: String) -> Result<(), E> {
        self.sink.field(self.path, Scalar::Str(Cow::Owned(v)));
        Ok(())
    }
    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.sink.field(self.path, Scalar::I64(v));
        Ok(())
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.sink.field(self.path, Scalar::U64(v));
        Ok(())
    }
    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        self.sink.field(self.path, Scalar::F64(v));
        Ok(())
    }
    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.sink.field(self.path, Scalar::Bool(v));
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        self.sink.field(self.path, Scalar::Null);
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        self.sink.field(self.path, Scalar::Null);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(Walker {
                path: &mut *self.path,
                sink: &mut *self.sink,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Key(key)) = map.next_key_seed(KeySeed)? {
            let len = self.path.len();
            if len > 0 {
                self.path.push('.');
            }
            self.path.push_str(&key);
            map.next_value_seed(Walker {
                path: &mut *self.path,
                sink: &mut *self.sink,
            })?;
            self.path.truncate(len);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Collect(Vec<(String, String)>);
    impl<'de> FieldSink<'de> for Collect {
        fn field(&mut self, path: &str, value: Scalar<'de>) {
            self.0.push((path.to_owned(), value.as_text().into_owned()));
        }
    }

    #[test]
    fn nested_and_flat_give_the_same_paths() {
        let mut a = Collect(Vec::new());
        walk(r#"{"winlog":{"event_id":21502,"event_data":{"VmName":"ADFS1"}},"tags":["a","b"],"x":null}"#, &mut a).unwrap();
        let mut b = Collect(Vec::new());
        walk(r#"{"winlog.event_id":21502,"winlog.event_data.VmName":"ADFS1","tags":["a","b"],"x":null}"#, &mut b).unwrap();
        assert_eq!(a.0, b.0);
        assert_eq!(a.0[1], ("winlog.event_data.VmName".into(), "ADFS1".into()));
        assert!(walk("{\"a\":", &mut Collect(Vec::new())).is_err());
        assert!(walk("{} trailing", &mut Collect(Vec::new())).is_err());
    }
}
