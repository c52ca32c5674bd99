//! Property tests of the encoders: for any event of any data set (hostile strings in any
//! field, any JSON value, any shape), every format, syslog style and framing yields a
//! record that keeps the framing and escaping invariants, every CEF value parses back
//! to the original value or its truncation, and every LEEF value parses back exactly.
//! The CEF and LEEF readers below are deliberately independent of the encoders: they
//! read the text the way a SIEM would.

use super::cef_map::{self, AlertValue, CefKey, KeyValue, ALERT_KEYS, COMMON_RULES};
use super::file_events_map::FILE_EVENT_CEF_KEYS;
use super::leef;
use super::tests::{encoder, event_of};
use super::{Format, Framing, SyslogStyle};
use crate::event::SourceKind;
use crate::normalize::alerts::ALERT_TYPES;
use crate::normalize::catalog::AUDIT_EVENT_TYPES;
use crate::normalize::{normalize, Record};
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

// ---------------------------------------------------------------- a tiny CEF reader

/// Splits a CEF message into its seven header fields (unescaped) and the extension.
fn split_cef(msg: &str) -> (Vec<String>, &str) {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = msg.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, n)) => cur.push(n),
                None => cur.push('\\'),
            },
            '|' => {
                fields.push(std::mem::take(&mut cur));
                if fields.len() == 7 {
                    return (fields, &msg[i + 1..]);
                }
            }
            c => cur.push(c),
        }
    }
    panic!("fewer than 7 header separators in {msg:?}");
}

fn unescape_value(v: &str) -> String {
    let mut out = String::new();
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('=') => out.push('='),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some(o) => panic!("unknown escape \\{o} in {v:?}"),
            None => panic!("dangling backslash in {v:?}"),
        }
    }
    out
}

/// Parses `k1=v1 k2=v2 ...`: a key is the run of ASCII alphanumerics before an
/// unescaped `=`, preceded by the start or one space; a value runs to the space before
/// the next key.
fn parse_extension(ext: &str) -> Vec<(String, String)> {
    let b = ext.as_bytes();
    let mut eqs = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'=' => {
                eqs.push(i);
                i += 1
            }
            _ => i += 1,
        }
    }
    let starts: Vec<usize> = eqs
        .iter()
        .map(|&eq| {
            let mut s = eq;
            while s > 0 && b[s - 1].is_ascii_alphanumeric() {
                s -= 1;
            }
            assert!(s < eq, "empty key before = at {eq} in {ext:?}");
            assert!(
                s == 0 || b[s - 1] == b' ',
                "key not after a space in {ext:?}"
            );
            s
        })
        .collect();
    assert!(
        eqs.is_empty() || starts[0] == 0,
        "junk before first key: {ext:?}"
    );
    let mut out = Vec::new();
    for (k, (&eq, &start)) in eqs.iter().zip(&starts).enumerate() {
        let end = match starts.get(k + 1) {
            Some(&next) => next - 1,
            None => ext.len(),
        };
        out.push((ext[start..eq].to_owned(), unescape_value(&ext[eq + 1..end])));
    }
    out
}

// ---------------------------------------------------------------- a tiny LEEF reader

/// A LEEF message read back: version, the header fields after the version (vendor,
/// product, version, EventID, unescaped), the delimiter, and the attributes in order
/// (keys as written, values unescaped).
struct Leef {
    version: String,
    header: Vec<String>,
    delimiter: char,
    attrs: Vec<(String, String)>,
}

/// Reads a LEEF 1.0 or 2.0 message as QRadar's documentation describes it: pipe-separated
/// header fields (`\|` and `\\` escaped), for 2.0 a delimiter given as one character or
/// as hex (`x09`, `0x09`), then `key=value` attributes separated by the delimiter, a key
/// ending at the first `=`.
fn read_leef(msg: &str) -> Leef {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = msg.char_indices();
    let mut rest = "";
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, n @ ('|' | '\\'))) => cur.push(n),
                Some((_, n)) => {
                    cur.push('\\');
                    cur.push(n)
                }
                None => cur.push('\\'),
            },
            '|' => {
                fields.push(std::mem::take(&mut cur));
                let want = if fields[0] == "LEEF:2.0" { 6 } else { 5 };
                if fields.len() == want {
                    rest = &msg[i + 1..];
                    break;
                }
            }
            c => cur.push(c),
        }
    }
    let version = fields.first().cloned().unwrap_or_default();
    assert!(
        version == "LEEF:1.0" && fields.len() == 5 || version == "LEEF:2.0" && fields.len() == 6,
        "LEEF header: {fields:?} in {msg:?}"
    );
    let delimiter = if version == "LEEF:2.0" {
        let d = &fields[5];
        let hex = d.strip_prefix("0x").or_else(|| d.strip_prefix('x'));
        match hex {
            Some(h) if !h.is_empty() => {
                char::from_u32(u32::from_str_radix(h, 16).unwrap()).unwrap()
            }
            _ => {
                assert_eq!(d.chars().count(), 1, "delimiter {d:?}");
                d.chars().next().unwrap()
            }
        }
    } else {
        '\t'
    };
    let attrs = if rest.is_empty() {
        Vec::new()
    } else {
        rest.split(delimiter)
            .map(|a| {
                let (k, v) = a.split_once('=').unwrap_or_else(|| panic!("no = in {a:?}"));
                (k.to_owned(), leef_unescape(v))
            })
            .collect()
    };
    Leef {
        version,
        header: fields[1..5].to_vec(),
        delimiter,
        attrs,
    }
}

/// `\\` `\t` `\n` `\r` are escapes; any other backslash is itself (the reference decoder
/// of LEEF's value escaping).
pub(super) fn leef_unescape(v: &str) -> String {
    let mut out = String::new();
    let mut chars = v.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let e = match chars.peek() {
            Some('\\') => '\\',
            Some('t') => '\t',
            Some('n') => '\n',
            Some('r') => '\r',
            _ => {
                out.push('\\');
                continue;
            }
        };
        out.push(e);
        chars.next();
    }
    out
}

