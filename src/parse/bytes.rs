//! Substring search within one line: a `memchr` for the needle's first byte, then a compare.
//!
//! `memchr::memmem::find` builds a searcher on every call (tens of nanoseconds of set-up, more
//! than the search itself costs on a 200-byte line); profiling showed that set-up as the largest
//! cost of reading Dovecot's login lines. The prefilter's block-wide searches keep their
//! prebuilt `memmem::Finder`s; the checks inside a line use these.

/// Where `needle` (not empty) first occurs in `haystack`.
pub(super) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, rest) = needle.split_first()?;
    memchr::memchr_iter(first, haystack).find(|&i| haystack[i + 1..].starts_with(rest))
}

/// Where `needle` (not empty) last occurs in `haystack`.
pub(super) fn rfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, rest) = needle.split_first()?;
    memchr::memrchr_iter(first, haystack).find(|&i| haystack[i + 1..].starts_with(rest))
}

/// Whether `needle` occurs in `haystack`, ASCII case ignored (for rare lines only: it compares
/// at every offset).
pub(super) fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_like_memmem() {
        let cases: [(&[u8], &[u8]); 7] = [
            (b"a, b, c", b", "),
            (b"", b"x"),
            (b"x", b"xy"),
            (b"rip=1, rip=2", b"rip="),
            (b"aaa", b"aa"),
            (b"user=<a>, method=P", b"method="),
            (b"no match here", b"zz"),
        ];
        for (h, n) in cases {
            assert_eq!(find(h, n), memchr::memmem::find(h, n), "{h:?} {n:?}");
            assert_eq!(rfind(h, n), memchr::memmem::rfind(h, n), "{h:?} {n:?}");
        }
        assert!(contains_ignore_case(
            b"Warning: Auth Process not responding",
            b"auth process"
        ));
        assert!(!contains_ignore_case(b"auth", b"auth process"));
    }
}
