//! `scopevault cred import FILE --format csv`: the CSV exports of the common password
//! managers (Bitwarden, 1Password, KeePassXC), in one atomic save. Rows are reported by
//! number and credential name; a value (username, password, TOTP) is never printed.

use std::collections::BTreeSet;
use std::io::Read;
use std::process::ExitCode;

use anyhow::{bail, Context};
use zeroize::Zeroizing;

use super::args::{CredImportArgs, GlobalArgs};
use super::escape_for_terminal;
use super::unlock::{open_options, open_vault, vault_path};
use crate::policy::CredentialKind;
use crate::secret::{within_secret_limit, SecretString, MAX_SECRET_LEN};
use crate::vault::{self, validate_name, Credential, WriteLock};

/// Largest file read (an export of tens of thousands of logins is a few MiB).
const MAX_FILE: u64 = 64 * 1024 * 1024;

/// The columns understood, each with the header names the exporters use (compared without
/// case, spaces, `-` and `_`): Bitwarden `name, login_uri, login_username, login_password,
/// login_totp`; 1Password `Title, Url, Username, Password, OTPAuth`; KeePassXC `Title,
/// Username, Password, URL, TOTP`.
const COLUMNS: [(Col, &[&str]); 5] = [
    (Col::Name, &["name", "title"]),
    (Col::Username, &["username", "loginusername"]),
    (Col::Password, &["password", "loginpassword"]),
    (Col::Url, &["url", "loginuri", "uri"]),
    (Col::Totp, &["totp", "logintotp", "otpauth", "otp"]),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Col {
    Name,
    Username,
    Password,
    Url,
    Totp,
}

/// One importable row.
struct Row {
    line: u64,
    name: String,
    username: Option<String>,
    origin: Option<String>,
    secrets: Vec<(String, SecretString)>,
}

pub(crate) fn run(g: &GlobalArgs, a: &CredImportArgs) -> anyhow::Result<ExitCode> {
    // Stage one: the whole file, before the vault is touched.
    let (rows, problems) = read_rows(&a.file)?;
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("{}", escape_for_terminal(p));
        }
        bail!(
            "{} row(s) of {} cannot be imported (listed above): fix or remove them; nothing was imported",
            problems.len(),
            a.file.display()
        );
    }
    if rows.is_empty() {
        bail!("{} has no rows to import", a.file.display());
    }

    // Stage two: unlock (this may prompt), then the writer lock and a fresh read.
    let unlocked = open_vault(g)?;
    // Opening a restored file with --allow-rollback saved it again (read before the fresh
    // read below, which finds it adopted).
    let adopted = super::unlock::adopted(&unlocked).then(|| unlocked.generation());
    let path = vault_path(g);
    let lock = WriteLock::acquire(&path)?;
    let mut vault = unlocked.reopen(&open_options(g))?;
    drop(unlocked);
    let now = vault::timestamp();
    let (mut added, mut updated, mut kept) = (0, 0, 0);
    let mut report = Vec::new();
    let mut notes = Vec::new();
    for row in rows {
        let what: Vec<&str> = row
            .username
            .iter()
            .map(|_| "username")
            .chain(row.origin.iter().map(|_| "url"))
            .chain(row.secrets.iter().map(|(k, _)| k.as_str()))
            .collect();
        let what = what.join(", ");
        let exists = vault.credentials().contains_key(&row.name);
        if !exists || a.update {
            // Added or updated: say what `cred set` says of a value holding a NUL byte.
            super::cred::warn_nul_at(
                &format!("row {}: ", row.line),
                &row.name,
                row.secrets.iter().map(|(k, v)| (k.as_str(), v)),
            );
        }
        if exists {
            if !a.update {
                kept += 1;
                report.push(format!(
                    "row {}: = {} exists: kept (--update replaces its values)",
                    row.line, row.name
                ));
                continue;
            }
            let Row {
                username,
                origin,
                secrets,
                ..
            } = row;
            let mut replaced = Vec::new();
            let changed = vault.update_credential(&row.name, |c| {
                let mut changed = 0;
                for (k, v) in secrets {
                    // A TOTP seed replaces the other form of it, as `cred set` does.
                    let set = c.set_secret(k.clone(), v);
                    changed += usize::from(set.changed);
                    if let Some(old) = set.replaced {
                        changed += usize::from(!set.changed);
                        replaced.push((k, old));
                    }
                }
                if changed > 0 {
                    c.rotated = now;
                }
                if changed > 0
                    || username
                        .as_ref()
                        .is_some_and(|u| c.fields.get("username") != Some(u))
                {
                    // No longer what a sync source had: the next sync says so, and still
                    // compares versions with the one synced last (`cred set` does the same).
                    c.mark_set_by_hand(now);
                }
                if let Some(u) = username {
                    c.fields.insert("username".into(), u);
                }
                if let Some(o) = origin {
                    if !c.origins.contains(&o) {
                        c.origins.push(o);
                    }
                }
                changed
            })?;
            updated += 1;
            report.push(format!(
                "row {}: ~ {} updated ({what}; {changed} secret value(s) changed)",
                row.line, row.name
            ));
            notes.extend(
                replaced
                    .iter()
                    .map(|(new, old)| super::cred::replaced_note(&row.name, new, old)),
            );
        } else {
            let mut c = Credential::new(CredentialKind::Login, now);
            if let Some(u) = row.username {
                c.fields.insert("username".into(), u);
            }
            c.origins.extend(row.origin);
            for (k, v) in row.secrets {
                c.secrets.insert(k, v);
            }
            vault.add_credential(&row.name, c)?;
            added += 1;
            report.push(format!("row {}: + {} added ({what})", row.line, row.name));
        }
    }
    if added + updated > 0 {
        vault.save(&lock)?;
        super::fleet::warn_local_change(&vault);
    }
    for n in &notes {
        eprintln!("{}", escape_for_terminal(n));
    }
    // Each line escaped: a row's name and origin come from the file.
    let mut out: String = report
        .iter()
        .map(|l| escape_for_terminal(l))
        .collect::<Vec<_>>()
        .join("\n");
    out.push_str(&format!(
        "\nimported {}: {added} added, {updated} updated, {kept} kept{}\n",
        super::shown(&a.file),
        if added + updated > 0 {
            format!(" (one save, generation {})", vault.generation())
        } else if let Some(generation) = adopted {
            format!(
                ": nothing was imported, but the {}",
                super::unlock::adopted_note(generation)
            )
        } else {
            String::from(": the vault was not changed")
        }
    ));
    super::write_stdout(out.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// A header cell as compared: lowercase, without spaces, `-` and `_`.
fn normalise(h: &str) -> String {
    h.trim_start_matches('\u{feff}')
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '_'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// A credential name from a title: invalid characters become `-`, runs collapse, ends are
/// trimmed ("Shop (buyer)" -> "Shop-buyer").
fn name_from(title: &str) -> String {
    let mut out = String::new();
    for c in title.trim().chars() {
        let c = if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
            c
        } else {
            '-'
        };
        if c == '-' && out.ends_with('-') {
            continue;
        }
        out.push(c);
    }
    let out = out.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    out.chars().take(128).collect()
}

/// Parse the file: the rows to import, and a message per row that cannot be (never quoting a
/// value).
fn read_rows(file: &std::path::Path) -> anyhow::Result<(Vec<Row>, Vec<String>)> {
    let f = std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let mut bytes = Zeroizing::new(Vec::new());
    f.take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", file.display()))?;
    if bytes.len() as u64 > MAX_FILE {
        bail!("{} is larger than {MAX_FILE} bytes", file.display());
    }
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        anyhow::anyhow!(
            "{}: not UTF-8 text (at byte {}): export as UTF-8 CSV",
            file.display(),
            e.valid_up_to()
        )
    })?;
    let mut records = Records::new(text);
    let header = match records.next() {
        Some(Ok((_, h))) => h,
        Some(Err(e)) => bail!("{}: {e}", file.display()),
        None => bail!("{} is empty", file.display()),
    };
    let mut index: Vec<(Col, usize)> = Vec::new();
    for (col, names) in COLUMNS {
        let mut found = header
            .iter()
            .enumerate()
            .filter(|(_, h)| names.contains(&normalise(h).as_str()));
        if let Some((i, first)) = found.next() {
            // Two columns for one thing (`totp` and `login_totp`, `password` and
            // `login_password`): which one holds the value is not known, and taking the
            // first would drop the other in silence.
            if let Some((_, second)) = found.next() {
                bail!(
                    "{}: the columns `{}` and `{}` both mean the same field of a credential: keep one of them (nothing was imported)",
                    file.display(),
                    crate::text::escape_for_terminal(first),
                    crate::text::escape_for_terminal(second)
                );
            }
            index.push((col, i));
        }
    }
    let at = |col: Col| index.iter().find(|(c, _)| *c == col).map(|(_, i)| *i);
    if at(Col::Name).is_none() {
        bail!(
            "{}: no `name` or `title` column in the header row (is it a Bitwarden, 1Password or KeePassXC CSV export?)",
            file.display()
        );
    }
    if at(Col::Password).is_none() && at(Col::Totp).is_none() {
        bail!(
            "{}: no `password`/`login_password` or `totp`/`login_totp` column: nothing secret to import",
            file.display()
        );
    }
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for rec in records {
        let (line, record) = match rec {
            Ok(r) => r,
            Err(e) => {
                // The reader's errors name a line, never a field's contents.
                problems.push(e);
                break;
            }
        };
        if record.iter().all(|c| c.trim().is_empty()) {
            continue;
        }
        let cell = |col: Col| {
            at(col)
                .and_then(|i| record.get(i))
                .map(|c| c.trim())
                .filter(|v| !v.is_empty())
        };
        let title = cell(Col::Name).unwrap_or("");
        let name = name_from(title);
        if let Err(e) = validate_name(&name) {
            problems.push(format!("row {line}: no usable name from its title ({e})"));
            continue;
        }
        if !seen.insert(name.clone()) {
            problems.push(format!(
                "row {line}: {name} appears twice in the file: rename one of them"
            ));
            continue;
        }
        // The limit every way a value enters a vault is held to (vault-format.md): an import
        // stored 70,000 bytes that `cred set` refuses (seventeenth pass). Checked here, with
        // the row, so that nothing is imported; the vault refuses it too.
        if let Some(what) = [(Col::Password, "password"), (Col::Totp, "TOTP")]
            .into_iter()
            .find(|(col, _)| cell(*col).is_some_and(|v| !within_secret_limit(v.len())))
            .map(|(_, what)| what)
        {
            problems.push(format!(
                "row {line}: {name}: the {what} value is more than {MAX_SECRET_LEN} bytes, the limit for a secret value"
            ));
            continue;
        }
        let mut secrets = Vec::new();
        if let Some(p) = cell(Col::Password) {
            secrets.push(("password".to_owned(), SecretString::from(p.to_owned())));
        }
        if let Some(t) = cell(Col::Totp) {
            let key = if t.starts_with("otpauth://") {
                "otpauth"
            } else {
                "totp_seed"
            };
            // Seeds are often exported grouped ("JBSW Y3DP"): drop the spaces.
            let v = if key == "totp_seed" {
                SecretString::from(t.split_whitespace().collect::<String>())
            } else {
                SecretString::from(t.to_owned())
            };
            if let Err(e) = crate::agent::totp::Totp::from_field(key, &v) {
                // TotpError never quotes the seed.
                problems.push(format!(
                    "row {line}: {name}: the TOTP value is not usable: {e}"
                ));
                continue;
            }
            secrets.push((key.to_owned(), v));
        }
        if secrets.is_empty() {
            problems.push(format!(
                "row {line}: {name} has neither a password nor a TOTP value"
            ));
            continue;
        }
        let username = cell(Col::Username).map(str::to_owned);
        if let Some(Err(e)) = username
            .as_ref()
            .map(|u| crate::vault::validate_field_value("username", u))
        {
            problems.push(format!("row {line}: {name}: {e}"));
            continue;
        }
        // Only an http(s) URL gives an origin; other entries (apps, SSH hosts) are left out.
        let origin = cell(Col::Url).and_then(origin_of_url);
        rows.push(Row {
            line,
            name,
            username,
            origin,
            secrets,
        });
    }
    Ok((rows, problems))
}