// ---------------------------------------------------------------- generators

fn arb_char() -> impl Strategy<Value = char> {
    prop_oneof![
        6 => any::<char>(),
        1 => prop::sample::select(vec!['\n', '\r', '|', '=', '\\', ' ', '"', '\0', '\u{2028}', 'é', '😀']),
    ]
}

fn arb_text() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => prop::collection::vec(arb_char(), 0..40).prop_map(String::from_iter),
        1 => (prop::collection::vec(arb_char(), 1..8), 200..1200usize)
            .prop_map(|(unit, n)| String::from_iter(unit).repeat(n)),
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e9f64..1e9).prop_map(|f| json!(f)),
        arb_text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(arb_text(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn arb_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => arb_text().prop_map(Value::String),
        2 => any::<i64>().prop_map(Value::from),
        1 => Just(Value::Null),
        2 => arb_json(),
    ]
}

fn arb_ip() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|a| std::net::Ipv4Addr::from(a).to_string()),
        any::<[u16; 8]>().prop_map(|a| std::net::Ipv6Addr::from(a).to_string()),
    ]
}

fn arb_ip_field() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => arb_ip().prop_map(Value::String),
        2 => (prop::collection::vec(arb_ip(), 1..5), prop::sample::select(vec![",", ", ", " , "]))
            .prop_map(|(ips, sep)| Value::String(ips.join(sep))),
        1 => Just(json!("")),
        1 => Just(json!("null")),
        1 => arb_value(),
    ]
}

/// A file event (`/v2/file-events`): nested objects, hostile text where users put it,
/// known and unknown actions and severities, lists, and arbitrary extra members.
fn arb_file_event() -> impl Strategy<Value = Value> {
    let actions: Vec<String> = crate::normalize::file_events::FILE_EVENT_ACTIONS
        .iter()
        .map(|a| a.name.to_owned())
        .collect();
    (
        (arb_text(), arb_text(), arb_text(), arb_text()),
        prop_oneof![3 => prop::sample::select(actions), 1 => arb_text()],
        prop_oneof![
            3 => prop::sample::select(vec!["LOW", "HIGH", "CRITICAL", "NO_RISK_INDICATED"])
                .prop_map(str::to_owned),
            1 => arb_text()
        ],
        (arb_timestamp(), arb_timestamp(), arb_ip_field()),
        prop::collection::vec(arb_text(), 0..3),
        (arb_value(), arb_json()),
    )
        .prop_map(
            |((name, dir, email, subject), action, sev, (ts, ins, ip), list, (size, extra))| {
                json!({
                    "@timestamp": ts,
                    "event": {"id": format!("0_{name}"), "inserted": ins, "action": action,
                        "shareType": list.clone()},
                    "user": {"email": email, "id": "1001", "deviceUid": subject.clone()},
                    "file": {"name": name, "directory": dir, "sizeInBytes": size,
                        "hash": {"sha256": subject.clone(), "md5": null}, "empty": {}},
                    "source": {"ip": ip, "name": dir, "tabs": []},
                    "destination": {"category": "Email", "name": email,
                        "email": {"recipients": list, "subject": subject.clone()},
                        "tabs": [{"title": name, "url": subject}]},
                    "risk": {"severity": sev, "score": 3},
                    "x": extra,
                })
            },
        )
}

fn arb_timestamp() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => (0i64..4_102_444_800, 0u32..1_000_000_000, 0usize..10).prop_map(|(s, ns, digits)| {
            let t = chrono::DateTime::from_timestamp(s, ns).unwrap();
            let base = t.format("%Y-%m-%dT%H:%M:%S").to_string();
            let frac = format!("{ns:09}");
            Value::String(if digits == 0 {
                format!("{base}Z")
            } else {
                format!("{base}.{}Z", &frac[..digits])
            })
        }),
        1 => arb_value(),
    ]
}

/// Every field name some mapping rule knows, so that mapped keys get hostile values too.
fn mapped_names() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = COMMON_RULES
        .iter()
        .flat_map(|r| r.fields.iter().copied())
        .collect();
    for t in AUDIT_EVENT_TYPES {
        for r in cef_map::type_rules(t.name).unwrap_or(&[]) {
            v.extend(r.fields.iter().copied());
        }
    }
    v.sort_unstable();
    v.dedup();
    v
}

fn arb_type() -> impl Strategy<Value = Option<Value>> {
    let names: Vec<&'static str> = AUDIT_EVENT_TYPES.iter().map(|t| t.name).collect();
    prop_oneof![
        6 => prop::sample::select(names).prop_map(|n| Some(json!(format!("audit_log::{n}/1")))),
        1 => arb_text().prop_map(|t| Some(json!(format!("audit_log::{t}/1")))),
        1 => arb_value().prop_map(Some),
        1 => Just(None),
    ]
}

prop_compose! {
    fn arb_event_object()(
        type_tag in arb_type(),
        actor in prop::collection::vec(prop::option::of(prop_oneof![4 => arb_text().prop_map(Value::String), 1 => arb_value()]), 4),
        ip in prop::option::of(arb_ip_field()),
        ts in prop::option::of(arb_timestamp()),
        success in prop::option::of(prop_oneof![3 => any::<bool>().prop_map(Value::Bool), 1 => arb_value()]),
        mapped in prop::collection::vec((prop::sample::select(mapped_names()), arb_value()), 0..8),
        extra in prop::collection::vec((arb_text(), arb_value()), 0..4),
    ) -> Value {
        let mut m = Map::new();
        if let Some(t) = type_tag { m.insert("type$".into(), t); }
        for (k, v) in ["actorId", "actorName", "actorType", "actorAgent"].iter().zip(actor) {
            if let Some(v) = v { m.insert((*k).into(), v); }
        }
        if let Some(ip) = ip { m.insert("actorIpAddress".into(), ip); }
        if let Some(ts) = ts { m.insert("timestamp".into(), ts); }
        if let Some(s) = success { m.insert("success".into(), s); }
        for (k, v) in mapped { m.insert(k.into(), v); }
        for (k, v) in extra { m.insert(k, v); }
        Value::Object(m)
    }
}

