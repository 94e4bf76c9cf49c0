//! Locations in the policy model: parse, canonical export (a fixed point), the per-location
//! subset a bundle carries, and refusals with file:line:col.

use scopevault::policy::Policy;

const R: &str = "age125gmrf8vq05hsrzadtlp3ctlp7lra7q2nrkvud85y7yklqyjecwq5fet9e";

fn policy() -> String {
    format!(
        r#"version = 1
[locations.fra]
recipient = "{R}"
[locations.ams]
recipient = "{R}"

[credentials.buyer]
kind = "login"
scopes = ["shop:login"]
[credentials.admin]
kind = "login"
scopes = ["shop:admin"]

[tasks.checkout]
needs = ["shop:login"]
credentials = ["buyer"]
locations = ["fra", "ams"]
[tasks.backoffice]
needs = ["shop:admin"]
credentials = ["admin"]
locations = ["fra"]

[[exceptions]]
rule = "scope-exceeds-task"
credential = "admin"
task = "backoffice"
scopes = ["shop:admin"]
reason = "r"
expires = "2099-01-01"
"#
    )
}

#[test]
fn locations_parse_and_export_canonically_as_a_fixed_point() {
    let p = Policy::parse(&policy(), "p.toml").unwrap();
    assert_eq!(
        p.locations().map(|(n, _)| n).collect::<Vec<_>>(),
        vec!["ams", "fra"]
    );
    assert_eq!(p.location("ams").unwrap().recipient(), R);
    assert_eq!(p.task("checkout").unwrap().locations(), vec!["fra", "ams"]);
    // A repeat is refused in new text; a stored policy holding one reads without it.
    let repeated = policy().replace(
        "locations = [\"fra\", \"ams\"]",
        "locations = [\"fra\", \"ams\", \"ams\"]",
    );
    let e = Policy::parse(&repeated, "p.toml").unwrap_err().to_string();
    assert!(
        e.contains("location `ams` is listed twice in the `locations` of task `checkout`"),
        "{e}"
    );
    let stored = Policy::parse_stored(&repeated, "<policy stored in the vault>").unwrap();
    assert_eq!(
        stored.task("checkout").unwrap().locations(),
        vec!["fra", "ams"]
    );
    assert_eq!(stored.to_canonical_toml(), p.to_canonical_toml());
    let c = p.to_canonical_toml();
    assert!(
        c.contains(&format!("[locations.ams]\nrecipient = \"{R}\"")),
        "{c}"
    );
    assert!(c.contains("locations = [\"ams\", \"fra\"]"), "{c}");
    let again = Policy::parse(&c, "c.toml").unwrap().to_canonical_toml();
    assert_eq!(c, again);
}

#[test]
fn a_policy_without_locations_exports_no_location_text() {
    let p = Policy::parse(
        "version = 1\n[credentials.a]\nkind = \"login\"\n[tasks.t]\ncredentials = [\"a\"]\n",
        "p",
    )
    .unwrap();
    assert!(!p.to_canonical_toml().contains("locations"));
}

#[test]
fn the_subset_holds_the_locations_tasks_credentials_and_exceptions_only() {
    let p = Policy::parse(&policy(), "p.toml").unwrap();
    let ams = p.location_subset_toml("ams");
    assert!(
        ams.contains("[tasks.checkout]") && !ams.contains("backoffice"),
        "{ams}"
    );
    assert!(ams.contains("[credentials.buyer]") && !ams.contains("[credentials.admin]"));
    assert!(ams.contains("[locations.ams]") && !ams.contains("[locations.fra]"));
    assert!(!ams.contains("[[exceptions]]"), "{ams}");
    assert!(ams.contains("locations = [\"ams\"]"));
    let fra = Policy::parse(&p.location_subset_toml("fra"), "fra").unwrap();
    assert_eq!(
        fra.tasks().map(|(n, _)| n).collect::<Vec<_>>(),
        vec!["backoffice", "checkout"]
    );
    assert_eq!(fra.exceptions().len(), 1);
    // A subset is itself canonical.
    assert_eq!(fra.to_canonical_toml(), p.location_subset_toml("fra"));
    // A location no task names gets settings and its own table only.
    let none = Policy::parse(&p.location_subset_toml("nowhere"), "n").unwrap();
    assert_eq!(none.tasks().count(), 0);
    assert_eq!(none.credentials().count(), 0);
}

#[test]
fn bad_location_entries_are_refused_with_their_place() {
    let e = Policy::parse(
        &format!("version = 1\n[locations.ams]\nrecipent = \"{R}\"\n"),
        "p.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("p.toml:3:") && e.contains("did you mean `recipient`"),
        "{e}"
    );
    let e = Policy::parse(
        "version = 1\n[locations.\"a b\"]\nrecipient = \"x\"\n",
        "p.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("p.toml:2:") && e.contains("invalid location name"),
        "{e}"
    );
    let e = Policy::parse("version = 1\n[tasks.t]\nlocations = [\"a/b\"]\n", "p.toml")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("p.toml:3:") && e.contains("invalid location name"),
        "{e}"
    );
}
