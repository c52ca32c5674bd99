//! The CEF extension keys of a session (`cef_map::SESSION_KEYS`): the session's own
//! fields where a key takes them whole, and what its summary
//! (`normalize::sessions::SessionSummary`) adds up: state, score, risk indicators,
//! alerts. A child of `cef` for its extension writer and `details`.

use super::super::cef_map::{AlertKey, AlertValue, KeyValue, SessionValue, SESSION_KEYS};
use super::super::json::{write_bounded, write_compact, Emit};
use super::{alert_field_fits, key_and_label, mapped_field, Ext};
use crate::normalize::json::read_i64;
use crate::normalize::time::{write_rfc3339, Civil};
use crate::normalize::Record;
use std::borrow::Cow;

/// Writes the session keys of [`SESSION_KEYS`] that have a value; returns the set of
/// fields they took (bit `i` for `rec.fields[i]`), which `details` leaves out.
pub(super) fn write_session_keys(ext: &mut Ext<'_>, rec: &Record<'_>, civil: &Civil) -> u128 {
    let mut mapped = 0u128;
    let summary = rec.session.as_deref();
    let field = |name: &str| mapped_field(rec, name);
    for k in SESSION_KEYS {
        let key_and_label = |ext: &mut Ext<'_>| key_and_label(ext, k.key, k.label);
        let list = |items: &[Cow<'_, str>]| (!items.is_empty()).then(|| items.join(", "));
        let int = |ext: &mut Ext<'_>, n: Option<i64>| {
            if let Some(n) = n {
                key_and_label(ext);
                ext.out
                    .extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            }
        };
        let text: Option<String> = match k.value {
            SessionValue::Field(name) | SessionValue::BoundedJson(name) => {
                let Some((i, f)) = field(name) else {
                    continue;
                };
                // The same test of fit as an alert's keys.
                let as_alert = AlertKey {
                    key: k.key,
                    label: k.label,
                    value: match k.value {
                        SessionValue::BoundedJson(n) => AlertValue::BoundedJson(n),
                        _ => AlertValue::Field(name),
                    },
                    kind: k.kind,
                    limit: k.limit,
                };
                if !alert_field_fits(&as_alert, f.value) {
                    continue;
                }
                mapped |= 1 << i;
                key_and_label(ext);
                if matches!(k.value, SessionValue::BoundedJson(_)) {
                    let mut v = ext.value(k.limit);
                    if write_bounded(&mut v, f.value, k.limit).is_none() {
                        write_compact(&mut v, f.value);
                    }
                } else {
                    match read_i64(f.value).filter(|_| k.kind == KeyValue::Integer) {
                        Some(n) => ext
                            .out
                            .extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
                        None => ext.field_value("", f, k.limit),
                    }
                }
                continue;
            }
            SessionValue::ExactTime => {
                key_and_label(ext);
                write_rfc3339(ext.out, civil, 9);
                continue;
            }
            SessionValue::Score => {
                int(ext, summary.and_then(|s| s.score));
                continue;
            }
            SessionValue::RiskSeverity => {
                int(ext, summary.and_then(|s| s.risk_severity));
                continue;
            }
            SessionValue::AlertCount => {
                int(
                    ext,
                    summary
                        .and_then(|s| s.alert_count)
                        .map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
                );
                continue;
            }
            SessionValue::State => summary.and_then(|s| s.state.as_deref().map(str::to_owned)),
            SessionValue::Indicators => summary.and_then(|s| list(&s.indicators)),
            SessionValue::RuleIds => summary.and_then(|s| list(&s.rule_ids)),
            SessionValue::AlertIds => summary.and_then(|s| list(&s.alert_ids)),
        };
        if let Some(text) = text {
            key_and_label(ext);
            ext.value(k.limit).emit(text.as_bytes());
        }
    }
    mapped
}
