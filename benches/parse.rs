//! Micro-benchmarks of the parser: one failure line, and a 4 MB block of ordinary traffic with
//! 1% failures through the prefilter.

#[path = "support/loggen.rs"]
#[allow(dead_code)]
mod loggen;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use maillogsentinel::parse::{Parser, YearContext, parse_line};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let years = YearContext::now();
    let line = b"Nov 22 08:50:58 mx postfix/submission/smtpd[3363]: warning: unknown[203.0.113.7]: SASL LOGIN authentication failed: (reason unavailable), sasl_username=webmaster";
    c.bench_function("parse_line/failure", |b| {
        b.iter(|| parse_line(black_box(line), &years, b"mx"))
    });

    let mut block = Vec::new();
    let spec = loggen::Spec {
        bytes: 4_000_000,
        failures_per_10k: 100,
        attacker_ips: 5000,
        seed: 7,
        dovecot: false,
    };
    loggen::generate(&spec, &mut block).unwrap();
    let parser = Parser::new(64 * 1024, "mx");
    let mut g = c.benchmark_group("scan_block");
    g.throughput(Throughput::Bytes(block.len() as u64));
    g.bench_function("4MB, 1% failures", |b| {
        b.iter(|| {
            let mut n = 0u64;
            parser.scan_block(black_box(&block), 0, 0, &years, |_| n += 1);
            n
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
