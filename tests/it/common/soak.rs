//! Shared parts of the daemon soak test (tests/it/daemon/soak.rs): a tally of what clients saw
//! and which audit records that implies, the hostile clients as one-shot functions against a
//! socket path (tests/it/daemon/hostile.rs runs each of them alone and asserts its tally), and
//! readers for the audit log and the daemon's resident memory.
//!
//! Every hostile function reports exactly which audit records its exchange produced, from the
//! answer it observed: a request the handler answered is one record for `fetch`, `ticket`,
//! `lock`, `unlock`, `reload` (and `invalid` for a line over 64 KiB); `health`, `tasks`, parse
//! errors (`bad_request`) and a connection refused as `busy` by the accept loop are none.
//! An exchange whose outcome cannot be told apart is a problem, not a guess.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::daemon::{self, code};

/// Longest any test client waits for one answer: a hang is reported, never waited out.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// The one tolerance every soak client applies, under deliberate overload (the soak runs the
/// daemon with 1 s read and 3 s idle timeouts while 64 runners and every hostile client compete
/// for 2 cores): a connection the daemon closed **without answering** — EOF where the answer
/// should be, or a write or read refused because it is gone (EPIPE, ECONNRESET). The daemon
/// closes a connection unanswered only on its read or idle timeout (a starved client that
/// could not finish its line in time, or sat idle between requests), before reading the
/// request: so the request was never decided and never audited, and counting it as neither is
/// exact. Any other error (a hang past [`ANSWER_TIMEOUT`], garbage, a wrong answer) is still
/// a problem. Runners reconnect and ask again; one-shot clients (admin, tickets, malformed
/// lines) count `closed unanswered (timeout under load)` and go on.
pub fn closed_unanswered(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionReset, UnexpectedEof};
    matches!(e.kind(), UnexpectedEof | BrokenPipe | ConnectionReset)
}

/// The counter for [`closed_unanswered`] outcomes.
pub const CLOSED_UNANSWERED: &str = "closed unanswered (timeout under load)";

/// What a group of clients observed, and the audit records that implies.
#[derive(Default, Debug)]
pub struct Tally {
    /// Outcome counters for the summary, e.g. `fetch ok`, `hostile too_large`.
    pub counts: BTreeMap<String, u64>,
    /// Audit records the observed answers imply, by (op, decision).
    pub audit: BTreeMap<(String, String), u64>,
    /// Outcomes that break the contract (the first few, with the answer).
    pub problems: Vec<String>,
    /// How many problems in all.
    pub problem_count: u64,
}

impl Tally {
    /// Count one outcome.
    pub fn count(&mut self, what: &str) {
        *self.counts.entry(what.to_owned()).or_default() += 1;
    }

    /// Expect one audit record.
    pub fn expect(&mut self, op: &str, decision: &str) {
        *self
            .audit
            .entry((op.to_owned(), decision.to_owned()))
            .or_default() += 1;
    }

    /// Note a broken contract (kept short: the first 20 are shown).
    pub fn problem(&mut self, what: String) {
        self.problem_count += 1;
        if self.problems.len() < 20 {
            self.problems.push(what);
        }
    }

    /// Add another tally into this one.
    pub fn merge(&mut self, other: Tally) {
        for (k, v) in other.counts {
            *self.counts.entry(k).or_default() += v;
        }
        for (k, v) in other.audit {
            *self.audit.entry(k).or_default() += v;
        }
        self.problem_count += other.problem_count;
        for p in other.problems {
            if self.problems.len() < 20 {
                self.problems.push(p);
            }
        }
    }

    /// A counter's value (0 when never counted).
    pub fn get(&self, what: &str) -> u64 {
        self.counts.get(what).copied().unwrap_or(0)
    }

    /// Sum of the counters whose name starts with `prefix`.
    pub fn sum_prefix(&self, prefix: &str) -> u64 {
        self.counts
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v)
            .sum()
    }

    /// Total audit records expected.
    pub fn audit_total(&self) -> u64 {
        self.audit.values().sum()
    }
}

