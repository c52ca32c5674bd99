//! When the HEC sink asks `/services/collector/ack` next: the adaptive poll schedule.
//!
//! A request HEC accepted is usually indexed within milliseconds on an idle indexer and
//! within seconds on a busy one. Polling at a fixed `ack_poll_interval` makes the
//! acknowledgement round trip, not the link or the indexer, the limit of the sink
//! (at most `max_pending_acks` requests per interval), while polling fast all the time
//! asks HEC again and again about requests it has not indexed yet. So the schedule
//! adapts, the way a retry backoff does, to whether HEC is confirming:
//!
//! - the first request accepted while nothing waits arms a poll `ack_poll_initial`
//!   later;
//! - a poll that confirmed at least one request is followed by the next one
//!   `ack_poll_initial` later (HEC is indexing: keep up with it);
//! - a poll that confirmed nothing (or failed) doubles the delay, up to
//!   `ack_poll_interval`;
//! - once nothing waits, there is no poll until the next request is accepted.
//!
//! Under a steady load every poll confirms something, so HEC is asked at most every
//! `ack_poll_initial` and each answer releases a whole group of requests; with one
//! request whose acknowledgement never comes (lost on an indexer restart), polls slow
//! down to `ack_poll_interval` until its `ack_timeout` sends it again.
//!
//! Owned here: the schedule alone (pure, on tokio's clock). Not here: the poll itself
//! and the ledger of waiting requests (`hec/mod.rs`).

use crate::retry::deadline_after;
use std::time::Duration;
use tokio::time::Instant;

/// The adaptive schedule of indexer-acknowledgement polls (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct AckSchedule {
    initial: Duration,
    max: Duration,
    /// The delay before the next poll, from the last poll (or the send that armed it).
    delay: Duration,
    /// When HEC is asked next; `None` while nothing waits.
    next: Option<Instant>,
}

