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
//! The set is compact and bounded. A fingerprint is kept as its 64 bits, never as text,
//! in one 8-byte entry: 16,384 buckets chosen by its top 14 bits, each a vector of `u64`
//! entries holding the other 50 bits, the *day slot* of the event's time (its UTC day
//! modulo 1,024), the low 2 bits of the number of the file that listed it last, and two
//! bits of copy state (sent once and listed once by that file, or sent more than once:
//! the exact counts are then in a side map, which only records the tenant holds several
//! identical copies of reach). Nothing is allocated before the first fingerprint; a
//! bucket starts at 2 entries and grows by an eighth (at least 2), so the set never
//! doubles at once and its slack stays small: about 9.5 bytes per fingerprint with the
//! buckets' slack and the allocator's, bucket heads included (measured: 1,000,000
//! random fingerprints raise the peak RSS by 9.6 MiB; 15.9 MiB with the 10-byte entries
//! of 65,536 buckets before). The heads (384 KiB) stay in the processor's cache, so a
//! lookup waits on memory once, for the bucket's entries, which it reads in order.
//! At most `cap` fingerprints are held ([`DEFAULT_CAP`],
//! `--dedupe-cap`). When the cap is reached the fingerprints of the oldest day held are
//! dropped, with a WARN naming that day and a count in the summary: records of that day
//! seen again later in the replay are sent again (at least once stays true, only
//! duplicates become possible, never loss).
//!
//! Days 1,024 apart (2.8 years) share a slot, and a slot holds one day at a time: a
//! fingerprint of a newer day drops the older day's fingerprints first (the same WARN
//! and count); one of an older day than its slot holds is sent and not held (its
//! copies read later are sent again; that day is named and counted the same way). So a
//! replay moving forward through the years drops each day at most once.
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
use std::collections::HashMap;

/// The default most fingerprints held.
pub const DEFAULT_CAP: usize = 1024 * 1024;

/// Buckets, chosen by the top [`BUCKET_BITS`] bits of a fingerprint.
const BUCKET_BITS: u32 = 14;
const BUCKETS: usize = 1 << BUCKET_BITS;
/// The bits of a fingerprint an entry stores (the rest is its bucket).
const LOW_MASK: u64 = (1 << (64 - BUCKET_BITS)) - 1;
/// Day slots: an entry holds its day modulo this.
const SLOTS: usize = 1024;
/// The bits of a file's number an entry holds (its tag).
const TAG_BITS: u32 = 2;

/// One fingerprint held, as one `u64`:
/// `low 50 bits of the fingerprint | day slot (10) | file tag (2) | over (1) | listed (1)`.
///
/// `over`: sent more than once, the exact counts are in the side map (`listed` is then
/// 0). Otherwise the fingerprint was sent once, and `listed` says whether the file
/// tagged listed it already.
mod entry {
    use super::{SLOTS, TAG_BITS};

    const OVER: u64 = 1 << 1;
    const LISTED: u64 = 1;
    const TAG_SHIFT: u32 = 2;
    const SLOT_SHIFT: u32 = TAG_SHIFT + TAG_BITS;
    const TAG_MASK: u64 = (1 << TAG_BITS) - 1;
    const LOW_SHIFT: u32 = SLOT_SHIFT + SLOTS.trailing_zeros();
    const _: () = assert!(
        LOW_SHIFT == super::BUCKET_BITS,
        "an entry is exactly 64 bits"
    );

    pub(super) fn new(low: u64, slot: usize, tag: u64) -> u64 {
        debug_assert!(slot < SLOTS && tag <= TAG_MASK);
        low << LOW_SHIFT | (slot as u64) << SLOT_SHIFT | tag << TAG_SHIFT | LISTED
    }

    pub(super) fn low(e: u64) -> u64 {
        e >> LOW_SHIFT
    }

    pub(super) fn slot(e: u64) -> usize {
        ((e >> SLOT_SHIFT) as usize) & (SLOTS - 1)
    }

    pub(super) fn tag(e: u64) -> u64 {
        (e >> TAG_SHIFT) & TAG_MASK
    }

    pub(super) fn over(e: u64) -> bool {
        e & OVER != 0
    }

    pub(super) fn listed(e: u64) -> bool {
        e & LISTED != 0
    }

