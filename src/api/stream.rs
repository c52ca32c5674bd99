//! A push parser that splits a search response into its events while the body arrives
//! (DESIGN invariant 3: large pages are parsed as streams, not held whole).
//!
//! It scans the bytes once, tracking only nesting depth and string state, and keeps:
//! the elements of the top-level `"events"` array, each as the exact JSON text received
//! (a `Box<RawValue>`, validated as it is cut out), and the top-level
//! `"totalResultCount"`. Everything else is skipped without being stored. So a page
//! costs its events' text plus one event's worth of buffer, never the whole body and
//! never a `serde_json::Value` tree.
//!
//! It is not a validating parser for the parts it skips; what it keeps is valid JSON.

use serde_json::value::RawValue;

/// What a search response holds for us.
#[derive(Debug, Default)]
pub(super) struct SplitPage {
    /// `None` when the response has no `events` array (Incydr past its result window).
    pub(super) events: Option<Vec<Box<RawValue>>>,
    pub(super) total_result_count: Option<u64>,
}

#[derive(Debug, Default)]
pub(super) struct PageSplitter {
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// At depth 1, the next string is a key.
    expect_key: bool,
    in_key: bool,
    key: Vec<u8>,
    /// The key whose value is being read at depth 1.
    last_key: Vec<u8>,
    in_events: bool,
    /// Capturing one element of `events`.
    elem_active: bool,
    elem: Vec<u8>,
    in_total: bool,
    total: Vec<u8>,
    started: bool,
    done: bool,
    out: SplitPage,
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

impl PageSplitter {
    pub(super) fn new() -> Self {
        PageSplitter::default()
    }

    /// Takes the next chunk of the body.
    pub(super) fn feed(&mut self, chunk: &[u8]) -> Result<(), String> {
        for &b in chunk {
            self.byte(b)?;
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

    fn end_elem(&mut self) -> Result<(), String> {
        while self.elem.last().is_some_and(|b| is_ws(*b)) {
            self.elem.pop();
        }
        let text = String::from_utf8(std::mem::take(&mut self.elem))
            .map_err(|_| "an event is not valid utf-8".to_string())?;
        let raw = RawValue::from_string(text).map_err(|e| format!("an event is not json: {e}"))?;
        self.out.events.get_or_insert_with(Vec::new).push(raw);
        self.elem_active = false;
        Ok(())
    }

    fn end_total(&mut self) -> Result<(), String> {
        let text = String::from_utf8_lossy(&self.total);
        let text = text.trim();
        self.out.total_result_count = match text {
            "null" => None,
            t => Some(
                t.parse::<u64>()
                    .map_err(|_| format!("totalResultCount {t:?} is not a count"))?,
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
            if self.elem_active {
                self.elem.push(b);
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
        if self.elem_active {
            if self.depth == 2 && (b == b',' || b == b']') {
                self.end_elem()?;
                // fall through: the separator / end of array is structural
            } else {
                self.elem.push(b);
                match b {
                    b'{' | b'[' => self.depth += 1,
                    b'}' | b']' => self.depth -= 1,
                    b'"' => self.in_string = true,
                    _ => {}
                }
                return Ok(());
            }
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
        match b {
            b'{' | b'[' => {
                if self.depth == 0 {
                    if b != b'{' {
                        return Err("the response is not a json object".to_string());
                    }
                    self.started = true;
                    self.depth = 1;
                    self.expect_key = true;
                } else if self.depth == 1 && b == b'[' && self.last_key == b"events" {
                    self.in_events = true;
                    self.out.events.get_or_insert_with(Vec::new);
                    self.depth = 2;
                } else if self.depth == 2 && self.in_events {
                    self.elem_active = true;
                    self.elem.clear();
                    self.elem.push(b);
                    self.depth = 3;
                } else {
                    self.depth += 1;
                }
            }
            b'}' | b']' => {
                if self.depth == 0 {
                    return Err("unbalanced json".to_string());
                }
                if self.depth == 2 && self.in_events {
                    self.in_events = false;
                }
                self.depth -= 1;
                if self.depth == 0 {
                    self.done = true;
                }
            }
            b'"' => {
                self.in_string = true;
                if self.depth == 1 && self.expect_key {
                    self.in_key = true;
                    self.key.clear();
                } else if self.depth == 2 && self.in_events {
                    self.elem_active = true;
                    self.elem.clear();
                    self.elem.push(b);
                } else if self.depth == 1 && self.last_key == b"totalResultCount" {
                    return Err("totalResultCount is a string, not a count".to_string());
                }
            }
            b',' => {
                if self.depth == 1 {
                    self.expect_key = true;
                }
            }
            b':' => {}
            _ => {
                if self.depth == 0 {
                    return Err("the response is not a json object".to_string());
                }
                if self.depth == 2 && self.in_events {
                    self.elem_active = true;
                    self.elem.clear();
                    self.elem.push(b);
                } else if self.depth == 1
                    && !self.expect_key
                    && self.last_key == b"totalResultCount"
                {
                    self.in_total = true;
                    self.total.clear();
                    self.total.push(b);
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
        let mut s = PageSplitter::new();
        for c in body.chunks(chunk.max(1)) {
            s.feed(c)?;
        }
        s.finish()
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
        (
            r.events
                .map(|v| v.into_iter().map(|e| e.get().to_string()).collect()),
            r.total,
        )
    }

    fn check(body: &str) {
        let want = reference(body.as_bytes());
        for chunk in [1, 2, 3, 7, 64, body.len()] {
            let got = split_in_chunks(body.as_bytes(), chunk).unwrap();
            let got = (
                got.events
                    .map(|v| v.into_iter().map(|e| e.get().to_string()).collect()),
                got.total_result_count,
            );
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
    fn rejects_broken_bodies() {
        assert!(split_in_chunks(b"", 4).is_err());
        assert!(split_in_chunks(b"<html>", 4).is_err());
        assert!(split_in_chunks(br#"{"events":[{"a":1}"#, 4).is_err());
        assert!(split_in_chunks(br#"{"events":[{"a":}]}"#, 4).is_err());
        assert!(split_in_chunks(br#"{"totalResultCount":"many"}"#, 4).is_err());
        assert!(split_in_chunks(br#"{"events":[]} x"#, 4).is_err());
        assert!(split_in_chunks(br#"[1]"#, 4).is_err());
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
            assert_eq!(
                (
                    got.events
                        .map(|v| v.into_iter().map(|e| e.get().to_string()).collect()),
                    got.total_result_count
                ),
                want
            );
        }
    }
}
