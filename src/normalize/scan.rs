//! Finding bytes of a small set, eight bytes at a time.
//!
//! Owned here: "where is the first byte of this set" for reading JSON (the end of a
//! string: `"` or `\`) and for the escaping contexts of the encoders (CEF extension
//! values, CEF header fields, LEEF values, LEEF header fields, JSON strings). Most
//! strings contain none of these bytes, so readers skip and escapers copy them in one
//! piece; byte-at-a-time loops were the largest cost of normalizing and encoding.
//! Deliberately not here: what the callers do with the position.
//!
//! The technique is SWAR (SIMD within a register, safe code only): for a word `x`,
//! `(x - 0x01..01) & !x & 0x80..80` flags the zero bytes of `x`; XOR with a repeated byte
//! first turns "equals c" into "is zero". Bits above the lowest flagged byte can be
//! false positives (a borrow runs upwards), the lowest one never is, and only the lowest
//! one is used.

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

#[inline(always)]
fn eq_mask(x: u64, c: u8) -> u64 {
    let y = x ^ (LO * u64::from(c));
    y.wrapping_sub(LO) & !y & HI
}

/// Flags bytes below `n` (`n` <= 0x80); bytes >= 0x80 are never flagged.
#[inline(always)]
fn lt_mask(x: u64, n: u8) -> u64 {
    x.wrapping_sub(LO * u64::from(n)) & !x & HI
}

#[inline(always)]
fn find_by(b: &[u8], mask: impl Fn(u64) -> u64, byte: impl Fn(u8) -> bool) -> Option<usize> {
    let mut chunks = b.chunks_exact(8);
    let mut base = 0;
    for c in &mut chunks {
        let x = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        let m = mask(x);
        if m != 0 {
            return Some(base + (m.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&c| byte(c))
        .map(|i| base + i)
}

/// First byte of `set` (a constant at every call: the fold unrolls into one mask per
/// byte).
#[inline(always)]
fn find_any<const N: usize>(b: &[u8], set: [u8; N]) -> Option<usize> {
    find_by(
        b,
        |x| set.iter().fold(0, |m, &c| m | eq_mask(x, c)),
        |c| set.contains(&c),
    )
}

/// First `"` or `\`: where a JSON string ends or has an escape.
#[inline]
pub(crate) fn find_quote_or_backslash(b: &[u8]) -> Option<usize> {
    find_any(b, [b'"', b'\\'])
}

/// First `\` or `=`: what needs attention when a JSON string's inside (which holds no
/// raw CR or LF) is written as a CEF extension value.
#[inline]
pub(crate) fn find_backslash_or_eq(b: &[u8]) -> Option<usize> {
    find_any(b, [b'\\', b'='])
}

/// First `\`, `=`, LF or CR: what a CEF extension value escapes.
#[inline]
pub(crate) fn find_cef_value_special(b: &[u8]) -> Option<usize> {
    find_any(b, [b'\\', b'=', b'\n', b'\r'])
}

/// First `\`, `|`, LF or CR: what a CEF header field escapes or replaces.
#[inline]
pub(crate) fn find_cef_header_special(b: &[u8]) -> Option<usize> {
    find_any(b, [b'\\', b'|', b'\n', b'\r'])
}

/// First `\`, TAB, LF or CR: what a LEEF attribute value escapes.
#[inline]
pub(crate) fn find_leef_value_special(b: &[u8]) -> Option<usize> {
    find_any(b, [b'\\', b'\t', b'\n', b'\r'])
}

/// First `\`, `|`, TAB, LF or CR: what a LEEF header field escapes or replaces.
#[inline]
pub(crate) fn find_leef_header_special(b: &[u8]) -> Option<usize> {
    find_any(b, [b'\\', b'|', b'\t', b'\n', b'\r'])
}

/// First `"`, `\` or control character below 0x20: what a JSON string escapes.
#[inline]
pub(crate) fn find_json_special(b: &[u8]) -> Option<usize> {
    find_by(
        b,
        |x| eq_mask(x, b'"') | eq_mask(x, b'\\') | lt_mask(x, 0x20),
        |c| c < 0x20 || c == b'"' || c == b'\\',
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A finder, its name, and the bytes it looks for, one at a time.
    type Finder = (&'static str, fn(&[u8]) -> Option<usize>, fn(u8) -> bool);

    const FINDERS: [Finder; 7] = [
        ("cef value", find_cef_value_special, |c| {
            matches!(c, b'\\' | b'=' | b'\n' | b'\r')
        }),
        ("cef header", find_cef_header_special, |c| {
            matches!(c, b'\\' | b'|' | b'\n' | b'\r')
        }),
        ("json", find_json_special, |c| {
            c < 0x20 || c == b'"' || c == b'\\'
        }),
        ("quote or backslash", find_quote_or_backslash, |c| {
            c == b'"' || c == b'\\'
        }),
        ("backslash or eq", find_backslash_or_eq, |c| {
            c == b'=' || c == b'\\'
        }),
        ("leef value", find_leef_value_special, |c| {
            matches!(c, b'\\' | b'\t' | b'\n' | b'\r')
        }),
        ("leef header", find_leef_header_special, |c| {
            matches!(c, b'\\' | b'|' | b'\t' | b'\n' | b'\r')
        }),
    ];

    /// The reference: a byte loop.
    fn naive(b: &[u8], f: fn(u8) -> bool) -> Option<usize> {
        b.iter().position(|&c| f(c))
    }

    #[test]
    fn finds_the_first_special_byte_at_every_position() {
        for len in 0..40 {
            for pos in 0..=len {
                for special in [b'\\', b'=', b'\n', b'\r', b'|', b'"', b'\t', 0x00, 0x1f] {
                    let mut v = vec![b'a'; len];
                    if pos < len {
                        v[pos] = special;
                    }
                    for (name, find, looks_for) in FINDERS {
                        assert_eq!(find(&v), naive(&v, looks_for), "{name}: {v:?}");
                    }
                }
            }
        }
    }

    proptest! {
        #[test]
        fn agrees_with_a_byte_loop(v in prop::collection::vec(any::<u8>(), 0..64)) {
            for (name, find, looks_for) in FINDERS {
                prop_assert_eq!(find(&v), naive(&v, looks_for), "{}", name);
            }
        }
    }
}
