//! Reading JSON values out of the raw event text without copying.
//!
//! Owned here: walking the members of the event's top-level object in one pass
//! ([`scan_object`]: each key and the raw text of its value, borrowed), decoding a JSON
//! string token to its text (borrowed when it has no escape, which is nearly always) and
//! reading an integer token. Deliberately not here: validation. The input is the text of
//! a `serde_json::value::RawValue`, which serde_json already validated, so this reader
//! only has to find boundaries, not check grammar; it still never panics on text that is
//! not valid JSON: it reports [`ObjectScan::Unreadable`] or returns a best-effort reading.
//!
//! Why not serde_json's deserializer with a borrowing visitor: it validates everything a
//! second time and costs about three times as much per event, and normalization runs
//! once per event per sink.

use super::scan::find_quote_or_backslash;
use std::borrow::Cow;

/// How reading the top-level object went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectScan {
    /// Every member was handed to the callback.
    Object,
    /// The text is some other JSON value (array, string, number...).
    NotAnObject,
    /// The text is not valid JSON after all; members seen so far were handed over.
    Unreadable,
}

#[inline]
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\n' | b'\r' | b'\t') {
        i += 1;
    }
    i
}

/// `i` is just after an opening quote. Returns the index of the closing quote and
/// whether the string has escapes.
#[inline]
fn string_end(b: &[u8], mut i: usize) -> Option<(usize, bool)> {
    let mut escaped = false;
    loop {
        let at = i + find_quote_or_backslash(b.get(i..)?)?;
        if b[at] == b'"' {
            return Some((at, escaped));
        }
        // A backslash: the next byte is escaped (for `\uXXXX` the hex digits that follow
        // cannot be a quote or a backslash, so skipping one byte is enough).
        escaped = true;
        i = at + 2;
    }
}

/// The end (exclusive) of the value that starts at `i`, and whether it is a string
/// with escapes.
fn value_end(b: &[u8], i: usize) -> Option<(usize, bool)> {
    match *b.get(i)? {
        b'"' => string_end(b, i + 1).map(|(q, escaped)| (q + 1, escaped)),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = string_end(b, j + 1)?.0;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.checked_sub(1)?;
                        if depth == 0 {
                            return Some((j + 1, false));
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            None
        }
        _ => {
            // A number, `true`, `false` or `null`: up to the next delimiter.
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t')
            {
                j += 1;
            }
            (j > i).then_some((j, false))
        }
    }
}

/// One member of the top-level object, as [`scan_object`] hands it over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member<'a> {
    /// The text between the key's quotes, still escaped when `key_escaped`.
    pub key: &'a str,
    pub key_escaped: bool,
    /// The value's JSON text.
    pub value: &'a str,
    /// The value is a string token with at least one escape (so that a reader of a
    /// plain string need not look for one again).
    pub value_escaped: bool,
}

impl<'a> Member<'a> {
    /// The value's text if it is a JSON string, decoded.
    pub fn value_str(&self) -> Option<Cow<'a, str>> {
        let b = self.value.as_bytes();
        if b.len() < 2 || b[0] != b'"' {
            return None;
        }
        let inner = self.value.get(1..self.value.len() - 1)?;
        Some(decode_inner(inner, self.value_escaped))
    }
}

/// Hands each member of the top-level object of `text` to `member`, in order.
pub fn scan_object<'a>(text: &'a str, mut member: impl FnMut(Member<'a>)) -> ObjectScan {
    scan_object_until(text, |m| {
        member(m);
        true
    })
}