fn arb_event() -> impl Strategy<Value = (Value, bool)> {
    (
        prop_oneof![9 => arb_event_object(), 1 => arb_json()],
        any::<bool>(),
    )
}

/// Values for a key that usually holds a string of some shape.
fn mostly(s: impl Strategy<Value = String> + 'static) -> impl Strategy<Value = Value> {
    prop_oneof![
        5 => s.prop_map(Value::String),
        1 => arb_text().prop_map(Value::String),
        1 => arb_value(),
    ]
}

fn arb_file() -> impl Strategy<Value = Value> {
    (
        mostly("[a-z]{1,8}\\.(png|docx|zip)".boxed()),
        prop::option::of(mostly(
            "(C:\\\\Users\\\\[a-z]{1,5}\\\\|/home/[a-z]{1,5}/)".boxed(),
        )),
        prop::option::of(prop_oneof![3 => any::<u32>().prop_map(Value::from), 1 => arb_value()]),
    )
        .prop_map(|(name, path, size)| {
            let mut m = Map::new();
            m.insert("type$".into(), json!("OBSERVED_FILE"));
            m.insert("name".into(), name);
            if let Some(p) = path {
                m.insert("path".into(), p);
            }
            if let Some(s) = size {
                m.insert("size".into(), s);
            }
            Value::Object(m)
        })
}

fn arb_observation_data() -> impl Strategy<Value = Value> {
    let exposure = prop::sample::select(vec![
        "ApplicationRead",
        "CloudStorage",
        "RemovableMedia",
        "IsPublic",
        "PublicLinkShare",
    ]);
    let data = (
        prop::collection::vec(exposure, 0..4),
        prop::collection::vec(arb_file(), 0..12),
        prop::option::of(prop_oneof![3 => any::<u16>().prop_map(Value::from), 1 => arb_value()]),
        prop::option::of(any::<u32>().prop_map(Value::from)),
        prop::collection::vec(prop_oneof![arb_ip(), arb_text()], 0..3),
        prop::collection::vec(mostly("Dropbox|Box|OneDrive".boxed()), 0..3),
        prop::collection::vec((arb_text(), arb_value()), 0..3),
    )
        .prop_map(|(exp, files, count, size, ips, sync, extra)| {
            let mut m = Map::new();
            m.insert("type$".into(), json!("OBSERVED_ENDPOINT_ACTIVITY"));
            m.insert("exposureTypes".into(), json!(exp));
            if let Some(c) = count {
                m.insert("fileCount".into(), c);
            }
            if let Some(s) = size {
                m.insert("totalFileSize".into(), s);
            }
            m.insert("files".into(), Value::Array(files));
            m.insert("sendingIpAddresses".into(), json!(ips));
            m.insert("syncToServices".into(), Value::Array(sync));
            for (k, v) in extra {
                m.insert(k, v);
            }
            Value::Object(m)
        });
    prop_oneof![
        6 => data,
        // The source leaves `data` a string when it is not JSON.
        1 => arb_text().prop_map(Value::String),
        1 => arb_value(),
    ]
}

fn arb_observation() -> impl Strategy<Value = Value> {
    (arb_observation_data(), arb_timestamp()).prop_map(|(data, at)| {
        json!({"type$": "OBSERVATION", "id": "o1", "observedAt": at, "type": "FedEndpointExfiltration", "data": data})
    })
}

prop_compose! {
    fn arb_alert_object()(
        kind in prop_oneof![
            6 => prop::sample::select(ALERT_TYPES.iter().map(|t| t.name).collect::<Vec<_>>())
                .prop_map(|n| json!(n)),
            1 => arb_value(),
        ],
        text in prop::collection::vec(prop::option::of(mostly(arb_text().boxed())), 8),
        severity in prop::option::of(mostly("HIGH|MEDIUM|LOW".boxed())),
        risk in prop::option::of(mostly("CRITICAL|HIGH|MODERATE|LOW|NO_RISK_INDICATED|UNKNOWN".boxed())),
        state in prop::option::of(mostly("OPEN|RESOLVED|IN_PROGRESS|PENDING|RESOLVED_FP".boxed())),
        created in prop::option::of(arb_timestamp()),
        watchlists in prop::option::of(prop_oneof![
            3 => prop::collection::vec(arb_text().prop_map(|n| json!({"type$": "WATCHLIST", "id": "w", "name": n})), 0..3)
                .prop_map(Value::Array),
            1 => arb_value(),
        ]),
        observations in prop::option::of(prop_oneof![
            6 => prop::collection::vec(arb_observation(), 0..4).prop_map(Value::Array),
            1 => arb_value(),
        ]),
        extra in prop::collection::vec((arb_text(), arb_value()), 0..3),
    ) -> Value {
        let mut m = Map::new();
        m.insert("type$".into(), json!("ALERT_DETAILS"));
        m.insert("type".into(), kind);
        let names = ["name", "description", "actor", "actorId", "target", "ruleId", "ruleSource", "id"];
        for (k, v) in names.iter().zip(text) {
            if let Some(v) = v { m.insert((*k).into(), v); }
        }
        for (k, v) in [("severity", severity), ("riskSeverity", risk), ("state", state),
                       ("createdAt", created), ("watchlists", watchlists), ("observations", observations)] {
            if let Some(v) = v { m.insert(k.into(), v); }
        }
        for (k, v) in extra { m.insert(k, v); }
        Value::Object(m)
    }
}

prop_compose! {
    fn arb_sync_object()(
        action in prop_oneof![
            5 => prop::sample::select(c42fwd_emulator::SYNC_LOG_ACTIONS)
                .prop_map(|n| json!(n)),
            1 => arb_value(),
        ],
        values in prop::collection::vec(prop::option::of(mostly(arb_text().boxed())), 5),
        at in prop::option::of(arb_timestamp()),
        extra in prop::collection::vec((arb_text(), arb_value()), 0..3),
    ) -> Value {
        let mut m = Map::new();
        m.insert("action".into(), action);
        for (k, v) in ["username", "field", "oldValue", "newValue", "providerName"].iter().zip(values) {
            if let Some(v) = v { m.insert((*k).into(), v); }
        }
        if let Some(at) = at { m.insert("logEventTimeStamp".into(), at); }
        for (k, v) in extra { m.insert(k, v); }
        Value::Object(m)
    }
}

