//! The API's clock, as seen from this host.
//!
//! A source asks for the events up to "now minus the lag". Whose now? The events carry
//! the API's times, so the API's clock is the one that decides when an event is
//! searchable. When this host's clock runs ahead of the API's by more than the margin
//! between the configured lag and the tenant's real one, the window passes events
//! before the API lists them: the poll skips them and only reconciliation (if it is on,
//! and only when it looks late enough) finds them again. A fresh virtual machine whose
//! time sync steps its clock, or a host without NTP, is enough.
//!
//! Every API response carries a `Date` header (RFC 9110 requires it of a server with a
//! clock). One exchange bounds the offset (API time minus local time): the server
//! wrote `date` (truncated to the second) at some local instant between `sent` and
//! `received`, so
//!
//! ```text
//! date - received  <=  offset  <  date + 1s - sent
//! ```
//!
//! [`ApiClock`] intersects the bounds of the recent exchanges (dropping older ones that
//! contradict newer ones: a clock stepped) and uses the **lower** bound: the window's
//! "now" is then never later than the API's, at worst up to a second plus a round trip
//! earlier, which only adds that much to the lag. With no `Date` header the offset is 0
//! and nothing changes.
//!
//! The offset is exported as `c42fwd_api_clock_offset_seconds{tenant}`, and a skew of
//! more than [`WARN_AT`] is logged once (WARN) until it is gone again (INFO).

use chrono::{DateTime, TimeDelta, Utc};
use std::collections::VecDeque;
use std::sync::Mutex;

/// How many recent exchanges bound the offset.
const SAMPLES: usize = 32;

/// A skew the logs report: beyond what the `Date` header's one-second resolution and an
/// ordinary round trip explain.
pub const WARN_AT: TimeDelta = TimeDelta::seconds(2);

/// What one exchange says about the offset (API time minus local time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bounds {
    lo: TimeDelta,
    hi: TimeDelta,
}

impl Bounds {
    fn of(sent: DateTime<Utc>, received: DateTime<Utc>, date: DateTime<Utc>) -> Bounds {
        Bounds {
            lo: date.signed_duration_since(received),
            hi: (date + TimeDelta::seconds(1)).signed_duration_since(sent),
        }
    }

    fn intersect(self, other: Bounds) -> Option<Bounds> {
        let b = Bounds {
            lo: self.lo.max(other.lo),
            hi: self.hi.min(other.hi),
        };
        (b.lo <= b.hi).then_some(b)
    }
}

/// What a new exchange changed, for the caller to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skew {
    /// Nothing to report.
    Unchanged,
    /// The offset is now beyond [`WARN_AT`] (positive: the API's clock is ahead).
    Appeared(TimeDelta),
    /// It was, and is back within [`WARN_AT`].
    Gone(TimeDelta),
}

#[derive(Debug, Default)]
struct State {
    /// Newest last.
    samples: VecDeque<Bounds>,
    offset: TimeDelta,
    skewed: bool,
}

/// The offset of one tenant's API clock. Shared by its client and its sources.
#[derive(Debug, Default)]
pub struct ApiClock {
    state: Mutex<State>,
}

impl ApiClock {
    pub fn new() -> ApiClock {
        ApiClock::default()
    }

