//! A JSON tree that borrows from its input: the message plaintext parsed once, with its
//! keys and strings slices of the plaintext (a string is copied only when it had escapes).
//!
//! Why not `serde_json::Value`: that tree owns every key and every string (and a map node
//! per few fields), ~30–40 allocations for a chat message, freed on another thread than the
//! one that made them; the message parse was ~10 µs in an ingest, most of it the allocator.
//! Here an object is one `Vec` of its fields.
//!
//! Lookups follow `serde_json::Value`'s meanings, so the records made from a message are
//! the same: a key given twice is the last one given (a map keeps the last insert),
//! integers answer `as_i64` / `as_u64` as `serde_json::Number` does (a float answers
//! neither), and serde_json's nesting limit (128) still refuses a hostile depth.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

#[derive(Debug, Clone, PartialEq)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    /// An integer in `i64`'s range.
    Int(i64),
    /// An integer above `i64::MAX`.
    UInt(u64),
    Float(f64),
    Str(Cow<'a, str>),
    Arr(Vec<Json<'a>>),
    /// Fields in the order given (a key given twice keeps both; [`Json::get`] finds the last).
    Obj(Vec<(Cow<'a, str>, Json<'a>)>),
}

static NULL: Json<'static> = Json::Null;

impl<'a> Json<'a> {
    /// Parses `text` (one JSON value, whitespace around it allowed).
    pub fn parse(text: &'a [u8]) -> serde_json::Result<Json<'a>> {
        serde_json::from_slice(text)
    }

    /// The value of `key` when this is an object that has it (the last one given).
    pub fn get(&self, key: &str) -> Option<&Json<'a>> {
        match self {
            Json::Obj(fields) => fields.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// [`Json::get`], or `Null` when absent (like indexing a `serde_json::Value`).
    pub fn at(&self, key: &str) -> &Json<'a> {
        self.get(key).unwrap_or(&NULL)
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Json<'a>]> {
        match self {
            Json::Arr(a) => Some(a),
            _ => None,
        }
    }

    pub fn is_object(&self) -> bool {
        matches!(self, Json::Obj(_))
    }

    /// The integer when it fits `i64` (`serde_json::Number::as_i64`).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Json::Int(n) => Some(*n),
            _ => None,
        }
    }

    /// The integer when it is non-negative (`serde_json::Number::as_u64`).
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Json::Int(n) => u64::try_from(*n).ok(),
            Json::UInt(n) => Some(*n),
            _ => None,
        }
    }
}

/// An object key, borrowed when the input has it without escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool(b))
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Json<'de>, E> {
        Ok(Json::Int(n))
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Json<'de>, E> {
        Ok(i64::try_from(n).map_or(Json::UInt(n), Json::Int))
    }
    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Json<'de>, E> {
        Ok(Json::Float(n))
    }
    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Borrowed(s)))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Owned(s.to_owned())))
    }
    fn visit_string<E: de::Error>(self, s: String) -> Result<Json<'de>, E> {
        Ok(Json::Str(Cow::Owned(s)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(v) = seq.next_element()? {
            out.push(v);
        }
        Ok(Json::Arr(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json<'de>, A::Error> {
        let mut out = Vec::with_capacity(map.size_hint().unwrap_or(8).min(64));
        while let Some(Key(k)) = map.next_key()? {
            out.push((k, map.next_value()?));
        }
        Ok(Json::Obj(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// The same lookups on `serde_json::Value` (the oracle) and on this tree agree.
    fn agree(text: &str, paths: &[&[&str]]) {
        let ours = Json::parse(text.as_bytes()).unwrap();
        let theirs: Value = serde_json::from_str(text).unwrap();
        for path in paths {
            let (mut a, mut b) = (&ours, &theirs);
            for k in *path {
                a = a.at(k);
                b = &b[*k];
            }
            assert_eq!(a.as_str(), b.as_str(), "{text} {path:?}");
            assert_eq!(a.as_i64(), b.as_i64(), "{text} {path:?}");
            assert_eq!(a.as_u64(), b.as_u64(), "{text} {path:?}");
            assert_eq!(a.is_object(), b.is_object(), "{text} {path:?}");
            assert_eq!(
                a.as_array().map(<[_]>::len),
                b.as_array().map(Vec::len),
                "{text} {path:?}"
            );
        }
    }

    #[test]
    fn lookups_mean_what_serde_json_values_mean() {
        agree(
            r#"{"a":"x","b":{"c":"\u4f60\"好","d":[1,2,{"e":3}]},"a":"last","n":-5,"big":18446744073709551615,
               "f":1.5,"z":0,"s":"12","t":true,"nul":null,"esc\u0041":"k"}"#,
            &[
                &["a"],
                &["b", "c"],
                &["b", "d"],
                &["b"],
                &["n"],
                &["big"],
                &["f"],
                &["z"],
                &["s"],
                &["t"],
                &["nul"],
                &["escA"],
                &["missing", "deeper"],
                &["a", "not-an-object"],
            ],
        );
    }

    #[test]
    fn strings_without_escapes_are_borrowed() {
        let text = br#"{"plain":"abc","escaped":"a\nb"}"#;
        let j = Json::parse(text).unwrap();
        let Json::Obj(fields) = &j else { panic!("an object") };
        assert!(fields.iter().all(|(k, _)| matches!(k, Cow::Borrowed(_))));
        assert!(matches!(j.at("plain"), Json::Str(Cow::Borrowed("abc"))));
        assert!(matches!(j.at("escaped"), Json::Str(Cow::Owned(s)) if s == "a\nb"));
    }

    #[test]
    fn broken_and_hostile_input_is_an_error() {
        for bad in ["{", "{\"a\":}", "[1,]", "\"\\ud800\"", "nul", "{\"a\":1} x"] {
            assert!(Json::parse(bad.as_bytes()).is_err(), "{bad}");
        }
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        assert!(Json::parse(deep.as_bytes()).is_err(), "serde_json's depth limit holds");
    }
}