fn arb_epoch_ms() -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => (1_500_000_000_000i64..1_900_000_000_000).prop_map(|t| json!(t)),
        1 => any::<i64>().prop_map(|t| json!(t)),
        1 => arb_value(),
    ]
}

fn arb_timed(field: &'static str) -> impl Strategy<Value = Value> {
    (
        prop_oneof![
            4 => prop::sample::select(
                crate::normalize::sessions::SESSION_STATES.iter().map(|s| s.name).collect::<Vec<_>>()
            ).prop_map(|n| json!(n)),
            1 => (0i64..12).prop_map(|n| json!(n)),
            1 => arb_value(),
        ],
        arb_epoch_ms(),
        prop::option::of(arb_text()),
    )
        .prop_map(move |(v, at, user)| {
            let mut m = Map::new();
            m.insert(field.into(), v);
            if field == "score" {
                m.insert("severity".into(), json!(at.as_i64().map_or(0, |t| t.rem_euclid(6))));
            }
            m.insert("sourceTimestamp".into(), at);
            if let Some(u) = user {
                m.insert("userId".into(), json!(u));
            }
            Value::Object(m)
        })
}

prop_compose! {
    fn arb_session_object()(
        text in prop::collection::vec(prop::option::of(mostly(arb_text().boxed())), 5),
        times in prop::collection::vec(prop::option::of(arb_epoch_ms()), 4),
        states in prop::option::of(prop_oneof![
            6 => prop::collection::vec(arb_timed("state"), 0..5).prop_map(Value::Array),
            1 => arb_value(),
        ]),
        scores in prop::option::of(prop_oneof![
            6 => prop::collection::vec(arb_timed("score"), 0..5).prop_map(Value::Array),
            1 => arb_value(),
        ]),
        indicators in prop::option::of(prop_oneof![
            6 => prop::collection::vec(arb_text().prop_map(|n| json!({"indicatorName": n})), 0..15)
                .prop_map(Value::Array),
            1 => arb_value(),
        ]),
        alerts in prop::option::of(prop_oneof![
            6 => prop::collection::vec((arb_text(), arb_text())
                .prop_map(|(a, r)| json!({"alertId": a, "ruleId": r})), 0..15)
                .prop_map(Value::Array),
            1 => arb_value(),
        ]),
        extra in prop::collection::vec((arb_text(), arb_value()), 0..3),
    ) -> Value {
        let mut m = Map::new();
        let names = ["sessionId", "actorId", "tenantId", "exfiltrationSummary", "contextSummary"];
        for (k, v) in names.iter().zip(text) {
            if let Some(v) = v { m.insert((*k).into(), v); }
        }
        for (k, v) in ["beginTime", "endTime", "firstObserved", "lastUpdated"].iter().zip(times) {
            if let Some(v) = v { m.insert((*k).into(), v); }
        }
        for (k, v) in [("states", states), ("scores", scores), ("riskIndicators", indicators),
                       ("triggeredAlerts", alerts)] {
            if let Some(v) = v { m.insert(k.into(), v); }
        }
        for (k, v) in extra { m.insert(k, v); }
        Value::Object(m)
    }
}

fn to_text(v: &Value, pretty: bool) -> String {
    if pretty {
        serde_json::to_string_pretty(v).unwrap()
    } else {
        serde_json::to_string(v).unwrap()
    }
}

// ---------------------------------------------------------------- checks

const FORMATS: [Format; 5] = [
    Format::Cef,
    Format::JsonRaw,
    Format::JsonNormalized,
    Format::Leef2,
    Format::Leef1,
];
const STYLES: [SyslogStyle; 3] = [
    SyslogStyle::Rfc5424,
    SyslogStyle::Rfc3164,
    SyslogStyle::None,
];
const FRAMINGS: [Framing; 3] = [Framing::OctetCounting, Framing::Lf, Framing::None];

/// Removes the framing; checks it on the way.
fn unframe(framing: Framing, out: &[u8]) -> &str {
    let s = std::str::from_utf8(out).expect("records are UTF-8");
    match framing {
        Framing::Lf => {
            let body = s.strip_suffix('\n').expect("LF-framed record ends with LF");
            assert!(
                !body.contains('\n') && !body.contains('\r'),
                "CR/LF inside {body:?}"
            );
            body
        }
        Framing::OctetCounting => {
            let (len, msg) = s.split_once(' ').expect("octet count and space");
            assert!(!len.starts_with('0') && len.bytes().all(|b| b.is_ascii_digit()));
            assert_eq!(len.parse::<usize>().unwrap(), msg.len(), "octet count");
            msg
        }
        Framing::None => s,
    }
}

/// Removes the syslog header; checks its shape.
fn strip_header(style: SyslogStyle, msg: &str) -> &str {
    match style {
        SyslogStyle::None => msg,
        SyslogStyle::Rfc5424 => {
            let mut parts = msg.splitn(8, ' ');
            let pri = parts.next().unwrap();
            assert!(pri.starts_with('<') && pri.ends_with(">1"), "{pri}");
            let head: Vec<&str> = (0..6).map(|_| parts.next().unwrap()).collect();
            assert_eq!(head[1], "fwd01.example.com");
            assert_eq!(head[2], "c42fwd");
            assert_eq!(head[3], "-");
            assert!(head[4].len() <= 32 && head[4].bytes().all(|b| (33..=126).contains(&b)));
            assert_eq!(head[5], "-");
            parts.next().unwrap_or("")
        }
        SyslogStyle::Rfc3164 => {
            let at = msg
                .find(" fwd01.example.com c42fwd: ")
                .expect("3164 header");
            assert_eq!(at, msg.find('>').unwrap() + 16, "timestamp is 15 chars");
            &msg[at + " fwd01.example.com c42fwd: ".len()..]
        }
    }
}

