//! A push parser that splits a search response into its events while the body arrives
//! (ARCHITECTURE.md, invariant 3: pages are parsed into per-event raw JSON, not held
//! as one tree).
//!
//! It scans the bytes once, tracking only nesting depth and string state, and keeps:
//! the elements of one array (the top-level `"events"` for the Audit Log; other
//! responses name theirs by a path of object keys with [`PageSplitter::for_path`], such
//! as `data` / `Directory Sync Logs`), each as the exact JSON text received
//! (a `Box<RawValue>`, validated as it is cut out), the result count next to that array
//! (`"totalResultCount"` by default, [`PageSplitter::counting`] names another), and the
//! top-level `"problems"` value as raw text (the alert service reports a filter it
//! cannot apply there, with a 200 and no results). Everything else is skipped without
//! being stored. So a page costs its events' text plus one event's worth of buffer,
//! never the whole body and never a `serde_json::Value` tree; and it never holds more
//! than [`PageSplitter::at_most`] records (the caller stops reading past that).
//!
//! It is not a validating parser for the parts it skips; what it keeps is valid JSON.

use serde_json::value::RawValue;

/// What a search response holds for us.
#[derive(Debug, Default)]
pub(super) struct SplitPage {
    /// `None` when the response has no such array: an Audit Log page with no records,
    /// or one past the gateway's result window (the caller tells them apart by the
    /// count, `audit::missing_events`).
    pub(super) events: Option<Vec<Box<RawValue>>>,
    /// The result count of the whole query, as the response reported it.
    pub(super) total_result_count: Option<u64>,
    /// The top-level `problems` value, as received.
    pub(super) problems: Option<Box<RawValue>>,
    /// The top-level value named by [`PageSplitter::keeping`] (File Events:
    /// `nextPgToken`), as received.
    pub(super) kept: Option<Box<RawValue>>,
}

#[derive(Debug, Default)]
pub(super) struct PageSplitter {
    /// The object keys leading from the top-level object to the array whose elements are
    /// kept (at least one).
    path: &'static [&'static [u8]],
    /// The key of the result count, in the object that holds the kept array.
    count_key: &'static [u8],
    /// The most records the caller accepts (see [`PageSplitter::too_many`]).
    max_records: usize,
    /// How many objects of `path` (after the top-level one) we are inside: keys are
    /// tracked in the innermost, at depth `matched + 1`.
    matched: u32,
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// At the key depth, the next string is a key.
    expect_key: bool,
    in_key: bool,
    key: Vec<u8>,
    /// The key whose value is being read at the key depth.
    last_key: Vec<u8>,
    in_events: bool,
    /// One element of `events`.
    elem: Capture,
    in_total: bool,
    total: Vec<u8>,
    /// The top-level `problems` value.
    problems: Capture,
    /// The key of [`PageSplitter::keeping`] (empty: none) and its value.
    kept_key: &'static [u8],
    kept: Capture,
    started: bool,
    done: bool,
    out: SplitPage,
}

