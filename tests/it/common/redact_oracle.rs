//! Helpers of the redact tests: the independent oracle of a secret's forms
//! (tests/fixtures/redact_forms.py: Python's urllib/base64/html/json/binascii and a few
//! hand-written encoders, never scopevault's own list), and a scanner that looks for every
//! form in every byte of a tree of files, inside zip archives too.
//!
//! A hit is reported as "form NAME of LABEL in WHERE at OFFSET", never with the value.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// One form of one secret, from the oracle.
#[derive(Clone)]
pub struct OForm {
    pub label: String,
    pub name: String,
    pub bytes: Vec<u8>,
}

/// A test that needs a component that is missing: fails when `CI=true`, else prints
/// `skipped: <why>` and returns true (the caller returns); the skip is recorded as
/// [`super::skip::skip`] records it.
pub fn skip(why: &str) -> bool {
    super::skip::skip(why);
    true
}

/// Every form of each `(label, value, username)` as the oracle writes it, or why not.
pub fn oracle(secrets: &[(&str, &str, Option<&str>)]) -> Result<Vec<OForm>, String> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/redact_forms.py"
    );
    let req = serde_json::json!({
        "secrets": secrets.iter().map(|(l, v, u)| serde_json::json!({
            "label": l, "value": v, "username": u,
        })).collect::<Vec<_>>()
    });
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("python3 is not available ({e})"))?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(req.to_string().as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "the oracle failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let mut forms = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| e.to_string())?;
        forms.push(OForm {
            label: v["label"].as_str().unwrap().to_owned(),
            name: v["name"].as_str().unwrap().to_owned(),
            bytes: data_encoding::HEXLOWER
                .decode(v["hex"].as_str().unwrap().as_bytes())
                .unwrap(),
        });
    }
    if forms.is_empty() {
        return Err("the oracle gave no forms".into());
    }
    Ok(forms)
}

/// Where a form occurs in `hay` (first offset per form).
pub fn hits_in(hay: &[u8], forms: &[OForm], place: &str) -> Vec<String> {
    let mut out = Vec::new();
    for f in forms {
        if let Some(at) = hay
            .windows(f.bytes.len())
            .position(|w| w == f.bytes.as_slice())
        {
            out.push(format!("form {} of {} in {place} at {at}", f.name, f.label));
        }
    }
    out
}

/// Every regular file under `dir` (not following links).
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// Every form found in every byte of every file under `dir`, and of every member of every zip
/// archive (recursively). Returns the hits and how many files/members were scanned.
pub fn scan_tree(dir: &Path, forms: &[OForm]) -> (Vec<String>, usize) {
    let mut hits = Vec::new();
    let mut scanned = 0;
    for p in files(dir) {
        let bytes = std::fs::read(&p).unwrap();
        scan_bytes(
            &bytes,
            &p.display().to_string(),
            forms,
            &mut hits,
            &mut scanned,
        );
    }
    (hits, scanned)
}

fn scan_bytes(
    bytes: &[u8],
    place: &str,
    forms: &[OForm],
    hits: &mut Vec<String>,
    scanned: &mut usize,
) {
    *scanned += 1;
    hits.extend(hits_in(bytes, forms, place));
    if bytes.starts_with(b"PK\x03\x04") {
        let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a readable zip");
        for i in 0..z.len() {
            let mut m = z.by_index(i).unwrap();
            let name = format!("{place}!{}", m.name());
            let mut data = Vec::new();
            m.read_to_end(&mut data).unwrap();
            scan_bytes(&data, &name, forms, hits, scanned);
        }
    }
}