/// Like [`scan_object`], but stops as soon as `member` returns `false` (and then
/// reports [`ObjectScan::Object`]: the members read so far are all there is to know).
pub fn scan_object_until<'a>(
    text: &'a str,
    mut member: impl FnMut(Member<'a>) -> bool,
) -> ObjectScan {
    let b = text.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return if i < b.len() {
            ObjectScan::NotAnObject
        } else {
            ObjectScan::Unreadable
        };
    }
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        return ObjectScan::Object;
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return ObjectScan::Unreadable;
        }
        let Some((kq, key_escaped)) = string_end(b, i + 1) else {
            return ObjectScan::Unreadable;
        };
        let key = text.get(i + 1..kq);
        i = skip_ws(b, kq + 1);
        if b.get(i) != Some(&b':') {
            return ObjectScan::Unreadable;
        }
        i = skip_ws(b, i + 1);
        let Some((end, value_escaped)) = value_end(b, i) else {
            return ObjectScan::Unreadable;
        };
        match (key, text.get(i..end)) {
            (Some(key), Some(value)) => {
                let more = member(Member {
                    key,
                    key_escaped,
                    value,
                    value_escaped,
                });
                if !more {
                    return ObjectScan::Object;
                }
            }
            _ => return ObjectScan::Unreadable,
        }
        i = skip_ws(b, end);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => return ObjectScan::Object,
            _ => return ObjectScan::Unreadable,
        }
    }
}

/// What [`scan_object_nested`] reports while it walks an object and the objects inside.
pub trait NestedVisitor<'a> {
    /// A member whose value is an object with at least one member, at `depth` (0 for a
    /// member of the top-level object). `true`: its members are walked next (at
    /// `depth + 1`, then [`NestedVisitor::close`]); `false`: it is handed to
    /// [`NestedVisitor::leaf`] whole. The visitor bounds the nesting: the walk recurses
    /// only where this says `true`.
    fn open(&mut self, key: &'a str, key_escaped: bool, depth: usize) -> bool;
    /// The end of the members of the object opened at `depth` (the last one opened that
    /// is not closed yet).
    fn close(&mut self, depth: usize);
    /// A member taken whole: any value but an object that was opened.
    fn leaf(&mut self, m: Member<'a>, depth: usize);
}

/// Walks the top-level object of `text` and, where `visitor` asks, the objects inside
/// it, in document order and in one pass: each byte is read once.
///
/// [`scan_object`] finds the end of each member's value before handing it over, so a
/// caller that then scans a nested object again (to flatten it) reads its bytes once
/// per level of nesting; a file event, nested two and three levels deep, was read
/// about three times over. Here the end of an opened object is where its walk ends.
///
/// Reports as [`scan_object`] does; an opened object that cannot be read makes the
/// whole text [`ObjectScan::Unreadable`] (members seen so far were handed over).
pub fn scan_object_nested<'a>(text: &'a str, visitor: &mut impl NestedVisitor<'a>) -> ObjectScan {
    let b = text.as_bytes();
    let i = skip_ws(b, 0);
    match b.get(i) {
        Some(b'{') => {}
        Some(_) => return ObjectScan::NotAnObject,
        None => return ObjectScan::Unreadable,
    }
    match walk_members(text, i, 0, visitor) {
        Some(_) => ObjectScan::Object,
        None => ObjectScan::Unreadable,
    }
}

/// The members of the object whose `{` is at `text[open]`, at `depth`; returns the
/// index just after its `}`.
fn walk_members<'a>(
    text: &'a str,
    open: usize,
    depth: usize,
    visitor: &mut impl NestedVisitor<'a>,
) -> Option<usize> {
    let b = text.as_bytes();
    let mut i = skip_ws(b, open + 1);
    if b.get(i) == Some(&b'}') {
        return Some(i + 1);
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let (kq, key_escaped) = string_end(b, i + 1)?;
        let key = text.get(i + 1..kq)?;
        i = skip_ws(b, kq + 1);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(b, i + 1);
        // An object with members may be opened; an empty one is a leaf like any value.
        let has_members =
            b.get(i) == Some(&b'{') && b.get(skip_ws(b, i + 1)).is_some_and(|&c| c != b'}');
        let end = if has_members && visitor.open(key, key_escaped, depth) {
            let end = walk_members(text, i, depth + 1, visitor)?;
            visitor.close(depth);
            end
        } else {
            let (end, value_escaped) = value_end(b, i)?;
            visitor.leaf(
                Member {
                    key,
                    key_escaped,
                    value: text.get(i..end)?,
                    value_escaped,
                },
                depth,
            );
            end
        };
        i = skip_ws(b, end);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b'}') => return Some(i + 1),
            _ => return None,
        }
    }
}

