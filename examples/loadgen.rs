//! Socket load generator: throughput and p50/p99 latency at 1, 8 and 64 concurrent clients
//! against baselines, printed as a table with ratios (design.md, "Performance targets").
//!
//! ```text
//! cargo run --release --example loadgen -- [--requests N] [--seconds S] [--clients 1,8,64] [--dir D]
//! ```
//!
//! Targets (each a `Target`: a way to connect, and a round trip on a connection):
//! - `echo`: a bare JSON-line echo server over a Unix socket, in-process (the floor for any
//!   JSON-line protocol on this machine);
//! - `ssh-agent`: a real `ssh-agent -D` holding one ed25519 key, answering
//!   `SSH2_AGENTC_REQUEST_IDENTITIES` — a well-known local credential daemon;
//! - `fdatasync`: N threads each appending a 400-byte line to one file and `fdatasync`ing it,
//!   plain `write` and `fdatasync` calls: "one fdatasync" of the one-client target;
//! - `durable write`: N threads each making the audit journal's write (one `O_DIRECT |
//!   O_DSYNC` write of a 4 KiB block into a preallocated file), no socket: with one thread,
//!   what one durable batch costs at the least, from which the run prints the ceiling at
//!   each client count above one ([`print_ceilings`]);
//! - `audit-append sync|nosync`: `AuditLog::append` from N threads, no socket: what the durable
//!   audit log (with group commit and its journal) costs by itself on this disk;
//! - `durable-echo`, `durable-echo gather`, `durable-echo parallel`, `durable-echo loop`,
//!   `durable-echo spin`: the echo server again, whose every answer waits until its request
//!   line is durable (one `O_DIRECT | O_DSYNC` write of whole 4 KiB blocks, as the audit
//!   journal writes): a thread per connection with a plain group commit, with a leader that
//!   first waits for every open connection's line, with a write per line and no group commit,
//!   one `mio` loop that gathers every connection's line and writes them itself, and that loop
//!   polling without ever sleeping (a CPU burnt all the time). No scopevault code: what
//!   durable answers cost on this machine and disk without any of the daemon's work.
//!
//! To measure the daemon, add a target made by [`json_line_target`] with the daemon's socket
//! and a `fetch` request line; the ratio table then compares it with `echo` and `ssh-agent`.
//!
//! Each row also gives, from `/proc/stat` over the row, the busy CPU time of the whole machine
//! per request and the share of its CPUs left idle (with iowait) or stolen by the hypervisor:
//! a server that leaves CPUs idle while its clients wait for one shows there. From
//! `/proc/diskstats` of the block device holding `--dir`, it gives the flushes a request and
//! the writes and KiB written a flush: what each durable batch costs the disk.
//!
//! `--idle N` prints the daemon's RSS and thread count with N connections open instead;
//! `--only A,B` keeps only the targets whose names start with A or B (and the baselines);
//! `LOADGEN_EVENT_LOOPS=N` starts the daemons with `serve --event-loops N`.
//!
//! The "scopevault nosync" row (`serve --no-audit-sync`) needs a daemon built with the cargo
//! feature `bench-no-audit-sync`, which releases lack; with a release binary the row is
//! skipped and the loadgen says how to build one ([`NOSYNC_BUILD`]).
//!
//! Every loop is bounded by a request count and a time limit; only Unix sockets are used.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use scopevault::audit::{AuditLog, AuditRecord, Decision, PeerInfo};
use scopevault::protocol::Op;
use scopevault::secret::SecretString;

/// One round trip on an open connection.
type RoundTrip = Box<dyn FnMut() -> io::Result<()> + Send>;

/// Something to measure: a name and a way to open one client connection.
struct Target {
    name: String,
    connect: Box<dyn Fn() -> io::Result<RoundTrip> + Sync>,
}

/// Limits of one run, per client.
#[derive(Clone, Copy)]
struct Limits {
    requests: usize,
    time: Duration,
}

/// The result of one run.
struct Stats {
    target: String,
    clients: usize,
    requests: usize,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
    /// What the whole machine's CPUs did meanwhile (`None` where `/proc/stat` is not there).
    cpu: Option<CpuShare>,
    /// What the disk holding `--dir` did meanwhile (`None` where it is not a block device in
    /// `/proc/diskstats`: a tmpfs, an overlay).
    disk: Option<DiskShare>,
}

/// The machine's CPU time over a row, from `/proc/stat`: busy (user, nice, system, irq,
/// softirq), idle (idle and iowait) and steal, in the kernel's ticks, and the number of CPUs.
/// A daemon that leaves CPUs idle while its clients wait shows here; the echo keeps them busy.
#[derive(Clone, Copy)]
struct CpuTimes {
    busy: u64,
    idle: u64,
    steal: u64,
    cpus: usize,
}

impl CpuTimes {
    fn now() -> Option<CpuTimes> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let mut lines = stat.lines();
        let f: Vec<u64> = lines
            .next()?
            .strip_prefix("cpu ")?
            .split_whitespace()
            .map(|v| v.parse().ok())
            .collect::<Option<_>>()?;
        let at = |i: usize| f.get(i).copied().unwrap_or(0);
        let cpus = lines
            .take_while(|l| l.starts_with("cpu"))
            .filter(|l| l[3..].starts_with(|c: char| c.is_ascii_digit()))
            .count();
        Some(CpuTimes {
            busy: at(0) + at(1) + at(2) + at(5) + at(6),
            idle: at(3) + at(4),
            steal: at(7),
            cpus,
        })
    }
}

/// A row's CPU: busy CPU time per request and the idle share of all CPUs.
#[derive(Clone, Copy)]
struct CpuShare {
    busy_per_request: Duration,
    idle: f64,
    steal: f64,
}

impl CpuShare {
    fn between(a: CpuTimes, b: CpuTimes, elapsed: Duration, requests: usize) -> Option<CpuShare> {
        let (busy, idle, steal) = (
            b.busy.saturating_sub(a.busy),
            b.idle.saturating_sub(a.idle),
            b.steal.saturating_sub(a.steal),
        );
        let all = (busy + idle + steal) as f64;
        if all == 0.0 || requests == 0 {
            return None;
        }
        let busy_cpu = elapsed.as_secs_f64() * b.cpus as f64 * busy as f64 / all;
        Some(CpuShare {
            busy_per_request: Duration::from_secs_f64(busy_cpu / requests as f64),
            idle: idle as f64 / all,
            steal: steal as f64 / all,
        })
    }
}

/// The block device holding the audit logs (`--dir`), as `/proc/diskstats` names it: the
/// device of the directory's file system, looked up in `/sys/dev/block/MAJOR:MINOR`.
fn disk_of(dir: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(dir).ok()?.dev();
    let (major, minor) = (rustix::fs::major(dev), rustix::fs::minor(dev));
    let link = std::fs::read_link(format!("/sys/dev/block/{major}:{minor}")).ok()?;
    Some(link.file_name()?.to_string_lossy().into_owned())
}

