//! Arbitrary bytes as policy.toml: the parser, the lint, every report format and the error
//! renderer never panic, and a policy that parses exports canonical TOML that parses back to
//! the same canonical TOML (the fixed point `policy export` promises).
#![no_main]

use libfuzzer_sys::fuzz_target;
use scopevault::policy::lint::{lint_source, Class, LintOptions};
use scopevault::policy::Policy;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let opts = LintOptions::new(time::macros::date!(2026 - 06 - 01));
    if let Ok(report) = lint_source(src, "policy.toml", &opts) {
        for f in report.findings() {
            assert!(f.span.end <= src.len());
        }
        let _ = report.render_text(true);
        let _ = report.render_json();
        let _ = report.render_sarif();
        let _ = report.render_junit(Class::Suggestion);
    }
    match Policy::parse(src, "policy.toml") {
        Ok(p) => {
            let c1 = p.to_canonical_toml();
            let p2 = Policy::parse(&c1, "export.toml").expect("canonical TOML parses");
            assert_eq!(
                p2.to_canonical_toml(),
                c1,
                "canonical TOML is a fixed point"
            );
        }
        Err(e) => {
            let _ = e.render(Some(src));
        }
    }
});