/// Hands the raw text of each element of the array `text` to `element`, in order, until
/// it returns `false`. Returns `false` when `text` is not an array or could not be read
/// to its end (elements seen so far were handed over), `true` otherwise (also when
/// `element` stopped the reading).
pub fn scan_array<'a>(text: &'a str, mut element: impl FnMut(&'a str) -> bool) -> bool {
    let b = text.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'[') {
        return false;
    }
    i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b']') {
        return true;
    }
    loop {
        let Some((end, _)) = value_end(b, i) else {
            return false;
        };
        let Some(value) = text.get(i..end) else {
            return false;
        };
        if !element(value) {
            return true;
        }
        i = skip_ws(b, end);
        match b.get(i) {
            Some(b',') => i = skip_ws(b, i + 1),
            Some(b']') => return true,
            _ => return false,
        }
    }
}

/// The text of a JSON string token (`"..."`), unescaped. `None` when `raw` is not a
/// string. Lone UTF-16 surrogates in `\u` escapes (valid JSON, invalid Unicode) become
/// U+FFFD instead of failing, so that every string value has a text.
pub fn decode_str(raw: &str) -> Option<Cow<'_, str>> {
    let b = raw.as_bytes();
    if b.len() < 2 || b[0] != b'"' || b[b.len() - 1] != b'"' {
        return None;
    }
    // Both ends are the ASCII quote, so these are char boundaries.
    let inner = &raw[1..raw.len() - 1];
    Some(decode_inner(
        inner,
        find_quote_or_backslash(inner.as_bytes()).is_some(),
    ))
}

/// The text of a string token's inside (`raw` without its quotes); `has_escapes` says
/// whether it contains a backslash (when the caller already knows, it saves a scan).
pub fn decode_inner(inner: &str, has_escapes: bool) -> Cow<'_, str> {
    if has_escapes {
        Cow::Owned(unescape(inner))
    } else {
        Cow::Borrowed(inner)
    }
}

fn hex4(b: &[u8]) -> Option<u32> {
    if b.len() < 4 {
        return None;
    }
    let mut v = 0u32;
    for &c in &b[..4] {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return None,
        };
        v = v * 16 + u32::from(d);
    }
    Some(v)
}

fn unescape(inner: &str) -> String {
    let mut out = String::with_capacity(inner.len());
    unescape_with(inner, |piece| out.push_str(piece));
    out
}

/// Decodes the escape whose backslash is at `b[i]`: the character it stands for and the
/// index just after it. Lone UTF-16 surrogates become U+FFFD. Something that is not a
/// valid escape (impossible in valid JSON) yields the backslash itself and resumes right
/// after it, so the text that follows is kept as it is. The returned index is always a
/// char boundary when `b` is UTF-8.
pub fn decode_escape(b: &[u8], i: usize) -> (char, usize) {
    let simple = |c: char| (c, i + 2);
    match b.get(i + 1) {
        Some(b'"') => simple('"'),
        Some(b'\\') => simple('\\'),
        Some(b'/') => simple('/'),
        Some(b'b') => simple('\u{8}'),
        Some(b'f') => simple('\u{c}'),
        Some(b'n') => simple('\n'),
        Some(b'r') => simple('\r'),
        Some(b't') => simple('\t'),
        Some(b'u') => match hex4(b.get(i + 2..).unwrap_or_default()) {
            Some(hi @ 0xD800..=0xDBFF) => {
                let j = i + 6;
                let lo = if b.get(j) == Some(&b'\\') && b.get(j + 1) == Some(&b'u') {
                    hex4(b.get(j + 2..).unwrap_or_default())
                } else {
                    None
                };
                match lo {
                    Some(lo @ 0xDC00..=0xDFFF) => {
                        let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                        (char::from_u32(c).unwrap_or('\u{FFFD}'), j + 6)
                    }
                    _ => ('\u{FFFD}', j),
                }
            }
            Some(cp) => (char::from_u32(cp).unwrap_or('\u{FFFD}'), i + 6),
            None => ('\\', i + 1),
        },
        _ => ('\\', i + 1),
    }
}