/// The decision the handler audits for an answer to `op` (`None`: the answer is not audited).
/// Mirrors the one mapping of src/agent/outcome.rs (docs/audit.md, "Decisions"): a refusal
/// of any op is `deny` for denied/over_scoped/not_found and `error` otherwise (locked
/// included).
pub fn audited_decision(op: &str, answer: &Value) -> Option<&'static str> {
    if !matches!(op, "fetch" | "ticket" | "lock" | "unlock" | "reload") {
        return None;
    }
    if answer["ok"] == true {
        return Some("allow");
    }
    match (op, code(answer)) {
        (_, "bad_request") => None,
        (_, "denied" | "over_scoped" | "not_found") => Some("deny"),
        _ => Some("error"),
    }
}

/// A well-formed error answer: `ok` false, a known code and a non-empty message.
pub fn is_well_formed_error(v: &Value) -> bool {
    const CODES: &[&str] = &[
        "bad_request",
        "too_large",
        "denied",
        "not_found",
        "locked",
        "over_scoped",
        "audit_unavailable",
        "busy",
        "internal",
        "vault_refused",
    ];
    v["ok"] == false
        && CODES.contains(&code(v))
        && v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
}

/// A line-oriented connection with a buffered reader.
pub struct Conn {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
    line: String,
}

impl Conn {
    /// Connect (no request sent).
    pub fn connect(socket: &Path) -> std::io::Result<Conn> {
        let s = UnixStream::connect(socket)?;
        s.set_read_timeout(Some(ANSWER_TIMEOUT))?;
        s.set_write_timeout(Some(ANSWER_TIMEOUT))?;
        Ok(Conn {
            writer: s.try_clone()?,
            reader: BufReader::new(s),
            line: String::new(),
        })
    }

