//! An admin's everyday jobs: re-applying a policy, importing a password manager's export,
//! `doctor`, man pages, and the help and list output.

use crate::common::vault as common_vault;

use common_vault::{contains, Env};

const POLICY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/policy.toml");

#[test]
fn applying_an_unchanged_policy_changes_nothing() {
    let e = Env::new();
    e.init_with_cred();
    let pf = e.pf();
    let first = e.ok(&["policy", "apply", POLICY, "--passphrase-file", &pf], b"");
    assert!(first.contains("+ task checkout-flow"), "{first}");
    let before = e.vault_bytes();
    let again = e.ok(&["policy", "apply", POLICY, "--passphrase-file", &pf], b"");
    assert!(again.contains("no changes"), "{again}");
    assert!(
        !again.contains("~ "),
        "an unchanged policy reports no change: {again}"
    );
    assert_eq!(
        e.vault_bytes(),
        before,
        "the vault file is unchanged, byte for byte"
    );
}

const SECRETS: [&str; 4] = [
    "bw-Password-1",
    "op-Password-2",
    "kp-Password-3",
    "JBSWY3DPEHPK3PXP",
];

#[test]
fn import_reads_the_three_exporters_and_never_prints_a_value() {
    let e = Env::new();
    e.init_with_cred();
    let pf = e.pf();
    // Bitwarden's columns (with a quoted comma and an embedded newline in notes).
    std::fs::write(
        e.path("bitwarden.csv"),
        "folder,favorite,type,name,notes,fields,reprompt,login_uri,login_username,login_password,login_totp\n\
         ,,login,Shop admin,\"line one,\nline two\",,0,https://shop.example.com,bw-user,bw-Password-1,JBSWY3DPEHPK3PXP\n",
    )
    .unwrap();
    // 1Password.
    std::fs::write(
        e.path("1password.csv"),
        "Title,Url,Username,Password,OTPAuth,Favorite,Archived,Tags,Notes\n\
         API console,https://op-user:Url-Pw-canary@API.example.com/console?token=Tok-canary,op-user,op-Password-2,,false,false,,\n\
         Spoofed,https://evil\u{202e}moc.elgoog.example,sp-user,sp-Password-5,,false,false,,\n",
    )
    .unwrap();
    // KeePassXC (every cell quoted), an entry with a non-web URL.
    std::fs::write(
        e.path("keepassxc.csv"),
        "\"Group\",\"Title\",\"Username\",\"Password\",\"URL\",\"Notes\",\"TOTP\",\"Icon\",\"Last Modified\",\"Created\"\n\
         \"Root\",\"db.internal\",\"kp-user\",\"kp-Password-3\",\"ssh://db\",\"\",\"\",\"0\",\"2024-01-01\",\"2024-01-01\"\n",
    )
    .unwrap();
    let mut all = String::new();
    for f in ["bitwarden.csv", "1password.csv", "keepassxc.csv"] {
        let out = e.ok(
            &[
                "cred",
                "import",
                e.path(f).to_str().unwrap(),
                "--format",
                "csv",
                "--passphrase-file",
                &pf,
            ],
            b"",
        );
        all.push_str(&out);
    }
    assert!(
        all.contains("row 2: + Shop admin → Shop-admin added (username, url, password, totp_seed)"),
        "{all}"
    );
    assert!(
        all.contains("row 2: + API console → API-console added"),
        "{all}"
    );
    assert!(
        all.contains("row 2: + db.internal added (username, password)"),
        "{all}"
    );
    let names = e.names();
    for n in ["Shop-admin", "API-console", "db.internal", "shop-buyer"] {
        assert!(names.contains(&n.to_owned()), "{names:?}");
    }
    let show = e.ok(
        &[
            "cred",
            "show",
            "Shop-admin",
            "--json",
            "--passphrase-file",
            &pf,
        ],
        b"",
    );
    let v: serde_json::Value = serde_json::from_str(&show).unwrap();
    assert_eq!(v["fields"]["username"], "bw-user");
    assert_eq!(v["origins"][0], "https://shop.example.com");
    // A URL's user, password, path and query are not an origin, and are never stored (found by
    // attacking `import`, fourteenth pass: the whole URL was kept and shown by `cred show`); a
    // host with a bidirectional override gives no origin.
    for (name, origins) in [
        (
            "API-console",
            serde_json::json!(["https://api.example.com"]),
        ),
        ("Spoofed", serde_json::json!([])),
    ] {
        let show = e.ok(&["cred", "show", name, "--passphrase-file", &pf], b"");
        assert!(
            !show.contains("canary") && !show.contains('\u{202e}'),
            "{show}"
        );
        let v: serde_json::Value = serde_json::from_str(&e.ok(
            &["cred", "show", name, "--json", "--passphrase-file", &pf],
            b"",
        ))
        .unwrap();
        assert_eq!(v["origins"], origins, "{v}");
    }
    assert_eq!(
        v["secret_fields"],
        serde_json::json!(["password", "totp_seed"])
    );
    for s in SECRETS {
        assert!(
            !contains(&e.transcript.borrow(), s.as_bytes()),
            "{s} was printed"
        );
    }
}

/// Sixteenth pass (found by attacking the TOTP rule): a header with two columns for one
/// field (`totp` and `login_totp`, here one a base32 seed and the other an otpauth URI) took
/// the first and dropped the other in silence. It is refused naming both, and nothing is
/// imported.
#[test]
fn import_refuses_two_columns_for_one_field_naming_both() {
    let e = Env::new();
    e.init_with_cred();
    let before = e.vault_bytes();
    std::fs::write(
        e.path("two.csv"),
        "name,password,totp,login_totp
         Shop 2fa,pw-canary,JBSWY3DPEHPK3PXP,otpauth://totp/x?secret=GEZDGNBVGY3TQOJQ
",
    )
    .unwrap();
    let err = e.fails(
        &[
            "cred",
            "import",
            e.path("two.csv").to_str().unwrap(),
            "--format",
            "csv",
            "--passphrase-file",
            &e.pf(),
        ],
        b"",
        2,
    );
    assert!(
        err.contains("`totp` and `login_totp` both mean the same field"),
        "{err}"
    );
    assert!(
        !err.contains("pw-canary") && !err.contains("JBSWY3DP"),
        "{err}"
    );
    assert_eq!(e.vault_bytes(), before, "nothing imported");
}

