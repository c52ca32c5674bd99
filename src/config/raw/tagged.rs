//! Sources and sinks are tables whose `type` key says which keys the rest may hold.
//! This module reads such tables in two steps, so that every message keeps its key path
//! and line: first every table's keys (with where they are) and its `type`, checked
//! against the keys that type takes; then, with the kinds known, each table as the
//! struct of its kind, through the same toml deserializer and path tracking as the rest
//! of the file.
//!
//! serde's own tagged enums cannot do this: they buffer the table, which loses both the
//! key path and the line of a bad value, and `flatten` (for the keys every kind shares)
//! does not combine with `deny_unknown_fields`. [`kinds!`] instead declares, per kind,
//! a struct of its own keys and a private wire struct with the shared keys embedded.
//!
//! It owns the mechanism only; the kinds themselves are in `raw::sink` and `raw::source`.

use super::line;
use crate::config::check::Problem;
use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use serde::Deserializer;
use std::collections::BTreeMap;
use std::fmt;
use toml::Spanned;

/// A kind of source or sink, named by the `type` key of its table.
pub(crate) trait Kind: Copy + 'static {
    /// The section's singular, for messages: `sink`, `source`.
    const WHAT: &'static str;
    /// Every kind, in the order messages list them.
    const ALL: &'static [Self];
    /// Why a key does not apply to some kinds, when there is more to say than that.
    const HINTS: &'static [(&'static str, &'static str)];
    /// A table of this section, typed.
    type Raw;
    /// The value of `type` that selects this kind.
    fn name(self) -> &'static str;
    /// The keys a table of this kind takes, `type` first.
    fn keys(self) -> &'static [&'static str];
    /// Reads a table of this kind.
    fn read<'de, D: Deserializer<'de>>(self, d: D) -> Result<Self::Raw, D::Error>;
}

/// A source or sink table as the first step reads it: its keys, each with its place in
/// the file, and their values (of which only `type` is looked at).
pub(super) type Keys = BTreeMap<Spanned<String>, toml::Value>;

/// `"a", "b" or "c"`: the valid types of a section.
fn type_list<K: Kind>() -> String {
    let names: Vec<String> = K::ALL.iter().map(|k| format!("\"{}\"", k.name())).collect();
    join(&names, "or")
}

/// `a, b and c` (with `word` before the last).
fn join(items: &[String], word: &str) -> String {
    match items.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} {word} {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// "`a`, `b`, `c`": keys, as serde lists expected fields.
fn key_list(keys: &[&str]) -> String {
    keys.iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Step one for a section: the kind of every table whose `type` is valid, and one
/// problem per missing or unknown type and per key that the table's kind does not take.
pub(super) fn kinds_of<K: Kind>(
    section: &str,
    tables: &BTreeMap<Spanned<String>, Keys>,
    text: &str,
    problems: &mut Vec<Problem>,
) -> BTreeMap<String, K> {
    let mut out = BTreeMap::new();
    for (name, keys) in tables {
        let at = format!("{section}.{}", name.get_ref());
        let what = K::WHAT;
        let kind = match keys.get_key_value("type") {
            None => {
                problems.push(Problem {
                    path: at,
                    message: format!(
                        "{}: missing field `type`: a {what}'s type is one of {}",
                        line(text, name.span()),
                        type_list::<K>()
                    ),
                });
                continue;
            }
            Some((key, value)) => {
                let found = value
                    .as_str()
                    .and_then(|v| K::ALL.iter().copied().find(|k| k.name() == v));
                match found {
                    Some(k) => k,
                    None => {
                        let shown = match value.as_str() {
                            Some(s) => format!("`{s}`"),
                            None => format!("`{value}`"),
                        };
                        problems.push(Problem {
                            path: format!("{at}.type"),
                            message: format!(
                                "{}: {shown} is not a {what} type: use {}",
                                line(text, key.span()),
                                type_list::<K>()
                            ),
                        });
                        continue;
                    }
                }
            }
        };
        for key in keys.keys() {
            let k = key.get_ref().as_str();
            if !kind.keys().contains(&k) {
                problems.push(Problem {
                    path: format!("{at}.{k}"),
                    message: format!("{}: {}", line(text, key.span()), not_taken(kind, k)),
                });
            }
        }
        out.insert(name.get_ref().clone(), kind);
    }
    out
}

/// Why `key` is refused in a table of `kind`: which kinds take it, if any, and which
/// keys this kind takes.
fn not_taken<K: Kind>(kind: K, key: &str) -> String {
    let (what, name) = (K::WHAT, kind.name());
    // "an audit_log source", "an alerts source", "a udp sink".
    let a = if name.starts_with(['a', 'e', 'i', 'o']) {
        "an"
    } else {
        "a"
    };
    let takes = format!("{a} {name} {what} takes {}", key_list(kind.keys()));
    let others: Vec<String> = K::ALL
        .iter()
        .filter(|k| k.keys().contains(&key))
        .map(|k| k.name().to_string())
        .collect();
    if others.is_empty() {
        return format!("unknown field `{key}` for {a} {name} {what}; {takes}");
    }
    let hint = K::HINTS
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, h)| format!(": {h}"))
        .unwrap_or_default();
    let by = join(&others, "and");
    format!(
        "`{key}` does not apply to {a} {name} {what}{hint} (only {by} {what}s take it); {takes}"
    )
}

/// Step two: the `sources` and `sinks` sections of the file, each table read as the
/// struct of its kind; every other key of the file is skipped (step one read them).
pub(super) struct Sections<'a, S, K> {
    pub sources: &'a BTreeMap<String, S>,
    pub sinks: &'a BTreeMap<String, K>,
}