    /// A connection the daemon has accepted and served: `health` answered `ok` on it (so no
    /// later answer on it can be the accept loop's `busy`). Retries while the daemon is busy.
    pub fn established(socket: &Path, tally: &mut Tally) -> Conn {
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        loop {
            assert!(
                Instant::now() < deadline,
                "no connection accepted within {ANSWER_TIMEOUT:?}"
            );
            if let Ok(mut c) = Conn::connect(socket) {
                match c.call(r#"{"v":1,"op":"health"}"#) {
                    Ok((v, _)) if v["ok"] == true => return c,
                    Ok((v, _)) if code(&v) == "busy" => tally.count("connect busy (retried)"),
                    Ok((v, raw)) => tally.problem(format!("health on a new connection: {raw} {v}")),
                    Err(_) => tally.count("connect closed (retried)"),
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Send one line, read one answer line: the parsed answer and the raw line.
    pub fn call(&mut self, line: &str) -> std::io::Result<(Value, &str)> {
        self.call_bytes(line.as_bytes())
    }

    /// [`Conn::call`] for a line that need not be UTF-8.
    pub fn call_bytes(&mut self, line: &[u8]) -> std::io::Result<(Value, &str)> {
        self.writer.write_all(line)?;
        self.writer.write_all(b"\n")?;
        self.read()
    }

    /// Read one answer line.
    pub fn read(&mut self) -> std::io::Result<(Value, &str)> {
        self.line.clear();
        if self.reader.read_line(&mut self.line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed without an answer",
            ));
        }
        let v = serde_json::from_str(self.line.trim_end())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        Ok((v, self.line.trim_end()))
    }
}

/// Read until the daemon closes the connection (`Ok(bytes read)`), or time out.
///
/// A daemon that closes with our unsent bytes still unread makes Linux report ECONNRESET, but
/// only after everything it wrote before closing has been read: that is a close too.
fn read_until_closed(s: &mut UnixStream) -> std::io::Result<Vec<u8>> {
    s.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(out),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The first answer line in `bytes`, parsed.
fn first_answer(bytes: &[u8]) -> Option<Value> {
    let end = bytes
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(bytes.len());
    serde_json::from_slice(&bytes[..end]).ok()
}

/// Lines that must each be answered `bad_request` (and audited as nothing).
pub fn malformed_lines() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = [
        "this is not json",
        "[1,2,3]",
        r#"{"v":1,"op":"dance"}"#,
        r#"{"v":1,"op":"health","extra":true}"#,
        r#"{"v":2,"op":"health"}"#,
        r#"{"op":"health"}"#,
        "\u{0}\u{1}\u{2}",
        r#"{"v":1,"op":"fetch"}"#,
        r#"{"v":1,"op":"fetch","task":"checkout-flow","extra":1}"#,
        r#"{"v":1,"op":"fetch","task":7}"#,
        r#"{"v":1,"op":"unlock","passphrase":12}"#,
        r#"{"v":1,"op":"fetch","task":"checkout-flow""#,
        "",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    v.push(vec![0xff, 0xfe, b'{', 0x80]);
    v.push(line_at_the_limit());
    v
}

/// A request line of exactly the 64 KiB limit (a `health` with an unknown `pad` field): read
/// whole and parsed (`bad_request`), not `too_large`.
pub fn line_at_the_limit() -> Vec<u8> {
    let mut line = br#"{"v":1,"op":"health","pad":""#.to_vec();
    line.resize(65536 - 2, b'x');
    line.extend_from_slice(b"\"}");
    line
}

/// One connection of malformed lines, pipelined, then `health` on the same connection.
pub fn malformed(socket: &Path, t: &mut Tally) {
    let Ok(mut c) = Conn::connect(socket) else {
        return t.count("hostile malformed: connect failed");
    };
    let lines = malformed_lines();
    let mut all = Vec::new();
    for l in &lines {
        all.extend_from_slice(l);
        all.push(b'\n');
    }
    all.extend_from_slice(b"{\"v\":1,\"op\":\"health\"}\r\n");
    // The 64 KiB line may not fit the socket buffer: write from a second thread.
    let mut w = c.writer.try_clone().unwrap();
    let writer = std::thread::spawn(move || w.write_all(&all).is_ok());
    for (i, _) in lines.iter().enumerate() {
        match c.read() {
            Ok((v, _)) if i == 0 && code(&v) == "busy" => {
                let _ = writer.join();
                return t.count("hostile malformed: busy");
            }
            Ok((v, _)) if code(&v) == "bad_request" && is_well_formed_error(&v) => {}
            Ok((v, raw)) => t.problem(format!("malformed line {i}: {raw} {v}")),
            Err(e) if closed_unanswered(&e) => {
                let _ = writer.join();
                return t.count(CLOSED_UNANSWERED);
            }
            Err(e) => t.problem(format!("malformed line {i}: no answer ({e})")),
        }
    }
    match c.read() {
        Ok((v, _)) if v["ok"] == true => t.count("hostile malformed: served"),
        Ok((v, raw)) => t.problem(format!("health after malformed lines: {raw} {v}")),
        Err(e) if closed_unanswered(&e) => {
            let _ = writer.join();
            return t.count(CLOSED_UNANSWERED);
        }
        Err(e) => t.problem(format!("health after malformed lines: {e}")),
    }
    if !writer.join().unwrap() {
        t.problem("the daemon stopped reading malformed lines".into());
    }
}

/// A line of `mib` MiB, far over 64 KiB: `too_large` (one `invalid`/`deny` record), and
/// nothing more: the connection is closed after at most about 64 KiB read; or `busy`.
pub fn oversized(socket: &Path, mib: usize, t: &mut Tally) {
    let Ok(mut s) = UnixStream::connect(socket) else {
        return t.count("hostile oversized: connect failed");
    };
    let mut w = s.try_clone().unwrap();
    w.set_write_timeout(Some(ANSWER_TIMEOUT)).unwrap();
    const CHUNK: usize = 256 * 1024;
    let total = mib * 1024 * 1024;
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'a'; CHUNK];
        let mut sent = 0usize;
        while sent < total {
            match w.write_all(&chunk) {
                Ok(()) => sent += chunk.len(),
                Err(_) => break, // the daemon closed on us: expected
            }
        }
        sent
    });
    let got = read_until_closed(&mut s);
    let sent = writer.join().unwrap();
    match got.as_deref().ok().and_then(first_answer) {
        Some(v) if code(&v) == "busy" => t.count("hostile oversized: busy"),
        Some(v) if code(&v) == "too_large" && is_well_formed_error(&v) => {
            t.count("hostile oversized: too_large");
            t.expect("invalid", "deny");
            if sent >= total {
                t.problem(format!("the daemon read a {mib} MiB line to its end"));
            }
            if !got.as_deref().is_ok_and(is_one_line) {
                t.problem(format!("more than the too_large answer: {got:?}"));
            }
        }
        other => t.problem(format!("oversized line: {other:?} / {got:?}")),
    }
}

