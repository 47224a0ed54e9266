//! Any bytes as a block of lines: the block scanner must never panic, must count lines like a
//! plain split does, must report in-bounds, increasing line numbers and offsets, and repeat
//! counts within the cap, and its prefilter must never pass over a line the parser would take
//! (every line `parse_line` makes something of is reported).
#![no_main]

use libfuzzer_sys::fuzz_target;
use maillogsentinel::parse::{MAX_REPEAT, Parsed, Parser, YearContext, parse_line};

fuzz_target!(|data: &[u8]| {
    let years = YearContext::now();
    let parser = Parser::new(1024, "local");
    let mut last = (0u64, 0u64);
    let mut reported = std::collections::BTreeSet::new();
    let counts = parser.scan_block(data, 0, 0, &years, |found| {
        reported.insert(found.line_number);
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
    for (i, line) in data.split(|&b| b == b'\n').enumerate() {
        if line.len() <= 1024 && parse_line(line, &years, b"local").parsed != Parsed::NotFailure {
            assert!(
                reported.contains(&(i as u64 + 1)),
                "line {} passed over: {:?}",
                i + 1,
                String::from_utf8_lossy(line)
            );
        }
    }
});
