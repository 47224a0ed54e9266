//! Any bytes as a block of lines: the block scanner must never panic, must count lines like a
//! plain split does, and must report in-bounds, increasing line numbers and offsets, and repeat
//! counts within the cap.
#![no_main]

use libfuzzer_sys::fuzz_target;
use maillogsentinel::parse::{MAX_REPEAT, Parser, YearContext};

fuzz_target!(|data: &[u8]| {
    let years = YearContext::now();
    let parser = Parser::new(1024, "local");
    let mut last = (0u64, 0u64);
    let counts = parser.scan_block(data, 0, 0, &years, |found| {
        assert!(found.line_number > last.0, "line numbers increase");
        assert!(found.end_offset > last.1 && found.end_offset <= data.len() as u64);
        assert!(found.count >= 1 && found.count <= MAX_REPEAT);
        assert!(!found.capped || found.count == MAX_REPEAT);
        last = (found.line_number, found.end_offset);
    });
    let newlines = data.iter().filter(|&&b| b == b'\n').count() as u64;
    let unterminated = u64::from(data.last().is_some_and(|&b| b != b'\n'));
    assert_eq!(counts.lines, newlines + unterminated);
    assert!(last.0 <= counts.lines);
});
