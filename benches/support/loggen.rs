//! A generator of realistic Postfix logs for benchmarks: the everyday traffic of a small mail
//! server (connections, queue manager, cleanup, delivery, rejects, TLS, postscreen) with a set
//! share of failed SASL logins in every form the parser knows. Deterministic for a seed.

use std::io::{self, Write};

/// A small, fast, deterministic PRNG (xorshift64*): benchmarks need the same file every run.
pub struct Rng(u64);

impl Rng {
    /// Seeded generator (seed 0 is replaced).
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    /// Next value.
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// One of `items`.
    pub fn pick<'a, T: ?Sized>(&mut self, items: &[&'a T]) -> &'a T {
        items[self.below(items.len() as u64) as usize]
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const USERS: [&str; 10] = [
    "admin",
    "info",
    "test",
    "postmaster",
    "webmaster",
    "sales@example.org",
    "john, smith",
    "Jürgen",
    "support",
    "(unavailable)",
];
const MECHS: [&str; 5] = ["LOGIN", "PLAIN", "login", "CRAM-MD5", "Plain"];
const SERVICES: [&str; 4] = [
    "postfix/smtpd",
    "postfix/submission/smtpd",
    "postfix/smtps/smtpd",
    "postfix-out/smtpd",
];

/// Parameters of a generated log.
pub struct Spec {
    /// Approximate size in bytes.
    pub bytes: u64,
    /// Failed logins per 10,000 lines.
    pub failures_per_10k: u64,
    /// Number of distinct attacking IPs (when 0, every failure has a fresh random IP).
    pub attacker_ips: u64,
    /// PRNG seed.
    pub seed: u64,
    /// Half the failures from Dovecot's login processes (IMAP, POP3, submission; every summary
    /// form), and Postfix lines of clients that logged in, Dovecot connections without
    /// attempts and auth-process verdicts among the other lines.
    pub dovecot: bool,
}

/// What was generated.
#[derive(Debug, Default, Clone, Copy)]
pub struct Generated {
    /// Lines written.
    pub lines: u64,
    /// Failed-login lines among them (rows a correct scan writes).
    pub failures: u64,
    /// Successful-login lines (rows of the logins record).
    pub logins: u64,
    /// Bytes written.
    pub bytes: u64,
}

fn ip(rng: &mut Rng, pool: u64) -> String {
    let n = if pool == 0 {
        rng.next()
    } else {
        rng.below(pool).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    };
    if n % 10 == 0 {
        format!(
            "2001:db8:{:x}:{:x}::{:x}",
            (n >> 16) & 0xffff,
            (n >> 32) & 0xffff,
            (n >> 48) & 0xffff
        )
    } else {
        format!(
            "{}.{}.{}.{}",
            1 + (n >> 8) % 223,
            (n >> 16) & 0xff,
            (n >> 24) & 0xff,
            1 + (n >> 32) % 254
        )
    }
}

fn queue_id(rng: &mut Rng) -> String {
    format!("{:011X}", rng.next() & 0x0FFF_FFFF_FFFF)
}

