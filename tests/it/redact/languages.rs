//! `exec`'s masking and the scrub against what real Go, Ruby and Java programs print when a
//! check's author writes its secret by accident (thirty-second pass), and the helpers the
//! Node.js writers use too (`super::node`, thirty-third pass). Each writer is a source
//! file written here and run by the real toolchain (`go build`, `ruby`, `javac` + `java`,
//! `node`), compiled once per source text under the target directory. Go and Ruby come from
//! Debian (`scripts/setup/languages`, run by `scripts/test`); a missing toolchain is a skip,
//! and a failure under `CI=true`.

use crate::common::daemon;
use crate::common::redact_oracle::skip;

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use daemon::{tempdir, Daemon};

/// What `exec` writes for the buyer's password, and for a URL-encoded form of it.
const MARKS: [&str; 2] = [
    "[redacted:shop-buyer.password]",
    "%5Bredacted%3Ashop-buyer.password%5D",
];

/// A program written in one of the languages, run by its real toolchain.
#[derive(Clone, Copy)]
pub enum Lang {
    /// `main.go`, built with `go build`.
    Go,
    /// `w.rb`, run with `ruby`.
    Ruby,
    /// `W.java` (class `W`), compiled with `javac` and run with `java`.
    Java,
    /// `w.js`, run with `node` (CommonJS).
    Node,
}

impl Lang {
    fn tool(self) -> &'static str {
        match self {
            Lang::Go => "go",
            Lang::Ruby => "ruby",
            Lang::Java => "javac",
            Lang::Node => "node",
        }
    }

    fn file(self) -> &'static str {
        match self {
            Lang::Go => "main.go",
            Lang::Ruby => "w.rb",
            Lang::Java => "W.java",
            Lang::Node => "w.js",
        }
    }
}

/// Where the compiled writers are kept between runs: beside the binary under test.
fn cache_dir() -> PathBuf {
    Path::new(daemon::bin())
        .parent()
        .expect("the binary is in a directory")
        .join("language-writers")
}