impl AckSchedule {
    /// `initial` at most `max` (the configuration checks it; a larger one is capped).
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        let initial = initial.min(max);
        AckSchedule {
            initial,
            max,
            delay: initial,
            next: None,
        }
    }

    /// A request was accepted and waits for its acknowledgement: arms a poll
    /// `initial` from `now` when none was due; an armed poll stays where it is.
    pub(crate) fn sent(&mut self, now: Instant) {
        if self.next.is_none() {
            self.delay = self.initial;
            self.next = Some(deadline_after(now, self.initial));
        }
    }

    /// A poll finished at `now`: it confirmed `confirmed` requests (0 also when it
    /// failed), and `waiting` requests still wait for their acknowledgement.
    pub(crate) fn polled(&mut self, now: Instant, confirmed: usize, waiting: usize) {
        if waiting == 0 {
            self.delay = self.initial;
            self.next = None;
            return;
        }
        self.delay = if confirmed > 0 {
            self.initial
        } else {
            self.delay.saturating_mul(2).min(self.max)
        };
        self.next = Some(deadline_after(now, self.delay));
    }

    /// When the next poll is due (`None`: nothing waits).
    pub(crate) fn next(&self) -> Option<Instant> {
        self.next
    }

    /// Whether a poll is due at `now`.
    pub(crate) fn is_due(&self, now: Instant) -> bool {
        self.next.is_some_and(|at| at <= now)
    }

    /// The delay the next poll was scheduled with.
    #[cfg(test)]
    pub(crate) fn delay(&self) -> Duration {
        self.delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::advance;

    const MS: Duration = Duration::from_millis(1);

    fn schedule() -> AckSchedule {
        AckSchedule::new(20 * MS, 1000 * MS)
    }

    /// Polls as the sink does: sleeps until the next poll, then reports its result.
    async fn poll_at_next(s: &mut AckSchedule, confirmed: usize, waiting: usize) -> Duration {
        let start = Instant::now();
        let at = s.next().expect("a poll is due");
        tokio::time::sleep_until(at).await;
        assert!(s.is_due(Instant::now()));
        s.polled(Instant::now(), confirmed, waiting);
        Instant::now() - start
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_waits_no_poll() {
        let s = schedule();
        assert_eq!(s.next(), None);
        assert!(!s.is_due(Instant::now()));
        advance(Duration::from_secs(3600)).await;
        assert!(!s.is_due(Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_send_arms_a_fast_poll_and_later_sends_do_not_move_it() {
        let mut s = schedule();
        let t0 = Instant::now();
        s.sent(t0);
        assert_eq!(s.next(), Some(t0 + 20 * MS));
        advance(15 * MS).await;
        s.sent(Instant::now());
        assert_eq!(s.next(), Some(t0 + 20 * MS), "an armed poll stays");
        assert!(!s.is_due(Instant::now()));
        advance(5 * MS).await;
        assert!(s.is_due(Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn unconfirmed_polls_back_off_by_doubling_up_to_the_interval() {
        let mut s = schedule();
        s.sent(Instant::now());
        let mut gaps = vec![s.delay()];
        for _ in 0..8 {
            poll_at_next(&mut s, 0, 1).await;
            gaps.push(s.delay());
        }
        let ms: Vec<u128> = gaps.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, [20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        // The waits really were those: 20 + 40 + ... + 640 + 1000 + 1000 ms.
        let mut total = Duration::ZERO;
        let mut s = schedule();
        s.sent(Instant::now());
        for _ in 0..8 {
            total += poll_at_next(&mut s, 0, 1).await;
        }
        assert_eq!(total, (20 + 40 + 80 + 160 + 320 + 640 + 1000 + 1000) * MS);
    }

    #[tokio::test(start_paused = true)]
    async fn a_poll_that_confirms_something_brings_the_fast_pace_back() {
        let mut s = schedule();
        s.sent(Instant::now());
        for _ in 0..6 {
            poll_at_next(&mut s, 0, 3).await;
        }
        assert_eq!(s.delay(), 1000 * MS);
        // HEC confirms one of three: the next poll is fast again.
        let t = Instant::now();
        tokio::time::sleep_until(s.next().unwrap()).await;
        s.polled(Instant::now(), 1, 2);
        assert_eq!(s.next(), Some(Instant::now() + 20 * MS));
        assert!(Instant::now() - t <= 1000 * MS);
        // And it backs off again from the start when HEC goes quiet.
        poll_at_next(&mut s, 0, 2).await;
        assert_eq!(s.delay(), 40 * MS);
    }

    #[tokio::test(start_paused = true)]
    async fn a_steady_load_is_polled_every_initial_delay() {
        // Requests accepted every 5 ms, every poll confirms what waits: HEC is asked
        // once per 20 ms, never more often.
        let mut s = schedule();
        let start = Instant::now();
        let mut polls = 0;
        let mut waiting = 0;
        while Instant::now() - start < Duration::from_secs(1) {
            s.sent(Instant::now());
            waiting += 1;
            advance(5 * MS).await;
            if s.is_due(Instant::now()) {
                polls += 1;
                s.polled(Instant::now(), waiting, 0);
                waiting = 0;
            }
        }
        assert_eq!(polls, 50);
    }

    #[tokio::test(start_paused = true)]
    async fn when_nothing_waits_any_more_polling_stops_and_restarts_fast() {
        let mut s = schedule();
        s.sent(Instant::now());
        for _ in 0..5 {
            poll_at_next(&mut s, 0, 1).await;
        }
        poll_at_next(&mut s, 1, 0).await;
        assert_eq!(s.next(), None);
        advance(Duration::from_secs(60)).await;
        let now = Instant::now();
        s.sent(now);
        assert_eq!(s.next(), Some(now + 20 * MS), "a new wait starts fast");
    }

    #[test]
    fn an_initial_above_the_interval_is_capped() {
        let s = AckSchedule::new(5000 * MS, 1000 * MS);
        assert_eq!(s.delay(), 1000 * MS);
    }
}
