//! `exec`'s masking and the scrub against what real Node.js programs print when a check's
//! author writes its secret by accident (thirty-third pass): synthetic checks are often plain
//! Node.js or Playwright Test in JavaScript. Each writer is a CommonJS file run by the real
//! `node` (`super::languages`: a missing `node` is a skip, and a failure under `CI=true`).

use super::languages::{assert_masked_and_scrubbed, Lang, VALUE};
use super::playwright::playwright_test_modules;
use crate::common::redact_oracle::skip;

/// A password with both quotes and a backtick (so Node's `util.inspect` picks `'` and escapes
/// it), `${`, a backslash, `<>&`, spaces, non-ASCII characters in and beyond the BMP and a tab.
const QUOTES_VALUE: &str = "Qu'o\"te`\\ <a>&b ${x} \u{fc}\u{20ac}\u{1f511}\tz";

/// The prelude of every writer: the password, and `say(NAME, TEXT)` printing `NAME: TEXT`.
const PRELUDE: &str = r#"const util = require('util');
const v = process.env.SCOPEVAULT_SHOP_BUYER_PASSWORD;
const say = (name, ...text) => console.log(`${name}:`, ...text);
"#;

const NODE_DISPLAYS: &str = r#"const assert = require('assert');
const querystring = require('querystring');
say('node-log-object', { user: 'buyer', password: v });
say('node-log-array', [v]);
say('node-log-map', new Map([['password', v]]));
say('node-log-nested', { check: { login: { password: v } } });
say('node-log-env', Object.fromEntries(Object.entries(process.env).filter(([k]) => k.endsWith('_PASSWORD'))));
say('node-format-o', util.format('%o', v));
say('node-format-j', util.format('%j', { password: v }));
say('node-json', JSON.stringify({ password: v }));
say('node-json-indent', JSON.stringify({ login: { password: v } }, null, 2));
say('node-error', Object.assign(new Error(`login failed for ${v}`), { password: v }));
try { assert.strictEqual(v, 'nope'); } catch (e) { say('node-assert', e.message); }
try { assert.deepStrictEqual({ password: v }, { password: 'nope' }); } catch (e) { say('node-assert-deep', e.message); }
say('node-table', '');
console.table([{ user: 'buyer', password: v }]);
const b = Buffer.from(v);
say('node-buffer', b);
say('node-hex', b.toString('hex'));
say('node-base64', b.toString('base64'));
say('node-base64url', b.toString('base64url'));
say('node-encode-uri-component', encodeURIComponent(v));
say('node-encode-uri', encodeURI(v));
say('node-search-params', new URLSearchParams({ user: 'buyer', password: v }).toString());
say('node-querystring', querystring.stringify({ password: v }));
const u = new URL('https://shop.example.com/login');
u.username = 'buyer';
u.password = v;
say('node-url-password', u.href);
say('node-url-inspect', u);
say('node-url-query', new URL(`https://shop.example.com/login?password=${v}`).href);
const q = new URL('https://shop.example.com/login');
q.searchParams.set('password', v);
say('node-url-search-params', q.toString());
try { new URL(`https://buyer:${v}@shop.example.com/`); } catch (e) { say('node-url-invalid', e); }
say('node-fetch-headers', { method: 'GET', headers: { authorization: `Bearer ${v}` } });
"#;