/// Writes a log following `spec` to `out`.
pub fn generate(spec: &Spec, out: &mut impl Write) -> io::Result<Generated> {
    let mut rng = Rng::new(spec.seed);
    let mut g = Generated::default();
    let mut line = String::with_capacity(512);
    let mut secs: u64 = 0;
    let mut pid = 3000u64;
    while g.bytes < spec.bytes {
        line.clear();
        secs += rng.below(3);
        let day = 1 + (secs / 86_400) % 28;
        let month = MONTHS[((secs / (86_400 * 28)) % 12) as usize];
        let t = secs % 86_400;
        let ts = format!(
            "{month} {day:>2} {:02}:{:02}:{:02}",
            t / 3600,
            t / 60 % 60,
            t % 60
        );
        if rng.below(10_000) < spec.failures_per_10k && spec.dovecot && rng.below(2) == 0 {
            let svc = rng.pick(&["imap-login", "pop3-login", "submission-login"]);
            let addr = ip(&mut rng, spec.attacker_ips);
            let n = 1 + rng.below(3);
            let summary = match rng.below(4) {
                0 => format!("Disconnected (auth failed, {n} attempts in 4 secs)"),
                1 => format!("Aborted login (auth failed, {n} attempts in 12 secs)"),
                2 => format!(
                    "Login aborted: Connection closed (auth failed, {n} attempts in 2 secs) (auth_failed)"
                ),
                _ => {
                    format!("Disconnected: Connection closed (auth failed, {n} attempts in 9 secs)")
                }
            };
            use std::fmt::Write as _;
            let _ = write!(
                line,
                "{ts} mx dovecot: {svc}: {summary}: user=<{}>, method=PLAIN, rip={addr}, lip=192.0.2.25, TLS, session=<{:x}>",
                rng.pick(&USERS),
                rng.next()
            );
            g.failures += 1;
        } else if rng.below(10_000) < spec.failures_per_10k {
            let svc = rng.pick(&SERVICES);
            let mech = rng.pick(&MECHS);
            let addr = ip(&mut rng, spec.attacker_ips);
            let name = if rng.below(3) == 0 {
                format!("{}.dyn.example.net", addr.replace([':', '.'], "-"))
            } else {
                "unknown".into()
            };
            let tail = match rng.below(4) {
                0 => "UGFzc3dvcmQ6".to_string(),
                _ => format!("(reason unavailable), sasl_username={}", rng.pick(&USERS)),
            };
            use std::fmt::Write as _;
            let _ = write!(
                line,
                "{ts} mx {svc}[{pid}]: warning: {name}[{addr}]: SASL {mech} authentication failed: {tail}"
            );
            g.failures += 1;
        } else {
            let q = queue_id(&mut rng);
            let addr = ip(&mut rng, 0);
            pid = 3000 + rng.below(5000);
            use std::fmt::Write as _;
            let cases = if spec.dovecot { 17 } else { 14 };
            let _ = match rng.below(cases) {
                0 => write!(
                    line,
                    "{ts} mx postfix/smtpd[{pid}]: connect from mail-{}.example.com[{addr}]",
                    rng.below(999)
                ),
                1 => write!(
                    line,
                    "{ts} mx postfix/smtpd[{pid}]: disconnect from unknown[{addr}] ehlo=1 auth=0/1 quit=1 commands=2/3"
                ),
                2 => write!(
                    line,
                    "{ts} mx postfix/smtpd[{pid}]: {q}: client=mail-{}.example.com[{addr}]",
                    rng.below(999)
                ),
                3 => write!(
                    line,
                    "{ts} mx postfix/cleanup[{pid}]: {q}: message-id=<{:016x}@mail.example.com>",
                    rng.next()
                ),
                4 => write!(
                    line,
                    "{ts} mx postfix/qmgr[1191]: {q}: from=<newsletter-{}@lists.example.com>, size={}, nrcpt=1 (queue active)",
                    rng.below(9999),
                    rng.below(90_000)
                ),
                5 => write!(
                    line,
                    "{ts} mx postfix/smtp[{pid}]: {q}: to=<user{}@example.net>, relay=mx{}.example.net[{addr}]:25, delay=0.{}, delays=0.1/0/0.2/0.1, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as {})",
                    rng.below(999),
                    rng.below(9),
                    rng.below(99),
                    queue_id(&mut rng)
                ),
                6 => write!(
                    line,
                    "{ts} mx postfix/local[{pid}]: {q}: to=<carol@example.org>, relay=local, delay=0.01, delays=0/0/0/0, dsn=2.0.0, status=sent (delivered to mailbox)"
                ),
                7 => write!(line, "{ts} mx postfix/qmgr[1191]: {q}: removed"),
                8 => write!(
                    line,
                    "{ts} mx postfix/smtpd[{pid}]: NOQUEUE: reject: RCPT from unknown[{addr}]: 554 5.7.1 <victim{}@example.org>: Relay access denied; from=<spam@example.net> to=<victim@example.org> proto=ESMTP helo=<WIN-{:X}>",
                    rng.below(99),
                    rng.below(1 << 20)
                ),
                9 => write!(
                    line,
                    "{ts} mx postfix/smtpd[{pid}]: Anonymous TLS connection established from unknown[{addr}]: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)"
                ),
                10 => write!(
                    line,
                    "{ts} mx postfix/postscreen[1190]: CONNECT from [{addr}]:{} to [192.0.2.25]:25",
                    1024 + rng.below(60_000)
                ),
                11 => write!(
                    line,
                    "{ts} mx postfix/smtpd[{pid}]: lost connection after AUTH from unknown[{addr}]"
                ),
                12 => write!(
                    line,
                    "{ts} mx postfix/anvil[1192]: statistics: max connection rate 3/60s for (smtp:{addr}) at {ts}"
                ),
                14 => {
                    g.logins += 1;
                    write!(
                        line,
                        "{ts} mx postfix/submission/smtpd[{pid}]: {q}: client=client-{}.example.com[{addr}], sasl_method=PLAIN, sasl_username=bob@example.org",
                        rng.below(999)
                    )
                }
                15 => write!(
                    line,
                    "{ts} mx dovecot: pop3-login: Disconnected (no auth attempts in 0 secs): user=<>, rip={addr}, lip=192.0.2.25, TLS handshaking: SSL_accept() failed, session=<{:x}>",
                    rng.next()
                ),
                16 => write!(
                    line,
                    "{ts} mx dovecot: auth: passwd-file(info@example.org,{addr},<{:x}>): unknown user",
                    rng.next()
                ),
                _ => {
                    g.logins += 1;
                    write!(
                        line,
                        "{ts} mx dovecot: imap-login: Login: user=<alice@example.org>, method=PLAIN, rip={addr}, lip=192.0.2.25, mpid={pid}, TLS, session=<{:x}>",
                        rng.next()
                    )
                }
            };
        }
        line.push('\n');
        out.write_all(line.as_bytes())?;
        g.lines += 1;
        g.bytes += line.len() as u64;
    }
    Ok(g)
}

/// Generates the log into `dir` unless a file for the same spec is already there (its counts
/// are kept beside it).
pub fn ensure_log(dir: &std::path::Path, spec: &Spec) -> (std::path::PathBuf, Generated) {
    let name = format!(
        "mail-{}MB-{}-{}-{}{}.log",
        spec.bytes / 1_000_000,
        spec.failures_per_10k,
        spec.attacker_ips,
        spec.seed,
        if spec.dovecot { "-dovecot" } else { "" }
    );
    let path = dir.join(&name);
    let stamp = dir.join(format!("{name}.counts"));
    if let (Ok(s), true) = (std::fs::read_to_string(&stamp), path.exists()) {
        let v: Vec<u64> = s
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if let [lines, failures, bytes, logins] = v[..] {
            return (
                path,
                Generated {
                    lines,
                    failures,
                    logins,
                    bytes,
                },
            );
        }
    }
    eprintln!("generating {} ...", path.display());
    let mut out = io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&path).unwrap());
    let g = generate(spec, &mut out).unwrap();
    out.flush().unwrap();
    std::fs::write(
        &stamp,
        format!("{} {} {} {}", g.lines, g.failures, g.bytes, g.logins),
    )
    .unwrap();
    (path, g)
}

/// Reads a file once so that every measured command finds it in the page cache.
pub fn warm(path: &std::path::Path) {
    use std::io::Read;
    let mut f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    while f.read(&mut buf).unwrap() > 0 {}
}
