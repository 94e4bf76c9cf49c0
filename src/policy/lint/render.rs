//! The four report formats. JSON and SARIF are built as `serde_json::Value` so the field
//! order on output is fixed (serde_json sorts object keys), which keeps snapshots stable.

use std::fmt::Write;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::super::error::{snippet, LineIndex};
use super::{rule, Class, Finding, Report, RULES};

/// Version of the JSON schema documented in docs/lint-rules.md.
pub const JSON_SCHEMA: &str = "scopevault-lint/1";

const TOOL_URI: &str = "https://github.com/scopevault/scopevault/blob/main/docs/lint-rules.md";

struct Paint {
    on: bool,
}

impl Paint {
    fn wrap(&self, code: &str, s: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }
    fn class(&self, c: Class, s: &str) -> String {
        let code = match c {
            Class::Error => "1;31",
            Class::SecurityWarning => "1;35",
            Class::Warning => "1;33",
            Class::Suggestion => "1;36",
        };
        self.wrap(code, s)
    }
    fn gutter(&self, s: &str) -> String {
        self.wrap("1;34", s)
    }
    fn bold(&self, s: &str) -> String {
        self.wrap("1", s)
    }
}

/// "2f1c…": a stable fingerprint of what a finding is about (not where it is), so code
/// scanning tracks it across edits that move lines.
fn fingerprint(f: &Finding) -> String {
    let mut h = Sha256::new();
    for part in [
        f.rule,
        f.credential.as_deref().unwrap_or(""),
        f.task.as_deref().unwrap_or(""),
        &f.scopes.join(","),
    ] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    let d = h.finalize();
    d.iter().take(16).fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn xml_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            // XML 1.0 cannot carry most control characters; replace them.
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' && c != '\r' => o.push('\u{FFFD}'),
            c => o.push(c),
        }
    }
    o
}

impl Report {
    /// rustc-style text: each finding with `file:line:col`, the source line and a `^` marker
    /// under the offending value, then the summary line. Excepted findings are left out (the
    /// summary counts them). `color` adds ANSI colours; the CLI passes `true` only on a
    /// terminal and never with `NO_COLOR`.
    pub fn render_text(&self, color: bool) -> String {
        let p = Paint { on: color };
        let src: &str = &self.source;
        let idx = LineIndex::new(src);
        let mut o = String::new();
        for f in self.findings.iter().filter(|f| !f.excepted) {
            let head = format!("{}[{}]", f.class.as_str(), f.rule);
            let _ = writeln!(o, "{}: {}", p.class(f.class, &head), p.bold(&f.message));
            let width = f.end_line.max(f.line).to_string().len();
            let pad = " ".repeat(width);
            let _ = writeln!(
                o,
                "{pad}{} {}:{}:{}",
                p.gutter("-->"),
                self.path,
                f.line,
                f.column
            );
            if !src.is_empty() {
                let end_col = if f.end_line == f.line {
                    f.end_column
                } else {
                    usize::MAX
                };
                let (text, start, len) = snippet(idx.line_text(src, f.line), f.column, end_col);
                let _ = writeln!(o, "{pad} {}", p.gutter("|"));
                let _ = writeln!(
                    o,
                    "{} {} {}",
                    p.gutter(&format!("{:>width$}", f.line)),
                    p.gutter("|"),
                    text
                );
                let _ = writeln!(
                    o,
                    "{pad} {} {}{}",
                    p.gutter("|"),
                    " ".repeat(start),
                    p.class(f.class, &"^".repeat(len))
                );
            }
            let _ = writeln!(o, "{pad} {} help: {}", p.gutter("="), f.help);
            o.push('\n');
        }
        o.push_str(&self.summary());
        o.push('\n');
        o
    }