fn truncated(s: &str, limit: usize) -> &str {
    super::cef::truncate(s, limit)
}

/// The text a CEF key shows for a JSON value: a string's text, else compact JSON.
fn rendered(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => serde_json::to_string(other).unwrap(),
    }
}

fn header_text(s: &str, limit: usize) -> String {
    truncated(s, limit).replace(['\r', '\n'], " ")
}

/// Where a field of `rec` goes in CEF, if a rule or the alert table names a key for it:
/// (key, label key, kind, limit, bounded).
fn cef_target(
    rec: &Record<'_>,
    field: &str,
) -> Option<(&'static str, Option<&'static str>, KeyValue, usize, bool)> {
    let from_rule = |key: CefKey| {
        (
            key.name(),
            key.label(),
            key.value_kind(),
            key.limit(),
            false,
        )
    };
    match rec.source {
        SourceKind::AuditLog => {
            cef_map::key_for(cef_map::type_rules_by_index(rec.catalog_index), field)
                .map(|(k, _)| from_rule(k))
        }
        SourceKind::SyncLog => {
            cef_map::lookup_for(SourceKind::SyncLog, None, field).map(|(k, _)| from_rule(k))
        }
        SourceKind::Alerts => ALERT_KEYS.iter().find_map(|k| match k.value {
            AlertValue::Field(n) if n == field => {
                Some((k.key, k.label.map(|l| l.0), k.kind, k.limit, false))
            }
            AlertValue::BoundedJson(n) if n == field => {
                Some((k.key, k.label.map(|l| l.0), k.kind, k.limit, true))
            }
            _ => None,
        }),
        SourceKind::Sessions => cef_map::SESSION_KEYS.iter().find_map(|k| match k.value {
            cef_map::SessionValue::Field(n) if n == field => {
                Some((k.key, k.label.map(|l| l.0), k.kind, k.limit, false))
            }
            cef_map::SessionValue::BoundedJson(n) if n == field => {
                Some((k.key, k.label.map(|l| l.0), k.kind, k.limit, true))
            }
            _ => None,
        }),
        SourceKind::FileEvents => FILE_EVENT_CEF_KEYS.iter().find_map(|k| match k.value {
            AlertValue::Field(n) | AlertValue::List(n) if n == field => {
                Some((k.key, k.label.map(|l| l.0), k.kind, k.limit, false))
            }
            _ => None,
        }),
    }
}

/// Whether `shown` is `v` cut from the inside by the bounded writer: valid JSON, equal
/// to `v`, a prefix of it for a string, or a container that says it lost something.
fn bounded_ok(shown: &str, v: &Value) -> bool {
    match serde_json::from_str::<Value>(shown) {
        Ok(p) if &p == v => true,
        Ok(Value::String(p)) => matches!(v, Value::String(s) if s.starts_with(&p)),
        Ok(p @ (Value::Object(_) | Value::Array(_))) => p.to_string().contains("\"_truncated\":"),
        _ => false,
    }
}