/// The records of a CSV text (RFC 4180: `,` separated, `"` quoted with `""` for a quote,
/// newlines inside quotes, CRLF or LF line ends, a UTF-8 BOM ignored), each with the line it
/// starts on (1-based). Cells are `Zeroizing` because they hold passwords.
struct Records<'a> {
    rest: std::iter::Peekable<std::str::CharIndices<'a>>,
    line: u64,
    done: bool,
}

type Record = Vec<Zeroizing<String>>;

impl<'a> Records<'a> {
    fn new(text: &'a str) -> Records<'a> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        Records {
            rest: text.char_indices().peekable(),
            line: 1,
            done: false,
        }
    }
}

impl Iterator for Records<'_> {
    type Item = Result<(u64, Record), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.rest.peek().is_none() {
            return None;
        }
        let start = self.line;
        let mut record: Record = Vec::new();
        let mut cell = Zeroizing::new(String::new());
        let mut quoted = false;
        let mut at_cell_start = true;
        while let Some((_, c)) = self.rest.next() {
            if quoted {
                match c {
                    '"' if self.rest.peek().map(|p| p.1) == Some('"') => {
                        self.rest.next();
                        cell.push('"');
                    }
                    '"' => quoted = false,
                    '\n' => {
                        self.line += 1;
                        cell.push('\n');
                    }
                    c => cell.push(c),
                }
                continue;
            }
            match c {
                '"' if at_cell_start => {
                    quoted = true;
                    at_cell_start = false;
                }
                ',' => {
                    record.push(std::mem::take(&mut cell));
                    at_cell_start = true;
                }
                '\r' if self.rest.peek().map(|p| p.1) == Some('\n') => {}
                '\n' => {
                    self.line += 1;
                    record.push(std::mem::take(&mut cell));
                    return Some(Ok((start, record)));
                }
                c => {
                    cell.push(c);
                    at_cell_start = false;
                }
            }
        }
        if quoted {
            self.done = true;
            return Some(Err(format!(
                "row {start}: a quoted field is never closed (a missing `\"`): not valid CSV"
            )));
        }
        record.push(std::mem::take(&mut cell));
        Some(Ok((start, record)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(text: &str) -> Vec<(u64, Vec<String>)> {
        Records::new(text)
            .map(|r| {
                let (line, rec) = r.unwrap();
                (line, rec.iter().map(|c| c.to_string()).collect())
            })
            .collect()
    }

    #[test]
    fn records_follow_rfc_4180() {
        assert_eq!(
            cells("a,b\r\n\"x,\"\"y\"\"\",\"two\nlines\"\nlast,\n"),
            vec![
                (1, vec!["a".into(), "b".into()]),
                (2, vec!["x,\"y\"".into(), "two\nlines".into()]),
                (4, vec!["last".into(), "".into()]),
            ]
        );
        assert_eq!(
            cells("\u{feff}h\nv"),
            vec![(1, vec!["h".into()]), (2, vec!["v".into()])]
        );
        let err = Records::new("a\n\"open,b\n").nth(1).unwrap().unwrap_err();
        assert!(err.contains("row 2") && !err.contains("open"), "{err}");
    }

    #[test]
    fn names_come_from_titles() {
        assert_eq!(name_from("Shop (buyer)"), "Shop-buyer");
        assert_eq!(name_from("  api.example.com  "), "api.example.com");
        assert_eq!(name_from("***"), "");
    }

    #[test]
    fn headers_of_the_three_exporters_are_recognised() {
        assert_eq!(normalise("login_password"), "loginpassword");
        assert_eq!(normalise("Password"), "password");
        assert_eq!(normalise("\u{feff}Title"), "title");
        assert_eq!(normalise("OTPAuth"), "otpauth");
    }
}

/// The origin (`scheme://host[:port]`, lowercase) of an http(s) URL from an export, as the
/// policy writes origins: the user and password some exports keep in the URL
/// (`https://user:pw@host/`), the path, query and fragment (which may hold a token) are never
/// stored, and a host that is not plain ASCII (a bidirectional override that would show
/// another name) gives no origin.
pub(crate) fn origin_of_url(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if !(scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("http")) {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    crate::policy::normalise_origin(&format!("{scheme}://{host}"))
}

#[cfg(test)]
mod origin_tests {
    use super::origin_of_url;

    #[test]
    fn an_exported_url_gives_its_origin_only() {
        assert_eq!(
            origin_of_url("https://user:Pw-canary@Shop.example.com:8443/login?token=t#x")
                .as_deref(),
            Some("https://shop.example.com:8443")
        );
        assert_eq!(
            origin_of_url("http://a.example/").as_deref(),
            Some("http://a.example")
        );
        assert_eq!(origin_of_url("https://evil\u{202e}moc.example"), None);
        assert_eq!(origin_of_url("android://com.app"), None);
        assert_eq!(origin_of_url("https://"), None);
    }
}