/// Exactly one line: a single `\n`, at the end.
fn is_one_line(bytes: &[u8]) -> bool {
    bytes.ends_with(b"\n") && bytes.iter().filter(|&&b| b == b'\n').count() == 1
}

/// A started line never finished: closed after the read timeout, unanswered; or `busy`.
pub fn slowloris(socket: &Path, t: &mut Tally) {
    held_open(
        socket,
        "slowloris",
        br#"{"v":1,"op":"fetch","task":"checko"#,
        t,
        || {},
    );
}

/// A connection that never says anything: closed after the idle timeout; or `busy`.
pub fn idle(socket: &Path, t: &mut Tally) {
    held_open(socket, "idle", b"", t, || {});
}

/// Connect, send `partial` (a line never finished, or nothing), run `while_held` while the
/// connection is held open, then wait for the daemon to close it: closed unanswered counts
/// `hostile NAME: closed`, an accept-loop refusal `hostile NAME: busy`.
pub fn held_open(
    socket: &Path,
    name: &str,
    partial: &[u8],
    t: &mut Tally,
    while_held: impl FnOnce(),
) {
    let Ok(mut s) = UnixStream::connect(socket) else {
        return t.count(&format!("hostile {name}: connect failed"));
    };
    if !partial.is_empty() {
        let _ = s.write_all(partial);
    }
    while_held();
    match read_until_closed(&mut s) {
        Ok(b) if b.is_empty() => t.count(&format!("hostile {name}: closed")),
        Ok(b) if first_answer(&b).is_some_and(|v| code(&v) == "busy") => {
            t.count(&format!("hostile {name}: busy"))
        }
        other => t.problem(format!("{name}: {other:?}")),
    }
}

/// 200 pipelined `health` requests, then gone before reading a single answer (no record).
pub fn hang_up_pipelined(socket: &Path, t: &mut Tally) {
    let Ok(mut s) = UnixStream::connect(socket) else {
        return t.count("hostile hang-up: connect failed");
    };
    let many = b"{\"v\":1,\"op\":\"health\"}\n".repeat(200);
    let _ = s.write_all(&many);
    drop(s);
    t.count("hostile hang-up: pipelined health");
}

