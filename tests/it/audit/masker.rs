//! The streaming masker used by `scopevault exec` (secret::Masker): every form of every value
//! is replaced however the output is split into reads.
//!
//! The forms are the leak audit's oracle (tests/it/common/leak.rs, encoders written independently
//! of src/secret.rs), never the product's own `mask_forms`: a form the masker's list lacks
//! fails here. tests/it/redact/forms.rs checks Python's encoders and a hand-written table too.

use crate::common::leak;

use proptest::prelude::*;
use scopevault::secret::{mask_forms, Masker, SecretString};

/// The oracle's forms of `v` that the masker promises to replace: all of them except the
/// Rust `Debug` escaping (which no encoder a check uses writes) and forms shorter than the
/// masker's minimum (4 bytes; 6 for base64 embedded at an offset).
fn oracle_forms(v: &str) -> Vec<Vec<u8>> {
    leak::forms_of("s", v.as_bytes())
        .into_iter()
        .filter(|f| f.name != "rust-debug")
        .filter(|f| f.bytes.len() >= if f.name.contains("embedded") { 6 } else { 4 })
        .map(|f| f.bytes)
        .collect()
}

/// The marker texts of a label: plain, and percent-encoded for URL forms.
fn markers(label: &str) -> [String; 3] {
    [
        format!("[redacted:{label}]"),
        format!("%5Bredacted%3A{label}%5D"),
        format!("%5bredacted%3a{label}%5d"),
    ]
}

fn masker(values: &[(&str, &str)]) -> Masker {
    Masker::new(
        values
            .iter()
            .map(|(l, v)| (l.to_string(), SecretString::from(v.to_string())))
            .collect(),
    )
}

fn run_chunked(values: &[(&str, &str)], text: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut m = masker(values);
    let mut out = Vec::new();
    let mut rest = text;
    let mut k = 0;
    while !rest.is_empty() {
        let n = sizes
            .get(k % sizes.len().max(1))
            .copied()
            .unwrap_or(1)
            .clamp(1, rest.len());
        out.extend(m.feed(&rest[..n]));
        rest = &rest[n..];
        k += 1;
    }
    out.extend(m.finish());
    out
}

fn one_shot(values: &[(&str, &str)], text: &[u8]) -> Vec<u8> {
    let mut m = masker(values);
    let mut out = m.feed(text);
    out.extend(m.finish());
    out
}

#[test]
fn every_form_of_the_independent_oracle_is_replaced() {
    // (value, distinct forms the oracle writes for it): an ASCII value without `<>&` or
    // `+/` in its base64 has fewer distinct forms (JSON, Go JSON and Python JSON coincide).
    for (v, count) in [
        ("p@ss w/\"x\"", 11),
        ("SVLK \"q\" b\\s %2F+/= &<b> \u{e9}\u{1f511}\nz-7Qx", 15),
    ] {
        let vals = [("shop.password", v)];
        let forms = oracle_forms(v);
        assert_eq!(forms.len(), count, "{} forms", forms.len());
        for form in forms {
            let mut text = b"before ".to_vec();
            text.extend_from_slice(&form);
            text.extend_from_slice(b" after");
            let out = String::from_utf8(one_shot(&vals, &text)).unwrap();
            assert!(
                markers("shop.password")
                    .iter()
                    .any(|m| out == format!("before {m} after")),
                "form {:?} gave {out:?}",
                String::from_utf8_lossy(&form)
            );
        }
    }
}

#[test]
fn a_value_split_at_every_position_is_masked() {
    let vals = [("c.token", "tok-0123456789"), ("c.password", "hunter22")];
    let text = b"a tok-0123456789 b hunter22hunter22 c tok-01234 d";
    let want = b"a [redacted:c.token] b [redacted:c.password][redacted:c.password] c tok-01234 d";
    assert_eq!(one_shot(&vals, text), want);
    for cut in 0..=text.len() {
        let mut m = masker(&vals);
        let mut out = m.feed(&text[..cut]);
        out.extend(m.feed(&text[cut..]));
        out.extend(m.finish());
        assert_eq!(out, want, "cut at {cut}");
    }
    // Byte by byte.
    assert_eq!(run_chunked(&vals, text, &[1]), want);
}

#[test]
fn held_back_bytes_are_bounded_by_the_longest_form() {
    let vals = [("c.password", "hunter22")];
    let longest = mask_forms("hunter22")
        .iter()
        .map(|f| f.len())
        .max()
        .unwrap();
    let mut m = masker(&vals);
    let mut emitted = 0;
    let text = b"xxxxxxxxxxxxxxxxxxxxhunte";
    emitted += m.feed(text).len();
    assert!(
        text.len() - emitted < longest,
        "held {} bytes",
        text.len() - emitted
    );
    // A prefix that turns out not to be the value is emitted unchanged at the end.
    emitted += m.finish().len();
    assert_eq!(emitted, text.len());
}

#[test]
fn longest_form_wins_when_one_contains_another() {
    // "abcd" is a value and "abcdefgh" another: the longer is replaced whole.
    let vals = [("a.short", "abcd"), ("a.long", "abcdefgh")];
    let text = b"abcdefgh abcdxyz";
    let want = b"[redacted:a.long] [redacted:a.short]xyz";
    assert_eq!(one_shot(&vals, text), want);
    for cut in 0..=text.len() {
        assert_eq!(
            run_chunked(&vals, text, &[cut.max(1), 1, 3]),
            want,
            "cut {cut}"
        );
    }
}

#[test]
fn no_values_passes_output_through() {
    let mut m = Masker::new(Vec::new());
    assert_eq!(m.feed(b"hello"), b"hello");
    assert!(m.finish().is_empty());
    assert!(!format!("{m:?}").contains("hello"));
}