/// A block device's counters from `/proc/diskstats`: write requests completed, sectors (512
/// bytes) written and flush requests completed (the kernel's fields 5, 7 and 15 after the name).
/// Each durable write of a batch (the journal's `O_DIRECT | O_DSYNC` write, an `fdatasync`)
/// asks the disk for one flush when the disk has a write-back cache; what else it writes (the
/// file's inode when its timestamps changed) shows in the writes and sectors per flush. The
/// whole device is counted: other writers on it show too.
#[derive(Clone, Copy)]
struct DiskTimes {
    writes: u64,
    sectors: u64,
    flushes: u64,
}

impl DiskTimes {
    fn now(name: &str) -> Option<DiskTimes> {
        let stats = std::fs::read_to_string("/proc/diskstats").ok()?;
        let line = stats
            .lines()
            .find(|l| l.split_whitespace().nth(2) == Some(name))?;
        let f: Vec<u64> = line
            .split_whitespace()
            .skip(3)
            .map(|v| v.parse().unwrap_or(0))
            .collect();
        Some(DiskTimes {
            writes: *f.get(4)?,
            sectors: *f.get(6)?,
            // Kernels before 5.5 have no flush fields: the row shows none.
            flushes: *f.get(15)?,
        })
    }
}

/// A row's disk: flushes per request, and writes and KiB written per flush (`None` for a
/// row that flushed nothing).
#[derive(Clone, Copy)]
struct DiskShare {
    flushes_per_request: f64,
    per_flush: Option<(f64, f64)>,
}

impl DiskShare {
    fn between(a: DiskTimes, b: DiskTimes, requests: usize) -> Option<DiskShare> {
        let flushes = b.flushes.saturating_sub(a.flushes);
        if requests == 0 {
            return None;
        }
        let writes = b.writes.saturating_sub(a.writes) as f64;
        let kib = b.sectors.saturating_sub(a.sectors) as f64 / 2.0;
        Some(DiskShare {
            flushes_per_request: flushes as f64 / requests as f64,
            per_flush: (flushes > 0).then(|| (writes / flushes as f64, kib / flushes as f64)),
        })
    }
}

impl Stats {
    fn throughput(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
}

/// A JSON-line target: each round trip writes `request_line` (a newline is added) and reads one
/// line back; if `expect` is given, the response must contain it (e.g. `"ok":true`).
fn json_line_target(
    name: &str,
    socket: PathBuf,
    request_line: &str,
    expect: Option<&str>,
) -> Target {
    let mut request = request_line.trim_end_matches('\n').as_bytes().to_vec();
    request.push(b'\n');
    let expect = expect.map(str::to_owned);
    Target {
        name: name.to_owned(),
        connect: Box::new(move || {
            let stream = UnixStream::connect(&socket)?;
            stream.set_read_timeout(Some(Duration::from_secs(10)))?;
            let mut writer = stream.try_clone()?;
            let mut reader = BufReader::new(stream);
            let request = request.clone();
            let expect = expect.clone();
            let mut line = String::new();
            Ok(Box::new(move || {
                writer.write_all(&request)?;
                line.clear();
                if reader.read_line(&mut line)? == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "server closed",
                    ));
                }
                if let Some(e) = &expect {
                    if !line.contains(e.as_str()) {
                        return Err(io::Error::other(format!(
                            "unexpected response: {}",
                            line.trim_end()
                        )));
                    }
                }
                Ok(())
            }) as RoundTrip)
        }),
    }
}

/// The ssh-agent target: `SSH2_AGENTC_REQUEST_IDENTITIES` (11), answer must be
/// `SSH2_AGENT_IDENTITIES_ANSWER` (12).
fn ssh_agent_target(socket: PathBuf) -> Target {
    Target {
        name: "ssh-agent".to_owned(),
        connect: Box::new(move || {
            let mut stream = UnixStream::connect(&socket)?;
            stream.set_read_timeout(Some(Duration::from_secs(10)))?;
            let mut body = Vec::with_capacity(512);
            Ok(Box::new(move || {
                stream.write_all(&[0, 0, 0, 1, 11])?;
                let mut len = [0u8; 4];
                stream.read_exact(&mut len)?;
                let len = u32::from_be_bytes(len) as usize;
                if len == 0 || len > 256 * 1024 {
                    return Err(io::Error::other("bad agent frame length"));
                }
                body.resize(len, 0);
                stream.read_exact(&mut body)?;
                if body[0] != 12 {
                    return Err(io::Error::other(format!("agent answered type {}", body[0])));
                }
                Ok(())
            }) as RoundTrip)
        }),
    }
}

/// One `write` of a 400-byte line to a shared file opened for appending, then its `fdatasync`,
/// from each client thread: the bare cost of a durable append on this disk.
fn fdatasync_target(path: PathBuf) -> io::Result<Target> {
    let file = Arc::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?,
    );
    Ok(Target {
        name: "fdatasync".to_owned(),
        connect: Box::new(move || {
            let file = Arc::clone(&file);
            let mut line = vec![b'x'; 399];
            line.push(b'\n');
            Ok(Box::new(move || {
                (&*file).write_all(&line)?;
                file.sync_data()
            }) as RoundTrip)
        }),
    })
}

/// The audit journal's durable write from each client thread: one `O_DIRECT | O_DSYNC` write
/// of a 4 KiB block at the next place in a preallocated file ([`GroupCommit::write_batch`], a
/// write of its own per request, no socket and no group commit).
fn durable_write_target(path: &Path) -> io::Result<Target> {
    let file = Arc::new(GroupCommit::open(path, Durable::Parallel)?);
    Ok(Target {
        name: "durable write".to_owned(),
        connect: Box::new(move || {
            let file = Arc::clone(&file);
            let mut scratch = Vec::new();
            Ok(Box::new(move || file.write_batch(b"x\n", 1, &mut scratch)) as RoundTrip)
        }),
    })
}

/// `AuditLog::append` of a fetch-like record with one value, from each client thread.
fn audit_append_target(name: &str, log: Arc<AuditLog>) -> Target {
    Target {
        name: name.to_owned(),
        connect: Box::new(move || {
            let log = Arc::clone(&log);
            let value = SecretString::from("correct horse battery staple".to_string());
            Ok(Box::new(move || {
                log.append(AuditRecord {
                    peer: Some(PeerInfo {
                        uid: 1000,
                        gid: 1000,
                        pid: Some(4242),
                        exe: Some("/usr/bin/check".into()),
                        exe_deleted: false,
                        exe_truncated: false,
                    }),
                    task: Some("shop-login"),
                    credential: Some("shop-buyer"),
                    values: vec![("password", &value)],
                    ..AuditRecord::new(Op::Fetch, Decision::Allow)
                })
                .map(|_| ())
                .map_err(io::Error::other)
            }) as RoundTrip)
        }),
    }
}

