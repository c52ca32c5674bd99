//! `--dedupe`: skips records already sent in this replay, by content fingerprint.
//!
//! The fingerprint is the live sources' own ([`crate::sources::window::fingerprint`],
//! xxh3-64 of the event's JSON text), so two exports holding the same event in the same
//! shape (two console CSV exports of overlapping ranges, the same JSON lines twice)
//! send it once. The same event in two different formats (a CSV row and its JSON) has
//! two texts and is not recognized as one.
//!
//! Memory is bounded: the fingerprints are kept in one set per UTC day of event time,
//! at most `cap` fingerprints in all (each costs about 9 to 18 bytes in a hash set, so
//! the default [`DEFAULT_CAP`] of 2,097,152 stays under about 40 MiB). When the cap is
//! reached the set of the oldest day held is dropped, with a WARN naming that day:
//! records of that day seen again later in the replay are sent again (at least once
//! stays true, only duplicates become possible). Dropped days are counted in the
//! summary.

use chrono::{DateTime, NaiveDate, Utc};
use std::collections::{BTreeMap, HashSet};

/// The default most fingerprints held.
pub const DEFAULT_CAP: usize = 2 * 1024 * 1024;

/// The fingerprints of one replay.
#[derive(Debug)]
pub struct Dedupe {
    days: BTreeMap<i64, HashSet<u64>>,
    held: usize,
    cap: usize,
    /// Days whose set was dropped to stay under the cap.
    pub dropped_days: Vec<NaiveDate>,
}

impl Dedupe {
    pub fn new(cap: usize) -> Dedupe {
        Dedupe {
            days: BTreeMap::new(),
            held: 0,
            cap: cap.max(1),
            dropped_days: Vec::new(),
        }
    }

    /// Records `fingerprint` of an event that occurred at `at`; `false` when it was
    /// already seen (a duplicate to skip).
    pub fn first_sight(&mut self, fingerprint: u64, at: DateTime<Utc>) -> bool {
        let day = at.timestamp().div_euclid(86_400);
        if self
            .days
            .get(&day)
            .is_some_and(|s| s.contains(&fingerprint))
        {
            return false;
        }
        while self.held >= self.cap {
            let Some((&oldest, _)) = self.days.iter().next() else {
                break;
            };
            if let Some(set) = self.days.remove(&oldest) {
                self.held -= set.len();
                let date = DateTime::from_timestamp(oldest * 86_400, 0)
                    .map(|t| t.date_naive())
                    .unwrap_or_default();
                tracing::warn!(
                    day = %date,
                    fingerprints = set.len(),
                    cap = self.cap,
                    "dedupe: fingerprint cap reached; dropped the fingerprints of the oldest day held \
                     (records of that day seen again later in this replay will be sent again; \
                     raise --dedupe-cap to keep more)"
                );
                self.dropped_days.push(date);
            }
        }
        self.days.entry(day).or_default().insert(fingerprint);
        self.held += 1;
        true
    }

    /// Fingerprints held.
    pub fn held(&self) -> usize {
        self.held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(day: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(day * 86_400 + 3600, 0).unwrap()
    }

    #[test]
    fn a_second_sight_is_a_duplicate() {
        let mut d = Dedupe::new(10);
        assert!(d.first_sight(1, at(0)));
        assert!(!d.first_sight(1, at(0)));
        assert!(d.first_sight(2, at(0)));
        assert_eq!(d.held(), 2);
    }

    #[test]
    fn the_cap_drops_the_oldest_day_and_says_which() {
        let mut d = Dedupe::new(3);
        assert!(d.first_sight(1, at(5)));
        assert!(d.first_sight(2, at(5)));
        assert!(d.first_sight(3, at(6)));
        assert!(d.first_sight(4, at(7)));
        assert_eq!(d.held(), 2, "day 5 (two fingerprints) dropped");
        assert_eq!(d.dropped_days, vec![at(5).date_naive()]);
        assert!(d.first_sight(1, at(5)), "its records are sent again");
        assert!(!d.first_sight(4, at(7)));
        assert!(d.held() <= 3);
    }
}