    /// Listed once by the file tagged `tag`.
    pub(super) fn listed_by(e: u64, tag: u64) -> u64 {
        e & !(TAG_MASK << TAG_SHIFT) | tag << TAG_SHIFT | LISTED
    }

    /// Sent more than once: the counts are in the side map.
    pub(super) fn to_over(e: u64) -> u64 {
        (e | OVER) & !LISTED
    }

    /// Listed by no file yet (a file with another tag range begins).
    pub(super) fn unlisted(e: u64) -> u64 {
        e & !LISTED
    }
}

/// The exact counts of a fingerprint sent more than once.
#[derive(Debug, Clone, Copy)]
struct Copies {
    sent: u32,
    file: u32,
    listed: u32,
}

/// The day a slot holds and how many fingerprints of it.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    day: u16,
    held: usize,
}

/// The fingerprints of one replay.
///
/// `listed` is about the file read last that had the fingerprint; an entry names that
/// file by its number's low [`TAG_BITS`] bits (its tag). When the reader moves on to a
/// file whose number differs in the higher bits, every entry's `listed` is cleared (a
/// pass over the entries once per 4 files), so a tag that matches an older file's is
/// harmless: not listed is what a new file starts from.
#[derive(Debug)]
pub struct Dedupe {
    /// Empty until the first fingerprint, then [`BUCKETS`] buckets.
    buckets: Vec<Vec<u64>>,
    /// Exact counts of the fingerprints whose entries say `over`.
    over: HashMap<u64, Copies>,
    /// The day each slot holds (empty until the first fingerprint).
    slots: Vec<Slot>,
    held: usize,
    cap: usize,
    /// The file the last fingerprint came from.
    file: Option<u32>,
    /// Days whose set was dropped to stay under the cap (or whose slot a newer day
    /// holds).
    pub dropped_days: Vec<NaiveDate>,
    /// Fingerprints dropped with them (or not held).
    pub dropped_fingerprints: u64,
}

/// The day of `at`, as entries hold it.
fn day_of(at: DateTime<Utc>) -> u16 {
    at.timestamp()
        .div_euclid(86_400)
        .clamp(0, i64::from(u16::MAX)) as u16
}

fn date_of(day: u16) -> NaiveDate {
    DateTime::from_timestamp(i64::from(day) * 86_400, 0)
        .map(|t| t.date_naive())
        .unwrap_or_default()
}