/// Run `clients` concurrent clients, each doing a few warm-up round trips and then up to
/// `limits.requests` measured ones (stopping early at `limits.time`).
fn drive(target: &Target, clients: usize, limits: Limits, disk: Option<&str>) -> io::Result<Stats> {
    let conns: Vec<RoundTrip> = (0..clients)
        .map(|_| (target.connect)())
        .collect::<io::Result<_>>()?;
    let barrier = Arc::new(Barrier::new(clients + 1));
    let handles: Vec<_> = conns
        .into_iter()
        .map(|mut rt| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || -> io::Result<Vec<u64>> {
                for _ in 0..10 {
                    rt()?;
                }
                barrier.wait();
                let deadline = Instant::now() + limits.time;
                let mut lat = Vec::with_capacity(limits.requests);
                for _ in 0..limits.requests {
                    let t = Instant::now();
                    rt()?;
                    lat.push(t.elapsed().as_nanos() as u64);
                    if Instant::now() >= deadline {
                        break;
                    }
                }
                Ok(lat)
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    let cpu_at_start = CpuTimes::now();
    let disk_at_start = disk.and_then(DiskTimes::now);
    let mut all = Vec::new();
    for h in handles {
        all.extend(
            h.join()
                .map_err(|_| io::Error::other("client thread panicked"))??,
        );
    }
    let elapsed = start.elapsed();
    let cpu = cpu_at_start
        .zip(CpuTimes::now())
        .and_then(|(a, b)| CpuShare::between(a, b, elapsed, all.len()));
    let disk = disk_at_start
        .zip(disk.and_then(DiskTimes::now))
        .and_then(|(a, b)| DiskShare::between(a, b, all.len()));
    all.sort_unstable();
    let pct =
        |p: f64| Duration::from_nanos(all[((all.len() as f64 * p) as usize).min(all.len() - 1)]);
    Ok(Stats {
        target: target.name.clone(),
        clients,
        requests: all.len(),
        elapsed,
        p50: pct(0.50),
        p99: pct(0.99),
        cpu,
        disk,
    })
}

/// A bare JSON-line echo server on `socket`, one thread per connection, for the life of the
/// process.
fn start_echo_server(socket: &Path) -> io::Result<()> {
    let listener = UnixListener::bind(socket)?;
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            std::thread::spawn(move || -> io::Result<()> {
                let mut writer = conn.try_clone()?;
                let mut reader = BufReader::new(conn);
                let mut line = Vec::new();
                loop {
                    line.clear();
                    if reader.read_until(b'\n', &mut line)? == 0 {
                        return Ok(());
                    }
                    writer.write_all(&line)?;
                }
            });
        }
    });
    Ok(())
}

/// What a durable echo server shares between its connection threads: the lines not yet
/// written and a group commit. Any connection thread finding no write under way becomes the
/// leader and writes every line queued so far (its own and those queued while the last write
/// ran) in one `O_DIRECT | O_DSYNC` write of whole 4 KiB blocks into a preallocated file, as
/// the audit journal writes a frame; the others wait for it.
struct GroupCommit {
    state: std::sync::Mutex<CommitState>,
    written: std::sync::Condvar,
    file: std::fs::File,
    mode: Durable,
    queued_more: std::sync::Condvar,
}

#[derive(Default)]
struct CommitState {
    /// Lines queued (each ends in its newline) and the number of the last one queued.
    pending: Vec<u8>,
    queued: u64,
    /// The number of the last line durable, and whether a leader is writing.
    durable: u64,
    writing: bool,
    /// Where in the preallocated file the next write goes, and the writes made.
    offset: u64,
    writes: u64,
    lines: u64,
    /// Connections open, and lines queued and not yet taken by a leader.
    connections: u64,
    waiting_lines: u64,
}

/// How a durable echo makes its lines durable.
#[derive(Clone, Copy, PartialEq)]
enum Durable {
    /// Group commit: a thread that finds no write under way writes every line queued.
    Greedy,
    /// Group commit whose leader first waits (at most [`GATHER_AT_MOST`]) until every open
    /// connection has a line queued: in a closed loop each write then holds every client.
    Gather,
    /// No group commit: each connection thread writes its own line, in a block of its own,
    /// as many writes in flight as connections (the disk takes writes in parallel).
    Parallel,
    /// One `mio` loop that gathers every connection's line and writes them itself
    /// ([`start_durable_echo_loop`]).
    Loop,
    /// The same loop, polling without ever sleeping: it burns a CPU all the time, which no
    /// daemon on a checkpoint host may, and pays no wake-up of its own.
    Spin,
}

/// How long a gathering leader waits at most for the other connections' lines.
const GATHER_AT_MOST: Duration = Duration::from_micros(500);

/// The durable echo's file: 16 MiB, preallocated and synced, written round and round.
const DURABLE_ECHO_FILE: u64 = 16 << 20;
const BLOCK: usize = 4096;

