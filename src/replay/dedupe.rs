//! `--dedupe`: skips records already sent in this replay, by content fingerprint.
//!
//! The fingerprint is the live sources' own ([`crate::sources::window::fingerprint`],
//! xxh3-64 of the event's JSON text), so two exports holding the same event in the same
//! shape (two console CSV exports of overlapping ranges, the same JSON lines twice)
//! send it once. The same event in two different formats (a CSV row and its JSON) has
//! two texts and is not recognized as one.
//!
//! Copies, like the live window's multiset: the tenant itself can hold byte-identical
//! events, which one export then lists more than once. They are kept: a fingerprint is
//! a duplicate only when it was already sent as many times as the current file has
//! listed it so far (so the k identical copies of one export go out k times, and a
//! second export holding them again sends none).
//!
//! Memory is bounded: the fingerprints are kept in one map per UTC day of event time,
//! at most `cap` fingerprints in all (16 bytes of entry each, and a hash map's slack:
//! measured, 1,000,000 fingerprints cost about 50 MiB at their peak, while the map
//! grows; the default [`DEFAULT_CAP`] is 1,048,576). When the cap is
//! reached the set of the oldest day held is dropped, with a WARN naming that day:
//! records of that day seen again later in the replay are sent again (at least once
//! stays true, only duplicates become possible). Dropped days are counted in the
//! summary.

use chrono::{DateTime, NaiveDate, Utc};
use std::collections::{BTreeMap, HashMap};

/// The default most fingerprints held.
pub const DEFAULT_CAP: usize = 1024 * 1024;

/// How often one fingerprint was sent, and listed by the file read last that had it.
#[derive(Debug, Clone, Copy)]
struct Copies {
    sent: u16,
    file: u32,
    listed: u16,
}

/// The fingerprints of one replay.
#[derive(Debug)]
pub struct Dedupe {
    days: BTreeMap<i64, HashMap<u64, Copies>>,
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

    /// Records `fingerprint` of an event that occurred at `at`, listed by file number
    /// `file`; `false` when it is a duplicate to skip (see the module docs on copies).
    pub fn first_sight(&mut self, fingerprint: u64, at: DateTime<Utc>, file: u32) -> bool {
        let day = at.timestamp().div_euclid(86_400);
        if let Some(c) = self
            .days
            .get_mut(&day)
            .and_then(|m| m.get_mut(&fingerprint))
        {
            if c.file != file {
                c.file = file;
                c.listed = 0;
            }
            c.listed = c.listed.saturating_add(1);
            if c.listed <= c.sent {
                return false;
            }
            c.sent = c.sent.saturating_add(1);
            return true;
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
        self.days.entry(day).or_default().insert(
            fingerprint,
            Copies {
                sent: 1,
                file,
                listed: 1,
            },
        );
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
    fn a_second_sight_in_another_file_is_a_duplicate_and_copies_in_one_file_are_kept() {
        let mut d = Dedupe::new(10);
        assert!(d.first_sight(1, at(0), 0));
        assert!(
            d.first_sight(1, at(0), 0),
            "a second identical copy in one export"
        );
        assert!(d.first_sight(2, at(0), 0));
        assert!(
            !d.first_sight(1, at(0), 1),
            "the next export lists it again"
        );
        assert!(!d.first_sight(1, at(0), 1));
        assert!(d.first_sight(1, at(0), 1), "a third copy, more than sent");
        assert!(!d.first_sight(2, at(0), 2));
        assert_eq!(d.held(), 2);
    }

    #[test]
    fn the_cap_drops_the_oldest_day_and_says_which() {
        let mut d = Dedupe::new(3);
        assert!(d.first_sight(1, at(5), 0));
        assert!(d.first_sight(2, at(5), 0));
        assert!(d.first_sight(3, at(6), 0));
        assert!(d.first_sight(4, at(7), 0));
        assert_eq!(d.held(), 2, "day 5 (two fingerprints) dropped");
        assert_eq!(d.dropped_days, vec![at(5).date_naive()]);
        assert!(d.first_sight(1, at(5), 1), "its records are sent again");
        assert!(!d.first_sight(4, at(7), 1));
        assert!(d.held() <= 3);
    }
}