/// The most records accepted in answer to a request for `asked`: a margin over it (a
/// server that rounds a page size up is not refused), far below what would matter for
/// memory.
pub(super) fn record_cap(asked: usize) -> usize {
    asked.saturating_add(asked / 10).saturating_add(10)
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Scans the bytes of an array element being cut out, from the start of `b`, in the
/// splitter's state (`depth`, inside a string, after a backslash): how many of them
/// belong to the element, and whether it ended there (`b[n]` is then the `,` or `]`
/// that follows it, at `end_depth`). Only strings and nesting are followed; the
/// element's grammar is checked when it is taken ([`Capture::finish`]).
#[inline]
fn scan_element(
    b: &[u8],
    end_depth: u32,
    depth: &mut u32,
    in_string: &mut bool,
    escaped: &mut bool,
) -> Result<(usize, bool), String> {
    let mut i = 0;
    while i < b.len() {
        if *in_string {
            if *escaped {
                *escaped = false;
                i += 1;
                continue;
            }
            let Some(j) = memchr::memchr2(b'"', b'\\', &b[i..]) else {
                return Ok((b.len(), false));
            };
            i += j;
            if b[i] == b'"' {
                *in_string = false;
            } else {
                *escaped = true;
            }
        } else {
            match b[i] {
                b'"' => *in_string = true,
                b'{' | b'[' => *depth += 1,
                c @ (b'}' | b']') => {
                    if *depth == end_depth {
                        // The element's end; a `}` cannot close the array.
                        return if c == b']' {
                            Ok((i, true))
                        } else {
                            Err("unbalanced json".to_string())
                        };
                    }
                    *depth -= 1;
                }
                b',' if *depth == end_depth => return Ok((i, true)),
                _ => {}
            }
        }
        i += 1;
    }
    Ok((b.len(), false))
}

/// A value being copied out of the body as it arrives, byte for byte.
#[derive(Debug, Default)]
struct Capture {
    active: bool,
    text: Vec<u8>,
    /// The length of the last value captured: the next one starts with that much room,
    /// since the events of a page are of much the same size (no regrowing per event).
    last_len: usize,
}

impl Capture {
    /// Starts the capture at `b`, the first byte of the value.
    fn start(&mut self, b: u8) {
        self.active = true;
        self.text.clear();
        self.text
            .reserve(self.last_len.saturating_add(self.last_len / 4));
        self.text.push(b);
    }

    /// Takes `b` (outside strings: the splitter's `depth` follows the nesting),
    /// unless it is the `,` or `close` at depth `end_depth` that ends the value:
    /// whether it ended it.
    #[inline]
    fn take(
        &mut self,
        b: u8,
        end_depth: u32,
        close: u8,
        depth: &mut u32,
        in_string: &mut bool,
    ) -> bool {
        if *depth == end_depth && (b == b',' || b == close) {
            return true;
        }
        self.text.push(b);
        match b {
            b'{' | b'[' => *depth += 1,
            // A close at the value's own depth that does not end it (`}` for `]`)
            // is not json: kept, and refused when the value is taken.
            b'}' | b']' if *depth > end_depth => *depth -= 1,
            b'"' => *in_string = true,
            _ => {}
        }
        false
    }

    /// The value captured (trailing white space trimmed), validated as JSON; `what`
    /// names it in the error.
    fn finish(&mut self, what: &str) -> Result<Box<RawValue>, String> {
        while self.text.last().is_some_and(|b| is_ws(*b)) {
            self.text.pop();
        }
        self.last_len = self.text.len();
        let text = String::from_utf8(std::mem::take(&mut self.text))
            .map_err(|_| format!("{what} is not valid utf-8"))?;
        let raw = RawValue::from_string(text).map_err(|e| format!("{what} is not json: {e}"))?;
        self.active = false;
        Ok(raw)
    }
}

impl PageSplitter {
    /// A splitter of the top-level `"events"` array (Audit Log responses).
    pub(super) fn new() -> Self {
        PageSplitter::for_path(&[b"events"])
    }

    /// A splitter of the array at `path`: `&[b"alerts"]` is the top-level `alerts`
    /// array, `&[b"data", b"items"]` the `items` array of the top-level `data` object.
    /// An empty path keeps nothing.
    pub(super) fn for_path(path: &'static [&'static [u8]]) -> Self {
        PageSplitter {
            path,
            count_key: b"totalResultCount",
            max_records: usize::MAX,
            ..PageSplitter::default()
        }
    }

    /// Reads the result count from `key` instead of `totalResultCount` (alerts:
    /// `totalCount`; the Sync Log: `TotalResults`, inside `data`).
    pub(super) fn counting(mut self, key: &'static [u8]) -> Self {
        self.count_key = key;
        self
    }

    /// Also keeps the top-level value of `key`, raw ([`SplitPage::kept`]).
    pub(super) fn keeping(mut self, key: &'static [u8]) -> Self {
        self.kept_key = key;
        self
    }

    /// Accepts at most `n` records: past that, [`Self::too_many`] says so.
    pub(super) fn at_most(mut self, n: usize) -> Self {
        self.max_records = n;
        self
    }

    /// Whether more records than [`Self::at_most`] allows were cut out.
    pub(super) fn too_many(&self) -> Option<usize> {
        let n = self.out.events.as_ref().map_or(0, Vec::len);
        (n > self.max_records).then_some(self.max_records)
    }

    /// Whether the value being read is the result count.
    fn at_count(&self) -> bool {
        !self.expect_key
            && self.depth == self.key_depth()
            && self.matched as usize + 1 == self.path.len()
            && self.last_key == self.count_key
    }

    fn count_name(&self) -> String {
        String::from_utf8_lossy(self.count_key).into_owned()
    }

    /// The depth at which keys are tracked: inside the innermost object of the path.
    fn key_depth(&self) -> u32 {
        self.matched + 1
    }

    /// The depth of the kept array's elements' separators (inside the array).
    fn array_depth(&self) -> u32 {
        self.path.len() as u32 + 1
    }

    /// Whether the value being read at the key depth is the next step of the path.
    fn on_path(&self) -> bool {
        self.path
            .get(self.matched as usize)
            .is_some_and(|k| self.last_key == *k)
    }

    /// Takes the next chunk of the body.
    ///
    /// Most of a page is its events: the bytes of the event being cut out are scanned
    /// in a tight loop that follows only strings and nesting ([`scan_element`]) and
    /// copied in one piece per chunk. Outside events, most of what is skipped is the
    /// inside of strings, taken a run at a time up to the next `"` or `\`; only those
    /// bytes and the rest of the body go through [`Self::byte`]. Keys, the `problems`
    /// value and a kept value are taken byte by byte.
    pub(super) fn feed(&mut self, chunk: &[u8]) -> Result<(), String> {
        let mut i = 0;
        while i < chunk.len() {
            if self.elem.active {
                let rest = &chunk[i..];
                let (n, ended) = scan_element(
                    rest,
                    self.array_depth(),
                    &mut self.depth,
                    &mut self.in_string,
                    &mut self.escaped,
                )?;
                self.elem.text.extend_from_slice(&rest[..n]);
                i += n;
                if !ended {
                    break;
                }
                let raw = self.elem.finish("an event")?;
                self.out.events.get_or_insert_with(Vec::new).push(raw);
                // The separator / end of the array is structural.
                self.byte(chunk[i])?;
            } else if self.in_string
                && !self.escaped
                && !self.in_key
                && !self.problems.active
                && !self.kept.active
            {
                let rest = &chunk[i..];
                let run = memchr::memchr2(b'"', b'\\', rest).unwrap_or(rest.len());
                i += run;
                let Some(&b) = chunk.get(i) else { break };
                self.byte(b)?;
            } else {
                self.byte(chunk[i])?;
            }
            i += 1;
        }
        Ok(())
    }

    /// The body is complete.
    pub(super) fn finish(self) -> Result<SplitPage, String> {
        if !self.started {
            return Err("empty response body".to_string());
        }
        if !self.done {
            return Err("response body ends inside the json document".to_string());
        }
        Ok(self.out)
    }

    /// Starts capturing the top-level `problems` value at `b`, if that is where we are.
    fn starts_problems(&mut self, b: u8) {
        if self.depth == 1 && !self.expect_key {
            if self.last_key == b"problems" {
                self.problems.start(b);
            } else if !self.kept_key.is_empty() && self.last_key == self.kept_key {
                self.kept.start(b);
            }
        }
    }

    fn end_total(&mut self) -> Result<(), String> {
        let text = String::from_utf8_lossy(&self.total);
        let text = text.trim();
        self.out.total_result_count = match text {
            "null" => None,
            t => Some(
                t.parse::<u64>()
                    .map_err(|_| format!("{} {t:?} is not a count", self.count_name()))?,
            ),
        };
        self.in_total = false;
        self.total.clear();
        Ok(())
    }

    fn byte(&mut self, b: u8) -> Result<(), String> {
        if self.done {
            return if is_ws(b) {
                Ok(())
            } else {
                Err("data after the json document".to_string())
            };
        }
        if self.in_string {
            // Per byte of every string: two plain tests, no loop over the captures (an
            // event is taken by `feed`, never here).
            if self.problems.active {
                self.problems.text.push(b);
            }
            if self.kept.active {
                self.kept.text.push(b);
            }
            if self.escaped {
                self.escaped = false;
            } else if b == b'\\' {
                self.escaped = true;
            } else if b == b'"' {
                self.in_string = false;
                if self.in_key {
                    self.in_key = false;
                    self.expect_key = false;
                    self.last_key = std::mem::take(&mut self.key);
                }
                return Ok(());
            }
            if self.in_key {
                self.key.push(b);
            }
            return Ok(());
        }
        let array_depth = self.array_depth();
        if self.problems.active {
            if !self
                .problems
                .take(b, 1, b'}', &mut self.depth, &mut self.in_string)
            {
                return Ok(());
            }
            self.out.problems = Some(self.problems.finish("problems")?);
            // fall through: the separator / end of object is structural
        }
        if self.kept.active {
            if !self
                .kept
                .take(b, 1, b'}', &mut self.depth, &mut self.in_string)
            {
                return Ok(());
            }
            self.out.kept = Some(self.kept.finish("a kept value")?);
            // fall through: the separator / end of object is structural
        }
        if self.in_total {
            if b == b',' || b == b'}' {
                self.end_total()?;
            } else {
                self.total.push(b);
                return Ok(());
            }
        }
        if is_ws(b) {
            return Ok(());
        }
        let key_depth = self.key_depth();
        match b {
            b'{' | b'[' => {
                if self.depth == 0 {
                    if b != b'{' {
                        return Err("the response is not a json object".to_string());
                    }
                    self.started = true;
                    self.depth = 1;
                    self.expect_key = true;
                } else if self.depth == key_depth && self.on_path() {
                    if self.matched as usize + 1 == self.path.len() {
                        // The last key of the path: its value is the kept array (any
                        // other value is skipped).
                        if b == b'[' {
                            self.in_events = true;
                            self.out.events.get_or_insert_with(Vec::new);
                        }
                    } else if b == b'{' {
                        // One more object of the path: track its keys.
                        self.matched += 1;
                        self.expect_key = true;
                        self.last_key.clear();
                    }
                    self.depth += 1;
                } else if self.depth == array_depth && self.in_events {
                    self.elem.start(b);
                    self.depth = array_depth + 1;
                } else {
                    // A value that is not kept, unless it is the `problems` value.
                    self.starts_problems(b);
                    self.depth += 1;
                }
            }
            b'}' | b']' => {
                if self.depth == 0 {
                    return Err("unbalanced json".to_string());
                }
                if self.depth == array_depth && self.in_events {
                    self.in_events = false;
                }
                if self.matched > 0 && self.depth == key_depth {
                    // The innermost object of the path ends.
                    self.matched -= 1;
                    self.last_key.clear();
                }
                self.depth -= 1;
                if self.depth == 0 {
                    self.done = true;
                }
            }
            b'"' => {
                self.in_string = true;
                if self.depth == key_depth && self.expect_key {
                    self.in_key = true;
                    self.key.clear();
                } else if self.depth == array_depth && self.in_events {
                    self.elem.start(b);
                } else if self.at_count() {
                    return Err(format!("{} is a string, not a count", self.count_name()));
                } else {
                    self.starts_problems(b);
                }
            }
            b',' => {
                if self.depth == key_depth {
                    self.expect_key = true;
                }
            }
            b':' => {}
            _ => {
                if self.depth == 0 {
                    return Err("the response is not a json object".to_string());
                }
                if self.depth == array_depth && self.in_events {
                    self.elem.start(b);
                } else if self.at_count() {
                    self.in_total = true;
                    self.total.clear();
                    self.total.push(b);
                } else {
                    self.starts_problems(b);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_in_chunks(body: &[u8], chunk: usize) -> Result<SplitPage, String> {
        split_with(PageSplitter::new(), body, chunk)
    }

    /// What `s` makes of `body` fed in chunks of `chunk` bytes.
    fn split_with(mut s: PageSplitter, body: &[u8], chunk: usize) -> Result<SplitPage, String> {
        for c in body.chunks(chunk.max(1)) {
            s.feed(c)?;
        }
        s.finish()
    }

    /// The kept elements' texts.
    fn texts(events: Option<Vec<Box<RawValue>>>) -> Option<Vec<String>> {
        events.map(|v| v.into_iter().map(|e| e.get().to_string()).collect())
    }

    /// The kept elements' texts and the count, as [`reference`] gives them.
    fn events_and_count(page: SplitPage) -> (Option<Vec<String>>, Option<u64>) {
        (texts(page.events), page.total_result_count)
    }

    /// The reference: what serde_json makes of the same body.
    fn reference(body: &[u8]) -> (Option<Vec<String>>, Option<u64>) {
        #[derive(serde::Deserialize)]
        struct R {
            #[serde(default)]
            events: Option<Vec<Box<RawValue>>>,
            #[serde(default, rename = "totalResultCount")]
            total: Option<u64>,
        }
        let r: R = serde_json::from_slice(body).unwrap();
        (texts(r.events), r.total)
    }

    fn check(body: &str) {
        let want = reference(body.as_bytes());
        for chunk in [1, 2, 3, 7, 64, body.len()] {
            let got = events_and_count(split_in_chunks(body.as_bytes(), chunk).unwrap());
            assert_eq!(got, want, "chunk {chunk}: {body}");
        }
    }

    #[test]
    fn matches_serde_on_tricky_bodies() {
        check(r#"{"events":[]}"#);
        check(
            r#"{"type$":"x","events":[{"a":1},{"b":[1,{"c":"]}"}]}],"paginationRangeStartIndex":0}"#,
        );
        check(
            r#" { "totalResultCount" : 25000 , "events" : [ { "s" : "a\"b\\", "t":"}]," } , {"n":null} ] } "#,
        );
        check(r#"{"totalResultCount":25000}"#);
        check(r#"{"meta":{"events":[1,2]},"events":[{"x":"\u00e9\n"}]}"#);
        check(r#"{"events":[1,"two",true,null,[3]]}"#);
        check(r#"{"events":[{"k":"events"}],"other":"events","totalResultCount":null}"#);
        check("{\"events\":[{\"a\" :\n 1}\n,\t{\"b\":2}\r\n]}");
    }

    #[test]
    fn a_named_array_is_split_and_events_ignored() {
        let body = br#"{"type$":"ALERT_QUERY_RESPONSE","events":[1],"alerts":[{"id":"a"},{"id":"b"}],"totalCount":2}"#;
        let mut s = PageSplitter::for_path(&[b"alerts"]);
        s.feed(body).unwrap();
        let page = s.finish().unwrap();
        let got: Vec<&str> = page
            .events
            .as_ref()
            .unwrap()
            .iter()
            .map(|e| e.get())
            .collect();
        assert_eq!(got, vec![r#"{"id":"a"}"#, r#"{"id":"b"}"#]);
        let mut s = PageSplitter::for_path(&[b"alerts"]);
        s.feed(br#"{"events":[{"a":1}]}"#).unwrap();
        assert!(s.finish().unwrap().events.is_none());
    }

    #[test]
    fn the_problems_value_is_kept_as_received() {
        let problems = |body: &str| {
            let mut out = Vec::new();
            for chunk in [1, 3, body.len()] {
                let mut s = PageSplitter::for_path(&[b"alerts"]);
                for c in body.as_bytes().chunks(chunk) {
                    s.feed(c).unwrap();
                }
                let p = s.finish().unwrap();
                out.push(p.problems.map(|r| r.get().to_string()));
            }
            assert!(out.windows(2).all(|w| w[0] == w[1]), "{out:?}");
            out.pop().unwrap()
        };
        assert_eq!(
            problems(
                r#"{"alerts":[],"totalCount":0,"problems":[{"type":"IllegalValue","badFilter":{"v":"a,}]"}}]}"#
            ),
            Some(r#"[{"type":"IllegalValue","badFilter":{"v":"a,}]"}}]"#.to_string())
        );
        assert_eq!(
            problems(r#"{"problems" : [] , "alerts":[{"problems":[1]}]}"#),
            Some("[]".to_string())
        );
        assert_eq!(
            problems(r#"{"alerts":[],"problems":null}"#),
            Some("null".to_string())
        );
        assert_eq!(
            problems(r#"{"alerts":[],"problems":"x\"y"}"#),
            Some(r#""x\"y""#.to_string())
        );
        assert_eq!(problems(r#"{"alerts":[],"meta":{"problems":[1]}}"#), None);
    }

    #[test]
    fn a_kept_top_level_value_is_read_in_any_chunking() {
        let kept = |body: &str| {
            let mut out = Vec::new();
            for chunk in [1, 2, 7, body.len()] {
                let mut s = PageSplitter::for_path(&[b"fileEvents"])
                    .counting(b"totalCount")
                    .keeping(b"nextPgToken");
                for c in body.as_bytes().chunks(chunk) {
                    s.feed(c).unwrap();
                }
                let p = s
                    .finish()
                    .unwrap_or_else(|e| panic!("{e}: {body} in chunks of {chunk}"));
                let events = p.events.map_or(0, |e| e.len());
                out.push((
                    p.kept.map(|r| r.get().to_string()),
                    events,
                    p.total_result_count,
                ));
            }
            assert!(out.windows(2).all(|w| w[0] == w[1]), "{out:?}");
            out.pop().unwrap()
        };
        assert_eq!(
            kept(
                r#"{"totalCount":3,"nextPgToken":"1_2_a\"b","problems":[],"fileEvents":[{"nextPgToken":"inner"},{}]}"#
            ),
            (Some(r#""1_2_a\"b""#.to_string()), 2, Some(3))
        );
        // after the events, null, or absent
        assert_eq!(
            kept(r#"{"fileEvents":[{"a":[1,{"b":"}"}]}],"nextPgToken" : null }"#),
            (Some("null".to_string()), 1, None)
        );
        assert_eq!(
            kept(r#"{"fileEvents":[],"totalCount":0}"#),
            (None, 0, Some(0))
        );
        // a nested key of that name is not the top-level one
        assert_eq!(
            kept(r#"{"meta":{"nextPgToken":"x"},"fileEvents":[]}"#),
            (None, 0, None)
        );
    }

    const NESTED: &[&[u8]] = &[b"data", b"Directory Sync Logs"];

    /// The reference for a nested path: serde_json on `/data/Directory Sync Logs`.
    fn nested_reference(body: &[u8]) -> Option<Vec<String>> {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        let arr = v.pointer("/data/Directory Sync Logs")?.as_array()?;
        // serde's Value re-serializes; compare the element texts through RawValue
        // instead, as the splitter keeps them.
        #[derive(serde::Deserialize)]
        struct Outer {
            data: Inner,
        }
        #[derive(serde::Deserialize)]
        struct Inner {
            #[serde(rename = "Directory Sync Logs")]
            logs: Vec<Box<RawValue>>,
        }
        let o: Outer = serde_json::from_slice(body).unwrap();
        assert_eq!(o.data.logs.len(), arr.len());
        Some(
            o.data
                .logs
                .into_iter()
                .map(|e| e.get().to_string())
                .collect(),
        )
    }

    fn check_nested(body: &str) {
        let want = nested_reference(body.as_bytes());
        for chunk in [1, 2, 5, 64, body.len()] {
            let got = split_with(PageSplitter::for_path(NESTED), body.as_bytes(), chunk);
            assert_eq!(texts(got.unwrap().events), want, "chunk {chunk}: {body}");
        }
    }

    #[test]
    fn a_nested_array_is_split() {
        check_nested(
            r#"{"data":{"Directory Sync Logs":[{"a":1},{"b":"]}"}],"PageNumber":1,"TotalResults":2},"error":null,"warnings":null}"#,
        );
        // decoys: the same key elsewhere, at the wrong depth, before the real one
        check_nested(
            r#"{"Directory Sync Logs":[9],"meta":{"data":{"Directory Sync Logs":[8]}},"data":{"x":{"Directory Sync Logs":[7]},"Directory Sync Logs":[ {"k":"data"} , 3 ]}}"#,
        );
        check_nested(r#"{"data":{"Directory Sync Logs":[]}}"#);
        check_nested(
            " { \"data\" : { \"PageSize\" : 0 , \"Directory Sync Logs\" : [ [1, {\"z\":[]}] ] } } ",
        );
        // the array missing, or data not an object
        let mut s = PageSplitter::for_path(NESTED);
        s.feed(br#"{"data":[{"Directory Sync Logs":[1]}],"error":"x"}"#)
            .unwrap();
        assert!(s.finish().unwrap().events.is_none());
        let mut s = PageSplitter::for_path(NESTED);
        s.feed(br#"{"data":{"other":[1]}}"#).unwrap();
        assert!(s.finish().unwrap().events.is_none());
    }

    #[test]
    fn random_nested_pages_split_like_serde() {
        let mut rng = fastrand::Rng::with_seed(11);
        for _ in 0..200 {
            let n = rng.usize(0..15);
            let entries: Vec<String> = (0..n)
                .map(|i| {
                    let s: String = (0..rng.usize(0..10))
                        .map(|_| {
                            rng.choice(['a', '"', '\\', '{', ']', ',', ':', 'é'])
                                .unwrap()
                        })
                        .collect();
                    serde_json::json!({"i": i, "s": s, "data": {"Directory Sync Logs": [s]}})
                        .to_string()
                })
                .collect();
            let ws = if rng.bool() { " " } else { "" };
            let body = format!(
                "{{{ws}\"data\":{ws}{{\"PageNumber\":1,{ws}\"Directory Sync Logs\":[{}],\"TotalResults\":{n}}},\"error\":null}}",
                entries.join(&format!("{ws},{ws}"))
            );
            let want = nested_reference(body.as_bytes());
            let chunk = rng.usize(1..40);
            let got = split_with(PageSplitter::for_path(NESTED), body.as_bytes(), chunk);
            assert_eq!(texts(got.unwrap().events), want);
        }
    }

    #[test]
    fn the_count_is_read_from_the_named_key_next_to_the_array() {
        let count = |path: &'static [&'static [u8]], key: &'static [u8], body: &str| {
            let mut out = Vec::new();
            for chunk in [1, 4, body.len()] {
                let mut s = PageSplitter::for_path(path).counting(key);
                for c in body.as_bytes().chunks(chunk) {
                    s.feed(c).unwrap();
                }
                out.push(s.finish().unwrap().total_result_count);
            }
            assert!(out.windows(2).all(|w| w[0] == w[1]), "{out:?}");
            out[0]
        };
        assert_eq!(
            count(
                &[b"alerts"],
                b"totalCount",
                r#"{"alerts":[{"totalCount":9}],"totalCount":42,"problems":[]}"#
            ),
            Some(42)
        );
        assert_eq!(
            count(
                NESTED,
                b"TotalResults",
                r#"{"TotalResults":1,"data":{"Directory Sync Logs":[{"TotalResults":2}],"PageNumber":1,"TotalResults": 77 },"error":null}"#
            ),
            Some(77)
        );
        assert_eq!(
            count(
                NESTED,
                b"TotalResults",
                r#"{"data":{"Directory Sync Logs":[]}}"#
            ),
            None
        );
        let mut s = PageSplitter::for_path(&[b"alerts"]).counting(b"totalCount");
        s.feed(br#"{"alerts":[],"totalCount":"many"}"#).unwrap_err();
    }

    #[test]
    fn too_many_records_are_reported_as_soon_as_they_are_cut_out() {
        let mut s = PageSplitter::new().at_most(2);
        s.feed(br#"{"events":[{"a":1},{"a":2}"#).unwrap();
        assert_eq!(s.too_many(), None);
        s.feed(br#",{"a":3}"#).unwrap();
        assert_eq!(s.too_many(), None, "the third is not complete yet");
        s.feed(b",").unwrap();
        assert_eq!(s.too_many(), Some(2));
        assert_eq!(record_cap(1_000), 1_110);
        assert_eq!(record_cap(0), 10);
    }

    #[test]
    fn rejects_broken_bodies() {
        assert!(split_in_chunks(b"", 4).is_err());
        assert!(split_in_chunks(b"<html>", 4).is_err());
        assert!(split_in_chunks(br#"{"events":[{"a":1}"#, 4).is_err());
        assert!(split_in_chunks(br#"{"events":[{"a":}]}"#, 4).is_err());
        assert!(split_in_chunks(br#"{"totalResultCount":"many"}"#, 4).is_err());
        assert!(split_in_chunks(br#"{"events":[]} x"#, 4).is_err());
        assert!(split_in_chunks(br#"[1]"#, 4).is_err());
        // Closing more than an event opened: refused, in any chunking, never a panic.
        for chunk in 1..8 {
            assert!(split_in_chunks(br#"{"events":[1}}}}}}]}"#, chunk).is_err());
            assert!(split_in_chunks(br#"{"events":[{"a":[1]}}}}}}]}"#, chunk).is_err());
            assert!(split_in_chunks(br#"{"events":["a\"}]}"#, chunk).is_err());
            assert!(split_in_chunks(br#"{"problems":[]]]]]}"#, chunk).is_err());
            assert!(split_in_chunks(br#"{"problems":[1]}]]]]}"#, chunk).is_err());
            let kept = PageSplitter::for_path(&[b"fileEvents"]).keeping(b"nextPgToken");
            assert!(split_with(kept, br#"{"nextPgToken":[]]]]}"#, chunk).is_err());
        }
    }

    #[test]
    fn random_pages_split_like_serde() {
        let mut rng = fastrand::Rng::with_seed(9);
        for _ in 0..200 {
            let n = rng.usize(0..20);
            let events: Vec<String> = (0..n)
                .map(|i| {
                    let s: String = (0..rng.usize(0..12))
                        .map(|_| {
                            rng.choice(['a', '"', '\\', '{', ']', ',', ' ', 'é', '\n'])
                                .unwrap()
                        })
                        .collect();
                    serde_json::json!({"i": i, "s": s, "nested": {"arr": [i, s]}}).to_string()
                })
                .collect();
            let ws = if rng.bool() { " " } else { "" };
            let body = format!(
                "{{{ws}\"type$\":\"r\",{ws}\"events\":{ws}[{}]{ws},\"totalResultCount\":{n}}}",
                events.join(&format!("{ws},{ws}"))
            );
            let want = reference(body.as_bytes());
            let got = split_in_chunks(body.as_bytes(), rng.usize(1..50)).unwrap();
            assert_eq!(events_and_count(got), want);
        }
    }
}
