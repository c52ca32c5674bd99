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
//! # Memory
//!
//! The set is compact and bounded. A fingerprint is kept as its 64 bits, never as text:
//! 65,536 buckets chosen by its top 16 bits, each a small vector of 10-byte entries
//! holding the other 48 bits, the UTC day of the event's time and its copy counts
//! (4 bits each; a fingerprint listed 15 times or more moves to an exact side map).
//! Buckets grow by a quarter, so the set never doubles at once: about 12 bytes per
//! fingerprint with the buckets' slack, plus 1.5 MiB of bucket heads (measured: the
//! replay of 1,000,000 records peaks 13 to 14 MiB higher with the set than without). At
//! most `cap` fingerprints are held ([`DEFAULT_CAP`], `--dedupe-cap`). When the cap is
//! reached the fingerprints of the oldest day held are dropped, with a WARN naming that
//! day and a count in the summary: records of that day seen again later in the replay
//! are sent again (at least once stays true, only duplicates become possible, never
//! loss).
//!
//! # Collisions
//!
//! Two different records with the same 64-bit fingerprint would make the second a
//! "duplicate": it would be skipped. xxh3-64 spreads its outputs evenly, so among `n`
//! distinct records held the chance of any such pair is about `n² / 2^65`: 3 in 100
//! million for the default cap of 1,048,576, 3 in a million for 16 million held. The
//! live sources' reconciliation rests on the same fingerprint. A replay that must rule
//! even that out runs with `--no-dedupe` (and the receiver sees duplicates instead).
//! Each skip is counted ("duplicates skipped" in the summary).

use chrono::{DateTime, NaiveDate, Utc};
use std::collections::{BTreeMap, HashMap};

/// The default most fingerprints held.
pub const DEFAULT_CAP: usize = 1024 * 1024;

/// Buckets, chosen by the top [`BUCKET_BITS`] bits of a fingerprint.
const BUCKET_BITS: u32 = 16;
const BUCKETS: usize = 1 << BUCKET_BITS;
/// The bits of a fingerprint an entry stores (the rest is its bucket).
const LOW_MASK: u64 = (1 << (64 - BUCKET_BITS)) - 1;
/// A copy count of an entry saying "the exact counts are in the side map".
const OVER: u16 = 15;

/// One fingerprint held: its low 48 bits, its day, and its copy counts.
#[derive(Debug, Clone, Copy)]
struct Entry {
    low: [u16; 3],
    /// Days since 1970-01-01 (UTC) of the event's time, clamped to `u16`.
    day: u16,
    /// `file tag (8 bits) | listed (4 bits) | sent (4 bits)`; see [`Dedupe`].
    meta: u16,
}

impl Entry {
    fn low(&self) -> u64 {
        u64::from(self.low[0]) | u64::from(self.low[1]) << 16 | u64::from(self.low[2]) << 32
    }

    fn tag(&self) -> u8 {
        (self.meta >> 8) as u8
    }

    fn listed(&self) -> u16 {
        (self.meta >> 4) & 0xF
    }

    fn sent(&self) -> u16 {
        self.meta & 0xF
    }

    fn set(&mut self, tag: u8, listed: u16, sent: u16) {
        self.meta = u16::from(tag) << 8 | (listed & 0xF) << 4 | (sent & 0xF);
    }
}

/// The exact counts of a fingerprint listed [`OVER`] times or more.
#[derive(Debug, Clone, Copy)]
struct Copies {
    sent: u32,
    file: u32,
    listed: u32,
}

/// The fingerprints of one replay.
///
/// `listed` counts the listings by the file read last that had the fingerprint; an
/// entry names that file by its number's low 8 bits (its tag). When the reader moves on
/// to a file whose number differs in the higher bits, every entry's `listed` is reset
/// to 0 (once per 256 files), so a tag that matches an older file's is harmless: its
/// `listed` is 0, what a new file starts from.
#[derive(Debug)]
pub struct Dedupe {
    buckets: Vec<Vec<Entry>>,
    /// Exact counts of the fingerprints whose entries say [`OVER`].
    over: HashMap<u64, Copies>,
    /// Fingerprints held per day.
    days: BTreeMap<u16, usize>,
    held: usize,
    cap: usize,
    /// The file the last fingerprint came from.
    file: Option<u32>,
    /// Days whose set was dropped to stay under the cap.
    pub dropped_days: Vec<NaiveDate>,
    /// Fingerprints dropped with them.
    pub dropped_fingerprints: u64,
}

/// The day of `at`, as entries hold it.
fn day_of(at: DateTime<Utc>) -> u16 {
    at.timestamp()
        .div_euclid(86_400)
        .clamp(0, i64::from(u16::MAX)) as u16
}

impl Dedupe {
    pub fn new(cap: usize) -> Dedupe {
        Dedupe {
            buckets: vec![Vec::new(); BUCKETS],
            over: HashMap::new(),
            days: BTreeMap::new(),
            held: 0,
            cap: cap.max(1),
            file: None,
            dropped_days: Vec::new(),
            dropped_fingerprints: 0,
        }
    }