/// A `fetch`, of whose answer only the first bytes are read before hanging up: the fetch was
/// decided (and audited) all the same.
pub fn hang_up_mid_answer(socket: &Path, t: &mut Tally) {
    let Ok(mut s) = UnixStream::connect(socket) else {
        return t.count("hostile hang-up: connect failed");
    };
    s.set_read_timeout(Some(ANSWER_TIMEOUT)).unwrap();
    let _ = s.write_all(b"{\"v\":1,\"op\":\"fetch\",\"task\":\"search-api\"}\n");
    let mut head = [0u8; 64];
    let mut n = 0;
    while n < head.len() {
        match s.read(&mut head[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    let head = String::from_utf8_lossy(&head[..n]);
    drop(s);
    if head.starts_with(r#"{"ok":true,"#) {
        t.count("hostile hang-up: mid-answer (fetch ok)");
        t.expect("fetch", "allow");
    } else if head.contains(r#""code":"busy""#) {
        t.count("hostile hang-up: busy");
    } else if head.contains(r#""code":"locked""#) {
        t.count("hostile hang-up: mid-answer (locked)");
        t.expect("fetch", "error");
    } else {
        t.problem(format!("hang-up mid-answer: {head:?}"));
    }
}

/// A client that pipelines many requests and never reads: the daemon's blocked write times
/// out and it drops the connection (`health` only: no record).
pub fn never_reads(socket: &Path, hold: Duration, t: &mut Tally) {
    let Ok(s) = UnixStream::connect(socket) else {
        return t.count("hostile never-reads: connect failed");
    };
    s.set_nonblocking(true).unwrap();
    let many = b"{\"v\":1,\"op\":\"health\"}\n".repeat(5000);
    let mut off = 0;
    let until = Instant::now() + hold;
    while off < many.len() && Instant::now() < until {
        match (&s).write(&many[off..]) {
            Ok(n) => off += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(_) => break,
        }
    }
    std::thread::sleep(until.saturating_duration_since(Instant::now()));
    drop(s);
    t.count("hostile never-reads: held and dropped");
}

/// `n` connections at once, each asking `health`: served or `busy` (or closed); all dropped.
pub fn burst(socket: &Path, n: usize, t: &mut Tally) {
    // Every integration test shares this process: with the common soft limit of 1,024 open
    // files, `n` connections held here would starve a test running beside this one (EMFILE).
    // Raising the soft limit to the hard one only ever helps the others.
    scopevault::sys::raise_open_files_limit();
    let mut conns: Vec<UnixStream> = (0..n)
        .filter_map(|_| UnixStream::connect(socket).ok())
        .collect();
    for s in &mut conns {
        s.set_read_timeout(Some(ANSWER_TIMEOUT)).unwrap();
        let _ = s.write_all(b"{\"v\":1,\"op\":\"health\"}\n");
    }
    for s in &mut conns {
        match daemon::read_json(s) {
            Ok(v) if v["ok"] == true => t.count("hostile burst: served"),
            Ok(v) if code(&v) == "busy" => t.count("hostile burst: busy"),
            Ok(v) => t.problem(format!("burst: {v}")),
            Err(_) => t.count("hostile burst: closed"),
        }
    }
    t.count("hostile burst: bursts");
}

/// A forged ticket, then a real one redeemed twice (the second is flagged), over `c`.
pub fn tickets(c: &mut Conn, t: &mut Tally) {
    let mut ask = |t: &mut Tally, op: &str, line: &str| -> Option<Value> {
        match c.call(line) {
            Ok((v, raw)) => {
                if v["ok"] != true && !is_well_formed_error(&v) {
                    t.problem(format!("{op}: malformed answer {raw}"));
                }
                if v["ok"] == true && raw.contains(&daemon::secret_of("shop-backoffice")) {
                    t.problem("a ticket redeem returned another task's secret".into());
                }
                match audited_decision(op, &v) {
                    Some(d) => t.expect(op, d),
                    None => t.problem(format!("{op}: unaudited answer {raw}")),
                }
                Some(v)
            }
            // Undecided (see `closed_unanswered`); every later ask on `c` ends here too.
            Err(e) if closed_unanswered(&e) => {
                t.count(CLOSED_UNANSWERED);
                None
            }
            Err(e) => {
                t.problem(format!("{op}: no answer ({e})"));
                None
            }
        }
    };
    let forged = r#"{"v":1,"op":"fetch","ticket":"svt1_forged0000000000000000"}"#;
    if let Some(v) = ask(t, "fetch", forged) {
        match code(&v) {
            "not_found" => t.count("hostile ticket: forged refused"),
            "locked" => t.count("hostile ticket: locked"),
            _ => t.problem(format!("a forged ticket was not refused: {v}")),
        }
    }
    let Some(v) = ask(
        t,
        "ticket",
        r#"{"v":1,"op":"ticket","task":"search-api","ttl":600}"#,
    ) else {
        return;
    };
    let Some(ticket) = v["ticket"].as_str().map(str::to_owned) else {
        if code(&v) == "locked" {
            return t.count("hostile ticket: locked");
        }
        return t.problem(format!("ticket not issued: {v}"));
    };
    t.count("hostile ticket: issued");
    let redeem = format!(r#"{{"v":1,"op":"fetch","ticket":"{ticket}"}}"#);
    if let Some(v) = ask(t, "fetch", &redeem) {
        if v["ok"] == true {
            if v["credentials"][0]["secrets"]["token"] == daemon::secret_of("search-token") {
                t.count("hostile ticket: redeemed");
            } else {
                t.problem(format!("ticket redeem: wrong value in {v}"));
            }
        } else if matches!(code(&v), "locked" | "not_found") {
            // A lock in between forgets every ticket.
            t.count("hostile ticket: lost to a lock");
        } else {
            t.problem(format!("ticket redeem: {v}"));
        }
    }
    if let Some(v) = ask(t, "fetch", &redeem) {
        match code(&v) {
            "denied" => t.count("hostile ticket: replay refused"),
            "locked" | "not_found" => t.count("hostile ticket: lost to a lock"),
            _ => t.problem(format!("a spent ticket was not refused: {v}")),
        }
    }
}

/// A client of another uid: a real second user (tests/it/common/users.rs creates it as root) and
/// a copy of the binary it may execute.
#[derive(Clone)]
pub struct OtherUid {
    /// The other user's uid.
    pub uid: u32,
    /// Its primary gid.
    pub gid: u32,
    /// A scopevault binary that uid can execute.
    pub exe: std::path::PathBuf,
}

impl OtherUid {
    /// `exe --socket socket args…` as this uid, clean environment, no supplementary groups.
    pub fn run(&self, socket: &Path, args: &[&str]) -> std::process::Output {
        use std::os::unix::process::CommandExt;
        std::process::Command::new(&self.exe)
            .arg("--socket")
            .arg(socket)
            .args(args)
            .env_clear()
            .env("HOME", "/")
            .current_dir("/")
            .uid(self.uid)
            .gid(self.gid)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("spawn a client as uid {}: {e}", self.uid))
    }
}

/// A client of another uid asks for a runner's credential, or to lock the daemon:
/// refused on the kernel's peer credentials, one record each.
pub fn wrong_uid(other: &OtherUid, socket: &Path, lock: bool, t: &mut Tally) {
    let (op, args): (&str, &[&str]) = if lock {
        ("lock", &["lock"])
    } else {
        (
            "fetch",
            &["get", "--task", "checkout-flow", "--field", "password"],
        )
    };
    let out = other.run(socket, args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if text.contains(&daemon::secret_of("shop-buyer")) {
        t.problem(format!("uid {} got a secret", other.uid));
    }
    if out.status.code() != Some(5) {
        return t.problem(format!(
            "uid {} {op}: exit {:?}: {text}",
            other.uid, out.status
        ));
    }
    // Refused by the accept loop before the request was read: `busy`, or the connection was
    // already closed when the client wrote (EPIPE), so the request was never decided.
    if text.contains("busy:") || text.contains("without an answer") || text.contains("Broken pipe")
    {
        t.count("hostile wrong uid: busy");
    } else if text.contains("denied:") {
        t.count(&format!("hostile wrong uid: {op} denied"));
        t.expect(op, "deny");
    } else if op == "fetch" && text.contains("locked:") {
        t.count("hostile wrong uid: fetch locked");
        t.expect(op, "error");
    } else {
        t.problem(format!("uid {} {op}: {text}", other.uid));
    }
}

/// The daemon's resident set size in KiB (`VmRSS` of /proc/<pid>/status).
pub fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The value of a top-level string field `"name":"..."` in one audit line (no escapes in the
/// fields this reads: op, decision, task).
pub fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("\"{name}\":\"");
    let start = line.find(&key)? + key.len();
    let len = line[start..].find('"')?;
    Some(&line[start..start + len])
}

/// The value of `"seq":N` in one audit line.
pub fn seq(line: &str) -> Option<u64> {
    let start = line.find("\"seq\":")? + 6;
    let digits: String = line[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}
