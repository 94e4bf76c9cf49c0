//! docs/security.md cites tests as its evidence; every cited test must exist where it is
//! cited (issue 16, item 12).
//!
//! A citation is a backticked snake_case name with at least three underscores (test names are
//! sentences). It is looked up as `fn NAME(` in the file cited before it in the same table cell
//! or paragraph (`tests/x.rs`, `x.rs` for `tests/x.rs`, `src/...rs`); a name with no file
//! before it must be a function somewhere under tests/ or src/. A `module::tests::name` path
//! names the function `name` under src/.

use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn defines(text: &str, name: &str) -> bool {
    text.contains(&format!("fn {name}("))
}

/// A cited file as a path under the repository: `tests/x.rs` and `src/a/b.rs` as written,
/// `x.rs` as `tests/x.rs`.
fn cited_file(token: &str) -> Option<String> {
    if !token.ends_with(".rs") || token.contains(' ') {
        return None;
    }
    Some(if token.contains('/') {
        token.to_owned()
    } else {
        format!("tests/{token}")
    })
}

fn test_name(token: &str) -> Option<&str> {
    let name = token.rsplit("::").next()?;
    let ok = name.matches('_').count() >= 3
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.starts_with(|c: char| c.is_ascii_lowercase());
    ok.then_some(name)
}

/// Every (cited file or None, test name) in the document, in order.
fn citations(doc: &str) -> Vec<(Option<String>, String)> {
    let mut out = Vec::new();
    let mut file: Option<String> = None;
    for line in doc.lines() {
        if line.trim().is_empty() || line.starts_with('#') {
            file = None;
        }
        let table = line.starts_with('|');
        // Table cells (or the whole prose line), each a run of text with backticked tokens.
        let cells: Vec<&str> = if table {
            line.split('|').collect()
        } else {
            vec![line]
        };
        for cell in cells {
            if table {
                file = None;
            }
            for (i, token) in cell.split('`').enumerate() {
                if i % 2 == 0 {
                    continue;
                }
                if let Some(f) = cited_file(token) {
                    file = Some(f);
                } else if let Some(name) = test_name(token) {
                    let f = if token.contains("::") && !token.starts_with("tests::") {
                        None // a `module::tests::name` path: somewhere under src/
                    } else {
                        file.clone()
                    };
                    out.push((f, name.to_owned()));
                }
            }
        }
    }
    out
}

#[test]
fn every_test_docs_security_md_cites_exists_where_it_is_cited() {
    let doc = std::fs::read_to_string(root().join("docs/security.md")).unwrap();
    let mut all = Vec::new();
    rust_files(&root().join("tests"), &mut all);
    rust_files(&root().join("src"), &mut all);
    let sources: Vec<(PathBuf, String)> = all
        .into_iter()
        .map(|p| {
            let t = std::fs::read_to_string(&p).unwrap();
            (p, t)
        })
        .collect();
    let cited = citations(&doc);
    let mut wrong = Vec::new();
    for (file, name) in &cited {
        let found_in: Vec<String> = sources
            .iter()
            .filter(|(_, t)| defines(t, name))
            .map(|(p, _)| p.strip_prefix(root()).unwrap().display().to_string())
            .collect();
        match file {
            Some(f) if !found_in.iter().any(|p| p == f) => wrong.push(format!(
                "`{name}` is cited in {f} but defined in {found_in:?}"
            )),
            None if found_in.is_empty() => wrong.push(format!("`{name}` is defined nowhere")),
            _ => {}
        }
    }
    println!("docs/security.md cites {} tests", cited.len());
    assert!(
        cited.len() >= 20,
        "the citation finder found too few to be working: {cited:?}"
    );
    assert!(wrong.is_empty(), "wrong citations:\n{}", wrong.join("\n"));
}

#[test]
fn the_citation_finder_reads_files_cells_and_module_paths() {
    let doc = "| a | `tests/x.rs` `one_two_three_four`; `y.rs` `five_six_seven_eight` | \
               `nine_ten_eleven_twelve` |\n\nsee `secret::tests::a_b_c_d` and `audit_seq`\n";
    assert_eq!(
        citations(doc),
        vec![
            (Some("tests/x.rs".into()), "one_two_three_four".into()),
            (Some("tests/y.rs".into()), "five_six_seven_eight".into()),
            (None, "nine_ten_eleven_twelve".into()),
            (None, "a_b_c_d".into()),
        ]
    );
}