/// Checks one CEF message against the event it came from.
fn check_cef(msg: &str, rec: &Record<'_>, original: &Value) {
    let (header, ext) = split_cef(msg);
    assert_eq!(header[0], "CEF:0");
    assert_eq!(header[1], "Code42");
    assert_eq!(header[2], super::cef::product(rec.source));
    assert_eq!(header[3], "1");
    assert_eq!(header[4], header_text(&rec.class_id, 1023));
    assert_eq!(header[5], header_text(&rec.name, 512));
    assert!(header[6].parse::<u8>().unwrap() <= 10);

    let pairs = parse_extension(ext);
    let mut ext_map = BTreeMap::new();
    for (k, v) in &pairs {
        assert!(ext_map.insert(k.clone(), v.clone()).is_none(), "{k} twice");
    }
    let get = |k: &str| ext_map.get(k).map(String::as_str);
    let obj = original.as_object();
    let field = |k: &str| obj.and_then(|o| o.get(k));

    // Common keys read back exactly (or truncated to their limit).
    let (common, time_key): (&[(&str, &str, usize)], &str) = match rec.source {
        SourceKind::AuditLog => (
            &[
                ("actorId", "suid", 1023),
                ("actorName", "suser", 1023),
                ("actorAgent", "requestClientApplication", 1023),
                ("actorType", "cs1", 4000),
            ],
            "timestamp",
        ),
        SourceKind::Alerts => (
            &[("actorId", "suid", 1023), ("actor", "suser", 1023)],
            "createdAt",
        ),
        SourceKind::SyncLog => (&[], "logEventTimeStamp"),
        SourceKind::Sessions => (&[("actorId", "suid", 1023)], "lastUpdated"),
        SourceKind::FileEvents => (
            &[("user.id", "suid", 1023), ("user.email", "suser", 1023)],
            "@timestamp",
        ),
    };
    for (api, key, limit) in common {
        match field(api) {
            Some(Value::String(s)) => assert_eq!(get(key), Some(truncated(s, *limit)), "{key}"),
            _ => assert_eq!(get(key), None, "{key}"),
        }
    }
    assert!(get("rt").unwrap().parse::<i64>().is_ok());
    if rec.source == SourceKind::FileEvents {
        // `cs5` is the insert time; the record's time is `rt`.
        assert_eq!(
            get("rt").and_then(|t| t.parse::<i64>().ok()),
            Some(rec.time.timestamp_millis())
        );
    } else {
        let ts = get("cs5").unwrap();
        assert_eq!(crate::normalize::parse_rfc3339(ts), Some(rec.time));
    }
    if let Some(Value::String(ts_text)) = field(time_key) {
        if let Some(t) = crate::normalize::parse_rfc3339(ts_text) {
            assert_eq!(rec.time, t, "the event's own time wins");
        }
    }
    if let Some((ip, addr)) = rec.source_ips.first() {
        let key = if addr.is_ipv4() { "src" } else { "c6a1" };
        assert_eq!(get(key), Some(ip));
    }
    if let Some(s) = rec.session.as_deref() {
        // A session's summary keys: its current state and latest score, as read.
        assert_eq!(get("act"), s.state.as_deref().map(|t| truncated(t, 63)));
        assert_eq!(get("cn1"), s.score.map(|n| n.to_string()).as_deref());
        assert_eq!(
            get("cn2"),
            s.risk_severity.map(|n| n.to_string()).as_deref()
        );
    }
    if rec.source == SourceKind::SyncLog {
        match field("action") {
            Some(Value::String(a)) if !a.is_empty() => {
                assert_eq!(get("act"), Some(truncated(a, 63)))
            }
            _ => assert_eq!(get("act"), None),
        }
    }

    // Every value within its limit.
    for (k, v) in &pairs {
        let limit = match k.as_str() {
            "cs1" | "cs2" | "cs3" | "cs4" | "cs5" | "cs6" => 4000,
            "fileHash" => 255,
            "outcome" | "act" => 63,
            "externalId" => 40,
            k if k.starts_with("flexString") && k.ends_with("Label") => 128,
            _ => 1023,
        };
        assert!(v.len() <= limit, "{k} is {} bytes", v.len());
    }

    // The details field is valid JSON whenever present.
    let details: Map<String, Value> = match get("cs6") {
        Some(d) => {
            assert_eq!(get("cs6Label"), Some("details"));
            serde_json::from_str(d).unwrap_or_else(|e| panic!("details not JSON ({e}): {d:?}"))
        }
        None => Map::new(),
    };
    let truncated_count = details
        .get("_truncated")
        .and_then(Value::as_u64)
        .unwrap_or(0);

    // An alert's observation summary is what the observations add up to.
    if let Some(s) = rec.observations.as_deref() {
        assert_eq!(get("cn3Label"), Some("observationCount"));
        assert_eq!(get("cn3"), Some(s.count.to_string().as_str()));
        assert_eq!(get("cn1"), Some(s.file_count.to_string().as_str()));
        if let Some(Value::Array(obs)) = field("observations") {
            assert_eq!(obs.len(), s.count);
        }
    }

    // Nothing lost: each non-common field is in `details`, or in the key its rule
    // names (with its name as the label, for custom keys), or counted as truncated.
    // A value in details is the event's, or (counted in `_truncated`) a cut string.
    let check_detail = |key: &str, d: &Value, v: &Value| {
        if d != v {
            let (Value::String(d), Value::String(s)) = (d, v) else {
                panic!("details[{key}] differs from the event's value");
            };
            assert!(s.starts_with(d.as_str()) && truncated_count > 0, "{key}");
        }
    };
    let Some(obj) = obj else {
        match details.get("_raw") {
            Some(d) => check_detail("_raw", d, original),
            None => assert!(truncated_count > 0, "non-object event lost"),
        }
        return;
    };
    for f in &rec.fields {
        let v = &obj[f.key.as_ref()];
        if let Some(d) = details.get(f.key.as_ref()) {
            check_detail(&f.key, d, v);
            continue;
        }
        let Some((key, label, kind, limit, bounded)) = cef_target(rec, &f.key) else {
            assert!(truncated_count > 0, "{} lost", f.key);
            continue;
        };
        let label_ok = label.is_none_or(|l| get(l) == Some(f.key.as_ref()));
        let shown = get(key).filter(|_| label_ok);
        let shown_ok = shown.is_some_and(|shown| match (kind, v) {
            _ if bounded => bounded_ok(shown, v),
            (KeyValue::Integer, _) => shown
                .parse::<i64>()
                .is_ok_and(|n| rendered(v) == n.to_string()),
            (_, Value::String(s)) => shown == truncated(s, limit),
            // A file event's list of strings, `, `-separated.
            (_, Value::Array(a))
                if rec.source == SourceKind::FileEvents && a.iter().all(Value::is_string) =>
            {
                let items: Vec<&str> = a.iter().filter_map(Value::as_str).collect();
                shown == truncated(&items.join(", "), limit)
                    || serde_json::from_str::<Value>(shown).is_ok_and(|p| &p == v)
            }
            // Numbers, arrays, objects: compact JSON of the API's own digits, so compare
            // parsed (serde's float reading is not exact, but it is deterministic); a
            // value that does not parse must have been cut at the limit.
            _ => match serde_json::from_str::<Value>(shown) {
                Ok(p) => &p == v,
                Err(_) => shown.len() + 4 > limit,
            },
        });
        // Not in details and not where its rule puts it: only acceptable when details
        // had to leave entries out (a field that did not fit its key, or lost to a
        // preferred field, goes to details, which may be full).
        assert!(
            shown_ok || truncated_count > 0,
            "{} = {v} not in {key} ({shown:?})",
            f.key,
        );
    }
}