    /// The API's time now, by this host's clock and the estimated offset.
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.offset()
    }

    /// API time minus local time (conservative: never more than the true offset).
    pub fn offset(&self) -> TimeDelta {
        self.lock().offset
    }

    /// Whether a response with a `Date` header was seen yet (before that the offset is
    /// 0: this host's clock).
    pub fn is_known(&self) -> bool {
        !self.lock().samples.is_empty()
    }

    /// Takes one exchange into account: the request went out at `sent`, its response
    /// headers came at `received` (both local), and said `date`.
    pub fn observe(
        &self,
        sent: DateTime<Utc>,
        received: DateTime<Utc>,
        date: DateTime<Utc>,
    ) -> Skew {
        let mut st = self.lock();
        if st.samples.len() == SAMPLES {
            st.samples.pop_front();
        }
        st.samples.push_back(Bounds::of(sent, received, date));
        // From the newest back, as long as the exchanges agree; older ones that do not
        // are from before a clock step (of either side) and go.
        let mut kept = 0;
        let mut acc: Option<Bounds> = None;
        for b in st.samples.iter().rev() {
            match acc.map_or(Some(*b), |a| a.intersect(*b)) {
                Some(n) => {
                    acc = Some(n);
                    kept += 1;
                }
                None => break,
            }
        }
        let drop = st.samples.len() - kept;
        st.samples.drain(..drop);
        let Some(b) = acc else {
            return Skew::Unchanged;
        };
        st.offset = b.lo;
        // Reported when the skew is certain (the whole interval beyond WARN_AT), gone
        // when it certainly is not any more.
        let beyond = b.lo > WARN_AT || b.hi < -WARN_AT;
        let within = b.lo >= -WARN_AT && b.hi <= WARN_AT;
        if beyond && !st.skewed {
            st.skewed = true;
            Skew::Appeared(b.lo)
        } else if within && st.skewed {
            st.skewed = false;
            Skew::Gone(b.lo)
        } else {
            Skew::Unchanged
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere while holding it leaves plain numbers behind: still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The time of an HTTP `Date` header (IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`), or
/// `None` when it is missing or not one.
pub fn parse_http_date(value: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc2822(value.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// "5s behind" / "2m 3s ahead", to the second, for the logs.
pub fn describe(offset: TimeDelta) -> String {
    let secs = offset.num_seconds();
    let text = humantime::format_duration(std::time::Duration::from_secs(secs.unsigned_abs()));
    if secs < 0 {
        format!("{text} behind")
    } else {
        format!("{text} ahead of")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn ms(n: i64) -> TimeDelta {
        TimeDelta::milliseconds(n)
    }

    #[test]
    fn parses_the_http_date_forms_servers_send() {
        assert_eq!(
            parse_http_date("Wed, 02 Dec 2026 05:10:39 GMT"),
            Some(t("2026-12-02T05:10:39Z"))
        );
        assert_eq!(parse_http_date("yesterday"), None);
        assert_eq!(parse_http_date(""), None);
    }

    #[test]
    fn no_exchange_no_offset() {
        let c = ApiClock::new();
        assert_eq!(c.offset(), TimeDelta::zero());
        assert!(!c.is_known());
        let at = t("2026-12-02T05:00:00Z");
        c.observe(at, at, at);
        assert!(c.is_known());
    }

    #[test]
    fn a_clock_in_step_gives_an_offset_just_under_zero_and_reports_nothing() {
        let c = ApiClock::new();
        // Same clocks; the server's second boundary falls at various points of the
        // exchanges.
        let base = t("2026-12-02T05:00:00Z");
        for i in 0..10 {
            let sent = base + TimeDelta::seconds(i) + ms(100 * i);
            let received = sent + ms(20);
            let date = DateTime::from_timestamp(received.timestamp(), 0).unwrap();
            assert_eq!(c.observe(sent, received, date), Skew::Unchanged);
        }
        let o = c.offset();
        assert!(o <= TimeDelta::zero() && o > ms(-1000), "{o}");
    }

    #[test]
    fn the_offset_never_exceeds_the_true_one_and_closes_in_on_it() {
        // The API's clock is 5.3 s behind.
        let truth = ms(-5300);
        let c = ApiClock::new();
        let base = t("2026-12-02T05:00:00Z");
        let mut first = None;
        for i in 0..20 {
            let sent = base + ms(370 * i);
            let received = sent + ms(30);
            let server = sent + ms(15) + truth;
            let date = DateTime::from_timestamp(server.timestamp(), 0).unwrap();
            let skew = c.observe(sent, received, date);
            if i == 0 {
                first = Some(skew);
            }
            assert!(c.offset() <= truth, "{} > {truth}", c.offset());
        }
        assert!(matches!(first, Some(Skew::Appeared(o)) if o < TimeDelta::zero()));
        assert!(c.offset() > truth - ms(100), "{}", c.offset());
        assert!(c.now() < Utc::now() + truth + ms(1));
    }

    #[test]
    fn a_clock_step_replaces_the_old_estimate_and_reports_the_end_of_the_skew() {
        let c = ApiClock::new();
        let base = t("2026-12-02T05:00:00Z");
        let exchange = |i: i64, truth: TimeDelta| {
            let sent = base + ms(500 * i);
            let received = sent + ms(10);
            let date = DateTime::from_timestamp((sent + ms(5) + truth).timestamp(), 0).unwrap();
            c.observe(sent, received, date)
        };
        assert!(matches!(exchange(0, ms(-8000)), Skew::Appeared(_)));
        for i in 1..5 {
            assert_eq!(exchange(i, ms(-8000)), Skew::Unchanged);
        }
        // Time sync fixed this host: the clocks agree from now on.
        assert!(matches!(exchange(5, ms(0)), Skew::Gone(_)));
        let o = c.offset();
        assert!(o <= TimeDelta::zero() && o > ms(-1100), "{o}");
    }

    #[test]
    fn describes_the_direction() {
        assert_eq!(describe(TimeDelta::seconds(-5)), "5s behind");
        assert_eq!(describe(TimeDelta::seconds(63)), "1m 3s ahead of");
    }
}