impl GroupCommit {
    fn open(path: &Path, mode: Durable) -> io::Result<GroupCommit> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_DIRECT | libc::O_DSYNC)
            .open(path)?;
        // Zeroed blocks written (not a hole) and synced, so that each later write costs the
        // disk the block and its flush, no allocation.
        let mut buf = vec![0u8; (1 << 20) + BLOCK];
        let at = buf.as_ptr().align_offset(BLOCK);
        for i in 0..DURABLE_ECHO_FILE >> 20 {
            std::os::unix::fs::FileExt::write_all_at(&file, &buf[at..at + (1 << 20)], i << 20)?;
        }
        buf.clear();
        file.sync_all()?;
        Ok(GroupCommit {
            state: std::sync::Mutex::new(CommitState::default()),
            written: std::sync::Condvar::new(),
            file,
            mode,
            queued_more: std::sync::Condvar::new(),
        })
    }

    /// Write `lines` (`count` of them) in one write of whole blocks at the next place in the
    /// file; the lock is not held over the write.
    fn write_batch(&self, lines: &[u8], count: u64, scratch: &mut Vec<u8>) -> io::Result<()> {
        let len = lines.len().div_ceil(BLOCK).max(1) * BLOCK;
        let offset = {
            let mut st = self
                .state
                .lock()
                .map_err(|_| io::Error::other("poisoned"))?;
            if st.offset + len as u64 > DURABLE_ECHO_FILE {
                st.offset = 0;
            }
            st.offset += len as u64;
            st.offset - len as u64
        };
        scratch.clear();
        scratch.resize(len + BLOCK, 0);
        let at = scratch.as_ptr().align_offset(BLOCK);
        scratch[at..at + lines.len()].copy_from_slice(lines);
        std::os::unix::fs::FileExt::write_all_at(&self.file, &scratch[at..at + len], offset)?;
        let mut st = self
            .state
            .lock()
            .map_err(|_| io::Error::other("poisoned"))?;
        st.writes += 1;
        st.lines += count;
        Ok(())
    }

    /// Count a connection opened (`1`) or closed (`-1`).
    fn open_connection(&self, change: i64) {
        if let Ok(mut st) = self.state.lock() {
            st.connections = st.connections.saturating_add_signed(change);
            self.queued_more.notify_one();
        }
    }

    /// Queue `line` and return once it is durable (written by this thread or another).
    fn commit(&self, line: &[u8], scratch: &mut Vec<u8>) -> io::Result<()> {
        if self.mode == Durable::Parallel {
            return self.write_batch(line, 1, scratch);
        }
        let mut st = self
            .state
            .lock()
            .map_err(|_| io::Error::other("poisoned"))?;
        st.pending.extend_from_slice(line);
        st.queued += 1;
        st.waiting_lines += 1;
        if self.mode == Durable::Gather && st.waiting_lines >= st.connections {
            self.queued_more.notify_one();
        }
        let mine = st.queued;
        loop {
            if st.durable >= mine {
                return Ok(());
            }
            if st.writing {
                st = self
                    .written
                    .wait(st)
                    .map_err(|_| io::Error::other("poisoned"))?;
                continue;
            }
            // Lead: write everything queued so far.
            st.writing = true;
            if self.mode == Durable::Gather {
                let until = Instant::now() + GATHER_AT_MOST;
                while st.waiting_lines < st.connections {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    st = self
                        .queued_more
                        .wait_timeout(st, left)
                        .map_err(|_| io::Error::other("poisoned"))?
                        .0;
                }
            }
            st.waiting_lines = 0;
            let upto = st.queued;
            let lines = std::mem::take(&mut st.pending);
            drop(st);
            let count = lines.iter().filter(|&&b| b == b'\n').count() as u64;
            let wrote = self.write_batch(&lines, count, scratch);
            st = self
                .state
                .lock()
                .map_err(|_| io::Error::other("poisoned"))?;
            st.writing = false;
            if wrote.is_ok() {
                st.durable = upto;
            }
            self.written.notify_all();
            wrote?;
        }
    }
}

/// A JSON-line echo server on `socket` whose every answer waits until its request line is
/// durable on `file`'s disk, one thread per connection with the group commit of
/// [`GroupCommit`]: the least any server does whose answers wait for a durable record (the
/// floor of issue 11's targets with durable audit, measured on this machine and this disk).
fn start_durable_echo_server(
    socket: &Path,
    file: &Path,
    mode: Durable,
) -> io::Result<Arc<GroupCommit>> {
    let commit = Arc::new(GroupCommit::open(file, mode)?);
    let listener = UnixListener::bind(socket)?;
    let shared = Arc::clone(&commit);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let commit = Arc::clone(&shared);
            std::thread::spawn(move || -> io::Result<()> {
                let mut writer = conn.try_clone()?;
                let mut reader = BufReader::new(conn);
                let (mut line, mut scratch) = (Vec::new(), Vec::new());
                commit.open_connection(1);
                let served = (|| loop {
                    line.clear();
                    if reader.read_until(b'\n', &mut line)? == 0 {
                        return Ok(());
                    }
                    commit.commit(&line, &mut scratch)?;
                    writer.write_all(&line)?;
                })();
                commit.open_connection(-1);
                served
            });
        }
    });
    Ok(commit)
}

/// A durable echo server of one thread, as the daemon is shaped: a `mio` loop reads every
/// connection's ready lines; once every open connection has a line waiting (or
/// [`GATHER_AT_MOST`] after the first), the loop itself writes them all in one
/// `O_DIRECT | O_DSYNC` write, then writes their answers. In a closed loop each write holds
/// every client and no thread hands work to another. With `spin` it never sleeps.
fn start_durable_echo_loop(socket: &Path, file: &Path, spin: bool) -> io::Result<Arc<GroupCommit>> {
    use mio::{Events, Interest, Poll, Token};
    let commit = Arc::new(GroupCommit::open(
        file,
        if spin { Durable::Spin } else { Durable::Loop },
    )?);
    let shared = Arc::clone(&commit);
    let mut listener = mio::net::UnixListener::bind(socket)?;
    std::thread::spawn(move || -> io::Result<()> {
        struct Conn {
            stream: mio::net::UnixStream,
            read: Vec<u8>,
            lines: usize,
        }
        const LISTENER: Token = Token(usize::MAX);
        let mut poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let mut events = Events::with_capacity(1024);
        let mut conns: std::collections::HashMap<usize, Conn> = Default::default();
        let (mut next, mut scratch, mut batch) = (0usize, Vec::new(), Vec::new());
        let mut first_waiting: Option<Instant> = None;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let timeout = first_waiting
                .map(|t| (t + GATHER_AT_MOST).saturating_duration_since(Instant::now()));
            // Spinning only while connections are open: the other rows run undisturbed.
            let timeout = if spin && !conns.is_empty() {
                Some(Duration::ZERO)
            } else {
                timeout
            };
            poll.poll(&mut events, timeout)?;
            for ev in events.iter() {
                if ev.token() == LISTENER {
                    while let Ok((mut stream, _)) = listener.accept() {
                        poll.registry()
                            .register(&mut stream, Token(next), Interest::READABLE)?;
                        conns.insert(
                            next,
                            Conn {
                                stream,
                                read: Vec::new(),
                                lines: 0,
                            },
                        );
                        next += 1;
                    }
                    continue;
                }
                let id = ev.token().0;
                let Some(conn) = conns.get_mut(&id) else {
                    continue;
                };
                let mut closed = false;
                loop {
                    match conn.stream.read(&mut buf) {
                        Ok(0) => {
                            closed = true;
                            break;
                        }
                        Ok(n) => conn.read.extend_from_slice(&buf[..n]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(_) => {
                            closed = true;
                            break;
                        }
                    }
                }
                conn.lines = conn.read.iter().filter(|&&b| b == b'\n').count();
                if closed {
                    conns.remove(&id);
                }
            }
            let waiting = conns.values().filter(|c| c.lines > 0).count();
            if waiting == 0 {
                first_waiting = None;
                continue;
            }
            let started = *first_waiting.get_or_insert_with(Instant::now);
            if waiting < conns.len() && started.elapsed() < GATHER_AT_MOST {
                continue;
            }
            first_waiting = None;
            // One durable write of every complete line waiting, then their answers.
            batch.clear();
            let mut answers = Vec::new();
            for (&id, c) in conns.iter_mut().filter(|(_, c)| c.lines > 0) {
                let end = c
                    .read
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |i| i + 1);
                let lines: Vec<u8> = c.read.drain(..end).collect();
                batch.extend_from_slice(&lines);
                c.lines = 0;
                answers.push((id, lines));
            }
            shared.write_batch(&batch, answers.len() as u64, &mut scratch)?;
            for (id, lines) in answers {
                if let Some(c) = conns.get_mut(&id) {
                    // Small answers to a client that reads them: the socket's buffer takes
                    // them; a client that does not read is dropped.
                    if c.stream.write_all(&lines).is_err() {
                        conns.remove(&id);
                    }
                }
            }
        }
    });
    Ok(commit)
}

