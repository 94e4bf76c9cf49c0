//! Helpers of the secret-leak audit (tests/it/leak_audit.rs): the encoded forms of a secret that
//! count as a leak, a one-pass scanner for all of them, a recorder that keeps every byte every
//! process wrote, and the command tree as the binary's own `--help` lists it.
//!
//! Nothing here prints a secret: a hit is reported as "form F of secret S at offset N in W",
//! with the bytes *before* the hit as context.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use data_encoding::{
    Encoding, BASE64, BASE64URL, BASE64URL_NOPAD, BASE64_NOPAD, HEXLOWER, HEXUPPER,
};

/// Shortest form the scanner accepts: shorter needles would match by accident.
pub const MIN_FORM: usize = 12;

/// One way a secret can be written down.
#[derive(Clone)]
pub struct Form {
    /// Which secret (its label, never its value).
    pub secret: String,
    /// Which encoding (`raw`, `base64url-nopad`, `hex-lower`, …).
    pub name: String,
    /// The bytes to look for.
    pub bytes: Vec<u8>,
    /// Whether `scopevault exec` promises to mask this form in a child's output
    /// (design.md: the value, its base64, URL-encoded and JSON-escaped forms).
    pub exec_masks: bool,
}

// The encoders below repeat what src/secret.rs does on purpose: they are an independent
// oracle, so a bug in the masker's encoding cannot hide the leak it fails to mask.

