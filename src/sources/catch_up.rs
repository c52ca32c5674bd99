//! Catch-up feedback: whether a source is behind, and what to say about it. Pure: the
//! poller ([`super::poll`]) feeds it what it observed (on tokio's clock) and logs what
//! it returns.
//!
//! A source is **behind** when its position (the watermark it has read up to) is older
//! than the lag window, `now - lag`, by more than [`behind_threshold`]: twice the poll
//! interval, and at least [`MIN_BEHIND`] (one minute). In normal operation a poll ends at
//! `poll time - lag`, so between polls a source is behind by less than a poll interval
//! and is never reported.
//!
//! While behind, the poller logs one INFO line when it falls behind and then one every
//! [`PROGRESS_EVERY`] (10 s): how far behind, the position, the events forwarded since
//! the catch-up began, their rate, and an estimate of the time left when one is honest
//! (see [`Progress::eta`]). It is **caught up** once it is behind by at most half the
//! threshold (the margin keeps a source that hovers at the threshold from alternating);
//! then exactly one INFO line, and again for every later catch-up. The state lives in
//! one run of the source: a source the supervisor starts again after a failure says
//! once more that it is behind, if it still is.

use chrono::{DateTime, Utc};
use std::time::Duration;
use tokio::time::Instant;

/// The least a source must be behind the lag window to count as behind.
pub const MIN_BEHIND: Duration = Duration::from_secs(60);

/// How often a source that is behind logs its progress.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// How far past the lag window a source must be to count as behind: twice its poll
/// interval, at least [`MIN_BEHIND`].
pub fn behind_threshold(poll_interval: Duration) -> Duration {
    poll_interval.saturating_mul(2).max(MIN_BEHIND)
}

/// How far `position` is behind the lag window at `now` (zero when inside it).
pub fn behind(now: DateTime<Utc>, lag: Duration, position: DateTime<Utc>) -> Duration {
    let edge = chrono::TimeDelta::from_std(lag)
        .ok()
        .and_then(|lag| now.checked_sub_signed(lag))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    (edge - position).to_std().unwrap_or(Duration::ZERO)
}

/// What a source should log after an observation.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    /// It is behind: the first line of a catch-up, or the next progress line.
    Behind(Progress),
    /// It reached the lag window.
    CaughtUp {
        /// Since the catch-up began.
        took: Duration,
        /// Events forwarded since the catch-up began.
        events: u64,
    },
}

/// A progress line of a catch-up.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// The first line of this catch-up.
    pub first: bool,
    pub behind: Duration,
    pub position: DateTime<Utc>,
    /// Events forwarded since the catch-up began.
    pub events: u64,
    /// `events` per second since the catch-up began (0 on the first line).
    pub rate: f64,
    /// When the source should be caught up, at the average speed since the catch-up
    /// began: the position gains on the lag window (which moves at one second per
    /// second) at `advance / elapsed - 1`. `None` on the first line, before
    /// [`PROGRESS_EVERY`] has passed, or while the position does not gain.
    pub eta: Option<Duration>,
}

/// One source's catch-up state. See the module docs.
#[derive(Debug)]
pub struct CatchUp {
    threshold: Duration,
    every: Duration,
    run: Option<Run>,
}

#[derive(Debug)]
struct Run {
    began: Instant,
    last_report: Instant,
    events_at_begin: u64,
    position_at_begin: DateTime<Utc>,
}

impl CatchUp {
    /// A source that polls every `poll_interval`, not behind yet.
    pub fn new(poll_interval: Duration) -> CatchUp {
        CatchUp {
            threshold: behind_threshold(poll_interval),
            every: PROGRESS_EVERY,
            run: None,
        }
    }

    /// Whether the last observation left the source behind.
    pub fn is_behind(&self) -> bool {
        self.run.is_some()
    }

    /// The source is `behind` the lag window at `now`, at `position`, having forwarded
    /// `forwarded` events since it started (a running total): what to log, if anything.
    pub fn observe(
        &mut self,
        now: Instant,
        behind: Duration,
        position: DateTime<Utc>,
        forwarded: u64,
    ) -> Option<Report> {
        let Some(run) = &mut self.run else {
            if behind <= self.threshold {
                return None;
            }
            self.run = Some(Run {
                began: now,
                last_report: now,
                events_at_begin: forwarded,
                position_at_begin: position,
            });
            return Some(Report::Behind(Progress {
                first: true,
                behind,
                position,
                events: 0,
                rate: 0.0,
                eta: None,
            }));
        };
        let events = forwarded.saturating_sub(run.events_at_begin);
        let elapsed = now.saturating_duration_since(run.began);
        if behind <= self.threshold / 2 {
            self.run = None;
            return Some(Report::CaughtUp {
                took: elapsed,
                events,
            });
        }
        if now.saturating_duration_since(run.last_report) < self.every {
            return None;
        }
        run.last_report = now;
        let secs = elapsed.as_secs_f64();
        let rate = if secs > 0.0 {
            events as f64 / secs
        } else {
            0.0
        };
        let eta = (elapsed >= self.every)
            .then(|| {
                let advanced = (position - run.position_at_begin)
                    .to_std()
                    .unwrap_or(Duration::ZERO)
                    .as_secs_f64();
                let gain = advanced / secs - 1.0;
                (gain > 0.0).then(|| behind.as_secs_f64() / gain)
            })
            .flatten()
            .filter(|s| s.is_finite() && *s < 1e9)
            .map(|s| Duration::from_secs(s.ceil() as u64));
        Some(Report::Behind(Progress {
            first: false,
            behind,
            position,
            events,
            rate,
            eta,
        }))
    }
}