    /// JSON, schema `scopevault-lint/1` (docs/lint-rules.md): excepted findings are included
    /// with `"excepted": true`.
    pub fn render_json(&self) -> String {
        let c = self.counts();
        let findings: Vec<Value> = self
            .findings
            .iter()
            .map(|f| {
                json!({
                    "rule": f.rule,
                    "class": f.class.as_str(),
                    "message": f.message,
                    "help": f.help,
                    "file": self.path,
                    "line": f.line,
                    "column": f.column,
                    "end_line": f.end_line,
                    "end_column": f.end_column,
                    "credential": f.credential,
                    "task": f.task,
                    "scopes": f.scopes,
                    "excepted": f.excepted,
                })
            })
            .collect();
        let v = json!({
            "schema": JSON_SCHEMA,
            "tool": {"name": "scopevault", "version": env!("CARGO_PKG_VERSION")},
            "file": self.path,
            "vault_rules": self.vault_rules_ran,
            "summary": {
                "error": c.error,
                "security-warning": c.security_warning,
                "warning": c.warning,
                "suggestion": c.suggestion,
                "excepted": c.excepted,
            },
            "findings": findings,
        });
        let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
        s.push('\n');
        s
    }

    /// SARIF 2.1.0 for code scanning: every rule in `tool.driver.rules` (with or without
    /// results), results with physical locations and `partialFingerprints`, `security-severity`
    /// and a `security` tag on security findings; excepted findings left out.
    pub fn render_sarif(&self) -> String {
        let rules: Vec<Value> = RULES
            .iter()
            .map(|r| {
                let mut props = json!({
                    "tags": tags(r.class),
                    "precision": "very-high",
                    "problem.severity": match r.class {
                        Class::Error => "error",
                        Class::SecurityWarning | Class::Warning => "warning",
                        Class::Suggestion => "recommendation",
                    },
                });
                if let Some(sev) = r.security_severity {
                    props["security-severity"] = json!(sev);
                }
                json!({
                    "id": r.id,
                    "name": pascal(r.id),
                    "shortDescription": {"text": r.short},
                    "fullDescription": {"text": format!("{} {}", r.short, r.full)},
                    "help": {
                        "text": r.help,
                        "markdown": format!("**{}**\n\n{}\n\n**Fix:** {}", r.short, r.full, r.help),
                    },
                    "helpUri": format!("{TOOL_URI}#{}", r.id),
                    "defaultConfiguration": {"level": r.class.sarif_level()},
                    "properties": props,
                })
            })
            .collect();
        // Code scanning resolves URIs against the repository root: `./policy.toml` → `policy.toml`.
        let uri = self.path.replace('\\', "/");
        let uri = uri.trim_start_matches("./").to_owned();
        let results: Vec<Value> = self
            .findings
            .iter()
            .filter(|f| !f.excepted)
            .map(|f| {
                let index = RULES.iter().position(|r| r.id == f.rule).unwrap_or(0);
                let mut props = json!({
                    "class": f.class.as_str(),
                    "scopes": f.scopes,
                    "tags": tags(f.class),
                });
                if let Some(c) = &f.credential {
                    props["credential"] = json!(c);
                }
                if let Some(t) = &f.task {
                    props["task"] = json!(t);
                }
                if let Some(sev) = rule(f.rule).and_then(|r| r.security_severity) {
                    props["security-severity"] = json!(sev);
                }
                json!({
                    "ruleId": f.rule,
                    "ruleIndex": index,
                    "level": f.class.sarif_level(),
                    "message": {"text": format!("{} Help: {}", sentence(&f.message), f.help)},
                    "locations": [{
                        "physicalLocation": {
                            "artifactLocation": {"uri": uri},
                            "region": {
                                "startLine": f.line,
                                "startColumn": f.column,
                                "endLine": f.end_line,
                                "endColumn": f.end_column.max(f.column + usize::from(f.end_line == f.line)),
                            }
                        }
                    }],
                    "partialFingerprints": {"scopevaultFinding/v1": fingerprint(f)},
                    "properties": props,
                })
            })
            .collect();
        let v = json!({
            "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
            "version": "2.1.0",
            "runs": [{
                "tool": {"driver": {
                    "name": "scopevault",
                    "semanticVersion": env!("CARGO_PKG_VERSION"),
                    "informationUri": TOOL_URI,
                    "rules": rules,
                }},
                "columnKind": "unicodeCodePoints",
                "artifacts": [{"location": {"uri": uri}, "mimeType": "application/toml"}],
                "results": results,
            }],
        });
        let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
        s.push('\n');
        s
    }