    /// Records `fingerprint` of an event that occurred at `at`, listed by file number
    /// `file`; `false` when it is a duplicate to skip (see the module docs on copies).
    /// Files come in increasing numbers.
    pub fn first_sight(&mut self, fingerprint: u64, at: DateTime<Utc>, file: u32) -> bool {
        if self.file.is_some_and(|f| f >> 8 != file >> 8) {
            for e in self.buckets.iter_mut().flatten() {
                let (tag, sent) = (e.tag(), e.sent());
                if sent != OVER {
                    e.set(tag, 0, sent);
                }
            }
        }
        self.file = Some(file);
        let tag = file as u8;
        let low = fingerprint & LOW_MASK;
        let b = (fingerprint >> (64 - BUCKET_BITS)) as usize;
        if let Some(e) = self.buckets[b].iter_mut().find(|e| e.low() == low) {
            let sent = e.sent();
            if sent == OVER {
                let c = self.over.entry(fingerprint).or_insert(Copies {
                    sent: u32::from(OVER),
                    file,
                    listed: 0,
                });
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
            let listed = if e.tag() == tag { e.listed() } else { 0 } + 1;
            if listed <= sent {
                e.set(tag, listed, sent);
                return false;
            }
            let sent = sent + 1;
            if sent >= OVER || listed >= OVER {
                self.over.insert(
                    fingerprint,
                    Copies {
                        sent: u32::from(sent),
                        file,
                        listed: u32::from(listed),
                    },
                );
                e.set(tag, OVER, OVER);
            } else {
                e.set(tag, listed, sent);
            }
            return true;
        }
        while self.held >= self.cap {
            let Some((&oldest, _)) = self.days.iter().next() else {
                break;
            };
            self.drop_day(oldest);
        }
        let day = day_of(at);
        let bucket = &mut self.buckets[b];
        if bucket.len() == bucket.capacity() {
            // First to what a full set holds per bucket (cap / 65,536), then by a
            // quarter (at least 4): small steps keep the slack small, and few
            // reallocations keep the heap from fragmenting under the records' strings.
            let step = if bucket.capacity() == 0 {
                self.cap.div_ceil(BUCKETS).clamp(4, 64)
            } else {
                (bucket.len() / 4).max(4)
            };
            bucket.reserve_exact(step);
        }
        let mut e = Entry {
            low: [low as u16, (low >> 16) as u16, (low >> 32) as u16],
            day,
            meta: 0,
        };
        e.set(tag, 1, 1);
        bucket.push(e);
        *self.days.entry(day).or_default() += 1;
        self.held += 1;
        true
    }

    /// Drops every fingerprint of `day`, with a WARN.
    fn drop_day(&mut self, day: u16) {
        let count = self.days.remove(&day).unwrap_or(0);
        let over = &mut self.over;
        for (b, bucket) in self.buckets.iter_mut().enumerate() {
            bucket.retain(|e| {
                if e.day != day {
                    return true;
                }
                if e.sent() == OVER {
                    over.remove(&((b as u64) << (64 - BUCKET_BITS) | e.low()));
                }
                false
            });
        }
        self.held -= count;
        self.dropped_fingerprints += count as u64;
        let date = DateTime::from_timestamp(i64::from(day) * 86_400, 0)
            .map(|t| t.date_naive())
            .unwrap_or_default();
        tracing::warn!(
            day = %date,
            fingerprints = count,
            cap = self.cap,
            "dedupe: fingerprint cap reached; dropped the fingerprints of the oldest day held \
             (records of that day seen again later in this replay will be sent again; \
             raise --dedupe-cap to keep more)"
        );
        self.dropped_days.push(date);
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

    #[test]
    fn many_copies_are_counted_exactly_past_the_small_counts() {
        let mut d = Dedupe::new(10);
        for i in 0..40 {
            assert!(d.first_sight(7, at(0), 0), "copy {i} of one export");
        }
        for i in 0..40 {
            assert!(!d.first_sight(7, at(0), 1), "copy {i} listed again");
        }
        assert!(d.first_sight(7, at(0), 1), "a 41st copy");
        assert!(!d.first_sight(7, at(0), 2));
        assert_eq!(d.held(), 1);
    }

    #[test]
    fn a_file_256_later_does_not_inherit_the_listings_of_an_older_one() {
        let mut d = Dedupe::new(10);
        assert!(d.first_sight(1, at(0), 3));
        // File 259 has the same low 8 bits as file 3.
        assert!(!d.first_sight(1, at(0), 259), "sent once already");
        assert!(d.first_sight(1, at(0), 259), "a second copy in file 259");
        assert!(!d.first_sight(1, at(0), 515));
        assert!(!d.first_sight(1, at(0), 515));
        assert!(d.first_sight(1, at(0), 515));
    }

    #[test]
    fn fingerprints_differing_in_any_bit_are_distinct() {
        let mut d = Dedupe::new(1000);
        let base = 0x0123_4567_89ab_cdefu64;
        assert!(d.first_sight(base, at(0), 0));
        for bit in 0..64 {
            assert!(d.first_sight(base ^ (1 << bit), at(0), 0), "bit {bit}");
        }
        for bit in 0..64 {
            assert!(!d.first_sight(base ^ (1 << bit), at(0), 1), "bit {bit}");
        }
        assert!(!d.first_sight(base, at(0), 1));
        assert_eq!(d.held(), 65);
    }

    #[test]
    fn dropping_a_day_keeps_the_other_days_and_their_exact_counts() {
        let mut d = Dedupe::new(40);
        for i in 0..20u64 {
            assert!(d.first_sight(i << 50 | i, at(1), 0));
        }
        for _ in 0..20 {
            assert!(d.first_sight(u64::MAX, at(2), 0));
        }
        for i in 0..19u64 {
            assert!(d.first_sight(i << 40 | 99, at(2), 0));
        }
        assert_eq!(d.held(), 40);
        assert!(d.first_sight(12345, at(3), 0));
        assert_eq!(d.dropped_days, vec![at(1).date_naive()]);
        assert_eq!(d.dropped_fingerprints, 20);
        assert_eq!(d.held(), 21);
        for _ in 0..20 {
            assert!(!d.first_sight(u64::MAX, at(2), 1));
        }
        assert!(d.first_sight(u64::MAX, at(2), 1));
        assert!(d.first_sight(3 << 50 | 3, at(1), 1), "dropped: sent again");
    }
}