/// Percent-encoding of every byte outside RFC 3986's unreserved set.
pub fn url_encode(value: &[u8], plus_for_space: bool, lower: bool) -> String {
    let mut out = String::new();
    for &b in value {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' if plus_for_space => out.push('+'),
            _ if lower => out.push_str(&format!("%{b:02x}")),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// JSON string escaping as Python's `json.dumps` does by default (`ensure_ascii`): every
/// non-ASCII character as `\uXXXX` (lowercase hex, UTF-16 surrogate pairs beyond the BMP).
pub fn json_ascii(value: &str) -> String {
    let mut out = String::new();
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for u in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// JSON string escaping as Go's `encoding/json` does by default: `<`, `>`, `&`, U+2028 and
/// U+2029 as `\uXXXX`, non-ASCII otherwise kept.
pub fn json_go(value: &str) -> String {
    let json = serde_json::to_string(value).unwrap();
    json[1..json.len() - 1]
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

/// The base64 characters that depend only on `value` when it starts `offset` bytes (0..3)
/// into a longer encoded blob: catches a secret embedded in base64 of a larger text, such as
/// `Authorization: Basic base64(user:password)`.
fn base64_core(enc: &Encoding, value: &[u8], offset: usize) -> Vec<u8> {
    let mut buf = vec![0u8; offset];
    buf.extend_from_slice(value);
    let text = enc.encode(&buf);
    let bits_start = offset * 8;
    let bits_end = (offset + value.len()) * 8;
    let first = bits_start.div_ceil(6);
    let last = bits_end / 6; // exclusive: groups wholly inside the value
    text.as_bytes()[first..last.max(first)].to_vec()
}

/// Every form of `value` that counts as the secret having leaked.
pub fn forms_of(secret: &str, value: &[u8]) -> Vec<Form> {
    let mut out: Vec<Form> = Vec::new();
    let mut push = |name: &str, bytes: Vec<u8>, exec_masks: bool| {
        if let Some(f) = out.iter_mut().find(|f| f.bytes == bytes) {
            // Same bytes under another name: keep one needle, but it must be masked if any
            // of its names is promised.
            f.exec_masks |= exec_masks;
            return;
        }
        out.push(Form {
            secret: secret.to_owned(),
            name: name.to_owned(),
            bytes,
            exec_masks,
        });
    };
    push("raw", value.to_vec(), true);
    for (name, enc) in [
        ("base64", &BASE64),
        ("base64-nopad", &BASE64_NOPAD),
        ("base64url", &BASE64URL),
        ("base64url-nopad", &BASE64URL_NOPAD),
    ] {
        push(name, enc.encode(value).into_bytes(), true);
    }
    for (name, enc) in [("base64", &BASE64_NOPAD), ("base64url", &BASE64URL_NOPAD)] {
        for off in 1..3 {
            push(
                &format!("{name}-embedded@{off}"),
                base64_core(enc, value, off),
                false,
            );
        }
    }
    push(
        "url-encoded",
        url_encode(value, false, false).into_bytes(),
        true,
    );
    push(
        "form-encoded",
        url_encode(value, true, false).into_bytes(),
        true,
    );
    push(
        "url-encoded-lower",
        url_encode(value, false, true).into_bytes(),
        false,
    );
    push("hex-lower", HEXLOWER.encode(value).into_bytes(), false);
    push("hex-upper", HEXUPPER.encode(value).into_bytes(), false);
    if let Ok(text) = std::str::from_utf8(value) {
        let json = serde_json::to_string(text).unwrap();
        push(
            "json-escaped",
            json.as_bytes()[1..json.len() - 1].to_vec(),
            true,
        );
        push("json-ascii-escaped", json_ascii(text).into_bytes(), true);
        push("json-go-escaped", json_go(text).into_bytes(), true);
        let dbg = format!("{text:?}");
        push(
            "rust-debug",
            dbg.as_bytes()[1..dbg.len() - 1].to_vec(),
            false,
        );
    }
    out
}

/// A secret the audit seeds (or discovers), with the forms to look for.
pub struct Secret {
    pub label: String,
    pub forms: Vec<Form>,
}

impl Secret {
    pub fn new(label: &str, value: &[u8]) -> Secret {
        Secret::with_extra(label, value, Vec::new())
    }

    /// With extra derived forms (a TOTP seed's decoded key, an identity in lower case…).
    pub fn with_extra(label: &str, value: &[u8], extra: Vec<(String, Vec<u8>)>) -> Secret {
        let mut forms = forms_of(label, value);
        for (name, bytes) in extra {
            for mut f in forms_of(label, &bytes) {
                if forms.iter().any(|g| g.bytes == f.bytes) {
                    continue;
                }
                f.name = format!("{name}/{}", f.name);
                f.exec_masks = false;
                forms.push(f);
            }
        }
        for f in &forms {
            assert!(
                f.bytes.len() >= MIN_FORM,
                "form {} of secret {label} is {} bytes: too short to scan for without false hits; make the secret longer",
                f.name,
                f.bytes.len()
            );
        }
        Secret {
            label: label.to_owned(),
            forms,
        }
    }
}

/// All needles of all secrets, indexed by their first 8 bytes: one pass over a haystack.
pub struct Scanner {
    forms: Vec<Form>,
    by_prefix: HashMap<[u8; 8], Vec<usize>>,
    /// Quick reject on the first two bytes.
    first2: Vec<bool>,
}

/// A form found somewhere.
pub struct Hit {
    pub secret: String,
    pub form: String,
    pub offset: usize,
}

impl Scanner {
    pub fn new(secrets: &[Secret]) -> Scanner {
        let mut forms = Vec::new();
        let mut by_prefix: HashMap<[u8; 8], Vec<usize>> = HashMap::new();
        let mut first2 = vec![false; 65536];
        for s in secrets {
            for f in &s.forms {
                let key: [u8; 8] = f.bytes[..8].try_into().unwrap();
                by_prefix.entry(key).or_default().push(forms.len());
                first2[(f.bytes[0] as usize) << 8 | f.bytes[1] as usize] = true;
                forms.push(f.clone());
            }
        }
        Scanner {
            forms,
            by_prefix,
            first2,
        }
    }

    pub fn form_count(&self) -> usize {
        self.forms.len()
    }

    /// Every form of every secret in `hay`.
    pub fn scan(&self, hay: &[u8]) -> Vec<Hit> {
        let mut hits = Vec::new();
        if hay.len() < 8 {
            return hits;
        }
        for i in 0..=hay.len() - 8 {
            if !self.first2[(hay[i] as usize) << 8 | hay[i + 1] as usize] {
                continue;
            }
            let key: [u8; 8] = hay[i..i + 8].try_into().unwrap();
            if let Some(ids) = self.by_prefix.get(&key) {
                for &id in ids {
                    let f = &self.forms[id];
                    if hay[i..].starts_with(&f.bytes) {
                        hits.push(Hit {
                            secret: f.secret.clone(),
                            form: f.name.clone(),
                            offset: i,
                        });
                    }
                }
            }
        }
        hits
    }
}

/// Up to 24 bytes before `offset`, printable ASCII only: context that cannot contain the hit.
pub fn context_before(hay: &[u8], offset: usize) -> String {
    let start = offset.saturating_sub(24);
    hay[start..offset]
        .iter()
        .map(|&b| {
            if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '.'
            }
        })
        .collect()
}

/// One captured stream (or socket answer) of one process.
pub struct Capture {
    /// Which process, which stream: `#12 scopevault get --task … [stdout]`.
    pub what: String,
    pub bytes: Vec<u8>,
    /// Secrets this stream exists to carry (`get --field password`, a fetch answer): they are
    /// required to be present (a positive control of the scanner) and not counted as leaks.
    pub carries: Vec<String>,
}

/// Runs processes and keeps every byte they write.
pub struct Recorder {
    pub bin: PathBuf,
    pub env: Vec<(OsString, OsString)>,
    pub captures: RefCell<Vec<Capture>>,
    pub processes: RefCell<usize>,
    /// Command paths (`["cred", "add"]`) this audit has run.
    pub driven: RefCell<BTreeSet<Vec<String>>>,
    /// The command tree from `--help`, to map argv to a command path.
    pub tree: BTreeMap<String, Vec<String>>,
}

/// Global options that take a value (so the value is not mistaken for a command).
const VALUE_OPTIONS: &[&str] = &[
    "--vault",
    "--socket",
    "--passphrase-file",
    "--passphrase-fd",
    "--identity-file",
];

/// What a run must end as.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Expect {
    Success,
    Failure,
}

impl Recorder {
    pub fn new(bin: &Path, env: Vec<(OsString, OsString)>) -> Recorder {
        let tree = command_tree(bin);
        Recorder {
            bin: bin.to_owned(),
            env,
            captures: RefCell::default(),
            processes: RefCell::new(0),
            driven: RefCell::default(),
            tree,
        }
    }

    /// A command with the audit's isolated environment.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(program);
        c.env_clear();
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// The command path of an argv, as the tree knows it.
    pub fn path_of(&self, args: &[&str]) -> Vec<String> {
        let mut path = Vec::new();
        let mut i = 0;
        while i < args.len() {
            let a = args[i];
            if a == "--" {
                break;
            }
            if a.starts_with('-') {
                if VALUE_OPTIONS.contains(&a) {
                    i += 1;
                }
                i += 1;
                continue;
            }
            match path.len() {
                0 if self.tree.contains_key(a) || a == "help" => path.push(a.to_owned()),
                1 if self
                    .tree
                    .get(&path[0])
                    .is_some_and(|subs| subs.iter().any(|s| s == a)) =>
                {
                    path.push(a.to_owned())
                }
                _ => {}
            }
            if path.len() == 2
                || (path.len() == 1 && self.tree.get(&path[0]).is_some_and(|s| s.is_empty()))
            {
                break;
            }
            i += 1;
        }
        path
    }

    /// Run the scopevault binary; `carries` names secrets stdout exists to print.
    pub fn sv(&self, args: &[&str], stdin: &[u8], expect: Expect, carries: &[&str]) -> Output {
        let mut c = self.command(&self.bin);
        c.args(args);
        self.driven.borrow_mut().insert(self.path_of(args));
        let label = format!("scopevault {}", args.join(" "));
        self.run(&mut c, &label, stdin, expect, carries)
    }

    pub fn ok(&self, args: &[&str], stdin: &[u8]) -> Output {
        self.sv(args, stdin, Expect::Success, &[])
    }

    pub fn fail(&self, args: &[&str], stdin: &[u8]) -> Output {
        self.sv(args, stdin, Expect::Failure, &[])
    }

    /// Run any command, record its stdout and stderr.
    pub fn run(
        &self,
        c: &mut Command,
        label: &str,
        stdin: &[u8],
        expect: Expect,
        carries: &[&str],
    ) -> Output {
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {label}: {e}"));
        // A command may exit before reading stdin: ignore EPIPE.
        let _ = child.stdin.take().unwrap().write_all(stdin);
        let out = child.wait_with_output().unwrap();
        self.record(label, &out, carries);
        let ok = out.status.success();
        assert_eq!(
            ok,
            expect == Expect::Success,
            "{label}: expected {expect:?}, got {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Keep a finished process's output.
    pub fn record(&self, label: &str, out: &Output, carries: &[&str]) {
        let n = {
            let mut p = self.processes.borrow_mut();
            *p += 1;
            *p
        };
        let mut caps = self.captures.borrow_mut();
        caps.push(Capture {
            what: format!("#{n} {label} [stdout]"),
            bytes: out.stdout.clone(),
            carries: carries.iter().map(|s| s.to_string()).collect(),
        });
        caps.push(Capture {
            what: format!("#{n} {label} [stderr]"),
            bytes: out.stderr.clone(),
            carries: Vec::new(),
        });
    }

    /// Keep bytes that did not come from a pipe (a socket answer, a daemon's log).
    pub fn add(&self, what: &str, bytes: Vec<u8>, carries: &[&str]) {
        self.captures.borrow_mut().push(Capture {
            what: what.to_owned(),
            bytes,
            carries: carries.iter().map(|s| s.to_string()).collect(),
        });
    }
}

/// The commands and subcommands the binary's `--help` lists (without `help` itself).
pub fn command_tree(bin: &Path) -> BTreeMap<String, Vec<String>> {
    let mut tree = BTreeMap::new();
    for top in help_commands(bin, &[]) {
        let subs = help_commands(bin, &[&top]);
        tree.insert(top, subs);
    }
    assert!(
        tree.len() >= 10,
        "parsed the command list from --help: {tree:?}"
    );
    tree
}

fn help_commands(bin: &Path, path: &[&str]) -> Vec<String> {
    let out = Command::new(bin)
        .args(path)
        .arg("--help")
        .env("NO_COLOR", "1")
        .env("COLUMNS", "200")
        .output()
        .unwrap();
    assert!(out.status.success(), "{path:?} --help");
    let text = String::from_utf8(out.stdout).unwrap();
    let mut in_commands = false;
    let mut names = Vec::new();
    for line in text.lines() {
        if line == "Commands:" {
            in_commands = true;
            continue;
        }
        if in_commands {
            if line.is_empty() || !line.starts_with("  ") {
                break;
            }
            // A command line is indented by exactly two spaces; wrapped help text by more.
            if line.as_bytes()[2] != b' ' {
                let name = line.split_whitespace().next().unwrap().to_owned();
                if name != "help" {
                    names.push(name);
                }
            }
        }
    }
    names
}