    /// JUnit XML for CI dashboards: one test case per rule × subject with a finding (a failure
    /// when its class blocks at `deny`, skipped when excepted, passed otherwise with the
    /// message in `system-out`), and one passing case per rule with no finding.
    pub fn render_junit(&self, deny: Class) -> String {
        let mut cases = String::new();
        let (mut tests, mut failures, mut skipped) = (0usize, 0usize, 0usize);
        for r in RULES {
            let mut any = false;
            for f in self.findings.iter().filter(|f| f.rule == r.id) {
                any = true;
                tests += 1;
                let name = xml_escape(&subject(f));
                let _ = write!(
                    cases,
                    "    <testcase classname=\"scopevault.lint.{}\" name=\"{name}\" file=\"{}\" line=\"{}\">",
                    r.id,
                    xml_escape(&self.path),
                    f.line
                );
                let body = format!(
                    "{}:{}:{}: {}[{}]: {}\nhelp: {}",
                    self.path,
                    f.line,
                    f.column,
                    f.class.as_str(),
                    f.rule,
                    f.message,
                    f.help
                );
                if f.excepted {
                    skipped += 1;
                    let _ = write!(
                        cases,
                        "<skipped message=\"excepted by an [[exceptions]] entry\"/>"
                    );
                } else if f.class.blocks_at(deny) {
                    failures += 1;
                    let _ = write!(
                        cases,
                        "<failure type=\"{}\" message=\"{}\">{}</failure>",
                        f.class.as_str(),
                        xml_escape(&f.message),
                        xml_escape(&body)
                    );
                } else {
                    let _ = write!(cases, "<system-out>{}</system-out>", xml_escape(&body));
                }
                cases.push_str("</testcase>\n");
            }
            if !any {
                tests += 1;
                let what = if r.needs_vault && !self.vault_rules_ran {
                    "not run (needs --vault)"
                } else {
                    "no findings"
                };
                let _ = writeln!(
                    cases,
                    "    <testcase classname=\"scopevault.lint.{}\" name=\"{what}\" file=\"{}\"/>",
                    r.id,
                    xml_escape(&self.path)
                );
            }
        }
        let path = xml_escape(&self.path);
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"scopevault lint\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\">\n  <testsuite name=\"{path}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\">\n{cases}  </testsuite>\n</testsuites>\n"
        )
    }
}

fn tags(c: Class) -> Vec<&'static str> {
    match c {
        Class::SecurityWarning => vec!["security", "least-privilege"],
        Class::Error => vec!["correctness"],
        Class::Warning => vec!["maintainability"],
        Class::Suggestion => vec!["style"],
    }
}

/// `scope-exceeds-task` → `ScopeExceedsTask` (SARIF's `name` is an identifier-like label).
fn pascal(id: &str) -> String {
    id.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

fn sentence(s: &str) -> String {
    if s.ends_with('.') {
        s.to_owned()
    } else {
        format!("{s}.")
    }
}

/// "task `a`, credential `b`", the JUnit test-case name.
fn subject(f: &Finding) -> String {
    let mut parts = Vec::new();
    if let Some(t) = &f.task {
        parts.push(format!("task {t}"));
    }
    if let Some(c) = &f.credential {
        parts.push(format!("credential {c}"));
    }
    let scoped = parts.is_empty() || f.rule == "undeclared-scope" || f.rule == "implies-cycle";
    if scoped && !f.scopes.is_empty() {
        parts.push(format!("scopes {}", f.scopes.join(" ")));
    }
    if parts.is_empty() {
        parts.push(format!("line {}", f.line));
    }
    parts.join(", ")
}
