//! Memory probe for the parsed policy: live heap bytes (counted by a global allocator) and
//! RSS after `Policy::parse` of a 10,000-credential × 10,000-task policy and `malloc_trim`.
//!
//! `cargo run --release --example policy_mem [n]`

// A global allocator can only be written with `unsafe`: this measurement tool is the one
// place outside src/sys.rs allowed it (it is never part of the binary).
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let now = LIVE.fetch_add(l.size() as isize, Ordering::Relaxed) + l.size() as isize;
        PEAK.fetch_max(now, Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let now = LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed)
            + new as isize
            - l.size() as isize;
        PEAK.fetch_max(now, Ordering::Relaxed);
        System.realloc(p, l, new)
    }
}

#[global_allocator]
static A: Counting = Counting;

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let mut toml = String::from("version = 1\n");
    for i in 0..n {
        toml += &(format!("[credentials.c{i}]\nkind = \"login\"\nscopes = [\"app{i}:login\"]\n")
            + &format!("[tasks.t{i}]\nneeds = [\"app{i}:login\"]\ncredentials = [\"c{i}\"]\nrunners = {{ users = [\"0\"] }}\n"));
    }
    scopevault::sys::release_free_memory();
    let live0 = LIVE.load(Ordering::Relaxed);
    let rss0 = rss_kib();
    PEAK.store(live0, Ordering::Relaxed);
    let t = std::time::Instant::now();
    let policy = scopevault::policy::Policy::parse(&toml, "policy.toml").expect("parses");
    let took = t.elapsed();
    let policy = if std::env::var_os("CLONE").is_some() {
        scopevault::sys::release_free_memory();
        let c = policy.clone();
        drop(policy);
        c
    } else {
        policy
    };
    scopevault::sys::release_free_memory();
    let live = LIVE.load(Ordering::Relaxed) - live0;
    let peak = PEAK.load(Ordering::Relaxed) - live0;
    let rss = rss_kib();
    println!(
        "n = {n}: parse {took:?}; live {:.2} MB (source {:.2} MB incl.), peak {:.2} MB, RSS +{:.1} MiB after malloc_trim",
        live as f64 / 1e6,
        toml.len() as f64 / 1e6,
        peak as f64 / 1e6,
        (rss as f64 - rss0 as f64) / 1024.0
    );
    if std::env::var_os("SMAPS").is_some() {
        let sm = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
        let mut head = String::new();
        for l in sm.lines() {
            if l.contains('-') && !l.starts_with(|c: char| c.is_ascii_uppercase()) {
                head = l.to_owned();
            } else if let Some(v) = l.strip_prefix("Rss:") {
                let kb: u64 = v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
                if kb > 1000 {
                    println!("{kb:>8} kB  {head}");
                }
            }
        }
    }
    assert_eq!(policy.credentials().count(), n);
}