/// The command that runs `source` in `lang`, built once per source text (cached under the
/// target directory); `None` after a skip when the toolchain is missing.
pub fn writer(lang: Lang, source: &str) -> Option<Command> {
    if Command::new(lang.tool())
        .arg(if matches!(lang, Lang::Go) {
            "version"
        } else {
            "--version"
        })
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        skip(&format!(
            "{} is not installed (scripts/setup/languages installs it)",
            lang.tool()
        ));
        return None;
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    source.hash(&mut h);
    let cache = cache_dir();
    let dir = cache.join(format!("{}-{:016x}", lang.file(), h.finish()));
    if !dir.join("done").exists() {
        std::fs::create_dir_all(&cache).unwrap();
        let tmp = tempfile::tempdir_in(&cache).unwrap();
        std::fs::write(tmp.path().join(lang.file()), source).unwrap();
        let build = match lang {
            Lang::Go => Some(
                Command::new("go")
                    .args(["build", "-o", "writer", "main.go"])
                    .env("GOCACHE", cache.join("gocache"))
                    .env("GO111MODULE", "off")
                    .current_dir(tmp.path())
                    .output()
                    .unwrap(),
            ),
            Lang::Java => Some(
                Command::new("javac")
                    .args(["-d", ".", "W.java"])
                    .current_dir(tmp.path())
                    .output()
                    .unwrap(),
            ),
            Lang::Ruby | Lang::Node => None,
        };
        if let Some(out) = build {
            assert!(
                out.status.success(),
                "{} failed: {}",
                lang.tool(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::fs::write(tmp.path().join("done"), "").unwrap();
        // Another test may have built the same source meanwhile: either copy will do.
        let tmp = tmp.keep();
        if std::fs::rename(&tmp, &dir).is_err() {
            std::fs::remove_dir_all(&tmp).unwrap();
        }
    }
    Some(match lang {
        Lang::Go => Command::new(dir.join("writer")),
        Lang::Ruby | Lang::Node => {
            let mut c = Command::new(lang.tool());
            c.arg(dir.join(lang.file()));
            c
        }
        Lang::Java => {
            let mut c = Command::new("java");
            c.arg("-cp").arg(&dir).arg("W");
            c
        }
    })
}

/// `scopevault --socket … ARGS` against `d`, which must succeed: its output.
fn sv(d: &Daemon, args: &[&std::ffi::OsStr]) -> std::process::Output {
    let out = daemon::cmd(&d.dir)
        .arg("--socket")
        .arg(&d.socket)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `scopevault exec --task checkout-flow [--no-mask] -- PROGRAM`: its stdout and stderr.
fn exec(d: &Daemon, mask: bool, program: &Command) -> String {
    let mut args: Vec<&std::ffi::OsStr> = ["exec", "--task", "checkout-flow"]
        .iter()
        .map(|a| a.as_ref())
        .collect();
    if !mask {
        args.push("--no-mask".as_ref());
    }
    args.push("--".as_ref());
    args.push(program.get_program());
    args.extend(program.get_args());
    let out = sv(d, &args);
    let mut text = String::from_utf8(out.stdout).unwrap();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    text
}

/// What a writer printed after each `NAME: ` (after a logger's prefix or not), NAME a word of
/// letters and digits with a `-`, up to the next such line: a line without a name continues the form
/// before it (base64 wrapped into lines), and lines before the first name are left out.
fn named_lines(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for l in text.split_inclusive('\n') {
        let named = l.match_indices(": ").find_map(|(i, _)| {
            let name = l[..i].rsplit(' ').next()?;
            let named = name.contains('-')
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            named.then(|| (name.to_owned(), l[i + 2..].to_owned()))
        });
        match (named, out.last_mut()) {
            (Some(n), _) => out.push(n),
            (None, Some((_, form))) => form.push_str(l),
            (None, None) => {}
        }
    }
    for (_, form) in &mut out {
        form.truncate(form.trim_end_matches(['\n', '\r']).len());
    }
    out
}

/// Runs each writer with the buyer's password `value` under `exec`, unmasked and masked, and
/// `redact` on a file of the unmasked output. Each writer prints lines `NAME: FORM`, and
/// `expect` holds, for each NAME, a piece of what it must have written (so the test knows
/// the writer wrote the form it is about). Masked, every named line holds the redaction
/// mark (percent-encoded for a URL form) and not the form; scrubbed, the file holds no form.
/// Returns what the test may check further: the masked text and the scrubbed file (`None`
/// after a skip).
pub fn assert_masked_and_scrubbed(
    value: &str,
    writers: &[(Lang, &str)],
    expect: &[(&str, &str)],
) -> Option<(String, String)> {
    let mut programs = Vec::new();
    for (lang, source) in writers {
        programs.push(writer(*lang, source)?);
    }
    let dir = tempdir();
    let d = daemon::start_with_buyer(dir.path(), value);
    let mut raw = Vec::new();
    let mut masked = Vec::new();
    for p in &programs {
        raw.extend(named_lines(&exec(&d, false, p)));
        masked.extend(named_lines(&exec(&d, true, p)));
    }
    for (name, piece) in expect {
        let (_, form) = raw
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no line {name} in {raw:#?}"));
        assert!(form.contains(piece), "{name} wrote {form:?}, not {piece:?}");
    }
    let mut missed = Vec::new();
    for (name, form) in &raw {
        let m = masked.iter().find(|(n, _)| n == name).map(|(_, m)| m);
        if !m.is_some_and(|m| MARKS.iter().any(|k| m.contains(k)) && !m.contains(form.as_str())) {
            missed.push(format!("exec {name}: {m:?} (unmasked: {form:?})"));
        }
    }
    let art = dir.path().join("artifacts");
    std::fs::create_dir(&art).unwrap();
    let file = art.join("check.log");
    let all: String = raw.iter().map(|(n, f)| format!("{n}: {f}\n")).collect();
    std::fs::write(&file, &all).unwrap();
    sv(
        &d,
        &[
            "redact".as_ref(),
            "--task".as_ref(),
            "checkout-flow".as_ref(),
            art.as_os_str(),
        ],
    );
    let scrubbed = std::fs::read_to_string(&file).unwrap();
    for (name, form) in &raw {
        if scrubbed.contains(form.as_str()) {
            missed.push(format!("redact {name}: {form:?}"));
        }
    }
    assert!(
        missed.is_empty(),
        "not masked or scrubbed:\n{}",
        missed.join("\n")
    );
    let masked = masked.iter().map(|(n, f)| format!("{n}: {f}\n")).collect();
    Some((masked, scrubbed))
}

/// A password with a quote, a backslash, `<>&`, a space, non-ASCII characters in and beyond
/// the BMP (negative bytes in Java) and a tab.
pub const VALUE: &str = "S\u{fc}\"p\\<a>&b \u{20ac}x\u{1f511}y\tz";

const GO_BYTES: &str = r#"package main

import (
	"fmt"
	"os"
)

func main() {
	b := []byte(os.Getenv("SCOPEVAULT_SHOP_BUYER_PASSWORD"))
	fmt.Printf("go-v-bytes: %v\n", b)
	fmt.Println("go-println-bytes:", b)
}
"#;

const RUBY_BYTES: &str = r#"v = ENV['SCOPEVAULT_SHOP_BUYER_PASSWORD']
puts "rb-bytes: #{v.bytes.inspect}"
puts "rb-unpack: #{v.unpack('C*')}"
"#;

const JAVA_BYTES: &str = r#"import java.nio.charset.StandardCharsets;
import java.util.Arrays;

public class W {
  public static void main(String[] a) {
    byte[] b = System.getenv("SCOPEVAULT_SHOP_BUYER_PASSWORD").getBytes(StandardCharsets.UTF_8);
    System.out.println("java-bytes: " + Arrays.toString(b));
  }
}
"#;

/// Found by attacking `exec`'s masking with real writers (thirty-second pass): a byte array
/// holding the password, printed in decimal as Go (`fmt.Println(body)` of a `[]byte`: `[83
/// 195 188 …]`), Ruby (`bytes.inspect`: `[83, 195, 188, …]`) and Java
/// (`Arrays.toString(bytes)`, signed: `[83, -61, -68, …]`) print it, was neither masked nor
/// scrubbed.
#[test]
fn regression_a_byte_array_printed_in_decimal_by_go_ruby_and_java_is_masked_and_scrubbed() {
    assert_masked_and_scrubbed(
        VALUE,
        &[
            (Lang::Go, GO_BYTES),
            (Lang::Ruby, RUBY_BYTES),
            (Lang::Java, JAVA_BYTES),
        ],
        &[
            ("go-v-bytes", "[83 195 188 34 112 92 "),
            ("go-println-bytes", "[83 195 188 "),
            ("rb-bytes", "[83, 195, 188, 34, "),
            ("rb-unpack", "[83, 195, 188, "),
            ("java-bytes", "[83, -61, -68, 34, "),
        ],
    );
}

/// A password with `#{`, `#$` and `#@` (which Ruby's `inspect` escapes so it reads back
/// without interpolating), a quote, a backslash, ESC, U+2028 and non-ASCII characters in and
/// beyond the BMP.
const RUBY_VALUE: &str = "K#{x}#$y#@z\"\\\u{1b}\u{2028}\u{fc} \u{1f511}q";

const RUBY_INSPECT: &str = r#"require 'logger'
require 'pp'
v = ENV['SCOPEVAULT_SHOP_BUYER_PASSWORD']
$stdout.sync = true
print "rb-p: "; p v
puts "rb-hash: #{{ 'password' => v }.inspect}"
print "rb-pp: "; pp({ 'password' => v, 'user' => 'buyer' })
puts "rb-body: #{v.b.inspect}"
puts "rb-dump: #{v.dump}"
Logger.new($stdout).info("rb-logger: #{{ password: v }}")
"#;

/// Found by attacking `exec`'s masking with real writers (thirty-second pass): Ruby's `p`,
/// `inspect` and `pp` of a password holding `#{` (`"K\#{x}…"`) or ESC (`\e`), its `inspect`
/// as a binary string (a `Net::HTTP` body: `"S\xC3\xBC…"`, upper-case hex) and `String#dump`
/// (`\u00FC`, `\u{1F511}`) were neither masked nor scrubbed.
#[test]
fn regression_ruby_inspect_binary_inspect_and_dump_of_the_password_are_masked_and_scrubbed() {
    assert_masked_and_scrubbed(
        RUBY_VALUE,
        &[(Lang::Ruby, RUBY_INSPECT)],
        &[
            ("rb-p", r#""K\#{x}\#$y\#@z\"\\\e\u2028ü"#),
            ("rb-hash", r#"{"password"=>"K\#{x}"#),
            ("rb-pp", r#""K\#{x}\#$y"#),
            ("rb-body", r#"\e\xE2\x80\xA8\xC3\xBC \xF0\x9F\x94\x91q""#),
            ("rb-dump", r#"\e\u2028\u00FC \u{1F511}q""#),
            ("rb-logger", r#"{:password=>"K\#{x}"#),
        ],
    );
}

/// A password with the characters a properties file escapes (`=`, `:`, `#`, `!`, `\`) and
/// non-ASCII characters in and beyond the BMP.
const PROPERTIES_VALUE: &str = "Pw=1:2!#x\\y \u{fc}\u{1f511}q";

const JAVA_PROPERTIES: &str = r#"import java.io.*;
import java.nio.charset.StandardCharsets;
import java.util.Properties;

public class W {
  static String last(String text) {
    String[] lines = text.split("\n");
    return lines[lines.length - 1];
  }

  public static void main(String[] a) throws IOException {
    Properties p = new Properties();
    p.setProperty("password", System.getenv("SCOPEVAULT_SHOP_BUYER_PASSWORD"));
    ByteArrayOutputStream stream = new ByteArrayOutputStream();
    p.store(stream, "check settings");
    System.out.println("java-props-stream: " + last(stream.toString(StandardCharsets.ISO_8859_1)));
    StringWriter writer = new StringWriter();
    p.store(writer, null);
    System.out.println("java-props-writer: " + last(writer.toString()));
  }
}
"#;

/// Found by attacking `exec`'s masking with real writers (thirty-second pass): a password
/// written by Java's `Properties.store` (a check saving its settings as an artefact), where
/// `=`, `:`, `#` and `!` get a backslash (`Pw\=1\:2\!\#x`) and, to a stream, non-ASCII
/// characters are `\u00FC`, `\uD83D\uDD11`, was neither masked nor scrubbed.
#[test]
fn regression_a_password_in_a_java_properties_file_is_masked_and_scrubbed() {
    assert_masked_and_scrubbed(
        PROPERTIES_VALUE,
        &[(Lang::Java, JAVA_PROPERTIES)],
        &[
            (
                "java-props-stream",
                r"password=Pw\=1\:2\!\#x\\y \u00FC\uD83D\uDD11q",
            ),
            (
                "java-props-writer",
                "password=Pw\\=1\\:2\\!\\#x\\\\y \u{fc}\u{1f511}q",
            ),
        ],
    );
}

/// A password with a quote, a backslash, a bell, ESC, a soft hyphen (U+00AD, which Go does
/// not print) and non-ASCII characters in and beyond the BMP.
const GO_VALUE: &str = "Gq\"\\\u{7}\u{1b}\u{ad}\u{fc}\u{20ac} \u{1f511}z";

const GO_QUOTE: &str = r#"package main

import (
	"fmt"
	"log"
	"os"
	"strconv"
)

func main() {
	v := os.Getenv("SCOPEVAULT_SHOP_BUYER_PASSWORD")
	fmt.Printf("go-q: %q\n", v)
	fmt.Printf("go-plus-q: %+q\n", v)
	fmt.Println("go-quote-ascii:", strconv.QuoteToASCII(v))
	log.SetOutput(os.Stdout)
	log.Printf("go-log: login failed for %+q", v)
}
"#;

/// Found by attacking `exec`'s masking with real writers (thirty-second pass): Go's ASCII-only
/// quoting of a password (`%+q`, `strconv.QuoteToASCII`: `\u00fc`, `\U0001f511`, lower-case
/// hex) and its `%q` of a password holding a character Go does not print (`\u00ad`) or a
/// bell (`\a`) were neither masked nor scrubbed.
#[test]
fn regression_go_quoting_of_the_password_is_masked_and_scrubbed() {
    assert_masked_and_scrubbed(
        GO_VALUE,
        &[(Lang::Go, GO_QUOTE)],
        &[
            (
                "go-q",
                "\"Gq\\\"\\\\\\a\\x1b\\u00ad\u{fc}\u{20ac} \u{1f511}z\"",
            ),
            (
                "go-plus-q",
                r#""Gq\"\\\a\x1b\u00ad\u00fc\u20ac \U0001f511z""#,
            ),
            ("go-quote-ascii", r"\u00fc\u20ac \U0001f511z"),
            ("go-log", r"\u00fc\u20ac \U0001f511z"),
        ],
    );
}

/// A 64-character API token: its base64 (88 characters) is longer than a line of Ruby's
/// `encode64` (60) and of a MIME encoder (76).
const TOKEN: &str = "tok_4f9a1c7e2b8d6053/9e1f7a2c4b6d8e0f+1a3c5e7g9i2k4m6o8q0s=uwyAC";

const RUBY_WRAPPED: &str = r#"require 'base64'
v = ENV['SCOPEVAULT_SHOP_BUYER_PASSWORD']
puts "rb-encode64: #{Base64.encode64(v)}"
puts "rb-basic: Authorization: Basic #{Base64.encode64("buyer:#{v}")}"
"#;

const JAVA_MIME: &str = r#"import java.nio.charset.StandardCharsets;
import java.util.Base64;

public class W {
  public static void main(String[] a) {
    byte[] b = System.getenv("SCOPEVAULT_SHOP_BUYER_PASSWORD").getBytes(StandardCharsets.UTF_8);
    System.out.println("java-mime: " + Base64.getMimeEncoder().encodeToString(b));
  }
}
"#;

/// Found by attacking `exec`'s masking with real writers (thirty-second pass): the base64 of
/// a value longer than 45 bytes wrapped into lines, by Ruby's `Base64.encode64` (60 columns;
/// a Basic header built with it, the classic Ruby mistake) and Java's MIME encoder (76
/// columns, CRLF), was neither masked nor scrubbed: no form spans a line break.
#[test]
fn regression_base64_wrapped_into_lines_by_ruby_and_java_is_masked_and_scrubbed() {
    assert_masked_and_scrubbed(
        TOKEN,
        &[(Lang::Ruby, RUBY_WRAPPED), (Lang::Java, JAVA_MIME)],
        &[
            (
                "rb-encode64",
                "dG9rXzRmOWExYzdlMmI4ZDYwNTMvOWUxZjdhMmM0YjZkOGUwZisxYTNjNWU3\n",
            ),
            ("rb-basic", "Authorization: Basic YnV5ZXI6dG9r"),
            ("java-mime", "\r\n"),
        ],
    );
}

/// A password with RFC 3986's sub-delimiters, which Go's URL encoders keep or not by part,
/// `@`, a space and a non-ASCII character.
const URL_VALUE: &str = "Pw=1:2!$x,y;z@k&m+n \u{e9}";

const GO_URL: &str = r#"package main

import (
	"fmt"
	"net/url"
	"os"
)

func main() {
	v := os.Getenv("SCOPEVAULT_SHOP_BUYER_PASSWORD")
	fmt.Println("go-path-escape: /login/" + url.PathEscape(v))
	u := url.URL{Scheme: "https", Host: "shop.example.com", Path: "/", User: url.UserPassword("buyer", v)}
	fmt.Println("go-userinfo:", u.String())
}
"#;

/// Found by attacking `exec`'s masking with real writers (thirty-second pass): Go's
/// `url.PathEscape` of a password (`$&+:=@` kept, `!` and the space as `%21`, `%20`) and a
/// `url.URL` holding it as its userinfo (`url.UserPassword`; `:` and `@` encoded, `$&+,;=`
/// kept) printed whole were neither masked nor scrubbed.
#[test]
fn regression_go_url_path_escape_and_userinfo_of_the_password_are_masked_and_scrubbed() {
    assert_masked_and_scrubbed(
        URL_VALUE,
        &[(Lang::Go, GO_URL)],
        &[
            ("go-path-escape", "Pw=1:2%21$x%2Cy%3Bz@k&m+n%20%C3%A9"),
            (
                "go-userinfo",
                "buyer:Pw=1%3A2%21$x,y;z%40k&m+n%20%C3%A9@shop",
            ),
        ],
    );
}