/// An ssh-agent child on `socket` holding one fresh ed25519 key. Killed on drop.
struct SshAgent(Child);

impl Drop for SshAgent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_ssh_agent(dir: &Path, socket: &Path) -> io::Result<SshAgent> {
    let child = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(socket)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let agent = SshAgent(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        if Instant::now() > deadline {
            return Err(io::Error::other(
                "ssh-agent did not create its socket within 10 s",
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let key = dir.join("id_ed25519");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        return Err(io::Error::other("ssh-keygen failed"));
    }
    let status = Command::new("ssh-add")
        .arg(&key)
        .env("SSH_AUTH_SOCK", socket)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if !status.success() {
        return Err(io::Error::other("ssh-add failed"));
    }
    Ok(agent)
}

struct Options {
    limits: Limits,
    clients: Vec<usize>,
    dir: Option<PathBuf>,
    /// `--rss N`: instead of the throughput table, measure the daemon's RSS with N credentials.
    rss: Option<usize>,
    rss_requests: usize,
    /// `--rss-tasks T`: only the first T credentials get a task (default: all of them).
    rss_tasks: Option<usize>,
    /// `--idle N`: instead of the throughput table, the daemon's RSS with N connections open.
    idle: Option<usize>,
    /// `--only A,B`: measure only the targets whose names start with one of these (`echo`
    /// and `ssh-agent` are kept for the ratios).
    only: Vec<String>,
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        limits: Limits {
            requests: 2000,
            time: Duration::from_secs(5),
        },
        clients: vec![1, 8, 64],
        dir: None,
        rss: None,
        rss_requests: 1_000_000,
        rss_tasks: None,
        idle: None,
        only: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--requests" => o.limits.requests = value()?.parse().map_err(|e| format!("--requests: {e}"))?,
            "--seconds" => o.limits.time = Duration::from_secs_f64(value()?.parse().map_err(|e| format!("--seconds: {e}"))?),
            "--clients" => {
                o.clients = value()?
                    .split(',')
                    .map(|c| c.trim().parse().map_err(|e| format!("--clients: {e}")))
                    .collect::<Result<_, _>>()?
            }
            "--dir" => o.dir = Some(PathBuf::from(value()?)),
            "--rss" => o.rss = Some(value()?.parse().map_err(|e| format!("--rss: {e}"))?),
            "--rss-tasks" => {
                o.rss_tasks = Some(value()?.parse().map_err(|e| format!("--rss-tasks: {e}"))?)
            }
            "--only" => o.only = value()?.split(',').map(|t| t.trim().to_owned()).collect(),
            "--idle" => o.idle = Some(value()?.parse().map_err(|e| format!("--idle: {e}"))?),
            "--rss-requests" => {
                o.rss_requests = value()?.parse().map_err(|e| format!("--rss-requests: {e}"))?
            }
            "-h" | "--help" => {
                return Err("usage: loadgen [--requests N] [--seconds S] [--clients 1,8,64] [--dir DIR (for the audit log: put it on the disk the daemon uses)] | --rss N | --idle N".into())
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if o.clients.iter().any(|&c| c == 0 || c > 1024) || o.limits.requests == 0 {
        return Err("--clients must be 1..=1024 and --requests at least 1".into());
    }
    Ok(o)
}

fn main() -> std::process::ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    let result = match (opts.rss, opts.idle) {
        (Some(n), _) => rss_probe(&opts, n),
        (None, Some(n)) => idle_probe(&opts, n),
        (None, None) => run(&opts),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

fn run(opts: &Options) -> io::Result<()> {
    let sockets = tempfile::tempdir()?;
    // The audit log goes on a real disk (a tmpfs would make fdatasync free).
    let disk = match &opts.dir {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir_in(".")?,
    };

    let mut targets = Vec::new();
    let echo_sock = sockets.path().join("echo.sock");
    start_echo_server(&echo_sock)?;
    targets.push(json_line_target(
        "echo",
        echo_sock,
        r#"{"v":1,"op":"fetch","task":"shop-login"}"#,
        Some("\"op\":\"fetch\""),
    ));

    let mut durable_echoes = Vec::new();
    for (name, mode) in [
        ("durable-echo", Durable::Greedy),
        ("durable-echo gather", Durable::Gather),
        ("durable-echo parallel", Durable::Parallel),
        ("durable-echo loop", Durable::Loop),
        ("durable-echo spin", Durable::Spin),
    ] {
        let file = name.replace(' ', "-");
        let sock = sockets.path().join(format!("{file}.sock"));
        let path = disk.path().join(format!("{file}.bin"));
        let commit = match mode {
            Durable::Loop | Durable::Spin => {
                start_durable_echo_loop(&sock, &path, mode == Durable::Spin)?
            }
            _ => start_durable_echo_server(&sock, &path, mode)?,
        };
        durable_echoes.push((name, commit));
        targets.push(json_line_target(
            name,
            sock,
            r#"{"v":1,"op":"fetch","task":"shop-login"}"#,
            Some("\"op\":\"fetch\""),
        ));
    }

    let agent_sock = sockets.path().join("agent.sock");
    let _agent = match start_ssh_agent(sockets.path(), &agent_sock) {
        Ok(a) => {
            targets.push(ssh_agent_target(agent_sock));
            Some(a)
        }
        Err(e) => {
            println!("skipped ssh-agent: {e}");
            None
        }
    };

    targets.push(fdatasync_target(disk.path().join("fdatasync.log"))?);
    targets.push(durable_write_target(
        &disk.path().join("durable-write.bin"),
    )?);
    let mut logs = Vec::new();
    for sync in [true, false] {
        let name = if sync {
            "audit-append sync"
        } else {
            "audit-append nosync"
        };
        let file = if sync { "sync.jsonl" } else { "nosync.jsonl" };
        let log =
            Arc::new(AuditLog::open(&disk.path().join(file), sync).map_err(io::Error::other)?);
        targets.push(audit_append_target(name, Arc::clone(&log)));
        logs.push((name, log));
    }

    // The scopevault daemon itself (the release binary beside this example), audit sync on
    // and off: a real vault, a real policy, a real `fetch` with its audit record.
    let mut daemons = Vec::new();
    match scopevault_binary() {
        Some(bin) => {
            let vault_dir = disk.path().join("vault");
            let identity = setup_bench_vault(&bin, &vault_dir)?;
            // The row without sync needs a benchmark build: a release refuses the option.
            let rows: &[bool] = if has_no_audit_sync(&bin) {
                &[true, false]
            } else {
                println!(
                    "skipped scopevault nosync: {} has no `serve --no-audit-sync` (a release \
                     build refuses it); for that row build the daemon with the cargo feature \
                     bench-no-audit-sync: {NOSYNC_BUILD}",
                    bin.display()
                );
                &[true]
            };
            for &sync in rows {
                let name = if sync {
                    "scopevault sync"
                } else {
                    "scopevault nosync"
                };
                let sock = sockets.path().join(if sync {
                    "sv-sync/s.sock"
                } else {
                    "sv-nosync/s.sock"
                });
                let audit = disk.path().join(if sync {
                    "sv-sync.jsonl"
                } else {
                    "sv-nosync.jsonl"
                });
                daemons.push(start_daemon(
                    &bin, &vault_dir, &identity, &sock, &audit, sync,
                )?);
                targets.push(json_line_target(
                    name,
                    sock,
                    r#"{"v":1,"op":"fetch","task":"bench"}"#,
                    Some("\"ok\":true"),
                ));
            }
        }
        None => println!("skipped scopevault: build it first (cargo build --release)"),
    }

    println!(
        "{} requests per client at most, {:.1} s per run at most; audit log on {}",
        opts.limits.requests,
        opts.limits.time.as_secs_f64(),
        disk.path().display()
    );
    let disk_name = disk_of(disk.path());
    match &disk_name {
        Some(name) => println!(
            "disk: {name} (/proc/diskstats, the whole device: flushes a request, and writes and \
             KiB written a flush)"
        ),
        None => println!("disk: not a block device in /proc/diskstats, no disk columns"),
    }
    println!(
        "{:<22} {:>7} {:>9} {:>12} {:>10} {:>10} {:>13} {:>7} {:>7} {:>10} {:>12} {:>10}",
        "target",
        "clients",
        "requests",
        "req/s",
        "p50 µs",
        "p99 µs",
        "CPU µs/req",
        "idle %",
        "steal %",
        "flush/req",
        "writes/flush",
        "KiB/flush"
    );
    let mut results: Vec<Stats> = Vec::new();
    let wanted = |name: &str| {
        opts.only.is_empty()
            || name == "echo"
            || name == "ssh-agent"
            || name == "fdatasync"
            || name == "durable write"
            || name.starts_with("durable-echo")
            || opts.only.iter().any(|o| name.starts_with(o.as_str()))
    };
    for &clients in &opts.clients {
        for t in targets.iter().filter(|t| wanted(&t.name)) {
            let s = drive(t, clients, opts.limits, disk_name.as_deref())?;
            let (cpu, idle, steal) = s.cpu.map_or(("-".into(), "-".into(), "-".into()), |c| {
                (
                    format!("{:.1}", c.busy_per_request.as_nanos() as f64 / 1000.0),
                    format!("{:.1}", c.idle * 100.0),
                    format!("{:.1}", c.steal * 100.0),
                )
            });
            let (flushes, writes, kib) = s.disk.map_or(("-".into(), "-".into(), "-".into()), |d| {
                let (writes, kib) = d.per_flush.map_or(("-".into(), "-".into()), |(w, k)| {
                    (format!("{w:.2}"), format!("{k:.1}"))
                });
                (format!("{:.3}", d.flushes_per_request), writes, kib)
            });
            println!(
                "{:<22} {:>7} {:>9} {:>12.0} {:>10.1} {:>10.1} {:>13} {:>7} {:>7} {:>10} {:>12} {:>10}",
                s.target,
                s.clients,
                s.requests,
                s.throughput(),
                s.p50.as_nanos() as f64 / 1000.0,
                s.p99.as_nanos() as f64 / 1000.0,
                cpu,
                idle,
                steal,
                flushes,
                writes,
                kib
            );
            results.push(s);
        }
    }
    print_ratios(&results);
    print_one_client_target(&results);
    print_ceilings(&results);
    println!();
    for (name, commit) in &durable_echoes {
        if let Ok(st) = commit.state.lock() {
            println!(
                "{name}: {} lines in {} writes (average group-commit batch {:.1})",
                st.lines,
                st.writes,
                st.lines as f64 / st.writes.max(1) as f64
            );
        }
    }
    for (name, log) in &logs {
        let s = log.stats();
        println!(
            "{name}: {} records in {} batches (average group-commit batch {:.1})",
            s.records,
            s.batches,
            s.records as f64 / s.batches.max(1) as f64
        );
    }
    Ok(())
}

/// Every target's throughput and p50 relative to `echo` and `ssh-agent` at the same concurrency.
/// `target/<profile>/scopevault`, beside `target/<profile>/examples/loadgen`.
fn scopevault_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let bin = exe.parent()?.parent()?.join("scopevault");
    bin.exists().then_some(bin)
}

/// How to build the daemon that the "scopevault nosync" row needs (docs/security.md, "Daemon
/// throughput"): in a target directory of its own, so that `target/release/scopevault` stays
/// a release build.
const NOSYNC_BUILD: &str = "CARGO_TARGET_DIR=target/bench cargo build --release --features \
                            bench-no-audit-sync --bin scopevault --example loadgen, then run \
                            target/bench/release/examples/loadgen";

/// Whether `bin` is a benchmark build that has `serve --no-audit-sync` (cargo feature
/// `bench-no-audit-sync`): it shows `serve`'s help after the option, where a release build
/// refuses the option as unknown (exit 2).
fn has_no_audit_sync(bin: &Path) -> bool {
    Command::new(bin)
        .args(["serve", "--no-audit-sync", "--help"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// An identity-file vault with one task this user may run and one login credential.
fn setup_bench_vault(bin: &Path, dir: &Path) -> io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let vault = dir.join("vault.scopevault");
    let identity = dir.join("identity.txt");
    let uid = scopevault::sys::current_uid();
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "version = 1\n[credentials.bench-login]\nkind = \"login\"\nscopes = [\"bench:login\"]\n\
             [tasks.bench]\nneeds = [\"bench:login\"]\ncredentials = [\"bench-login\"]\n\
             runners = {{ users = [\"{uid}\"] }}\n"
        ),
    )?;
    let run = |args: &[&str], stdin: Option<&str>| -> io::Result<()> {
        let mut c = Command::new(bin)
            .arg("--vault")
            .arg(&vault)
            .args(args)
            .env("XDG_STATE_HOME", dir.join("state"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        if let Some(s) = stdin {
            c.stdin.take().expect("piped").write_all(s.as_bytes())?;
        }
        drop(c.stdin.take());
        if !c.wait()?.success() {
            return Err(io::Error::other(format!("scopevault {args:?} failed")));
        }
        Ok(())
    };
    let id = identity.to_string_lossy().into_owned();
    run(&["init", "--identity-out", &id], None)?;
    run(
        &[
            "--identity-file",
            &id,
            "policy",
            "apply",
            &policy.to_string_lossy(),
        ],
        None,
    )?;
    run(
        &[
            "--identity-file",
            &id,
            "cred",
            "set",
            "bench-login",
            "--field",
            "username=bench",
            "--secret",
            "password",
        ],
        Some("bench-password-value"),
    )?;
    Ok(identity)
}

/// A daemon child process; killed on drop.
struct Daemon(Child);
impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_daemon(
    bin: &Path,
    dir: &Path,
    identity: &Path,
    sock: &Path,
    audit: &Path,
    sync: bool,
) -> io::Result<Daemon> {
    start_daemon_with(bin, dir, identity, sock, audit, sync, 1024)
}

fn start_daemon_with(
    bin: &Path,
    dir: &Path,
    identity: &Path,
    sock: &Path,
    audit: &Path,
    sync: bool,
    max_connections: usize,
) -> io::Result<Daemon> {
    let mut c = Command::new(bin);
    c.arg("--vault")
        .arg(dir.join("vault.scopevault"))
        .arg("--socket")
        .arg(sock)
        .args(["serve", "--max-connections", &max_connections.to_string()])
        .args(
            std::env::var("LOADGEN_EVENT_LOOPS")
                .map(|n| vec!["--event-loops".to_owned(), n])
                .unwrap_or_default(),
        )
        .arg("--identity-file")
        .arg(identity)
        .arg("--audit")
        .arg(audit)
        .env("XDG_STATE_HOME", dir.join("state"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if !sync {
        // A benchmark build's only (cargo feature `bench-no-audit-sync`): see `has_no_audit_sync`.
        c.arg("--no-audit-sync");
    }
    let d = Daemon(c.spawn()?);
    let deadline = Instant::now() + Duration::from_secs(30);
    while UnixStream::connect(sock).is_err() {
        if Instant::now() > deadline {
            return Err(io::Error::other("the scopevault daemon did not start"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(d)
}

fn print_ratios(results: &[Stats]) {
    println!();
    println!(
        "{:<22} {:>7} {:>12} {:>12} {:>12}",
        "ratio", "clients", "tput/echo", "tput/agent", "p50/echo"
    );
    let find = |name: &str, c: usize| results.iter().find(|s| s.target == name && s.clients == c);
    for s in results.iter().filter(|s| s.target != "echo") {
        let echo = find("echo", s.clients);
        let agent = find("ssh-agent", s.clients);
        let fmt = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.2}"));
        println!(
            "{:<22} {:>7} {:>12} {:>12} {:>12}",
            s.target,
            s.clients,
            fmt(echo.map(|e| s.throughput() / e.throughput())),
            fmt(agent
                .filter(|a| a.target != s.target)
                .map(|a| s.throughput() / a.throughput())),
            fmt(echo.map(|e| s.p50.as_secs_f64() / e.p50.as_secs_f64())),
        );
    }
}

/// Issue 11's one-client target: the daemon's p50 (audit sync on) at most the echo's p50 plus
/// one `fdatasync`'s (the `fdatasync` row) plus 20 µs, all of this run.
fn print_one_client_target(results: &[Stats]) {
    let p50 = |name: &str| {
        results
            .iter()
            .find(|s| s.target == name && s.clients == 1)
            .map(|s| s.p50.as_secs_f64() * 1e6)
    };
    if let (Some(d), Some(e), Some(f)) = (p50("scopevault sync"), p50("echo"), p50("fdatasync")) {
        let bound = e + f + 20.0;
        println!();
        println!(
            "one client: scopevault sync p50 {d:.1} µs; echo {e:.1} + fdatasync {f:.1} + 20 = {bound:.1} µs: {}",
            if d <= bound { "within" } else { "over" }
        );
    }
}

/// What this machine allows a durable server at each client count above one (issue 11's
/// targets named at 8 and 64 clients: 0.3× and 0.5× the echo), from this run. With `c` clients each waiting for its answer, and every answer waiting
/// for a durable write begun after its request was read, each client's round trip holds at
/// least one write, and one write takes at least `L` (the `durable write` row with one client:
/// a write alone, none beside it to share the disk): so at most `c / L` requests a second,
/// whatever the server does (one write for all, or many in flight), with no work of its own.
/// That is the hard ceiling. A nearer one adds what the echo takes for a round trip at `c`
/// clients (`c / E`, `E` the echo's req/s: the read, the answer and the client's wake-up, which
/// cannot overlap the write that comes between them, though at `c` clients on few CPUs part of
/// the echo's time is queueing that could): `c / (c/E + L)`, `1 / (1 + E·L/c)` times the echo.
fn print_ceilings(results: &[Stats]) {
    let row = |name: &str, c: usize| results.iter().find(|s| s.target == name && s.clients == c);
    let Some(write) = row("durable write", 1) else {
        return;
    };
    let l = 1.0 / write.throughput();
    println!();
    println!(
        "ceilings: one durable write alone takes L = {:.1} µs (mean, the `durable write` row at \
         1 client); c clients whose answers each wait for such a write make at most c / L, and \
         with the echo's round trip E on top c / (c/E + L)",
        l * 1e6
    );
    let mut counts: Vec<usize> = results
        .iter()
        .map(|s| s.clients)
        .filter(|&c| c > 1)
        .collect();
    counts.dedup();
    for c in counts {
        let Some(echo) = row("echo", c) else { continue };
        let e = echo.throughput();
        let (hard, near) = (c as f64 / l, c as f64 / (c as f64 / e + l));
        let target = match c {
            8 => "issue 11's target 0.3×; ",
            64 => "issue 11's target 0.5×; ",
            _ => "",
        };
        let best = results
            .iter()
            .filter(|s| s.clients == c && s.target.starts_with("durable-echo"))
            .map(|s| s.throughput() / e)
            .fold(f64::NAN, f64::max);
        println!(
            "  {c} clients: E = {e:.0} req/s, E·L = {:.1}: at most {hard:.0} req/s = {:.2}× echo, \
             nearer {near:.0} req/s = {:.2}× ({target}the best durable echo {best:.2}×)",
            e * l,
            hard / e,
            near / e,
        );
    }
}

/// The release `scopevault` beside this example, and a temporary directory on the disk given
/// (`--dir`, else here) for the vault and the audit log.
fn binary_and_disk(opts: &Options) -> io::Result<(PathBuf, tempfile::TempDir)> {
    let bin = scopevault_binary().ok_or_else(|| {
        io::Error::other("build the scopevault binary first (cargo build --release)")
    })?;
    let disk = match &opts.dir {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir_in(".")?,
    };
    Ok((bin, disk))
}

/// Daemon memory with `n` connections open (issue 11: < 32 MiB with 4,096): RSS with none,
/// with all of them open and idle, and after one `fetch` on each (buffers used once).
fn idle_probe(opts: &Options, n: usize) -> io::Result<()> {
    let (bin, disk) = binary_and_disk(opts)?;
    let files = scopevault::sys::raise_open_files_limit();
    if files < n as u64 + 64 {
        return Err(io::Error::other(format!(
            "the open-files limit is {files}; raise it (ulimit -Hn) to open {n} connections"
        )));
    }
    let vault_dir = disk.path().join("vault");
    let identity = setup_bench_vault(&bin, &vault_dir)?;
    let sock = disk.path().join("run/s.sock");
    // This process is the daemon's uid: an admin, so no per-uid quota applies.
    let daemon = start_daemon_with(
        &bin,
        &vault_dir,
        &identity,
        &sock,
        &disk.path().join("audit.jsonl"),
        true,
        n,
    )?;
    let pid = daemon.0.id();
    let status = |key: &str| -> io::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        Ok(status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0))
    };
    let fetch = "{\"v\":1,\"op\":\"fetch\",\"task\":\"bench\"}\n";
    let ask = |s: &mut UnixStream| -> io::Result<String> {
        s.write_all(fetch.as_bytes())?;
        let mut r = BufReader::new(&*s);
        let mut line = String::new();
        r.read_line(&mut line)?;
        Ok(line)
    };
    let mut probe = UnixStream::connect(&sock)?;
    ask(&mut probe)?;
    println!("{:<44} {:>10} {:>8}", "daemon", "RSS KiB", "threads");
    let show = |what: &str| -> io::Result<()> {
        println!(
            "{what:<44} {:>10} {:>8}",
            status("VmRSS:")?,
            status("Threads:")?
        );
        Ok(())
    };
    show("1 connection, after a fetch")?;
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        conns.push(UnixStream::connect(&sock)?);
    }
    // Every connection is accepted once `health` on one more counts them.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut s = UnixStream::connect(&sock)?;
        s.write_all(b"{\"v\":1,\"op\":\"health\"}\n")?;
        let mut line = String::new();
        BufReader::new(&s).read_line(&mut line)?;
        if line.contains(&format!("\"connections\":{}", n + 2)) || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    show(&format!("{n} more connections open, idle"))?;
    for c in &mut conns {
        let line = ask(c)?;
        if !line.contains("\"ok\":true") {
            return Err(io::Error::other(line));
        }
    }
    show(&format!("{n} connections, after one fetch on each"))?;
    drop(conns);
    drop(daemon);
    Ok(())
}

/// Daemon memory with `n` credentials (one task each): RSS after unlock and after every step
/// of `--rss-requests` fetches spread over all tasks (design.md: < 32 MiB, flat).
fn rss_probe(opts: &Options, n: usize) -> io::Result<()> {
    use scopevault::policy::{CredentialKind, Policy};
    use scopevault::vault::{Credential, NewSlot, Vault};
    let (bin, disk) = binary_and_disk(opts)?;
    let dir = disk.path();
    let vault_path = dir.join("vault.scopevault");
    let identity = dir.join("identity.txt");
    let uid = scopevault::sys::current_uid();
    let mut toml = String::from("version = 1\n");
    let tasks = opts.rss_tasks.unwrap_or(n).clamp(1, n);
    for i in 0..n {
        toml.push_str(&format!(
            "[credentials.c{i}]\nkind = \"login\"\nscopes = [\"app{i}:login\"]\n"
        ));
        if i < tasks {
            toml.push_str(&format!(
                "[tasks.t{i}]\nneeds = [\"app{i}:login\"]\ncredentials = [\"c{i}\"]\nrunners = {{ users = [\"{uid}\"] }}\n"
            ));
        }
    }
    let started = Instant::now();
    std::env::set_var("XDG_STATE_HOME", dir.join("state"));
    let policy = Policy::parse(&toml, "rss.toml").map_err(|e| io::Error::other(e.to_string()))?;
    let (mut vault, id_text) =
        Vault::create(&vault_path, NewSlot::IdentityFile).map_err(io::Error::other)?;
    std::fs::write(&identity, id_text.expect("identity slot").as_bytes())?;
    let now = scopevault::vault::timestamp();
    for i in 0..n {
        let mut c = Credential::new(CredentialKind::Login, now);
        c.scopes = vec![format!("app{i}:login")];
        c.fields.insert("username".into(), format!("user{i}"));
        c.secrets.insert(
            "password".into(),
            SecretString::from(format!("password-{i}-0123456789abcdef")),
        );
        vault
            .add_credential(&format!("c{i}"), c)
            .map_err(io::Error::other)?;
    }
    vault.set_policy(policy);
    let lock = scopevault::vault::WriteLock::acquire(&vault_path).map_err(io::Error::other)?;
    vault.save(&lock).map_err(io::Error::other)?;
    drop(lock);
    drop(vault);
    println!(
        "vault with {n} credentials and {tasks} tasks: {} bytes, built in {:.1} s",
        std::fs::metadata(&vault_path)?.len(),
        started.elapsed().as_secs_f64()
    );
    let sock = dir.join("run/s.sock");
    if std::env::var_os("LOADGEN_KEEP").is_some() {
        // Leave the vault for a manual look (heap profiler): print where it is and stop.
        let kept = disk.keep();
        println!(
            "kept {} (identity.txt, vault.scopevault, state/)",
            kept.display()
        );
        return Ok(());
    }
    let daemon = start_daemon(&bin, dir, &identity, &sock, &dir.join("audit.jsonl"), true)?;
    let pid = daemon.0.id();
    let rss = || -> io::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        Ok(status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0))
    };
    println!("{:>10} {:>10}", "requests", "RSS KiB");
    println!("{:>10} {:>10}", 0, rss()?);
    let threads = 8usize;
    let mut done = 0usize;
    let mut step = 10_000usize;
    while done < opts.rss_requests {
        let batch = step.min(opts.rss_requests - done);
        let per = batch / threads;
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let sock = sock.clone();
                std::thread::spawn(move || -> io::Result<()> {
                    let stream = UnixStream::connect(&sock)?;
                    let mut w = stream.try_clone()?;
                    let mut r = BufReader::new(stream);
                    let mut line = String::new();
                    for k in 0..per {
                        let task = (done + t * per + k) % tasks;
                        w.write_all(
                            format!("{{\"v\":1,\"op\":\"fetch\",\"task\":\"t{task}\"}}\n")
                                .as_bytes(),
                        )?;
                        line.clear();
                        r.read_line(&mut line)?;
                        if !line.contains("\"ok\":true") {
                            return Err(io::Error::other(line.clone()));
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| io::Error::other("client panicked"))??;
        }
        done += per * threads;
        println!("{done:>10} {:>10}", rss()?);
        step = (step * 10).min(250_000);
    }
    drop(daemon);
    Ok(())
}