/// Seventeenth pass (found by forging files from vault-format.md, "secret values are UTF-8,
/// at most 64 KiB"): `cred import` stored a 70,000-byte password that `cred add
/// --secret-file` refuses. The row is refused naming its number, the credential and the
/// field, never the value, and nothing is imported (also with `--update`).
#[test]
fn import_refuses_a_secret_value_over_the_limit_and_imports_nothing() {
    let e = Env::new();
    e.init_with_cred();
    let before = e.vault_bytes();
    let big = "x".repeat(70_000);
    for (csv, update) in [
        (
            format!("name,login_username,login_password\nfine,u,fine-Password-1\nbig,mon,{big}\n"),
            false,
        ),
        (format!("name,login_password\nshop-buyer,{big}\n"), true),
        (format!("name,password,totp\nbig,pw,{big}\n"), false),
    ] {
        std::fs::write(e.path("big.csv"), &csv).unwrap();
        let mut args = vec![
            "cred".to_owned(),
            "import".into(),
            e.path("big.csv").to_str().unwrap().into(),
            "--passphrase-file".into(),
            e.pf(),
        ];
        if update {
            args.push("--update".into());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let err = e.fails(&args, b"", 2);
        let row = if update {
            "row 2: shop-buyer"
        } else if csv.contains("totp") {
            "row 2: big: the TOTP value"
        } else {
            "row 3: big: the password value"
        };
        assert!(
            err.contains(row) && err.contains("more than 65536 bytes"),
            "{err}"
        );
        assert!(err.contains("nothing was imported"), "{err}");
        assert!(!err.contains("xxxxxxxx"), "{err}");
        assert_eq!(e.vault_bytes(), before, "nothing imported");
    }
}

/// Twenty-second pass (found by an attacker forging signed bundles, who built the same
/// credential with `cred set`): nothing bounded a credential's fields or its total size, so
/// 290 values of 60,000 bytes made a credential whose fetch answer (17 MB) no client accepts.
/// `cred set` refuses more than 64 fields or 1 MiB of values in one credential, and `cred
/// import --update` a row that takes one over, each naming the credential and the bound,
/// never a value, and storing nothing.
#[test]
fn cred_set_and_import_refuse_a_credential_over_the_bound() {
    let e = Env::new();
    e.init_with_cred();
    let pf = e.pf();
    let set = |files: &[(String, std::path::PathBuf)], code: Option<i32>| {
        let mut a = vec!["cred".to_owned(), "set".into(), "shop-buyer".into()];
        for (k, p) in files {
            a.push("--secret-file".into());
            a.push(format!("{k}={}", p.display()));
        }
        a.extend(["--passphrase-file".to_owned(), pf.clone()]);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        match code {
            Some(code) => e.fails(&a, b"", code),
            None => e.ok(&a, b""),
        }
    };
    let files = |n: usize, len: usize, c: char| -> Vec<(String, std::path::PathBuf)> {
        (0..n)
            .map(|i| {
                let p = e.path(&format!("v{i:02}"));
                std::fs::write(&p, c.to_string().repeat(len)).unwrap();
                (format!("f{i:02}"), p)
            })
            .collect()
    };
    let before = e.vault_bytes();
    // 64 more fields beside the password and username.
    let err = set(&files(64, 12, 'q'), Some(2));
    assert!(
        err.contains("\"shop-buyer\"")
            && err.contains(
                "fields (plain and secret together), more than the 64 one credential may hold"
            )
            && err.contains("nothing was stored"),
        "{err}"
    );
    assert!(!err.contains("qqqqqqqqqqqq"), "{err}");
    assert_eq!(e.vault_bytes(), before, "nothing stored");
    // 17 values of 62,000 bytes: each within 64 KiB, together over 1 MiB.
    let err = set(&files(17, 62_000, 'z'), Some(2));
    assert!(
        err.contains("\"shop-buyer\"")
            && err.contains("more than the 1048576 (1 MiB) one credential may hold"),
        "{err}"
    );
    assert!(!err.contains("zzzzzzzz"), "{err}");
    assert_eq!(e.vault_bytes(), before, "nothing stored");
    // 16 of them fit; then an imported password of 60,000 bytes takes it over.
    set(&files(16, 62_000, 'z'), None);
    let before = e.vault_bytes();
    let big = "p".repeat(60_000);
    std::fs::write(
        e.path("up.csv"),
        format!("name,login_password\nshop-buyer,{big}\n"),
    )
    .unwrap();
    let err = e.fails(
        &[
            "cred",
            "import",
            e.path("up.csv").to_str().unwrap(),
            "--update",
            "--passphrase-file",
            &pf,
        ],
        b"",
        2,
    );
    assert!(
        err.contains("row 2: credential \"shop-buyer\"")
            && err.contains("more than the 1048576 (1 MiB) one credential may hold")
            && err.contains("nothing was imported"),
        "{err}"
    );
    assert!(
        !err.contains("pppppppp") && !err.contains("zzzzzzzz"),
        "{err}"
    );
    assert_eq!(e.vault_bytes(), before, "nothing imported");
}

/// Found by attacking the admin CLI from operations.md and vault-format.md (eighteenth pass):
/// `cred set` warns that a secret holding a NUL byte cannot be passed in an environment
/// variable (`exec` refuses it, naming the field), but an imported password holding one got
/// no warning. `cred import` now warns the same way for each row it adds or updates, naming
/// the row and the field, never the value.
#[test]
fn import_warns_of_a_password_with_a_nul_byte_naming_the_row() {
    let e = Env::new();
    e.init_with_cred();
    std::fs::write(
        e.path("nul.csv"),
        "name,login_username,login_password\nplain,mon,plain-Password-1\nbinary,mon,ab\0cdSECRETval\n",
    )
    .unwrap();
    let file = e.path("nul.csv");
    let out = e.run(
        &[
            "cred",
            "import",
            file.to_str().unwrap(),
            "--passphrase-file",
            &e.pf(),
        ],
        b"",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("warning: row 3: binary.password holds a NUL byte") && err.contains("--files"),
        "{err}"
    );
    assert_eq!(err.matches("NUL").count(), 1, "only that row: {err}");
    assert!(
        !err.contains("SECRETval") && !err.contains("plain-Password"),
        "{err}"
    );
}

#[test]
fn import_keeps_existing_unless_update_and_is_one_atomic_save() {
    let e = Env::new();
    e.init_with_cred();
    let pf = e.pf();
    let csv = e.path("export.csv");
    std::fs::write(
        &csv,
        "name,login_username,login_password\nshop-buyer,new-user,new-Password-9\nfresh,u,fresh-Password-8\n",
    )
    .unwrap();
    let args = |extra: &[&'static str]| {
        let mut a = vec![
            "cred".to_owned(),
            "import".into(),
            csv.to_str().unwrap().into(),
            "--passphrase-file".into(),
            pf.clone(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let run = |extra: &[&'static str]| {
        let a = args(extra);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        e.ok(&a, b"")
    };
    let out = run(&[]);
    assert!(out.contains("row 2: = shop-buyer exists: kept"), "{out}");
    assert!(out.contains("row 3: + fresh added"), "{out}");
    assert!(
        out.contains("1 added, 0 updated, 0 unchanged, 1 kept"),
        "{out}"
    );
    let out = run(&["--update"]);
    assert!(
        out.contains("row 2: ~ shop-buyer updated") && out.contains("row 3: = fresh unchanged"),
        "{out}"
    );
    let show = e.ok(
        &[
            "cred",
            "show",
            "shop-buyer",
            "--json",
            "--passphrase-file",
            &pf,
        ],
        b"",
    );
    assert!(show.contains("new-user"), "{show}");

    // One bad row: nothing is imported, the vault file is untouched, and the error names the
    // row without quoting a value.
    std::fs::write(
        &csv,
        "name,password,totp\nok-one,ok-Password-7,\n,orphan-Password-6,\nbad-totp,x-Password-5,not base32!\n",
    )
    .unwrap();
    let before = e.vault_bytes();
    let a = args(&[]);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let err = e.fails(&a, b"", 2);
    assert!(
        err.contains("row 3:") && err.contains("row 4: bad-totp"),
        "{err}"
    );
    assert!(err.contains("nothing was imported"), "{err}");
    assert_eq!(e.vault_bytes(), before);
    for s in [
        "orphan-Password-6",
        "x-Password-5",
        "not base32",
        "ok-Password-7",
    ] {
        assert!(!err.contains(s), "{err}");
    }
}

/// `cred import FILE ARGS… --passphrase-file`, as `e.run` gives it back.
fn import(e: &Env, file: &str, extra: &[&str]) -> std::process::Output {
    let path = e.path(file);
    let pf = e.pf();
    let mut a = vec![
        "cred",
        "import",
        path.to_str().unwrap(),
        "--passphrase-file",
        &pf,
    ];
    a.extend_from_slice(extra);
    e.run(&a, b"")
}

/// Twentieth pass (found by attacking the admin's data paths): the import changed titles that
/// are valid credential names (`db_` to `db`, `c--d` to `c-d`), and with `--update` the rows
/// replaced the passwords of those other credentials. A valid title is the name as it is;
/// a changed title is reported "title → name"; one that lands on a credential the vault holds
/// is refused with `--update` (naming the row, its title and the name, never a value) and
/// kept without it; two rows giving one name are refused as a name twice.
#[test]
fn import_keeps_valid_titles_and_refuses_a_renamed_row_landing_on_another_credential() {
    let e = Env::new();
    e.init_with_cred();
    e.add_login("db", b"PROD-db-Password");
    e.add_login("c-d", b"PROD-cd-Password");
    e.add_login("Shop-admin", b"PROD-shop-Password");
    std::fs::write(
        e.path("valid.csv"),
        "name,password\ndb_,OTHER1-Password\nc--d,OTHER2-Password\nnaïve x,OTHER3-Password\n",
    )
    .unwrap();
    let out = import(&e, "valid.csv", &["--update"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("row 2: + db_ added (password)")
            && stdout.contains("row 3: + c--d added (password)")
            && stdout.contains("row 4: + naïve x → na-ve-x added (password)"),
        "{stdout}"
    );
    assert_eq!(
        e.secret("db", "password").as_deref(),
        Some("PROD-db-Password")
    );
    assert_eq!(
        e.secret("c-d", "password").as_deref(),
        Some("PROD-cd-Password")
    );
    assert_eq!(
        e.secret("db_", "password").as_deref(),
        Some("OTHER1-Password")
    );
    assert_eq!(
        e.secret("c--d", "password").as_deref(),
        Some("OTHER2-Password")
    );

    // A changed title on a credential the vault holds: refused with --update, nothing
    // imported; kept without it, saying why.
    std::fs::write(
        e.path("clash.csv"),
        "name,password\nfresh,fresh-Password\nShop (admin),CLASH-Password\n",
    )
    .unwrap();
    let before = e.vault_bytes();
    let out = import(&e, "clash.csv", &["--update"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(
            "row 3: Shop (admin) → Shop-admin: a name twice, the vault already holds Shop-admin"
        ) && err.contains("nothing was imported"),
        "{err}"
    );
    assert!(!err.contains("CLASH-Password"), "{err}");
    assert_eq!(e.vault_bytes(), before, "nothing imported");
    let out = import(&e, "clash.csv", &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout
            .contains("row 3: = Shop (admin) → Shop-admin exists: kept (its title is not its name"),
        "{stdout}"
    );
    assert_eq!(
        e.secret("Shop-admin", "password").as_deref(),
        Some("PROD-shop-Password")
    );

    // Two rows giving one name, one of them changed: a name twice, both rows named.
    std::fs::write(
        e.path("twice.csv"),
        "name,password\nx-y,one-Password\nx y,TWO-Password\n",
    )
    .unwrap();
    let before = e.vault_bytes();
    let out = import(&e, "twice.csv", &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("row 3: x y → x-y: a name twice, row 2 (x-y) gives it too"),
        "{err}"
    );
    assert!(!err.contains("-Password"), "{err}");
    assert_eq!(e.vault_bytes(), before, "nothing imported");
}

/// Twentieth pass (found by attacking the admin's data paths): re-importing rows identical to
/// what the vault holds with `--update` reported "~ shop updated (…; 0 secret value(s)
/// changed)" and "1 updated (one save, generation 3)", though operations.md says an import
/// with nothing to add or update ends "the vault was not changed". A row whose every value is
/// the stored one is "unchanged", and with nothing changed there is no save.
#[test]
fn an_import_that_changes_nothing_reports_rows_unchanged_and_saves_nothing() {
    let e = Env::new();
    e.init_with_cred();
    std::fs::write(
        e.path("e.csv"),
        "name,login_uri,login_username,login_password,login_totp\n\
         shop,https://shop.example,mon,PW1-Password,JBSWY3DPEHPK3PXP\n\
         other,,u2,PW2-Password,\n",
    )
    .unwrap();
    let out = import(&e, "e.csv", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = e.vault_bytes();
    let out = import(&e, "e.csv", &["--update"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("row 2: = shop unchanged (username, url, password, totp_seed)")
            && stdout.contains("row 3: = other unchanged (username, password)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("0 added, 0 updated, 2 unchanged, 0 kept: the vault was not changed"),
        "{stdout}"
    );
    assert_eq!(e.vault_bytes(), before, "no save");

    // Each value that differs makes its row an update, one at a time: the password, the
    // username, a new origin, the TOTP seed in its other form.
    for (row, what) in [
        (
            "https://shop.example,mon,PW1-Password-new,JBSWY3DPEHPK3PXP",
            "1 secret value(s) changed",
        ),
        (
            "https://shop.example,mon2,PW1-Password-new,JBSWY3DPEHPK3PXP",
            "0 secret value(s) changed",
        ),
        (
            "https://www.shop.example,mon2,PW1-Password-new,JBSWY3DPEHPK3PXP",
            "0 secret value(s) changed",
        ),
        (
            "https://www.shop.example,mon2,PW1-Password-new,otpauth://totp/x?secret=JBSWY3DPEHPK3PXP",
            "1 secret value(s) changed",
        ),
    ] {
        std::fs::write(
            e.path("one.csv"),
            format!("name,login_uri,login_username,login_password,login_totp\nshop,{row}\n"),
        )
        .unwrap();
        let before = e.vault_bytes();
        let out = import(&e, "one.csv", &["--update"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("row 2: ~ shop updated") && stdout.contains(what),
            "{row}: {stdout}"
        );
        assert!(
            stdout.contains("0 added, 1 updated, 0 unchanged, 0 kept (one save"),
            "{stdout}"
        );
        assert_ne!(e.vault_bytes(), before, "{row}: saved");
    }
    assert!(
        !contains(&e.transcript.borrow(), b"PW1-Password"),
        "a value was printed"
    );
}

/// Twentieth pass (found by attacking the admin's data paths): an `OTPAUTH://TOTP/…` URI (URI
/// schemes are case-insensitive, RFC 3986) was judged as a base32 seed and refused for its
/// alphabet, and `otpauth://…&encoder=steam` was imported, to give RFC 6238 codes Steam does
/// not take. The URI is read in any case; an `encoder` is refused naming the row, never the
/// seed; nothing is imported.
#[test]
fn import_reads_an_otpauth_uri_in_any_case_and_refuses_an_encoder() {
    let e = Env::new();
    e.init_with_cred();
    let before = e.vault_bytes();
    std::fs::write(
        e.path("steam.csv"),
        "name,password,totp\n\
         up,pw-Password,OTPAUTH://TOTP/x?secret=JBSWY3DPEHPK3PXP\n\
         steam,pw-Password,otpauth://totp/x?secret=GEZDGNBVGY3TQOJQ&encoder=steam\n",
    )
    .unwrap();
    let out = import(&e, "steam.csv", &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("row 3: steam: the TOTP value is not usable: the otpauth URI has an `encoder` parameter"),
        "{err}"
    );
    // Row 2 is not refused (its 80-bit seed is warned of, twenty-fifth pass).
    assert!(
        !err.contains("row 2: up: the TOTP value is not usable"),
        "the upper-case URI is usable: {err}"
    );
    assert!(
        !err.contains("GEZDGNBV") && !err.contains("JBSWY3DP"),
        "{err}"
    );
    assert_eq!(e.vault_bytes(), before, "nothing imported");

    std::fs::write(
        e.path("up.csv"),
        "name,password,totp\nup,pw-Password,OTPAUTH://TOTP/x?secret=JBSWY3DPEHPK3PXP\n",
    )
    .unwrap();
    let out = import(&e, "up.csv", &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("row 2: + up added (password, otpauth)"),
        "{stdout}"
    );
}

/// Twentieth pass (found by attacking the admin's data paths): `https://a.example:99999` was
/// stored as an origin by `cred import` (and `cred add --origin`): no browser has such an
/// origin. An http(s) URL that gives no valid origin is imported without one, and a note
/// on stderr names the row, never the URL.
#[test]
fn import_stores_no_origin_with_a_port_outside_1_to_65535_and_says_so() {
    let e = Env::new();
    e.init_with_cred();
    std::fs::write(
        e.path("port.csv"),
        "name,login_uri,login_password\n\
         port,https://a.example:99999/login?token=Tok-canary,pw-Password\n\
         fine,https://a.example:8443/login,pw-Password\n",
    )
    .unwrap();
    let out = import(&e, "port.csv", &[]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("row 2: + port added (password)")
            && stdout.contains("row 3: + fine added (url, password)"),
        "{stdout}"
    );
    assert!(
        stderr.contains("note: row 2: port: its http(s) URL gives no valid origin"),
        "{stderr}"
    );
    assert!(!stderr.contains("row 3"), "{stderr}");
    assert!(!stdout.contains("canary") && !stderr.contains("canary"));
    let origins = |name: &str| {
        let v: serde_json::Value = serde_json::from_str(&e.ok(
            &["cred", "show", name, "--json", "--passphrase-file", &e.pf()],
            b"",
        ))
        .unwrap();
        v["origins"].clone()
    };
    assert_eq!(origins("port"), serde_json::json!([]));
    assert_eq!(
        origins("fine"),
        serde_json::json!(["https://a.example:8443"])
    );
}

/// Twenty-first pass (found by attacking this pass's fixes): a row whose `login_uri` is
/// `https://shop.example.com\@evil.example/login` was stored for `https://evil.example`, while
/// a browser (which reads `\` as `/` in an http(s) URL) opens `https://shop.example.com`.
#[test]
fn import_stores_the_origin_a_browser_opens_for_a_url_with_a_backslash() {
    let e = Env::new();
    e.init_with_cred();
    std::fs::write(
        e.path("bs.csv"),
        "name,login_uri,login_password\n\
         shop,https://shop.example.com\\@evil.example/login,pw-Password\n",
    )
    .unwrap();
    let out = import(&e, "bs.csv", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&e.ok(
        &[
            "cred",
            "show",
            "shop",
            "--json",
            "--passphrase-file",
            &e.pf(),
        ],
        b"",
    ))
    .unwrap();
    assert_eq!(
        v["origins"],
        serde_json::json!(["https://shop.example.com"]),
        "{v}"
    );
}

/// Twentieth pass (found by attacking the admin's data paths): an imported row's TOTP seed
/// is stored in a `login` credential, and only the `totp` kind hides the seed
/// (docs/protocol.md): `get --json` and `exec` handed checks the seed itself, and nothing
/// said so. The import now notes, for each row with a TOTP value whose credential is not of
/// kind `totp`, what a check gets and the policy line that hands out codes only, naming the
/// row and the credential, never a value.
#[test]
fn import_notes_each_row_whose_totp_seed_a_login_hands_out() {
    let e = Env::new();
    e.init_with_cred();
    e.ok(
        &[
            "cred",
            "add",
            "otp-kind",
            "--kind",
            "totp",
            "--secret",
            "totp_seed",
            "--passphrase-file",
            &e.pf(),
        ],
        b"GEZDGNBVGY3TQOJQ",
    );
    std::fs::write(
        e.path("t.csv"),
        "name,password,totp\n\
         Shop 2fa,pw-Password,JBSWY3DPEHPK3PXP\n\
         plain,pw-Password,\n\
         otp-kind,,otpauth://totp/x?secret=GEZDGNBVGY3TQOJQ\n",
    )
    .unwrap();
    let out = import(&e, "t.csv", &["--update"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "note: row 2: Shop 2fa → Shop-2fa holds a TOTP seed: as a `login` credential, a check it is handed to (`get --json`, `exec`) gets the seed itself"
        ) && stderr.contains("kind = \"totp\"") && stderr.contains("[credentials.Shop-2fa]"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("holds a TOTP seed").count(), 1, "{stderr}");
    for s in ["JBSWY3DP", "GEZDGNBV", "pw-Password"] {
        assert!(!stderr.contains(s), "{stderr}");
    }
}

/// Eighteenth pass (found by the review of the `sync` fix): opening a vault file restored from
/// a backup with `--allow-rollback` saves it again as a new generation, but an import that
/// then had nothing to add ended "the vault was not changed".
#[test]
fn an_import_that_adopted_a_restored_vault_says_it_was_saved_again() {
    let e = Env::new();
    e.init_with_cred();
    let pf = e.pf();
    let restored = e.vault_bytes();
    let csv = e.path("export.csv");
    let import = |rows: &str, extra: &[&str]| {
        std::fs::write(&csv, format!("name,login_username,login_password\n{rows}")).unwrap();
        let mut a = vec![
            "cred",
            "import",
            csv.to_str().unwrap(),
            "--passphrase-file",
            &pf,
        ];
        a.extend_from_slice(extra);
        e.run(&a, b"")
    };
    // A newer generation, then the older file put back.
    let out = import("fresh,u,fresh-Password-8\n", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(e.vault(), &restored).unwrap();
    // Only a row that exists: nothing to import, but the open adopted the restored file.
    let out = import(
        "shop-buyer,new-user,new-Password-9\n",
        &["--allow-rollback"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(e.vault_bytes(), restored, "the file was saved again");
    assert!(!stdout.contains("the vault was not changed"), "{stdout}");
    assert!(
        stdout
            .contains("1 kept: nothing was imported, but the vault was saved again as generation")
            && stdout.contains("only to adopt the restored file (--allow-rollback)"),
        "{stdout}"
    );
    // Without a restored file, nothing to import still leaves the vault as it was.
    let before = e.vault_bytes();
    let out = import("shop-buyer,new-user,new-Password-9\n", &[]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("the vault was not changed"));
    assert_eq!(e.vault_bytes(), before);
}

#[test]
fn doctor_reports_each_check_and_fails_on_failures() {
    let e = Env::new();
    let sock = e.path("run/none.sock").to_str().unwrap().to_owned();
    let audit = e.path("audit.jsonl").to_str().unwrap().to_owned();
    let doctor = || e.run(&["doctor", "--socket", &sock, "--audit", &audit], b"");
    let out = doctor();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("fail") && l.contains("scopevault init")),
        "a missing vault fails with the fix: {text}"
    );
    e.init_with_cred();
    let out = doctor();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{text}");
    for what in [
        "vault", "unlock", "keyring", "socket", "daemon", "audit", "clock", "mlock",
    ] {
        assert!(
            text.lines()
                .any(|l| l.get(6..).is_some_and(|r| r.starts_with(what))),
            "a `{what}` line: {text}"
        );
    }
    for l in text.lines().filter(|l| !l.contains("check(s)")) {
        assert!(
            l.starts_with("ok  ") || l.starts_with("warn") || l.starts_with("fail"),
            "{l}"
        );
    }
    // A vault others can read: a warning with the chmod that fixes it.
    std::fs::set_permissions(
        e.vault(),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let out = doctor();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("warn") && l.contains("chmod 0600")),
        "{text}"
    );
    // An identity file others can read: a warning with the chmod (found by attacking the
    // admin CLI, fourteenth pass: doctor said only that it opens the vault).
    let id = e.path("id.txt");
    e.ok(
        &[
            "key",
            "add",
            "--identity-out",
            id.to_str().unwrap(),
            "--passphrase-file",
            &e.pf(),
        ],
        b"",
    );
    std::fs::set_permissions(&id, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let out = e.run(
        &[
            "doctor",
            "--socket",
            &sock,
            "--audit",
            &audit,
            "--identity-file",
            id.to_str().unwrap(),
        ],
        b"",
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.lines().any(|l| l.starts_with("warn")
            && l.contains("identity")
            && l.contains("mode 0644")
            && l.contains("chmod 600")),
        "{text}"
    );
    // A broken audit chain fails.
    std::fs::write(&audit, "{\"seq\":1}\nnot a record\n").unwrap();
    let out = doctor();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("fail") && l.contains("audit")),
        "{text}"
    );
}

#[test]
fn man_dir_writes_one_page_per_command() {
    let e = Env::new();
    let dir = e.path("man");
    let out = e.ok(&["man", "--dir", dir.to_str().unwrap()], b"");
    assert!(out.contains("man pages"), "{out}");
    for page in [
        "scopevault.1",
        "scopevault-lint.1",
        "scopevault-cred.1",
        "scopevault-cred-set.1",
        "scopevault-cred-import.1",
        "scopevault-key-add.1",
        "scopevault-audit-verify.1",
        "scopevault-serve.1",
        "scopevault-doctor.1",
    ] {
        let text =
            std::fs::read_to_string(dir.join(page)).unwrap_or_else(|err| panic!("{page}: {err}"));
        let title = page.trim_end_matches(".1");
        assert!(
            text.contains(&format!(".TH {title} 1")),
            "{page}: {}",
            &text[..200.min(text.len())]
        );
    }
    // The top-level page still goes to stdout, and it names pages that now exist.
    let top = e.ok(&["man"], b"");
    assert!(top.contains(".TH scopevault 1"));
    assert!(
        top.contains("scopevault\\-lint(1)"),
        "the top page refers to the others"
    );
}

/// Found by attacking the admin CLI from operations.md and vault-format.md (eighteenth pass):
/// `man --dir DIR` wrote each page through whatever was at `DIR/scopevault-*.1`, so a symbolic
/// link another user planted in a shared directory (`/tmp`-like, 1777) had root overwrite its
/// target (the attacker destroyed a vault), and a page another user had made was written in
/// place and stayed theirs; under umask 077 the pages and a new DIR were private. DIR is now
/// checked as `publish --out` is (`SafeDir::open_output`) and each page is a new file renamed
/// over its name (a link there is replaced, never followed), 0644 in a 0755 DIR, the caller's.
#[test]
fn man_dir_never_writes_through_a_planted_link_or_into_another_users_page() {
    use crate::common::users;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let e = Env::new();
    let precious = e.path("precious");
    std::fs::write(&precious, "a vault\n").unwrap();
    let man = |dir: &std::path::Path| {
        // Under umask 077: the modes below are the command's, not the caller's umask.
        let mut c = e.wrapper("sh");
        c.args(["-c", "umask 077 && exec \"$0\" \"$@\""])
            .arg(env!("CARGO_BIN_EXE_scopevault"))
            .args(["man", "--dir"])
            .arg(dir);
        e.run_cmd(&mut c, b"")
    };
    let mode = |p: &std::path::Path| std::fs::symlink_metadata(p).unwrap().mode() & 0o7777;

    // A missing DIR is made 0755; every page is 0644.
    let fresh = e.path("fresh/man1");
    let out = man(&fresh);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(mode(&fresh), 0o755);
    for page in std::fs::read_dir(&fresh).unwrap() {
        let page = page.unwrap().path();
        assert_eq!(mode(&page), 0o644, "{}", page.display());
    }

    // A link at a page's name in the caller's own directory is replaced by the page; its
    // target is untouched.
    let own = e.path("own");
    std::fs::create_dir(&own).unwrap();
    std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o755)).unwrap();
    let link = own.join("scopevault-cred-set.1");
    std::os::unix::fs::symlink(&precious, &link).unwrap();
    let out = man(&own);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "a vault\n");
    let page = std::fs::symlink_metadata(&link).unwrap();
    assert!(page.is_file(), "the link was replaced by the page");
    assert_eq!(page.mode() & 0o7777, 0o644);
    assert!(std::fs::read_to_string(&link)
        .unwrap()
        .contains(".TH scopevault-cred-set 1"));

    if !users::is_root() {
        return crate::common::skip::skip("root is needed for a second uid to plant a link");
    }
    let (uid, gid) = match users::ensure_user(users::OTHER_USER) {
        Ok(ids) => ids,
        Err(why) => return crate::common::skip::skip(&why),
    };
    // A page another user made in root's directory beforehand becomes root's new file.
    let theirs = own.join("scopevault-lint.1");
    std::fs::write(&theirs, "their page\n").unwrap();
    std::os::unix::fs::chown(&theirs, Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = man(&own);
    assert!(out.status.success(), "{out:?}");
    let page = std::fs::symlink_metadata(&theirs).unwrap();
    assert_eq!((page.uid(), page.mode() & 0o7777), (0, 0o644));
    assert!(std::fs::read_to_string(&theirs)
        .unwrap()
        .contains(".TH scopevault-lint 1"));

    // Their link in a directory anyone may write (sticky, as /tmp): refused, nothing written,
    // advising a directory of one's own, never `chmod go-w` of a directory shared by design.
    let shared = e.path("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let planted = shared.join("scopevault-cred-set.1");
    std::os::unix::fs::symlink(&precious, &planted).unwrap();
    std::os::unix::fs::lchown(&planted, Some(uid), Some(gid)).unwrap();
    let out = man(&shared);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("writable by others")
            && err.contains("use a directory of your own")
            && !err.contains("chmod"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "a vault\n");
    assert!(std::fs::symlink_metadata(&planted).unwrap().is_symlink());
    assert_eq!(std::fs::read_dir(&shared).unwrap().count(), 1, "no page");
}

#[test]
fn help_groups_global_options_and_lists_kinds() {
    let e = Env::new();
    let help = e.ok(&["cred", "add", "--help"], b"");
    let (own, global) = help.split_at(help.find("Global options").expect("a heading"));
    assert!(
        own.contains("--kind") && !own.contains("--passphrase-file"),
        "{help}"
    );
    assert!(
        global.contains("--vault") && global.contains("--passphrase-file"),
        "{help}"
    );
    let flat = help.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains("[possible values: login, token, totp, certificate, generic]"),
        "{help}"
    );
    // Completing --task offers no file names (zsh: no _files / _default action).
    let zsh = e.ok(&["completions", "zsh"], b"");
    let task_lines: Vec<&str> = zsh.lines().filter(|l| l.contains("--task=")).collect();
    assert!(!task_lines.is_empty(), "{zsh}");
    for l in task_lines {
        assert!(!l.contains("_files") && !l.contains("_default"), "{l}");
    }
}

#[test]
fn cred_list_is_aligned_and_shows_no_rotation_for_never_set() {
    let e = Env::new();
    e.init_with_cred();
    let pf = e.pf();
    e.ok(&["policy", "apply", POLICY, "--passphrase-file", &pf], b"");
    let list = e.ok(&["cred", "list", "--passphrase-file", &pf], b"");
    let lines: Vec<&str> = list.lines().collect();
    assert!(lines[0].starts_with("NAME"), "{list}");
    // Every column starts at the same position on every line.
    for col in ["KIND", "SCOPES", "SECRETS", "ROTATED"] {
        let at = lines[0].find(col).unwrap();
        for l in &lines[1..] {
            let before = &l[..at];
            assert!(
                before.ends_with("  ") && !l[at..].starts_with(' '),
                "column {col} misaligned:\n{list}"
            );
        }
    }
    // Declared by the policy, never given a secret: no rotation date.
    let never = lines
        .iter()
        .find(|l| l.starts_with("search-token"))
        .expect("search-token listed");
    assert!(
        never.contains("(none set)") && never.trim_end().ends_with('-'),
        "{list}"
    );
    assert!(!list.contains("rotated="), "{list}");
}

#[test]
fn term_dumb_gets_no_colour() {
    use crate::common::shell_pty;
    if !shell_pty::available() {
        return crate::common::skip::skip(
            "python3 with the pty module is needed to drive a pseudo-terminal",
        );
    }
    let e = Env::new();
    let screen = |term: &str| {
        let mut c = e.wrapper("python3");
        c.env("PATH", shell_pty::path_with_binary())
            .env("TERM", term)
            .env_remove("NO_COLOR");
        shell_pty::drive(&mut c, &format!("scopevault lint {POLICY}"));
        let out = e.run_cmd(&mut c, b"");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let coloured = screen("xterm-256color");
    assert!(
        coloured.contains('\x1b'),
        "a colour terminal gets colour: {coloured}"
    );
    let dumb = screen("dumb");
    assert!(dumb.contains("scope-exceeds-task"), "{dumb}");
    assert!(!dumb.contains('\x1b'), "TERM=dumb gets no colour: {dumb:?}");
}

/// Seventeenth pass (found by attacking that pass's own fixes): the success lines printed the
/// paths they name raw — `init`'s "created vault …", `policy apply`'s "applied … to …",
/// `audit verify`'s "…: ok, N record(s)", the daemon's "listening on …", a writer's report on
/// the daemon, `demo`'s directory — while the errors naming the same paths escaped them: a
/// directory name holding ESC, an OSC title sequence or a right-to-left override drove the
/// terminal of whoever ran them. Every path and every name from a file is now shown through
/// the one escaper (`text::shown`, `text::escape_for_terminal`), in success lines as in
/// errors.
#[test]
fn success_lines_escape_the_paths_and_names_they_print() {
    use std::os::unix::fs::PermissionsExt;
    use std::process::{Command, Stdio};
    let e = Env::new();
    let name = "d\u{1b}]0;PWNED\u{7}\u{202e}";
    let escaped = "d\\u{1b}]0;PWNED\\u{7}\\u{202e}";
    let dir = e.path(name);
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let vault = dir.join("v.scopevault");
    let id = dir.join("v.id");
    let audit = dir.join("a.jsonl");
    let policy = dir.join("p.toml");
    std::fs::write(&policy, "version = 1\n").unwrap();
    let socket = dir.join("s.sock");
    let pf = e.pf();
    let seen = std::cell::RefCell::new(Vec::new());
    // stdout and stderr of `scopevault ARGS` in the hostile directory, `stdin` fed; must exit 0.
    let run = |what: &str, args: &[&std::ffi::OsStr], stdin: &[u8]| -> String {
        let out = e.run_cmd(
            e.cmd()
                .env("SCOPEVAULT_VAULT", &vault)
                .arg("--socket")
                .arg(&socket)
                .args(args),
            stdin,
        );
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{what}: {text}");
        seen.borrow_mut().push((what.to_owned(), text.clone()));
        text
    };
    let os = |s: &str| std::ffi::OsString::from(s);
    let (pf_arg, id_arg) = (os(&pf), id.clone().into_os_string());

    let text = run(
        "init",
        &[
            "init".as_ref(),
            "--passphrase-file".as_ref(),
            &pf_arg,
            "--identity-out".as_ref(),
            &id_arg,
        ],
        b"",
    );
    assert!(
        text.contains("created vault ") && text.contains(escaped),
        "{text}"
    );
    run(
        "cred add",
        &[
            "cred".as_ref(),
            "add".as_ref(),
            "shop-buyer".as_ref(),
            "--kind".as_ref(),
            "login".as_ref(),
            "--secret".as_ref(),
            "password".as_ref(),
            "--identity-file".as_ref(),
            &id_arg,
        ],
        b"s3cret-Password!",
    );
    let apply = [
        "policy".as_ref(),
        "apply".as_ref(),
        policy.as_os_str(),
        "--identity-file".as_ref(),
        &id_arg,
    ];
    let text = run("policy apply", &apply, b"");
    assert!(
        text.contains("applied ") && text.contains(escaped),
        "{text}"
    );
    let text = run("policy apply, unchanged", &apply, b"");
    assert!(
        text.contains("no changes: ") && text.contains(escaped),
        "{text}"
    );
    run(
        "cred list",
        &[
            "cred".as_ref(),
            "list".as_ref(),
            "--identity-file".as_ref(),
            &id_arg,
        ],
        b"",
    );
    run("key list", &["key".as_ref(), "list".as_ref()], b"");

    // The daemon, its log, and what the clients say of it. Killed and reaped on drop, so that
    // a failed assertion does not leave it running.
    struct Reaped(std::process::Child);
    impl Drop for Reaped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let log = e.path("daemon.log");
    let mut daemon = Reaped(
        e.cmd()
            .env("SCOPEVAULT_VAULT", &vault)
            .arg("serve")
            .arg("--socket")
            .arg(&socket)
            .arg("--audit")
            .arg(&audit)
            .arg("--identity-file")
            .arg(&id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let t0 = std::time::Instant::now();
    while !socket.exists() {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(60),
            "no daemon"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let text = run(
        "status",
        &["status".as_ref(), "--audit".as_ref(), audit.as_os_str()],
        b"",
    );
    assert!(text.contains(escaped), "{text}");
    let text = run(
        "cred set",
        &[
            "cred".as_ref(),
            "set".as_ref(),
            "shop-buyer".as_ref(),
            "--secret".as_ref(),
            "password".as_ref(),
            "--identity-file".as_ref(),
            &id_arg,
        ],
        b"n3w-Password!",
    );
    assert!(
        text.contains("the running daemon at ") && text.contains(escaped),
        "{text}"
    );
    run("reload", &["reload".as_ref()], b"");
    run(
        "doctor",
        &[
            "doctor".as_ref(),
            "--audit".as_ref(),
            audit.as_os_str(),
            "--identity-file".as_ref(),
            &id_arg,
        ],
        b"",
    );
    assert!(Command::new("kill")
        .arg(daemon.0.id().to_string())
        .status()
        .unwrap()
        .success());
    daemon.0.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("listening on ") && text.contains(escaped),
        "{text}"
    );
    seen.borrow_mut().push(("serve".into(), text));
    let text = run(
        "audit verify",
        &[
            "audit".as_ref(),
            "verify".as_ref(),
            "--audit".as_ref(),
            audit.as_os_str(),
        ],
        b"",
    );
    assert!(text.contains(": ok, ") && text.contains(escaped), "{text}");

    // `demo` in a TMPDIR of that name.
    let out = e.run_cmd(e.cmd().arg("demo").env("TMPDIR", &dir), b"");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "demo: {text}");
    assert!(
        text.contains("Everything happens in ") && text.contains(escaped),
        "{text}"
    );
    seen.borrow_mut().push(("demo".into(), text));

    for (what, text) in seen.borrow().iter() {
        let raw: Vec<char> = text
            .chars()
            .filter(|&c| c != '\n' && scopevault::text::needs_escape(c))
            .collect();
        assert!(
            raw.is_empty(),
            "{what} printed {raw:?} raw: {}",
            text.escape_debug()
        );
    }
}

/// Twenty-fifth pass, found by the twenty-fourth pass's review: `cred import` printed a row's
/// title as it was in its report (stdout), its problems and its notes (stderr), so an export
/// with a title `##[add-mask]…` wrote a workflow command into a CI log; `lint` and every error
/// message defused them. Each line now goes through the one escaper of text from elsewhere.
#[test]
fn regression_an_imported_title_cannot_write_a_workflow_command() {
    let e = Env::new();
    e.init_with_cred();
    let pf = e.pf();
    let no_command = |out: &str| {
        for line in out.lines() {
            assert!(
                !line.contains("##[") && !line.trim_start().starts_with("::"),
                "a workflow command in: {out}"
            );
        }
    };
    let import = |file: &str| {
        e.run(
            &[
                "cred",
                "import",
                e.path(file).to_str().unwrap(),
                "--format",
                "csv",
                "--passphrase-file",
                &pf,
            ],
            b"",
        )
    };
    // A problem (a name twice) names both titles on stderr: nothing imported.
    std::fs::write(
        e.path("twice.csv"),
        "name,password\n##[add-mask]Shop,pw-one\n::add-mask::Shop,pw-two\n",
    )
    .unwrap();
    let out = import("twice.csv");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("##\\u{5b}add-mask]Shop"), "{stderr}");
    no_command(&stderr);
    // Imported: the report (stdout) and the TOTP note (stderr) name the title.
    std::fs::write(
        e.path("one.csv"),
        "name,password,totp\n##[add-mask]Shop,pw-one,JBSWY3DPEHPK3PXP\n",
    )
    .unwrap();
    let out = import("one.csv");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("row 2: + ##\\u{5b}add-mask]Shop → add-mask-Shop added"),
        "{stdout}"
    );
    assert!(stderr.contains("holds a TOTP seed"), "{stderr}");
    no_command(&stdout);
    no_command(&stderr);
}

/// Twenty-eighth pass (found by the twenty-eighth pass's attacker of import and redact): a
/// row with a cell missing, or a value holding a comma outside quotes, was imported with its
/// cells shifted: under `name,login_username,login_password,login_uri`, `ShopLess,PASS,URL`
/// stored the password as the plain `username` field (printed by `cred show`) and the URL as
/// the password. A row whose cell count differs from the header's is refused, naming the row
/// and both counts, never a value; nothing is imported.
#[test]
fn import_refuses_a_row_whose_cell_count_differs_from_the_header() {
    let e = Env::new();
    e.init_with_cred();
    let before = e.vault_bytes();
    for (file, text, problem) in [
        (
            "less.csv",
            "name,login_username,login_password,login_uri\nShopLess,ZSEC-less-pass-2,https://less.example\n",
            "row 2: 3 cells, but the header row has 4",
        ),
        (
            "more.csv",
            "name,login_uri,login_username,login_password\nok,https://ok.example,u,ZSEC-ok-pass-1\nAcme, Inc,https://acme.example,buyer@acme.example,ZSEC-acme-pass-4\n",
            "row 3: 5 cells, but the header row has 4",
        ),
    ] {
        std::fs::write(e.path(file), text).unwrap();
        let out = import(&e, file, &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{file}: {err}");
        assert!(
            err.contains(problem) && err.contains("nothing was imported"),
            "{file}: {err}"
        );
        assert!(!err.contains("row 2: ok"), "{file}: row 2 is usable: {err}");
        assert_eq!(e.vault_bytes(), before, "{file}: nothing imported");
    }
    assert!(
        !contains(&e.transcript.borrow(), b"ZSEC"),
        "a value was printed"
    );
}

/// Twenty-eighth pass (found by the twenty-eighth pass's attacker of import and redact): a
/// real Bitwarden export always holds secure notes (`type` `note`, no login cells), and each
/// made the whole import fail as a row without a secret. Rows of a type that holds no login
/// (note, card, identity) are skipped with a warning naming the row and the type, never a
/// cell; the summary counts them.
#[test]
fn import_skips_bitwarden_items_without_a_login_naming_row_and_type() {
    let e = Env::new();
    e.init_with_cred();
    std::fs::write(
        e.path("bw.csv"),
        "folder,favorite,type,name,notes,fields,reprompt,login_uri,login_username,login_password,login_totp\n\
         ,,note,Wifi,\"ZSEC-note-text\",,0,,,,\n\
         Work,1,login,Shop Buyer,,,0,https://shop.example.com/login,buyer,ZSEC-bw-pass-1,\n\
         ,,card,Visa,,\"number: ZSEC-card\",0,,,,\n\
         ,,Identity,Me,,,0,,,,\n",
    )
    .unwrap();
    let out = import(&e, "bw.csv", &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{err}");
    for (row, what) in [(2, "note"), (4, "card"), (5, "identity")] {
        assert!(
            err.contains(&format!(
                "warning: row {row}: skipped: an item of type `{what}`, which holds no login"
            )),
            "{err}"
        );
    }
    assert!(
        stdout.contains("row 3: + Shop Buyer → Shop-Buyer added")
            && stdout.contains("1 added, 0 updated, 0 unchanged, 0 kept, 3 skipped (no login)"),
        "{stdout}"
    );
    assert!(!e.names().contains(&"Wifi".to_owned()));
    // Only items without a login: nothing to import, said so.
    std::fs::write(
        e.path("notes.csv"),
        "type,name,notes,login_password\nnote,Wifi,ZSEC-note-text,\n",
    )
    .unwrap();
    let out = import(&e, "notes.csv", &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("has no login rows to import (1 row(s) of a type without a login skipped"),
        "{err}"
    );
    assert!(
        !contains(&e.transcript.borrow(), b"ZSEC"),
        "a value was printed"
    );
}

/// Twenty-eighth pass (found by the twenty-eighth pass's attacker of import and redact):
/// Bitwarden joins an item's URIs with commas in `login_uri`, and such a cell gave no origin
/// at all. The first URI gives the origin; a note names the row and how many URIs the cell
/// holds, never one of them (`first_uri`'s unit test: a URI after a comma is never taken, as
/// it may be part of a query).
#[test]
fn import_takes_the_origin_of_the_first_of_several_bitwarden_uris() {
    let e = Env::new();
    e.init_with_cred();
    std::fs::write(
        e.path("bw.csv"),
        "folder,favorite,type,name,notes,fields,reprompt,login_uri,login_username,login_password,login_totp\n\
         ,,login,Bank,,,0,\"https://bank.example.com,https://bank2.example.com/x?t=Tok-canary\",u2,ZSEC-bank-pass,\n",
    )
    .unwrap();
    let out = import(&e, "bw.csv", &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("note: row 2: Bank: its URL cell holds 2 URIs (Bitwarden joins an item's URIs with commas): only the first one gives an origin"),
        "{err}"
    );
    let v: serde_json::Value = serde_json::from_str(&e.ok(
        &[
            "cred",
            "show",
            "Bank",
            "--json",
            "--passphrase-file",
            &e.pf(),
        ],
        b"",
    ))
    .unwrap();
    assert_eq!(
        v["origins"],
        serde_json::json!(["https://bank.example.com"])
    );
    for s in [&b"ZSEC"[..], b"canary", b"bank2"] {
        assert!(!contains(&e.transcript.borrow(), s), "a value was printed");
    }
}

/// Twenty-eighth pass (found by the twenty-eighth pass's attacker of import and redact): a
/// Bitwarden `steam://SECRET` TOTP cell was refused as "a character outside the base32
/// alphabet … store the secret as the site shows it", which is wrong advice. It is refused
/// as a Steam Guard secret (unsupported, as `encoder=steam` is), naming the row, never the
/// secret; nothing is imported.
#[test]
fn import_refuses_a_steam_totp_as_steam_naming_the_row() {
    let e = Env::new();
    e.init_with_cred();
    let before = e.vault_bytes();
    std::fs::write(
        e.path("steam.csv"),
        "name,login_password,login_totp\nSteamAcct,ZSEC-steam-pw,steam://JBSWY3DPEHPK3PXPJBSWY3DP\n",
    )
    .unwrap();
    let out = import(&e, "steam.csv", &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(
            "row 2: SteamAcct: the TOTP value is not usable: the TOTP seed is a Steam Guard secret"
        ) && err.contains("Steam Guard codes are not supported"),
        "{err}"
    );
    assert!(!err.contains("base32 alphabet"), "{err}");
    assert!(!contains(&e.transcript.borrow(), b"ZSEC") && !err.contains("JBSWY3DP"));
    assert_eq!(e.vault_bytes(), before, "nothing imported");
}

/// Twenty-eighth pass (found by the twenty-eighth pass's attacker of import and redact): a
/// row of 30 million commas was kept as 30 million cells, 740 MB for a 30 MB file, so the 64
/// MiB file cap allowed about 1.6 GB. A row's cells past the header's number are counted,
/// never kept: under an address-space limit of 96 MiB (the old reader needed 192 MB for the
/// cells of this 8 MB row alone) the row is refused with its counts, nothing imported.
#[test]
fn import_refuses_a_row_of_millions_of_cells_within_a_memory_limit() {
    let e = Env::new();
    e.init_with_cred();
    let before = e.vault_bytes();
    let text = format!(
        "name,login_password\nW2,ZSEC-wide-2,{}\n",
        ",".repeat(8_000_000)
    );
    std::fs::write(e.path("wide.csv"), text).unwrap();
    let mut c = e.wrapper("prlimit");
    c.arg(format!("--as={}", 96 << 20)).args([
        "--",
        env!("CARGO_BIN_EXE_scopevault"),
        "cred",
        "import",
        e.path("wide.csv").to_str().unwrap(),
        "--passphrase-file",
        &e.pf(),
    ]);
    let out = e.run_cmd(&mut c, b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("row 2: 8000003 cells, but the header row has 2")
            && err.contains("nothing was imported"),
        "{err}"
    );
    assert!(!err.contains("ZSEC"), "{err}");
    assert_eq!(e.vault_bytes(), before, "nothing imported");
}

/// Twenty-eighth pass (as above): the columns of a header row are bounded (1024; the
/// exporters write about ten), refused early with the documented message.
#[test]
fn import_refuses_a_header_of_more_than_1024_columns() {
    let e = Env::new();
    e.init_with_cred();
    let before = e.vault_bytes();
    let header: Vec<String> = ["name".to_owned(), "password".to_owned()]
        .into_iter()
        .chain((0..1023).map(|i| format!("c{i}")))
        .collect();
    std::fs::write(
        e.path("cols.csv"),
        format!("{}\nn,ZSEC-pw{}\n", header.join(","), ",".repeat(1023)),
    )
    .unwrap();
    let out = import(&e, "cols.csv", &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(
            "the header row has 1025 columns, more than the 1024 a CSV export to import may have"
        ),
        "{err}"
    );
    assert!(!err.contains("ZSEC"), "{err}");
    assert_eq!(e.vault_bytes(), before, "nothing imported");
}

/// Twenty-eighth pass (as above): every row read is held until the whole file is judged, at
/// a few hundred bytes a row whatever its size, so 64 MiB of one-letter rows took gigabytes.
/// More than 100,000 rows (blank lines not counted) are refused early, nothing imported.
#[test]
fn import_refuses_more_than_100000_rows() {
    let e = Env::new();
    e.init_with_cred();
    let before = e.vault_bytes();
    std::fs::write(
        e.path("rows.csv"),
        format!("name,password\n\n{}", "x\n".repeat(100_001)),
    )
    .unwrap();
    let out = import(&e, "rows.csv", &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("more than 100000 rows, the most one import reads")
            && err.contains("nothing was imported"),
        "{err:.2000}"
    );
    assert!(
        !err.contains("row 3:"),
        "refused before listing rows: {err:.2000}"
    );
    assert_eq!(e.vault_bytes(), before, "nothing imported");
}