/// What [`Sections`] reads.
pub(super) struct Tagged<S: Kind, K: Kind> {
    pub sources: BTreeMap<String, S::Raw>,
    pub sinks: BTreeMap<String, K::Raw>,
}

impl<'de, S: Kind, K: Kind> DeserializeSeed<'de> for Sections<'_, S, K> {
    type Value = Tagged<S, K>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, S: Kind, K: Kind> Visitor<'de> for Sections<'_, S, K> {
    type Value = Tagged<S, K>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a configuration table")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Tagged {
            sources: BTreeMap::new(),
            sinks: BTreeMap::new(),
        };
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "sources" => out.sources = map.next_value_seed(Section(self.sources))?,
                "sinks" => out.sinks = map.next_value_seed(Section(self.sinks))?,
                _ => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        Ok(out)
    }
}

/// One section: every table as the struct of the kind step one found for it.
struct Section<'a, K>(&'a BTreeMap<String, K>);

impl<'de, K: Kind> DeserializeSeed<'de> for Section<'_, K> {
    type Value = BTreeMap<String, K::Raw>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, K: Kind> Visitor<'de> for Section<'_, K> {
    type Value = BTreeMap<String, K::Raw>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a table of {}s", K::WHAT)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = BTreeMap::new();
        while let Some(name) = map.next_key::<String>()? {
            // Step one read the same text and stopped at any table without a valid type.
            let Some(kind) = self.0.get(&name).copied() else {
                return Err(de::Error::custom(format!(
                    "the {} `{name}` has no type",
                    K::WHAT
                )));
            };
            out.insert(name, map.next_value_seed(Table(kind))?);
        }
        Ok(out)
    }
}

/// One table, read as the struct of its kind.
struct Table<K>(K);

impl<'de, K: Kind> DeserializeSeed<'de> for Table<K> {
    type Value = K::Raw;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.0.read(d)
    }
}

/// Declares the kinds of one section: per kind a public struct of its own keys and,
/// inside its reader, a wire struct of `type`, its own keys and the section's shared
/// keys with `deny_unknown_fields`; the struct of the shared keys; the typed table
/// (`shared` and `kind`), the enum of the kinds' structs and the enum of the tags with
/// its [`Kind`] implementation.
macro_rules! kinds {
    (
        section $what:literal, tag $Tag:ident, table $Raw:ident, kind $Enum:ident,
        hints [$(($hk:literal, $hv:literal)),* $(,)?],
        $(#[$sdoc:meta])* shared $Shared:ident $shared:tt;
        $( $(#[$doc:meta])* $Var:ident($Own:ident) = $tag:literal $own:tt )*
    ) => {
        $crate::config::raw::tagged::fields!(@shared $(#[$sdoc])* $Shared $shared);
        $( $crate::config::raw::tagged::fields!(@own $(#[$doc])* $Own $own $Shared $shared); )*

        #[doc = concat!("A `[", $what, "s.NAME]` table: the keys every ", $what, " takes and those of its kind.")]
        #[derive(Debug)]
        pub struct $Raw {
            pub shared: $Shared,
            pub kind: $Enum,
        }

        #[doc = concat!("The keys of a ", $what, "'s own kind.")]
        #[derive(Debug)]
        pub enum $Enum {
            $($Var($Own),)*
        }

        #[doc = concat!("The `type` of a ", $what, ".")]
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $Tag {
            $($Var,)*
        }

        impl $crate::config::raw::tagged::Kind for $Tag {
            const WHAT: &'static str = $what;
            const ALL: &'static [Self] = &[$($Tag::$Var,)*];
            const HINTS: &'static [(&'static str, &'static str)] = &[$(($hk, $hv),)*];
            type Raw = $Raw;
            fn name(self) -> &'static str {
                match self {
                    $($Tag::$Var => $tag,)*
                }
            }
            fn keys(self) -> &'static [&'static str] {
                match self {
                    $($Tag::$Var => $Own::KEYS,)*
                }
            }
            fn read<'de, D: serde::Deserializer<'de>>(self, d: D) -> Result<$Raw, D::Error> {
                Ok(match self {
                    $($Tag::$Var => {
                        let (shared, own) = $Own::read(d)?;
                        $Raw { shared, kind: $Enum::$Var(own) }
                    })*
                })
            }
        }
    };
}

/// The structs behind [`kinds!`]; the shared keys come as one token tree so that each
/// kind's wire struct can embed them.
macro_rules! fields {
    (@shared $(#[$doc:meta])* $Shared:ident { $($(#[$m:meta])* $f:ident : $t:ty),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $Shared {
            $(pub $f: $t,)*
        }
    };
    (@own $(#[$doc:meta])* $Own:ident { $($(#[$m:meta])* $f:ident : $t:ty),* $(,)? }
        $Shared:ident { $($(#[$sm:meta])* $sf:ident : $st:ty),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $Own {
            $(pub $f: $t,)*
        }

        impl $Own {
            /// The keys a table of this kind takes: `type`, its own, then the shared ones.
            pub const KEYS: &'static [&'static str] =
                &["type", $(stringify!($f),)* $(stringify!($sf),)*];

            fn read<'de, D: serde::Deserializer<'de>>(d: D) -> Result<($Shared, Self), D::Error> {
                #[derive(serde::Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Wire {
                    #[serde(rename = "type")]
                    _type: serde::de::IgnoredAny,
                    $($(#[$m])* $f: $t,)*
                    $($(#[$sm])* $sf: $st,)*
                }
                let w = <Wire as serde::Deserialize>::deserialize(d)?;
                Ok(($Shared { $($sf: w.$sf,)* }, $Own { $($f: w.$f,)* }))
            }
        }
    };
}

pub(crate) use {fields, kinds};