impl Dedupe {
    pub fn new(cap: usize) -> Dedupe {
        Dedupe {
            buckets: Vec::new(),
            over: HashMap::new(),
            slots: Vec::new(),
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
        if self.buckets.is_empty() {
            self.buckets = (0..BUCKETS).map(|_| Vec::new()).collect();
            self.slots = vec![Slot::default(); SLOTS];
        }
        if self.file.is_some_and(|f| f >> TAG_BITS != file >> TAG_BITS) {
            for e in self.buckets.iter_mut().flatten() {
                *e = entry::unlisted(*e);
            }
        }
        self.file = Some(file);
        let tag = u64::from(file) & ((1 << TAG_BITS) - 1);
        let low = fingerprint & LOW_MASK;
        let b = (fingerprint >> (64 - BUCKET_BITS)) as usize;
        if let Some(e) = self.buckets[b].iter_mut().find(|e| entry::low(**e) == low) {
            if entry::over(*e) {
                let c = self.over.entry(fingerprint).or_insert(Copies {
                    sent: 2,
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
            if !(entry::tag(*e) == tag && entry::listed(*e)) {
                // Sent once, listed now once by this file: a duplicate.
                *e = entry::listed_by(*e, tag);
                return false;
            }
            // A second copy in this file, sent once so far: sent again, and counted
            // exactly from now on.
            self.over.insert(
                fingerprint,
                Copies {
                    sent: 2,
                    file,
                    listed: 2,
                },
            );
            *e = entry::to_over(*e);
            return true;
        }
        let day = day_of(at);
        let slot = usize::from(day) % SLOTS;
        let holder = self.slots[slot];
        if holder.held > 0 && holder.day != day {
            if holder.day > day {
                // An older day than the slot holds: sent, not held.
                self.not_held(day);
                return true;
            }
            self.drop_day(
                holder.day,
                "dedupe: a newer day shares the slot of this day (1,024 days apart); dropped \
                 the fingerprints of the older day (records of that day seen again later in \
                 this replay will be sent again)",
            );
        }
        while self.held >= self.cap {
            let Some(oldest) = self
                .slots
                .iter()
                .filter(|s| s.held > 0)
                .map(|s| s.day)
                .min()
            else {
                break;
            };
            self.drop_day(
                oldest,
                "dedupe: fingerprint cap reached; dropped the fingerprints of the oldest day \
                 held (records of that day seen again later in this replay will be sent \
                 again; raise --dedupe-cap to keep more)",
            );
        }
        let bucket = &mut self.buckets[b];
        if bucket.len() == bucket.capacity() {
            // Small steps keep the slack small (an eighth at most), and growing in
            // place never doubles the set.
            bucket.reserve_exact((bucket.len() / 8).max(2));
        }
        bucket.push(entry::new(low, slot, tag));
        self.slots[slot] = Slot {
            day,
            held: self.slots[slot].held + 1,
        };
        self.held += 1;
        true
    }

    /// Drops every fingerprint of `day`, with a WARN.
    fn drop_day(&mut self, day: u16, why: &'static str) {
        let slot = usize::from(day) % SLOTS;
        let count = std::mem::take(&mut self.slots[slot].held);
        let over = &mut self.over;
        for (b, bucket) in self.buckets.iter_mut().enumerate() {
            bucket.retain(|&e| {
                if entry::slot(e) != slot {
                    return true;
                }
                if entry::over(e) {
                    over.remove(&((b as u64) << (64 - BUCKET_BITS) | entry::low(e)));
                }
                false
            });
        }
        self.held -= count;
        self.dropped_fingerprints += count as u64;
        let date = date_of(day);
        tracing::warn!(day = %date, fingerprints = count, cap = self.cap, "{why}");
        self.dropped_days.push(date);
    }

    /// A fingerprint of `day` sent and not held: its slot holds a newer day.
    fn not_held(&mut self, day: u16) {
        self.dropped_fingerprints += 1;
        let date = date_of(day);
        if !self.dropped_days.contains(&date) {
            tracing::warn!(
                day = %date,
                "dedupe: a newer day (1,024 days later or more) holds the slot of this day; \
                 its records are sent and not held (those seen again later in this replay \
                 will be sent again)"
            );
            self.dropped_days.push(date);
        }
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
    fn a_file_4_later_does_not_inherit_the_listings_of_an_older_one() {
        let mut d = Dedupe::new(10);
        assert!(d.first_sight(1, at(0), 3));
        // File 7 has the same low 2 bits as file 3.
        assert!(!d.first_sight(1, at(0), 7), "sent once already");
        assert!(d.first_sight(1, at(0), 7), "a second copy in file 7");
        assert!(!d.first_sight(1, at(0), 11));
        assert!(!d.first_sight(1, at(0), 11));
        assert!(d.first_sight(1, at(0), 11));
        // Sent once by file 240, listed by file 243, then by file 247 (same tag).
        assert!(d.first_sight(2, at(0), 240));
        assert!(!d.first_sight(2, at(0), 243));
        assert!(!d.first_sight(2, at(0), 247), "file 247 lists it once");
        assert!(d.first_sight(2, at(0), 247), "its second copy in file 247");
    }

    #[test]
    fn a_newer_day_sharing_a_slot_drops_the_older_day_and_an_older_one_is_not_held() {
        let mut d = Dedupe::new(100);
        assert!(d.first_sight(1, at(10), 0));
        assert!(d.first_sight(2, at(10), 0));
        assert!(d.first_sight(3, at(11), 0));
        // Day 1034 shares day 10's slot: day 10 goes, day 11 stays.
        assert!(d.first_sight(4, at(1034), 0));
        assert_eq!(d.dropped_days, vec![at(10).date_naive()]);
        assert_eq!(d.dropped_fingerprints, 2);
        assert_eq!(d.held(), 2);
        assert!(!d.first_sight(3, at(11), 1), "day 11 is held still");
        assert!(!d.first_sight(4, at(1034), 1));
        assert!(d.first_sight(1, at(10), 1), "dropped: sent again");
        assert!(
            d.first_sight(1, at(10), 2),
            "older than its slot's day: not held"
        );
        assert_eq!(d.held(), 2);
        assert_eq!(d.dropped_fingerprints, 4);
        assert_eq!(
            d.dropped_days,
            vec![at(10).date_naive()],
            "a day is named once"
        );
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
