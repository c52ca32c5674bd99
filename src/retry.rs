//! The one retry mechanism: jittered exponential backoff with validated bounds.
//!
//! Callers decide *whether* an error is retriable (each sink and the API client has its
//! own small classification function); this module only decides *how long to wait*.
//! Delays come from `backon`'s exponential builder with full jitter. A server-given
//! delay (`Retry-After`) replaces the computed one for that attempt.
//!
//! It also owns [`deadline_after`], the one way a deadline is computed from a configured
//! duration: a `Config` built in code skips the validation's bounds, and an unchecked
//! `Instant + Duration` would panic on a huge one.

use backon::{BackoffBuilder, ExponentialBuilder};
use std::time::Duration;

/// Bounds of a backoff sequence. Constructed by the config validation, which checks
/// `0 < initial <= max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    pub initial: Duration,
    pub max: Duration,
    /// `None`: retry for as long as the caller runs (sinks: a dead sink stalls its
    /// route and loses nothing). `Some(n)`: give up after `n` retries.
    pub max_retries: Option<u32>,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(30),
            max_retries: None,
        }
    }
}

impl BackoffPolicy {
    /// A fresh sequence of delays. Call again after a success to start over.
    pub fn backoff(&self) -> Backoff {
        let mut b = ExponentialBuilder::default()
            .with_min_delay(self.initial)
            .with_max_delay(self.max)
            .with_factor(2.0)
            .with_jitter();
        b = match self.max_retries {
            Some(n) => b.with_max_times(n as usize),
            None => b.without_max_times(),
        };
        Backoff {
            inner: b.build(),
            attempts: 0,
            max: self.max,
        }
    }
}

/// An iterator-like sequence of delays. `next_delay` returns `None` when the retries
/// allowed by the policy are used up.
pub struct Backoff {
    inner: backon::ExponentialBackoff,
    attempts: u32,
    max: Duration,
}

impl Backoff {
    pub fn next_delay(&mut self) -> Option<Duration> {
        self.attempts += 1;
        self.inner.next()
    }

    /// Like `next_delay`, but a server's `Retry-After` wins (capped at ten times the
    /// policy maximum, so that a hostile header cannot park us for a day).
    pub fn next_delay_after(&mut self, retry_after: Option<Duration>) -> Option<Duration> {
        let computed = self.next_delay()?;
        Some(match retry_after {
            // Saturating: a policy built in code (not by the config validation) may
            // have any maximum.
            Some(d) => d.min(self.max.saturating_mul(10)),
            None => computed,
        })
    }

    /// How many delays were handed out so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }
}

/// The furthest a deadline lies ahead: far enough to mean "not in this process's
/// lifetime", near enough that adding it to a monotonic clock cannot overflow.
pub const FAR_AHEAD: Duration = Duration::from_secs(365 * 24 * 3600);

/// `now + d`, with `d` capped at [`FAR_AHEAD`]: never panics, whatever `d` is.
pub fn deadline_after(now: tokio::time::Instant, d: Duration) -> tokio::time::Instant {
    let d = d.min(FAR_AHEAD);
    // A year past a monotonic clock reading fits every platform's instant; should one
    // not, the deadline is as far as it can go rather than a panic.
    now.checked_add(d)
        .or_else(|| now.checked_add(d / 2))
        .unwrap_or(now)
}

/// Reads a `Retry-After` value: delay-seconds or an HTTP date (RFC 7231 section
/// 7.1.3). A date in the past means "now". `None` for anything else.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    Some(
        (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

/// The `Retry-After` of an HTTP response, if it has a readable one.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()
        .and_then(parse_retry_after)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_within_bounds_and_stop_at_max_retries() {
        let p = BackoffPolicy {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(100),
            max_retries: Some(5),
        };
        let mut b = p.backoff();
        let mut n = 0;
        while let Some(d) = b.next_delay() {
            // full jitter may add up to one more delay on top of the base
            assert!(d <= Duration::from_millis(200), "{d:?}");
            n += 1;
        }
        assert_eq!(n, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_after_any_duration_is_capped_not_a_panic() {
        let now = tokio::time::Instant::now();
        assert_eq!(
            deadline_after(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
        for d in [Duration::MAX, Duration::from_secs(u64::MAX), FAR_AHEAD * 2] {
            assert_eq!(deadline_after(now, d), now + FAR_AHEAD, "{d:?}");
        }
    }

    #[test]
    fn unbounded_policy_keeps_going() {
        let mut b = BackoffPolicy::default().backoff();
        for _ in 0..1000 {
            assert!(b.next_delay().is_some());
        }
    }

    #[test]
    fn retry_after_seconds_and_http_date() {
        use reqwest::header::{HeaderMap, RETRY_AFTER};
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        let later = chrono::Utc::now() + chrono::TimeDelta::seconds(30);
        h.insert(
            RETRY_AFTER,
            later
                .format("%a, %d %b %Y %H:%M:%S GMT")
                .to_string()
                .parse()
                .unwrap(),
        );
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(25) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        h.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(
            retry_after(&h),
            Some(Duration::ZERO),
            "a past date means now"
        );
        h.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn retry_after_wins_but_is_capped() {
        let p = BackoffPolicy {
            initial: Duration::from_millis(10),
            max: Duration::from_secs(1),
            max_retries: None,
        };
        let mut b = p.backoff();
        assert_eq!(
            b.next_delay_after(Some(Duration::from_secs(3))),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            b.next_delay_after(Some(Duration::from_secs(3600))),
            Some(Duration::from_secs(10))
        );
    }
}