/// `d` to the second, as humantime writes it (`1h 2m 3s`).
pub fn seconds_text(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    const POLL: Duration = Duration::from_secs(10);

    #[test]
    fn the_threshold_is_two_poll_intervals_and_at_least_a_minute() {
        assert_eq!(behind_threshold(Duration::from_secs(10)), MIN_BEHIND);
        assert_eq!(
            behind_threshold(Duration::from_secs(300)),
            Duration::from_secs(600)
        );
        assert_eq!(behind_threshold(Duration::from_millis(200)), MIN_BEHIND);
    }

    #[test]
    fn behind_is_measured_from_the_lag_window() {
        let now = t("2026-01-01T12:00:00Z");
        let lag = Duration::from_secs(600);
        assert_eq!(
            behind(now, lag, t("2026-01-01T11:00:00Z")),
            Duration::from_secs(3000)
        );
        assert_eq!(behind(now, lag, t("2026-01-01T11:50:00Z")), Duration::ZERO);
        assert_eq!(
            behind(now, lag, t("2026-01-01T11:55:00Z")),
            Duration::ZERO,
            "inside the lag window"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn inside_the_threshold_nothing_is_said() {
        let mut c = CatchUp::new(POLL);
        let p = t("2026-01-01T12:00:00Z");
        for _ in 0..10 {
            assert_eq!(c.observe(Instant::now(), MIN_BEHIND, p, 5), None);
            tokio::time::advance(Duration::from_secs(30)).await;
        }
        assert!(!c.is_behind());
    }

    #[tokio::test(start_paused = true)]
    async fn a_catch_up_logs_at_once_every_ten_seconds_and_once_when_caught_up() {
        let mut c = CatchUp::new(POLL);
        let start = t("2026-01-01T10:00:00Z");
        let hour = Duration::from_secs(3600);
        let Some(Report::Behind(first)) = c.observe(Instant::now(), hour, start, 100) else {
            panic!("the first observation behind is reported");
        };
        assert!(first.first);
        assert_eq!((first.events, first.rate, first.eta), (0, 0.0, None));
        assert_eq!(first.position, start);
        // Observed every second: one line per ten seconds, none in between. The position
        // gains 181 s per second (the lag window moves 1 s per second): 180 s net.
        let mut lines = Vec::new();
        for i in 1..=15u64 {
            tokio::time::advance(Duration::from_secs(1)).await;
            let position = start + chrono::TimeDelta::seconds(181 * i as i64);
            let behind = hour - Duration::from_secs(180 * i);
            if let Some(r) = c.observe(Instant::now(), behind, position, 100 + 50 * i) {
                lines.push((i, r));
            }
        }
        assert_eq!(lines.len(), 1, "{lines:?}");
        let (i, Report::Behind(p)) = &lines[0] else {
            panic!("{lines:?}")
        };
        assert_eq!(*i, 10);
        assert!(!p.first);
        assert_eq!(p.events, 500);
        assert_eq!(p.rate, 50.0);
        assert_eq!(p.behind, Duration::from_secs(1800));
        // 1800 s behind, gaining 180 s per second: 10 s to go.
        assert_eq!(p.eta, Some(Duration::from_secs(10)));
        // Half the threshold (30 s) or less: caught up, once.
        tokio::time::advance(Duration::from_secs(4)).await;
        let r = c.observe(
            Instant::now(),
            Duration::from_secs(31),
            start + chrono::TimeDelta::seconds(3600),
            1000,
        );
        assert!(
            r.is_none(),
            "above half the threshold: still behind, no line"
        );
        assert!(c.is_behind());
        let r = c.observe(Instant::now(), Duration::from_secs(30), start, 1100);
        assert_eq!(
            r,
            Some(Report::CaughtUp {
                took: Duration::from_secs(19),
                events: 1000
            })
        );
        assert!(!c.is_behind());
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(c.observe(Instant::now(), Duration::ZERO, start, 1100), None);
        // Behind again later: a new catch-up, counted from there.
        let r = c.observe(Instant::now(), Duration::from_secs(61), start, 1200);
        assert!(matches!(
            r,
            Some(Report::Behind(Progress {
                first: true,
                events: 0,
                ..
            }))
        ));
        tokio::time::advance(Duration::from_secs(10)).await;
        let r = c.observe(Instant::now(), Duration::ZERO, start, 1300);
        assert_eq!(
            r,
            Some(Report::CaughtUp {
                took: Duration::from_secs(10),
                events: 100
            })
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_eta_while_the_position_does_not_gain() {
        let mut c = CatchUp::new(POLL);
        let start = t("2026-01-01T10:00:00Z");
        let hour = Duration::from_secs(3600);
        c.observe(Instant::now(), hour, start, 0);
        tokio::time::advance(Duration::from_secs(10)).await;
        // Ten seconds of position in ten seconds: it keeps its distance.
        let r = c.observe(
            Instant::now(),
            hour,
            start + chrono::TimeDelta::seconds(10),
            0,
        );
        let Some(Report::Behind(p)) = r else {
            panic!("{r:?}")
        };
        assert_eq!(p.eta, None);
        assert_eq!(p.rate, 0.0);
    }

    #[test]
    fn durations_are_shown_to_the_second() {
        assert_eq!(seconds_text(Duration::from_millis(3_723_900)), "1h 2m 3s");
        assert_eq!(seconds_text(Duration::ZERO), "0s");
    }
}