/// Decodes the inside of a JSON string token, handing the text to `piece` in pieces,
/// each valid UTF-8 on its own (runs between escapes, and single decoded characters).
pub fn unescape_with(inner: &str, mut piece: impl FnMut(&str)) {
    let b = inner.as_bytes();
    let mut run = 0; // start of the current run of bytes passed on as they are
    while let Some(off) = b.get(run..).and_then(|rest| memchr::memchr(b'\\', rest)) {
        let i = run + off;
        // `i` is at an ASCII backslash, so `run..i` ends on a char boundary.
        piece(inner.get(run..i).unwrap_or_default());
        let (c, next) = decode_escape(b, i);
        piece(c.encode_utf8(&mut [0u8; 4]));
        run = next.min(b.len());
    }
    piece(inner.get(run..).unwrap_or_default());
}

/// A JSON integer token that fits in an `i64` (`-12`, `0`, `42`), or a JSON string whose
/// whole text is such an integer (the API sends some sizes and counts as strings).
pub fn read_i64(raw: &str) -> Option<i64> {
    let text = match raw.as_bytes().first() {
        Some(b'"') => decode_str(raw)?,
        _ => Cow::Borrowed(raw),
    };
    let t = text.as_bytes();
    let digits = t.strip_prefix(b"-").unwrap_or(t);
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // A leading zero is not JSON ("007"), and "-0" would come back as "0": refusing
    // both keeps the round trip exact.
    if (digits.len() > 1 && digits[0] == b'0') || (digits == b"0" && t.len() == 2) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn borrows_plain_strings() {
        assert!(matches!(decode_str(r#""abc""#), Some(Cow::Borrowed("abc"))));
        assert!(matches!(decode_str(r#""""#), Some(Cow::Borrowed(""))));
        assert_eq!(decode_str("12"), None);
        assert_eq!(decode_str("null"), None);
        assert_eq!(decode_str("\""), None);
    }

    #[test]
    fn decodes_every_escape() {
        let raw = r#""a\"b\\c\/d\b\f\n\r\t\u00e9\ud83d\ude00 é""#;
        let v: String = serde_json::from_str(raw).unwrap();
        assert_eq!(decode_str(raw).unwrap(), v);
    }

    #[test]
    fn lone_surrogates_become_replacement_chars() {
        assert_eq!(decode_str(r#""x\ud800y""#).unwrap(), "x\u{FFFD}y");
        assert_eq!(decode_str(r#""x\udc00""#).unwrap(), "x\u{FFFD}");
        assert_eq!(decode_str(r#""\ud800\u0041""#).unwrap(), "\u{FFFD}A");
    }

    #[test]
    fn invalid_text_does_not_panic() {
        for raw in [
            r#""\""#,
            r#""\u12""#,
            r#""\ué""#,
            r#""\q""#,
            "\"\\",
            r#""\ud800\u""#,
            r#""é\"#,
        ] {
            let _ = decode_str(raw);
        }
        assert_eq!(decode_str(r#""\ué""#).unwrap(), "\\ué");
    }

    fn members(text: &str) -> (ObjectScan, Vec<(String, String)>) {
        let mut v = Vec::new();
        let r = scan_object(text, |m| {
            if let Some(s) = m.value_str() {
                assert_eq!(Some(s), decode_str(m.value));
            }
            v.push((
                decode_inner(m.key, m.key_escaped).into_owned(),
                m.value.to_owned(),
            ))
        });
        (r, v)
    }

    #[test]
    fn scans_members_with_their_raw_values() {
        let (r, m) = members(
            " { \"a\" : 1 , \"b\\\"c\":\"x\\\"}\",\"d\":[1,{\"e\":\"]}\"}],\"f\":{},\"g\":true,\"h\":null,\"i\":-1.5e3}\n",
        );
        assert_eq!(r, ObjectScan::Object);
        let want = [
            ("a", "1"),
            ("b\"c", r#""x\"}""#),
            ("d", r#"[1,{"e":"]}"}]"#),
            ("f", "{}"),
            ("g", "true"),
            ("h", "null"),
            ("i", "-1.5e3"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(m, want);
        assert_eq!(members("{}"), (ObjectScan::Object, vec![]));
        assert_eq!(members(" [1]").0, ObjectScan::NotAnObject);
        assert_eq!(members("\"s\"").0, ObjectScan::NotAnObject);
        for bad in [
            "",
            " ",
            "{",
            "{\"a\"",
            "{\"a\":",
            "{\"a\":1",
            "{\"a\":1,",
            "{a:1}",
            "{\"a\":[1}",
            "{\"a\":\"x}",
        ] {
            assert_eq!(members(bad).0, ObjectScan::Unreadable, "{bad:?}");
        }
    }

    proptest! {
        /// On any valid JSON object, the scanner agrees with serde_json.
        #[test]
        fn agrees_with_serde_json(
            v in prop::collection::btree_map(".{0,8}", any::<i64>().prop_map(serde_json::Value::from), 0..6),
            nested in prop::collection::vec("[\\PC\"\\\\\n]{0,12}", 0..4),
            pretty in any::<bool>(),
        ) {
            let mut obj: serde_json::Map<String, serde_json::Value> = v.into_iter().collect();
            obj.insert("nested".into(), serde_json::json!({"list": nested, "o": {"k": [[], {}]}}));
            let value = serde_json::Value::Object(obj);
            let text = if pretty { serde_json::to_string_pretty(&value).unwrap() } else { value.to_string() };
            let (r, m) = members(&text);
            prop_assert_eq!(r, ObjectScan::Object);
            let map = value.as_object().unwrap();
            prop_assert_eq!(m.len(), map.len());
            for (k, raw) in m {
                let parsed: serde_json::Value = serde_json::from_str(&raw).unwrap();
                prop_assert_eq!(&parsed, &map[&k]);
            }
        }
    }

    /// Records the walk as `open key`, `close`, `leaf key=value` lines; opens objects
    /// above `max_depth` only.
    struct Log {
        max_depth: usize,
        lines: Vec<String>,
    }

    impl<'a> NestedVisitor<'a> for Log {
        fn open(&mut self, key: &'a str, key_escaped: bool, depth: usize) -> bool {
            if depth >= self.max_depth {
                return false;
            }
            let key = decode_inner(key, key_escaped);
            self.lines.push(format!("{depth} open {key}"));
            true
        }
        fn close(&mut self, depth: usize) {
            self.lines.push(format!("{depth} close"));
        }
        fn leaf(&mut self, m: Member<'a>, depth: usize) {
            let key = decode_inner(m.key, m.key_escaped);
            self.lines.push(format!("{depth} leaf {key}={}", m.value));
            if let Some(s) = m.value_str() {
                assert_eq!(Some(s), decode_str(m.value));
            }
        }
    }

    /// The same walk by the member scanner, one level at a time (reading each nested
    /// object again): the reference.
    fn reference(text: &str, depth: usize, max_depth: usize, lines: &mut Vec<String>) {
        scan_object(text, |m| {
            let key = decode_inner(m.key, m.key_escaped);
            let has_members =
                m.value.starts_with('{') && !m.value[1..].trim_start().starts_with('}');
            if has_members && depth < max_depth {
                lines.push(format!("{depth} open {key}"));
                reference(m.value, depth + 1, max_depth, lines);
                lines.push(format!("{depth} close"));
            } else {
                lines.push(format!("{depth} leaf {key}={}", m.value));
            }
        });
    }

    fn walk(text: &str, max_depth: usize) -> (ObjectScan, Vec<String>) {
        let mut log = Log {
            max_depth,
            lines: Vec::new(),
        };
        let r = scan_object_nested(text, &mut log);
        (r, log.lines)
    }

    #[test]
    fn walks_nested_objects_in_one_pass_as_scanning_level_by_level_would() {
        let text = " { \"a\" : { \"b\" : 1 , \"c\\\"d\" : { \"e\":\"x\\\"}\" , \"f\":{ } } },\"g.h\":[{\"i\":1}],\"j\":{\"k\":{\"l\":{\"m\":null}}},\"n\":true}\n";
        for max_depth in 0..5 {
            let mut want = Vec::new();
            reference(text, 0, max_depth, &mut want);
            assert_eq!(walk(text, max_depth), (ObjectScan::Object, want));
        }
        assert_eq!(
            walk(r#"{"a":{"b":{}}}"#, 9).1,
            ["0 open a", "1 leaf b={}", "0 close"]
        );
        assert_eq!(walk("{}", 9), (ObjectScan::Object, vec![]));
        assert_eq!(walk(" [1]", 9).0, ObjectScan::NotAnObject);
        for bad in [
            "",
            "{",
            "{\"a\":{\"b\":1}",
            "{\"a\":{\"b\" 1}}",
            "{\"a\":{\"b\":1,}}",
        ] {
            assert_eq!(walk(bad, 9).0, ObjectScan::Unreadable, "{bad:?}");
        }
    }

    proptest! {
        /// On any valid JSON object, the one-pass walk agrees with the level-by-level
        /// one.
        #[test]
        fn nested_walk_agrees_with_scanning_level_by_level(
            keys in prop::collection::vec("[a-c.\"\\\\]{0,3}", 1..6),
            nested in prop::collection::vec("[\\PC\"\\\\\n]{0,12}", 0..4),
            pretty in any::<bool>(),
            max_depth in 0usize..4,
        ) {
            let mut value = serde_json::json!({"list": nested, "o": {"k": [[], {}], "e": {}}});
            for k in &keys {
                value = serde_json::json!({ k.clone(): value, "s": k });
            }
            let text = if pretty { serde_json::to_string_pretty(&value).unwrap() } else { value.to_string() };
            let mut want = Vec::new();
            reference(&text, 0, max_depth, &mut want);
            prop_assert_eq!(walk(&text, max_depth), (ObjectScan::Object, want));
        }
    }

    #[test]
    fn scans_array_elements() {
        let mut v = Vec::new();
        assert!(scan_array(
            " [ 1 , \"a]\" ,[2,[3]], {\"k\":\"]\"} ,null]\n",
            |e| {
                v.push(e.to_owned());
                true
            }
        ));
        assert_eq!(v, ["1", "\"a]\"", "[2,[3]]", "{\"k\":\"]\"}", "null"]);
        assert!(scan_array("[]", |_| panic!("no element")));
        let mut n = 0;
        assert!(scan_array("[1,2,3]", |_| {
            n += 1;
            n < 2
        }));
        assert_eq!(n, 2);
        for bad in ["", "{}", "\"[1]\"", "[", "[1", "[1,", "[1 2]", "[\"x]"] {
            assert!(!scan_array(bad, |_| true), "{bad:?}");
        }
    }

    #[test]
    fn reads_integers() {
        assert_eq!(read_i64("42"), Some(42));
        assert_eq!(read_i64("-7"), Some(-7));
        assert_eq!(read_i64(r#""123""#), Some(123));
        assert_eq!(read_i64("9223372036854775807"), Some(i64::MAX));
        assert_eq!(read_i64("9223372036854775808"), None);
        assert_eq!(read_i64("1.5"), None);
        assert_eq!(read_i64("1e3"), None);
        assert_eq!(read_i64("007"), None);
        assert_eq!(read_i64(r#""""#), None);
        assert_eq!(read_i64("-"), None);
        assert_eq!(read_i64("-0"), None);
        assert_eq!(read_i64("0"), Some(0));
        assert_eq!(read_i64("true"), None);
    }
}