fn text_strategy() -> impl Strategy<Value = (Vec<String>, Vec<u8>, Vec<usize>)> {
    let secrets = prop::collection::vec("[a-zA-Z0-9 @/+=%\"\\\\]{4,14}", 1..4);
    secrets.prop_flat_map(|secrets| {
        let n = secrets.len();
        let piece = prop_oneof![
            "[a-z .\n]{0,12}".prop_map(|s| (None, s)),
            (0..n, 0..8usize).prop_map(|(i, f)| (Some((i, f)), String::new())),
        ];
        let pieces = prop::collection::vec(piece, 0..12);
        let sizes = prop::collection::vec(1..12usize, 1..8);
        (Just(secrets), pieces, sizes).prop_map(|(secrets, pieces, sizes)| {
            let mut text = Vec::new();
            for (pick, filler) in pieces {
                match pick {
                    None => text.extend_from_slice(filler.as_bytes()),
                    Some((i, f)) => {
                        let forms = oracle_forms(&secrets[i]);
                        text.extend_from_slice(&forms[f % forms.len()]);
                    }
                }
            }
            (secrets, text, sizes)
        })
    })
}

proptest! {
    #[test]
    fn any_chunking_equals_one_shot_and_leaves_no_form((secrets, text, sizes) in text_strategy()) {
        let labels: Vec<String> = (0..secrets.len()).map(|i| format!("cred{i}.password")).collect();
        let vals: Vec<(&str, &str)> = labels.iter().map(String::as_str).zip(secrets.iter().map(String::as_str)).collect();
        let whole = one_shot(&vals, &text);
        let chunked = run_chunked(&vals, &text, &sizes);
        prop_assert_eq!(&chunked, &whole);
        // Between the markers, no form of any secret survives.
        let mut rest = String::from_utf8(chunked).unwrap();
        for l in &labels {
            for m in markers(l) {
                rest = rest.replace(&m, "\u{0}");
            }
        }
        for segment in rest.split('\u{0}') {
            for s in &secrets {
                for form in oracle_forms(s) {
                    let form = String::from_utf8(form).unwrap();
                    prop_assert!(!segment.contains(&form), "{:?} in {:?}", form, segment);
                }
            }
        }
    }
}

/// (seed, password, text, chunk sizes): a TOTP seed's base32 and a password, and a text of
/// filler, the seed in any mix of cases, the password, and the password in another case.
#[allow(clippy::type_complexity)]
fn seed_and_password_strategy() -> impl Strategy<Value = (String, String, Vec<u8>, Vec<usize>)> {
    let piece = prop_oneof![
        "[a-z .\n]{0,8}".prop_map(|s| (0u8, s)),
        "[01]{32}".prop_map(|s| (1u8, s)),
        Just((2u8, String::new())),
        Just((3u8, String::new())),
    ];
    (
        "[A-Z2-7]{16,32}",
        "[a-z]{3,6}[A-Z][a-z]{0,4}#",
        prop::collection::vec(piece, 0..12),
        prop::collection::vec(1..12usize, 1..8),
    )
        .prop_map(|(seed, password, pieces, sizes)| {
            let mut text = String::new();
            for (kind, s) in pieces {
                match kind {
                    0 => text.push_str(&s),
                    // The seed, each letter lowercased where the mask says 1.
                    1 => text.extend(seed.chars().zip(s.chars()).map(|(c, m)| {
                        if m == '1' {
                            c.to_ascii_lowercase()
                        } else {
                            c
                        }
                    })),
                    2 => text.push_str(&password),
                    _ => text.push_str(&password.to_ascii_uppercase()),
                }
                text.push(' ');
            }
            (seed, password, text.into_bytes(), sizes)
        })
}

proptest! {
    /// A TOTP seed's base32 is matched in any ASCII case, by an automaton of its own beside
    /// the one of the forms that match as they are (twenty-ninth pass): the two scanned as
    /// one give the same output however the text is split, leave the seed in no case, mask
    /// the password, and leave the password in another case as it was.
    #[test]
    fn a_seed_in_any_case_and_a_password_in_its_own_are_masked_across_chunks(
        (seed, password, text, sizes) in seed_and_password_strategy()
    ) {
        use scopevault::secret::{Patterns, Target};
        let patterns = std::sync::Arc::new(Patterns::new(&[
            Target {
                label: "shop.password".into(),
                value: SecretString::from(password.clone()),
                username: None,
                any_case: false,
            },
            Target {
                label: "shop.totp_seed".into(),
                value: SecretString::from(seed.clone()),
                username: None,
                any_case: true,
            },
        ]));
        let run = |sizes: &[usize]| {
            let mut m = Masker::with_patterns(patterns.clone());
            let mut out = Vec::new();
            let mut rest = &text[..];
            let mut k = 0;
            while !rest.is_empty() {
                let n = sizes[k % sizes.len()].clamp(1, rest.len());
                m.feed_into(&rest[..n], &mut out);
                rest = &rest[n..];
                k += 1;
            }
            out.extend(m.finish());
            String::from_utf8(out).unwrap()
        };
        let whole = run(&[usize::MAX]);
        prop_assert_eq!(&run(&sizes), &whole);
        prop_assert!(!whole.to_ascii_uppercase().contains(&seed), "{}", whole);
        prop_assert!(!whole.contains(&password), "{}", whole);
        let upper = password.to_ascii_uppercase();
        prop_assert_eq!(
            whole.matches(&upper).count(),
            String::from_utf8(text.clone()).unwrap().matches(&upper).count()
        );
    }
}