/// What a Node.js check prints by accident that was masked and scrubbed before this pass, for
/// two hostile passwords: `console.log` of objects, arrays, a `Map`, nested objects and
/// `process.env` (Node's own quoting: `'Qu\'o"te`…'`), `util.format`'s `%o` and `%j`,
/// `JSON.stringify` with and without indentation, an `Error` with the password in its
/// message and a property, `assert`'s messages, `console.table`, a `Buffer`, its hex and
/// base64, `encodeURIComponent`, `encodeURI`, `URLSearchParams`, `querystring`, a `URL` with
/// the password set (`href` and the object), in its query, refused as invalid (its `input`),
/// and a fetch's headers.
#[test]
fn node_displays_of_the_password_are_masked_and_scrubbed() {
    let source = format!("{PRELUDE}{NODE_DISPLAYS}");
    for (value, expect) in [
        (
            QUOTES_VALUE,
            [
                ("node-log-object", r#"password: 'Qu\'o"te`\\ <a>&b ${x} "#),
                ("node-table", r#"'Qu\'o"te`\\"#),
                ("node-buffer", "<Buffer 51 75 27 6f 22 74 65 60 5c 20 "),
                (
                    "node-url-password",
                    "buyer:Qu'o%22te%60%5C%20%3Ca%3E&b%20$%7Bx%7D",
                ),
            ],
        ),
        (
            VALUE,
            [
                ("node-log-object", r#"password: 'Sü"p\\<a>&b €x🔑y\tz'"#),
                ("node-table", r#"'Sü"p\\<a>&b €x🔑y\tz'"#),
                ("node-buffer", "<Buffer 53 c3 bc 22 70 5c "),
                ("node-url-password", "buyer:S%C3%BC%22p%5C%3Ca%3E&b%20"),
            ],
        ),
    ] {
        assert_masked_and_scrubbed(value, &[(Lang::Node, &source)], &expect);
    }
}

const NODE_BYTES: &str = r#"const bytes = new TextEncoder().encode(v);
say('node-buffer-json', JSON.stringify({ status: 200, body: Buffer.from(v) }));
say('node-bytes-text', `${bytes}`);
say('node-bytes-join', Array.from(bytes).join());
"#;

/// Found by attacking `exec`'s masking with real Node.js writers (thirty-third pass): a
/// `Buffer` in JSON (`JSON.stringify` of a response holding its body:
/// `{"type":"Buffer","data":[81,117,39,…]}`) and a typed array as text (`${bytes}`,
/// `Array.from(bytes).join()`: `81,117,39,…`), the password's bytes in decimal between bare
/// commas, were neither masked nor scrubbed.
#[test]
fn regression_node_bytes_in_decimal_between_commas_are_masked_and_scrubbed() {
    let source = format!("{PRELUDE}{NODE_BYTES}");
    for (value, data) in [
        (QUOTES_VALUE, "\"data\":[81,117,39,111,34,116,101,96,92,32,"),
        (VALUE, "\"data\":[83,195,188,34,112,92,60,"),
    ] {
        assert_masked_and_scrubbed(
            value,
            &[(Lang::Node, &source)],
            &[
                ("node-buffer-json", data),
                ("node-bytes-text", &data[8..20]),
                ("node-bytes-join", &data[8..20]),
            ],
        );
    }
}

/// A hostile password of Latin-1 characters only (so `btoa` takes it), without a backslash
/// (so a URL built by concatenation holds it as its userinfo): both quotes, a backtick, `${`,
/// `<>&`, spaces, `ü`, `ß`, `é`, a tab, and `=` and `|` (which a URL's userinfo encodes and
/// its path keeps).
const LATIN1_VALUE: &str = "Gr\u{fc}\u{df}e \"<a>&'`${x}\t\u{e9}=1|2!";

const NODE_BTOA: &str = r#"say('node-btoa-basic', `Authorization: Basic ${btoa(`buyer:${v}`)}`);
say('node-btoa', btoa(v));
say('node-latin1-base64url', Buffer.from(v, 'latin1').toString('base64url'));
say('node-headers', new Headers({ authorization: `Basic ${btoa(`buyer:${v}`)}` }));
"#;

/// Found by attacking `exec`'s masking with real Node.js writers (thirty-third pass): the
/// Basic header a JavaScript check builds with `btoa(user + ':' + password)` encodes each
/// character up to U+00FF as one byte (Latin-1), not as UTF-8: for a password with `ü`, `ß`
/// or `é`, the header printed (as text or in a `Headers` object), `btoa(password)` and
/// `Buffer.from(password, 'latin1')`'s base64 were neither masked nor scrubbed.
#[test]
fn regression_btoa_and_latin1_base64_of_the_password_are_masked_and_scrubbed() {
    let source = format!("{PRELUDE}{NODE_BTOA}");
    let Some((masked, scrubbed)) = assert_masked_and_scrubbed(
        LATIN1_VALUE,
        &[(Lang::Node, &source)],
        &[
            ("node-btoa-basic", "Authorization: Basic YnV5ZXI6R3L832Ug"),
            ("node-btoa", "R3L832Ug"),
            ("node-latin1-base64url", "R3L832Ug"),
            ("node-headers", "authorization: 'Basic YnV5ZXI6R3L832Ug"),
        ],
    ) else {
        return;
    };
    // The whole `buyer:password` pair is replaced, as its UTF-8 base64 is.
    for text in [&masked, &scrubbed] {
        assert!(
            text.contains("node-btoa-basic: Authorization: Basic [redacted:shop-buyer.password]\n"),
            "{text}"
        );
    }
}

const NODE_URL_CONCAT: &str = r#"say('node-url-userinfo', new URL(`https://buyer:${v}@shop.example.com/login`).href);
say('node-url-userinfo-inspect', new URL(`https://buyer:${v}@shop.example.com/login`));
"#;

/// Found by attacking `exec`'s masking with real Node.js writers (thirty-third pass): a URL
/// built by concatenation with the password as its userinfo
/// (`new URL('https://buyer:' + password + '@shop…')`), whose parser drops a tab, was
/// neither masked nor scrubbed: only the setter's serialisation (`url.password = v`, which
/// keeps the tab as `%09`) was a form.
#[test]
fn regression_a_url_with_the_password_as_its_userinfo_by_concatenation_is_masked_and_scrubbed() {
    let source = format!("{PRELUDE}{NODE_URL_CONCAT}");
    assert_masked_and_scrubbed(
        LATIN1_VALUE,
        &[(Lang::Node, &source)],
        &[
            (
                "node-url-userinfo",
                "buyer:Gr%C3%BC%C3%9Fe%20%22%3Ca%3E&'%60$%7Bx%7D%C3%A9%3D1%7C2!@shop",
            ),
            (
                "node-url-userinfo-inspect",
                "password: \"Gr%C3%BC%C3%9Fe%20",
            ),
        ],
    );
}

/// A PEM private key (not a real one), as a vault holds one imported from a file: without its
/// file's trailing newline.
const KEY: &str = "-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj
MzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu
NMoSfm76oqFvAp8Gy0iz5sxjZmSnXyCdPEovGhLa0VzMaQ8s+CLOyS56YyCFGeJZ
qgtzJ6GR3eqoYSW9b9UMvkBpZODSctWSNGj3P7jRFDO5VoTwCQAWbFnOjDfH5Ulg
-----END PRIVATE KEY-----";

/// A passphrase of two lines, long enough for Node to split it (more than 76 characters): the
/// first with `"` and a backslash, the last with `'`, so Node quotes the pieces differently
/// (`'…\n' +` and `"…'two'…"`), with non-ASCII characters and a tab.
const LINES_VALUE: &str =
    "Gr\u{fc}n \"one\" \\ x, the first line of a passphrase\nzwei 'two' \u{1f511}\tend of the second";

const NODE_LINES: &str = r#"say('node-lines-object', { tls: { key: v, passphrase: null } });
say('node-lines-env', { HOME: '/home/check', SCOPEVAULT_SHOP_BUYER_PASSWORD: v });
say('node-lines-array', [v]);
"#;

/// Found by attacking `exec`'s masking with real Node.js writers (thirty-third pass): Node's
/// `util.inspect` (`console.log` of an object, of `process.env`) writes a string of more than
/// 16 characters that holds newlines as one string per line joined by ` +` over lines
/// (`'MIIEvQIB…\n' +`), which no form matched: every line of a PEM key logged in a check's
/// TLS options was left in the output and in the file.
#[test]
fn regression_node_inspect_of_a_value_split_at_its_newlines_is_masked_and_scrubbed() {
    let source = format!("{PRELUDE}{NODE_LINES}");
    let body: Vec<&str> = KEY.lines().filter(|l| !l.starts_with("-----")).collect();
    for (value, first, left) in [
        (
            KEY,
            "key: '-----BEGIN PRIVATE KEY-----\\n' +\n      'MIIEvQIB",
            body,
        ),
        (
            LINES_VALUE,
            "'Grün \"one\" \\\\ x, the first line of a passphrase\\n' +\n",
            vec!["Grün \"one\"", "zwei 'two'"],
        ),
    ] {
        let Some((masked, scrubbed)) = assert_masked_and_scrubbed(
            value,
            &[(Lang::Node, &source)],
            &[
                ("node-lines-object", first),
                ("node-lines-env", "SCOPEVAULT_SHOP_BUYER_PASSWORD: "),
                ("node-lines-array", "' +\n"),
            ],
        ) else {
            return;
        };
        for line in left {
            assert!(!masked.contains(line), "exec left {line:?}:\n{masked}");
            assert!(
                !scrubbed.contains(line),
                "redact left {line:?}:\n{scrubbed}"
            );
        }
    }
}

const NODE_FETCH: &str = r#"const init = { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user: 'buyer', password: v }) };
say('node-fetch-init', init);
say('node-fetch-body', util.inspect(init.body));
"#;

/// Found by attacking `exec`'s masking with real Node.js writers (thirty-third pass): a
/// fetch's options logged before the request (`console.log(init)`, its `body` a
/// `JSON.stringify({ password })`) show the JSON text as Node quotes a string: the JSON's
/// `\"` and `\\` escaped once more (`'{"password":"Qu\'o\\"te`\\\\ …'`); a password with a
/// quote or a backslash was neither masked nor scrubbed.
#[test]
fn regression_node_inspect_of_the_json_text_of_the_password_is_masked_and_scrubbed() {
    let source = format!("{PRELUDE}{NODE_FETCH}");
    for (value, body) in [
        (
            QUOTES_VALUE,
            r#"body: '{"user":"buyer","password":"Qu\'o\\"te`\\\\ "#,
        ),
        (VALUE, r#"body: '{"user":"buyer","password":"Sü\\"p\\\\<a>"#),
    ] {
        assert_masked_and_scrubbed(
            value,
            &[(Lang::Node, &source)],
            &[("node-fetch-init", body), ("node-fetch-body", r"\\t")],
        );
    }
}

const NODE_REPORT: &str = r#"const attachment = (name, body) => ({ name, contentType: 'application/json', body: Buffer.from(body).toString('base64') });
say('pw-json-report', JSON.stringify({ suites: [{ specs: [{ tests: [{ results: [{ attachments: [attachment('payload', JSON.stringify({ user: 'buyer', password: v }))] }] }] }] }] }));
say('pw-json-report-indented', JSON.stringify({ attachments: [attachment('login', JSON.stringify({ login: { password: v } }, null, 2))] }, null, 2));
"#;

/// Found by attacking `exec`'s masking with real Node.js writers (thirty-third pass): a
/// Playwright JSON report (`reporter: 'json'`, on the standard output or in a file) keeps an
/// attachment's `body` as base64 (`test.info().attach('payload', { body:
/// JSON.stringify({ password }) })`; checked with the real reporter of the pinned
/// `@playwright/test`); the password's JSON escaping in it (`\"`, `\\`, `\t`) is not the value,
/// so no embedded base64 form matched a password with a quote, a backslash or a control, and
/// the report kept it. The writer builds the report's shape as the reporter writes it.
#[test]
fn regression_the_base64_of_a_json_attachment_holding_the_password_is_masked_and_scrubbed() {
    let source = format!("{PRELUDE}{NODE_REPORT}");
    for value in [QUOTES_VALUE, VALUE] {
        assert_masked_and_scrubbed(
            value,
            &[(Lang::Node, &source)],
            &[
                ("pw-json-report", "\"attachments\":[{\"name\":\"payload\""),
                (
                    "pw-json-report-indented",
                    "\"body\": \"ewogICJsb2dpbiI6IHsKICAgICJwYXNzd29yZCI6ICJ",
                ),
            ],
        );
    }
}

const NODE_EXPECT: &str = r#"const fail = (name, check) => { try { check(); } catch (e) { say(name, e.message); } };
fail('pw-expect-to-be', () => expect(v).toBe('nope'));
fail('pw-expect-to-equal', () => expect({ password: v }).toEqual({ password: 'nope' }));
fail('pw-expect-to-contain', () => expect(v).toContain('not in it'));
"#;

/// Found by attacking `exec`'s masking with a real Playwright Test (thirty-third pass): a
/// failed `expect` (`expect(password).toBe(…)`, `toEqual`, `toContain`) shows a string as
/// Jest's pretty-format writes it, `"` and `\` after a backslash and a tab as it is
/// (`Received: "Qu'o\"te`\\ …🔑<TAB>z"`), which no form matched for a password with a
/// control character: the assertion's message kept it whole.
#[test]
fn regression_a_failed_playwright_expect_of_the_password_is_masked_and_scrubbed() {
    let modules = match playwright_test_modules() {
        Ok(m) => m,
        Err(why) => {
            skip(&why);
            return;
        }
    };
    let source = format!(
        "{PRELUDE}const {{ expect }} = require({:?});\n{NODE_EXPECT}",
        modules.join("@playwright/test")
    );
    for (value, received) in [
        (
            QUOTES_VALUE,
            "Received: \"Qu'o\\\"te`\\\\ <a>&b ${x} \u{fc}\u{20ac}\u{1f511}\tz\"",
        ),
        (
            LATIN1_VALUE,
            "Received: \"Gr\u{fc}\u{df}e \\\"<a>&'`${x}\t\u{e9}=1|2!\"",
        ),
    ] {
        assert_masked_and_scrubbed(
            value,
            &[(Lang::Node, &source)],
            &[
                ("pw-expect-to-be", received),
                ("pw-expect-to-equal", "\"password\": \""),
                ("pw-expect-to-contain", "Received string:    \""),
            ],
        );
    }
}
