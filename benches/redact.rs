//! Artefact scrubbing throughput against `grep -F -f patterns` over the same files, in one run
//! (issue 12: ≥ 0.5× grep's speed), and peak memory on a zip whose members are scrubbed one by
//! one (bounded by the largest member, not the archive).
//!
//! Not part of CI (it writes ~200 MB under target/bench-redact). Run:
//! `cargo bench --bench redact` (docs/security.md has the figures).
//! `SCOPEVAULT_BENCH_MB=N` changes the text size (default 100); `SCOPEVAULT_BENCH_NO_ZIP=1`
//! skips the zip part; `SCOPEVAULT_BENCH_SEED=1` adds a TOTP seed, whose base32 is matched in
//! any case. Times are given as wall-clock and as CPU time (user + system, of the
//! scrub and of grep): on a shared machine the CPU time is the fair comparison.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use scopevault::redact::{BinaryPolicy, Scrubber};
use scopevault::secret::{secret_forms, Patterns, SecretString, Target};

/// A small deterministic generator (xorshift), so every run scrubs the same bytes.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

const WORDS: &[&str] = &[
    "GET",
    "POST",
    "/api/orders",
    "status=200",
    "user",
    "session",
    "cookie",
    "trace",
    "render",
    "click",
    "fill",
    "page",
    "load",
    "network",
    "timing",
    "ms",
    "content-type",
    "json",
    "html",
    "ok",
    "warn",
    "debug",
    "checkout",
    "cart",
    "item",
    "price",
    "total",
    "42",
    "1337",
    "true",
];

fn secrets() -> Vec<(String, String)> {
    (0..50)
        .map(|i| {
            (
                format!("cred{i}.password"),
                format!("S3cr/t {i}&pw+{}~x%", i * 7919),
            )
        })
        .collect()
}

/// The TOTP seed `SCOPEVAULT_BENCH_SEED=1` adds, as `exec` and `redact` mask one.
const BENCH_SEED: &str = "GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ";

/// With `SCOPEVAULT_BENCH_SEED=1`: a `totp_seed` and its texts (`seed_texts`) among the
/// targets, and the seed's base32 in upper, lower and mixed case among the sprinkled forms.
fn add_seed(targets: &mut Vec<Target>, forms: &mut Vec<Vec<u8>>) {
    let seed = SecretString::from(BENCH_SEED.to_owned());
    targets.push(Target {
        label: "shop-2fa.totp_seed".into(),
        value: seed.clone(),
        username: None,
        any_case: false,
    });
    for s in scopevault::agent::totp::seed_texts("totp_seed", &seed) {
        targets.push(Target {
            label: "shop-2fa.totp_seed".into(),
            value: s.text,
            username: None,
            any_case: s.any_case,
        });
    }
    let bare = BENCH_SEED.replace(' ', "");
    forms.push(bare.clone().into_bytes());
    forms.push(bare.to_ascii_lowercase().into_bytes());
    let mixed: String = bare
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i % 3 == 0 {
                c.to_ascii_lowercase()
            } else {
                c
            }
        })
        .collect();
    forms.push(mixed.into_bytes());
}

fn rss_peak_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU seconds (user + system) of this process and of its waited-for children, from
/// /proc/self/stat (clock ticks of 10 ms): on a shared machine, wall-clock time says more about
/// the other jobs than about the work.
fn cpu_s() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // utime, stime, cutime, cstime are fields 14-17 of the line, 12-15 after the name.
    let tick = 100.0;
    if f.len() < 16 {
        return (0.0, 0.0);
    }
    ((f[11] + f[12]) / tick, (f[13] + f[14]) / tick)
}

fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// `files` files of about `mb_each` MiB each, with forms of the secrets sprinkled in.
fn generate(dir: &Path, files: usize, bytes_each: usize, forms: &[Vec<u8>], rng: &mut Rng) {
    std::fs::create_dir_all(dir).unwrap();
    for f in 0..files {
        let mut w = std::io::BufWriter::new(
            std::fs::File::create(dir.join(format!("a{f:03}.log"))).unwrap(),
        );
        let mut written = 0;
        while written < bytes_each {
            let mut line = String::new();
            for _ in 0..12 {
                line.push_str(WORDS[(rng.next() % WORDS.len() as u64) as usize]);
                line.push(' ');
            }
            // About one line in 400 carries a form of a secret.
            if rng.next().is_multiple_of(400) {
                let form = &forms[(rng.next() % forms.len() as u64) as usize];
                line.push_str(std::str::from_utf8(form).unwrap());
            }
            line.push('\n');
            w.write_all(line.as_bytes()).unwrap();
            written += line.len();
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn main() {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    let root = target.join("bench-redact");
    let mb: usize = std::env::var("SCOPEVAULT_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let secrets = secrets();
    let mut targets: Vec<Target> = secrets
        .iter()
        .map(|(l, v)| Target {
            label: l.clone(),
            value: SecretString::from(v.clone()),
            username: None,
            any_case: false,
        })
        .collect();
    let mut forms: Vec<Vec<u8>> = secrets
        .iter()
        .flat_map(|(_, v)| secret_forms(v))
        .map(|f| f.text.as_bytes().to_vec())
        .collect();
    let seeded = std::env::var_os("SCOPEVAULT_BENCH_SEED").is_some();
    if seeded {
        add_seed(&mut targets, &mut forms);
    }
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let src = root.join("src");
    let _ = std::fs::remove_dir_all(&root);
    generate(&src, mb, 1 << 20, &forms, &mut rng);
    let patterns_file = root.join("patterns.txt");
    {
        let mut w = std::fs::File::create(&patterns_file).unwrap();
        for f in &forms {
            w.write_all(f).unwrap();
            w.write_all(b"\n").unwrap();
        }
    }
    let work = root.join("work");
    copy_dir(&src, &work);

    // Warm the page cache for both: read every file once.
    for e in std::fs::read_dir(&work).unwrap() {
        let _ = std::fs::read(e.unwrap().path());
    }
    let (_, child0) = cpu_s();
    let t = Instant::now();
    // Output to a pipe read to the end: GNU grep stops at the first match when its output is
    // /dev/null, which would not be the same work.
    let grep = std::process::Command::new("grep")
        .args(["-F", "-c", "-r", "-f"])
        .arg(&patterns_file)
        .arg(&work)
        .output();
    let grep_s = t.elapsed().as_secs_f64();
    let grep_cpu = cpu_s().1 - child0;

    let compile = Instant::now();
    let patterns = Arc::new(Patterns::new(&targets));
    let compile_s = compile.elapsed().as_secs_f64();
    let (self0, _) = cpu_s();
    let t = Instant::now();
    let summary = Scrubber::new(patterns.clone(), BinaryPolicy::Keep)
        .scrub_paths(std::slice::from_ref(&work));
    let scrub_s = t.elapsed().as_secs_f64();
    let scrub_cpu = cpu_s().0 - self0;
    assert!(summary.ok(), "{summary}");
    println!(
        "text: {mb} MiB in {} files, 50 secrets{}, {} forms, {} replacements in {} rewritten files",
        summary.files,
        if seeded { " and a TOTP seed" } else { "" },
        patterns.len(),
        summary.total_hits(),
        summary.rewritten
    );
    println!(
        "  scopevault scrub: {scrub_s:.2} s wall ({:.0} MiB/s), {scrub_cpu:.2} s CPU ({:.0} MiB/s); automaton built in {compile_s:.3} s",
        mb as f64 / scrub_s,
        mb as f64 / scrub_cpu.max(0.01)
    );
    match grep {
        Ok(_) => println!(
            "  grep -F -c -f:    {grep_s:.2} s wall ({:.0} MiB/s), {grep_cpu:.2} s CPU ({:.0} MiB/s)\n  ratio (scrub speed / grep speed): {:.2} by wall-clock time, {:.2} by CPU time",
            mb as f64 / grep_s,
            mb as f64 / grep_cpu.max(0.01),
            grep_s / scrub_s,
            grep_cpu / scrub_cpu.max(0.01)
        ),
        Err(e) => println!("  grep not available: {e}"),
    }
    if std::env::var_os("SCOPEVAULT_BENCH_NO_ZIP").is_some() {
        let _ = std::fs::remove_dir_all(&root);
        return;
    }

    // Memory: a zip of 20 members of 5 MiB (100 MiB): peak RSS grows by about one member.
    let zdir = root.join("zip");
    std::fs::create_dir_all(&zdir).unwrap();
    {
        let mut w = zip::ZipWriter::new(std::fs::File::create(zdir.join("trace.zip")).unwrap());
        let o = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for m in 0..20 {
            w.start_file(format!("resources/m{m}.txt"), o).unwrap();
            let data = std::fs::read(src.join(format!("a{:03}.log", m % mb.max(1)))).unwrap();
            for _ in 0..5 {
                w.write_all(&data).unwrap();
            }
        }
        w.finish().unwrap();
    }
    drop(summary);
    reset_peak();
    let before = rss_peak_kb();
    let t = Instant::now();
    let summary = Scrubber::new(patterns, BinaryPolicy::Keep).scrub_paths(&[zdir]);
    let zip_s = t.elapsed().as_secs_f64();
    assert!(summary.ok(), "{summary}");
    let after = rss_peak_kb();
    println!(
        "zip: 20 members of 5 MiB (100 MiB), {} replacements in {zip_s:.2} s; peak RSS {} MiB before, {} MiB during (+{} MiB)",
        summary.total_hits(),
        before / 1024,
        after / 1024,
        (after.saturating_sub(before)) / 1024
    );
    let _ = std::fs::remove_dir_all(&root);
}