/// Checks one LEEF message against the event it came from: every value reads back
/// exactly, every field is somewhere, no key twice.
fn check_leef(msg: &str, rec: &Record<'_>, original: &Value, format: Format) {
    assert!(!msg.contains(['\n', '\r']), "line break in {msg:?}");
    let l = read_leef(msg);
    match format {
        Format::Leef2 => {
            assert_eq!(l.version, "LEEF:2.0");
            assert_eq!(l.delimiter, '\t');
        }
        _ => assert_eq!(l.version, "LEEF:1.0"),
    }
    assert_eq!(l.header[0], "Code42");
    assert_eq!(l.header[1], super::cef::product(rec.source));
    assert_eq!(l.header[2], "1");
    assert_eq!(
        l.header[3],
        truncated(&rec.class_id, 1023).replace(['\r', '\n', '\t'], " ")
    );
    let mut attrs = BTreeMap::new();
    for (k, v) in &l.attrs {
        assert!(leef::is_safe_key(k), "key {k:?}");
        assert!(attrs.insert(k.as_str(), v.as_str()).is_none(), "{k} twice");
    }
    let get = |k: &str| attrs.get(k).copied();
    assert_eq!(get("cat"), Some(rec.category));
    assert_eq!(
        get("sev").unwrap().parse::<u8>().unwrap(),
        rec.severity.clamp(1, 10)
    );
    assert_eq!(get("eventName"), Some(rec.name.as_ref()));
    assert_eq!(
        crate::normalize::parse_rfc3339(get(leef::TIMESTAMP_KEY).unwrap()),
        Some(rec.time)
    );
    if let Some(dt) = get("devTime") {
        assert_eq!(get("devTimeFormat"), Some(leef::DEV_TIME_FORMAT));
        let t = chrono::DateTime::parse_from_str(dt, "%Y-%m-%dT%H:%M:%S%.3f%z").unwrap();
        assert_eq!(t.timestamp_millis(), rec.time.timestamp_millis());
    }
    if let Some((ip, _)) = rec.source_ips.first() {
        assert_eq!(get("src"), Some(ip));
    }
    let obj = original.as_object();
    let field = |k: &str| obj.and_then(|o| o.get(k));
    let user_field = match rec.source {
        SourceKind::AuditLog => "actorName",
        SourceKind::Alerts => "actor",
        SourceKind::SyncLog => "username",
        // A session has no user name field.
        SourceKind::Sessions => "\u{0}none",
        SourceKind::FileEvents => "user.email",
    };
    match field(user_field) {
        Some(Value::String(u)) => assert_eq!(get("usrName"), Some(u.as_str())),
        _ => assert_eq!(get("usrName"), None),
    }
    // Every key is a documented one or a field's name.
    let known = |k: &str| {
        leef::is_reserved(rec.source, k) || k == "details" || rec.fields.iter().any(|f| f.key == k)
    };
    for k in attrs.keys() {
        assert!(known(k), "undocumented key {k}");
    }
    let details: Map<String, Value> = match get("details") {
        Some(d) => serde_json::from_str(d).unwrap_or_else(|e| panic!("details ({e}): {d:?}")),
        None => Map::new(),
    };
    // A non-object event is kept whole under `_raw`.
    let raw_only: Map<String, Value> = [("_raw".to_owned(), original.clone())]
        .into_iter()
        .collect();
    let obj = obj.unwrap_or(&raw_only);
    for f in &rec.fields {
        let v = &obj[f.key.as_ref()];
        if rec.source == SourceKind::SyncLog && f.key == "username" && v.is_string() {
            continue; // usrName, checked above
        }
        match (get(&f.key), details.get(f.key.as_ref())) {
            (Some(shown), None) => match v {
                Value::String(s) => assert_eq!(shown, s, "{}", f.key),
                other => {
                    let p: Value = serde_json::from_str(shown).unwrap();
                    assert_eq!(&p, other, "{}", f.key);
                }
            },
            (None, Some(d)) => assert_eq!(d, v, "{}", f.key),
            (a, b) => panic!("{}: key {a:?}, details {b:?}", f.key),
        }
    }
}

