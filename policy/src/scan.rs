//! Byte-class scans eight bytes at a time, for the checks every request runs
//! over its text (the framing guard over each head, the access log over each
//! string it writes).
//!
//! A byte-by-byte `all`/`any` costs ~4-5 instructions a byte; testing a whole
//! 64-bit word with the tricks of "Bit Twiddling Hacks" (Sean Eron Anderson:
//! "Determine if a word has a byte less than n", "... equal to n") costs ~2, and
//! only a word that may hold a hit is looked at byte by byte. The word tests
//! are exact as yes/no answers (tests below check them exhaustively against
//! byte-by-byte definitions).

const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);

/// Whether a byte of `word` is below `n` (`n` at most 0x80).
#[inline]
pub fn has_less(word: u64, n: u8) -> bool {
    debug_assert!(n <= 0x80);
    word.wrapping_sub(ONES * u64::from(n)) & !word & HIGHS != 0
}

/// Whether a byte of `word` is `byte`.
#[inline]
pub fn has_byte(word: u64, byte: u8) -> bool {
    has_less(word ^ (ONES * u64::from(byte)), 1)
}

/// Whether a byte of `word` is 0x80 or above (not ASCII).
#[inline]
pub fn has_high(word: u64) -> bool {
    word & HIGHS != 0
}

/// Whether any byte of `bytes` is a `hit`. `maybe(word)` must be true for every
/// eight-byte word that holds a hit (it may be true for others: those words
/// are then checked byte by byte with `hit`).
#[inline]
pub fn any_byte(bytes: &[u8], maybe: impl Fn(u64) -> bool, hit: impl Fn(u8) -> bool) -> bool {
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let mut eight = [0; 8];
        eight.copy_from_slice(word);
        if maybe(u64::from_ne_bytes(eight)) && word.iter().any(|&b| hit(b)) {
            return true;
        }
    }
    words.remainder().iter().any(|&b| hit(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks that `any_byte` with `maybe` answers as `hit` alone does: for
    /// every byte value at every place of one to three words (and a tail),
    /// among filler bytes, and for random mixes of edge values.
    fn agrees(maybe: impl Fn(u64) -> bool + Copy, hit: impl Fn(u8) -> bool + Copy) {
        for filler in [b'a', b'~', b'!', 0xc3] {
            if hit(filler) {
                continue;
            }
            for len in 1..=19 {
                for at in 0..len {
                    for b in 0..=255u8 {
                        let mut text = vec![filler; len];
                        text[at] = b;
                        assert_eq!(
                            any_byte(&text, maybe, hit),
                            hit(b),
                            "byte {b:#04x} at {at} of {len}"
                        );
                    }
                }
            }
        }
        // Mixed words, where a borrow from one byte's subtraction could spill
        // into the next: edge values drawn at random (a fixed LCG).
        let edges = [
            0x00, 0x01, 0x08, 0x09, 0x0a, 0x1f, 0x20, 0x21, 0x22, 0x23, 0x5b, 0x5c, 0x5d, 0x7e,
            0x7f, 0x80, 0x9f, 0xa0, 0xdc, 0xfe, 0xff, b'a',
        ];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..100_000 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let len = 8 + (state >> 60) as usize;
            let text: Vec<u8> = (0..len)
                .map(|i| edges[((state >> (i * 3 % 56)) & 0xff) as usize % edges.len()])
                .collect();
            let expected = text.iter().any(|&b| hit(b));
            assert_eq!(any_byte(&text, maybe, hit), expected, "{text:02x?}");
        }
    }

    #[test]
    fn below_a_bound_or_equal_to_a_byte() {
        agrees(
            |w| has_less(w, 0x20) || has_byte(w, b'"') || has_byte(w, b'\\'),
            |b| b < 0x20 || b == b'"' || b == b'\\',
        );
        agrees(
            |w| has_less(w, 0x21) || has_byte(w, 0x7f) || has_high(w),
            |b| !(0x21..=0x7e).contains(&b),
        );
        agrees(|w| has_less(w, 0x80), |b| b < 0x80);
        agrees(|w| has_less(w, 1), |b| b == 0);
    }

    /// The word tests themselves are exact: no word is sent to the byte-by-byte
    /// check without a reason.
    #[test]
    fn word_tests_are_exact() {
        let edges = [
            0x00u8, 0x01, 0x1f, 0x20, 0x21, 0x22, 0x7e, 0x7f, 0x80, 0x81, 0xa0, 0xff,
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..200_000 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let bytes: [u8; 8] =
                std::array::from_fn(|i| edges[((state >> (i * 7)) & 0xff) as usize % edges.len()]);
            let word = u64::from_ne_bytes(bytes);
            for n in [1, 0x20, 0x21, 0x80] {
                assert_eq!(
                    has_less(word, n),
                    bytes.iter().any(|&b| b < n),
                    "{bytes:02x?} < {n:#x}"
                );
            }
            for b in [0x00, 0x22, 0x7f, 0xff] {
                assert_eq!(
                    has_byte(word, b),
                    bytes.contains(&b),
                    "{bytes:02x?} has {b:#x}"
                );
            }
            assert_eq!(has_high(word), bytes.iter().any(|&b| b >= 0x80));
        }
    }

    #[test]
    fn a_coarse_word_test_is_refined_byte_by_byte() {
        // Tabs pass the word test for control bytes but are not hits.
        agrees(
            |w| has_less(w, 0x20) || has_byte(w, 0x7f),
            |b| b != b'\t' && (b < 0x20 || b == 0x7f),
        );
    }
}