fn check_event(generated: &Value, pretty: bool, kind: SourceKind) {
    let text = to_text(generated, pretty);
    // Compare with the text read back, not with the generated value: serde_json's float
    // parsing is not exact, and the records copy the API's digits, not a float.
    let as_sent = serde_json::from_str::<Value>(&text).unwrap();
    // A file event's fields are its leaves under their dotted paths.
    let flat = match (kind, as_sent.as_object()) {
        (SourceKind::FileEvents, Some(_)) => Value::Object(super::golden::flattened(&as_sent)),
        _ => as_sent.clone(),
    };
    let original = &flat;
    let ev = event_of(kind, &text);
    let rec = normalize(&ev);
    for format in FORMATS {
        for style in STYLES {
            for framing in FRAMINGS {
                let enc = encoder(format, style, framing);
                let mut out = b"prev".to_vec();
                enc.encode(&ev, &mut out);
                assert!(out.starts_with(b"prev"));
                let msg = unframe(framing, &out[4..]);
                let body = strip_header(style, msg);
                match format {
                    Format::Cef => check_cef(body, &rec, original),
                    Format::Leef2 | Format::Leef1 => check_leef(body, &rec, original, format),
                    Format::JsonRaw => {
                        let v: Value = serde_json::from_str(body).unwrap();
                        assert_eq!(v, as_sent);
                        if framing != Framing::Lf {
                            assert_eq!(body, text, "raw JSON is untouched");
                        }
                    }
                    Format::JsonNormalized => {
                        let v: Value = serde_json::from_str(body).unwrap();
                        assert_eq!(v["class_id"], Value::String(rec.class_id.to_string()));
                        assert_eq!(v["source"], kind.as_str());
                        for f in &rec.fields {
                            let want = match original.as_object() {
                                Some(o) => &o[f.key.as_ref()],
                                None => original,
                            };
                            assert_eq!(&v["fields"][f.key.as_ref()], want);
                        }
                        if let Some(s) = rec.observations.as_deref() {
                            assert_eq!(v["observation_summary"]["count"], s.count);
                        }
                    }
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    #[test]
    fn every_record_keeps_the_invariants((original, pretty) in arb_event()) {
        check_event(&original, pretty, SourceKind::AuditLog);
    }

    #[test]
    fn every_alert_record_keeps_the_invariants(
        original in prop_oneof![9 => arb_alert_object(), 1 => arb_json()],
        pretty in any::<bool>(),
    ) {
        check_event(&original, pretty, SourceKind::Alerts);
    }

    #[test]
    fn every_sync_log_record_keeps_the_invariants(
        original in prop_oneof![9 => arb_sync_object(), 1 => arb_json()],
        pretty in any::<bool>(),
    ) {
        check_event(&original, pretty, SourceKind::SyncLog);
    }

    #[test]
    fn every_session_record_keeps_the_invariants(
        original in prop_oneof![9 => arb_session_object(), 1 => arb_json()],
        pretty in any::<bool>(),
    ) {
        check_event(&original, pretty, SourceKind::Sessions);
    }

    #[test]
    fn every_file_event_record_keeps_the_invariants(
        original in prop_oneof![9 => arb_file_event(), 1 => arb_json()],
        pretty in any::<bool>(),
    ) {
        check_event(&original, pretty, SourceKind::FileEvents);
    }

    #[test]
    fn leef_values_read_back(values in prop::collection::vec(arb_text(), 4)) {
        let original = json!({
            "type$": "audit_log::alert_note_edited/1",
            "actorName": values[0],
            "note": values[1],
            "alertId": values[2],
            "some.key-name_9": values[3],
            "timestamp": "2024-01-01T00:00:00.123456789Z",
        });
        let ev = event_of(SourceKind::AuditLog, &original.to_string());
        for format in [Format::Leef2, Format::Leef1] {
            let enc = encoder(format, SyslogStyle::None, Framing::None);
            let mut out = Vec::new();
            enc.encode(&ev, &mut out);
            let l = read_leef(std::str::from_utf8(&out).unwrap());
            let attrs: BTreeMap<_, _> = l.attrs.into_iter().collect();
            prop_assert_eq!(attrs["usrName"].as_str(), values[0].as_str());
            prop_assert_eq!(attrs["note"].as_str(), values[1].as_str());
            prop_assert_eq!(attrs["alertId"].as_str(), values[2].as_str());
            prop_assert_eq!(attrs["some.key-name_9"].as_str(), values[3].as_str());
            prop_assert_eq!(attrs["eventTimestamp"].as_str(), "2024-01-01T00:00:00.123456789Z");
        }
    }

    #[test]
    fn bounded_json_fits_and_says_what_it_cut(v in arb_json(), budget in 0usize..600) {
        let raw = v.to_string();
        // Compare with the text read back (serde's float reading is not exact).
        let v: Value = serde_json::from_str(&raw).unwrap();
        let mut out = Vec::new();
        match super::json::write_bounded(&mut out, &raw, budget) {
            None => prop_assert!(out.is_empty()),
            Some(n) => {
                prop_assert_eq!(n, out.len());
                prop_assert!(n <= budget, "{} > {}", n, budget);
                let text = std::str::from_utf8(&out).unwrap();
                let back: Value = serde_json::from_str(text).unwrap();
                if raw.len() <= budget {
                    prop_assert_eq!(&back, &v);
                } else {
                    prop_assert!(bounded_ok(text, &v), "{} from {}", text, raw);
                }
            }
        }
    }

    #[test]
    fn cef_values_read_back((name, agent, note) in (arb_text(), arb_text(), arb_text())) {
        let original = json!({
            "type$": "audit_log::alert_note_edited/1",
            "actorName": name,
            "actorAgent": agent,
            "note": note,
            "timestamp": "2024-01-01T00:00:00.123456789Z",
        });
        let ev = event_of(SourceKind::AuditLog, &original.to_string());
        let enc = encoder(Format::Cef, SyslogStyle::None, Framing::None);
        let mut out = Vec::new();
        enc.encode(&ev, &mut out);
        let (_, ext) = split_cef(std::str::from_utf8(&out).unwrap());
        let pairs: BTreeMap<_, _> = parse_extension(ext).into_iter().collect();
        prop_assert_eq!(pairs["suser"].as_str(), truncated(&name, 1023));
        prop_assert_eq!(pairs["requestClientApplication"].as_str(), truncated(&agent, 1023));
        prop_assert_eq!(pairs["msg"].as_str(), truncated(&note, 1023));
        prop_assert_eq!(pairs["cs5"].as_str(), "2024-01-01T00:00:00.123456789Z");
    }
}

#[test]
fn the_reader_reads_what_the_spec_shows() {
    let (h, ext) = split_cef(
        r"CEF:0|Vendor\|Inc|Prod|1.0|100|name \\ x|5|src=10.0.0.1 msg=a\=b c\\ d\nnext cs1=|x",
    );
    assert_eq!(h[1], "Vendor|Inc");
    assert_eq!(h[5], "name \\ x");
    let pairs = parse_extension(ext);
    assert_eq!(
        pairs,
        [
            ("src".to_owned(), "10.0.0.1".to_owned()),
            ("msg".to_owned(), "a=b c\\ d\nnext".to_owned()),
            ("cs1".to_owned(), "|x".to_owned()),
        ]
    );
}

#[test]
fn hostile_fixtures_keep_the_invariants() {
    for text in [
        r#"{"type$":"audit_log::a|b\\c\nd/1","actorName":"x\ny","note":"=|\\\r\n"}"#,
        r#"{"type$":"audit_log::logged_in/1","actorIpAddress":"::1, 10.0.0.1","timestamp":"2024-01-01T00:00:00.999999999Z"}"#,
        r#"[1,"two",{"three":3}]"#,
        r#""just a string""#,
        r#"{"":"","type$":"","timestamp":""}"#,
    ] {
        let v: Value = serde_json::from_str(text).unwrap();
        for kind in super::tests::KINDS {
            check_event(&v, false, kind);
            check_event(&v, true, kind);
        }
    }
}

#[test]
fn the_leef_reader_reads_what_the_spec_shows() {
    let l = read_leef("LEEF:2.0|Lancope|StealthWatch|1.0|41|^|src=10.0.1.8^dst=10.0.0.5^sev=5");
    assert_eq!(l.header, ["Lancope", "StealthWatch", "1.0", "41"]);
    assert_eq!(l.delimiter, '^');
    assert_eq!(l.attrs[1], ("dst".to_owned(), "10.0.0.5".to_owned()));
    let l = read_leef("LEEF:1.0|Microsoft|MSExchange|4.0 SP1|15345|src=192.0.2.0\tdst=a=b");
    assert_eq!(l.header[2], "4.0 SP1");
    assert_eq!(l.attrs[1], ("dst".to_owned(), "a=b".to_owned()));
    let text = format!(
        "{}\t{}",
        r"LEEF:2.0|V\\|x\|y|1|e|0x09|k=C:\Users\\new", r"z=\\"
    );
    let l = read_leef(&text);
    assert_eq!(l.header, [r"V\", "x|y", "1", "e"]);
    assert_eq!(l.attrs[0].1, r"C:\Users\new");
    assert_eq!(l.attrs[1].1, r"\");
}
