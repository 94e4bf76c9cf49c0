//! The clap definition of the `scopevault` command line, and nothing else, so that man pages
//! and shell completions can be generated from it alone.
//!
//! Secret values are never arguments: every option here takes a path, an fd number or a name.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  lint found blocking findings / a check or verification failed
  2  usage, parse or I/O error, a failed write to standard output included
     (the message says what to fix)
  3  the vault could not be unlocked (wrong passphrase, no unlock source)
  4  the vault file was refused (corrupt, forged, rolled back, unknown version)
  5  the daemon refused the request (denied, locked, over-scoped), is not running,
     or did not answer in time";

/// A least-privilege credential vault for synthetic-monitoring checkpoints.
#[derive(Debug, Parser)]
#[command(name = "scopevault", version = crate::VERSION, about, long_about = None, after_help = EXIT_CODES)]
pub struct Cli {
    /// Options shared by every command.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by every command (shown under their own heading in each command's help).
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// The vault file [default: $XDG_DATA_HOME/scopevault/vault.scopevault, /var/lib/scopevault/vault.scopevault as root].
    #[arg(long, global = true, env = "SCOPEVAULT_VAULT", value_name = "PATH")]
    pub vault: Option<PathBuf>,
    /// The daemon's socket [default: $XDG_RUNTIME_DIR/scopevault/scopevault.sock, /run/scopevault/scopevault.sock as root].
    #[arg(long, global = true, env = "SCOPEVAULT_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// How to unlock the vault.
    #[command(flatten)]
    pub unlock: UnlockArgs,
}

/// Unlock sources, tried in this order: the one given on the command line (`--identity-file`,
/// `--passphrase-file` or `--passphrase-fd`: two of them are a usage error), then an enrolled
/// keyring slot (when the keyring answers), then `SCOPEVAULT_IDENTITY_FILE`, then a no-echo
/// prompt on the controlling terminal (docs/operations.md "Unlock sources").
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Global options: unlocking")]
pub struct UnlockArgs {
    /// Read the passphrase from this file (one trailing newline is ignored).
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        conflicts_with = "passphrase_fd"
    )]
    pub passphrase_file: Option<PathBuf>,
    /// Read the passphrase from this open file descriptor (one trailing newline is ignored).
    #[arg(long, global = true, value_name = "N")]
    pub passphrase_fd: Option<i32>,
    /// Unlock with this age identity file (an identity-file slot).
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        env = "SCOPEVAULT_IDENTITY_FILE"
    )]
    pub identity_file: Option<PathBuf>,
    /// `identity_file` came from `SCOPEVAULT_IDENTITY_FILE`, not `--identity-file`: an implicit
    /// source, tried after one given on the command line (set by `cli::main` from clap's
    /// value source; docs/operations.md "Unlock sources").
    #[arg(skip)]
    pub identity_from_env: bool,
    /// Do not try the keyring slot even if one is enrolled.
    #[arg(long, global = true)]
    pub no_keyring: bool,
    /// Accept a vault whose generation is older than the newest one seen on this machine. A
    /// command that only reads (cred list, key list, …) opens it and saves nothing (checking a
    /// backup copy); a command that saves saves it again above that generation first (a backup
    /// restored on purpose, adopted); `serve` accepts the file it finds at its start (or first
    /// `unlock`) for that run only, and no older file on a later reload.
    #[arg(long, global = true)]
    pub allow_rollback: bool,
}

/// Every `scopevault` command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new vault.
    Init(InitArgs),
    /// Store, rotate, list, show and remove credentials.
    #[command(subcommand)]
    Cred(CredCommand),
    /// Manage key slots (the ways to unlock the vault).
    #[command(subcommand)]
    Key(KeyCommand),
    /// Apply a policy.toml to the vault, or print the applied one.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Check a policy.toml for credentials that can do more than their tasks need.
    Lint(LintArgs),
    /// Run the daemon that hands credentials to checks over a Unix socket.
    #[command(after_long_help = "Environment:
  SCOPEVAULT_STATE_DIR    the rollback record, the audit anchors and the fleet's applied
                          records [default: $XDG_STATE_HOME/scopevault, /var/lib/scopevault-state as root]
  CREDENTIALS_DIRECTORY   set by systemd: the identity file scopevault-identity in it unlocks
                          the vault at start (LoadCredentialEncrypted=scopevault-identity:...)
  LISTEN_FDS, LISTEN_PID  set by systemd: socket activation (the socket it passes is used)
  NOTIFY_SOCKET           set by systemd: readiness is reported (Type=notify)")]
    Serve(ServeArgs),
    /// Show the daemon's status.
    Status(StatusArgs),
    /// Lock the running daemon (forget the vault key).
    Lock,
    /// Unlock the running daemon.
    Unlock,
    /// Make the running daemon re-read the vault file.
    Reload,
    /// Fetch a task's credential from the daemon.
    Get(GetArgs),
    /// Print the current TOTP code of a task's credential.
    Totp(TotpArgs),
    /// Run a command with a task's credentials in its environment or in files.
    Exec(ExecArgs),
    /// Verify, show or rotate the audit log, or hash a value to search it for.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Run the whole product once in a throwaway directory: vault, daemon, a check, the lint.
    Demo,
    /// Print shell completions.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), or write one page per command with --dir.
    Man(ManArgs),
    /// Check the set-up: vault, unlock sources, keyring, socket, daemon, audit log, clock,
    /// memory locking. Prints ok/warn/fail lines with the fix; exits 1 on any failure.
    Doctor(AuditPathArgs),
    /// Sync secret values into the vault from an external store (admin side).
    #[command(subcommand)]
    Sync(SyncCommand),
    /// Fleet: print this vault's age recipient (what a checkpoint's operator gives the admin).
    Recipient,
    /// Fleet: write a signed bundle per location from the master vault and a policy.
    Publish(PublishArgs),
    /// Fleet: inspect, verify or apply a location's bundle on a checkpoint.
    #[command(subcommand)]
    Bundle(BundleCommand),
    /// Scrub a task's secret values out of artefacts made elsewhere (files or directories).
    Redact(RedactArgs),
}

/// `scopevault publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The policy.toml with [locations] and tasks' `locations`.
    // A help text shown by clap as written: `[locations]` is the TOML table, not a link.
    #[allow(rustdoc::broken_intra_doc_links)]
    #[arg(long, value_name = "FILE")]
    pub policy: PathBuf,
    /// Where NAME.svbundle (and NAME.svbundle.sig) are written.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Only these locations (repeatable) [default: every location].
    #[arg(long = "location", value_name = "NAME")]
    pub locations: Vec<String>,
    /// Sign each bundle with this OpenSSH private key (passphrase-protected keys prompt).
    #[arg(long, value_name = "SSH_KEY")]
    pub sign_key: Option<PathBuf>,
    /// Read the signing key's passphrase from this file instead of prompting.
    #[arg(long, value_name = "FILE", requires = "sign_key")]
    pub sign_key_passphrase_file: Option<PathBuf>,
    /// How long checkpoints accept the bundles: whole days, weeks or hours (`30d`, `2w`, `12h`).
    #[arg(long, value_name = "DURATION", default_value = "30d")]
    pub valid_for: String,
}

/// `scopevault bundle …`.
#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Print a bundle's manifest (no key needed; nothing is verified but its structure).
    Inspect {
        /// The bundle file.
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check a bundle's signature and manifest (location when given, expiry) without a vault.
    Verify(BundleCheckArgs),
    /// Verify a bundle and replace this vault's policy and credentials with its content.
    Apply(BundleApplyArgs),
}

/// What `bundle verify` and `bundle apply` check against.
#[derive(Debug, Args)]
pub struct BundleCheckArgs {
    /// The bundle file.
    pub file: PathBuf,
    /// The signature [default: FILE.sig].
    #[arg(long, value_name = "FILE")]
    pub signature: Option<PathBuf>,
    /// OpenSSH allowed_signers file naming the keys that may sign bundles.
    #[arg(long, value_name = "FILE")]
    pub allowed_signers: PathBuf,
    /// This checkpoint's location (needed on the first apply; then recorded in the vault).
    #[arg(long, value_name = "NAME")]
    pub location: Option<String>,
}

/// `scopevault bundle apply`.
#[derive(Debug, Args)]
pub struct BundleApplyArgs {
    /// The bundle, signature, signers and location.
    #[command(flatten)]
    pub check: BundleCheckArgs,
    /// The audit log the apply is recorded in [default: as for `serve`].
    #[arg(long, value_name = "PATH", env = "SCOPEVAULT_AUDIT")]
    pub audit: Option<PathBuf>,
    /// Apply again the very bundle applied last here (same generation and payload digest), to
    /// restore its signed content after a local change; any other bundle at or below that
    /// generation is still refused (unlike --allow-rollback).
    #[arg(long)]
    pub reapply: bool,
    /// Move this checkpoint from location OLD, the one it was set up for, to --location NEW
    /// (a location renamed in the policy, or this host given to another location): the
    /// bundle must be NEW's, and is taken at its generation, as a first apply is; NEW's
    /// generations count from it, and OLD's bundles are refused from then on.
    #[arg(long, value_name = "OLD", requires = "location")]
    pub from_location: Option<String>,
}

/// `scopevault man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write scopevault.1 and one page per subcommand (scopevault-lint.1, scopevault-cred-set.1,
    /// …) into this directory instead of printing the top-level page.
    #[arg(long, value_name = "DIR", value_hint = clap::ValueHint::DirPath)]
    pub dir: Option<PathBuf>,
}

/// `scopevault init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Create a passphrase-less vault unlocked by a new identity file written here (mode 0600).
    #[arg(long, value_name = "FILE")]
    pub identity_out: Option<PathBuf>,
    /// Also enrol an OS keyring slot.
    #[arg(long)]
    pub keyring: bool,
    /// Which keyring store to use for `--keyring`.
    #[arg(long, value_enum, default_value_t = KeyringStoreArg::SecretService)]
    pub keyring_store: KeyringStoreArg,
    /// A short name for the first key slot (1-64 printable characters), shown by `key list`.
    #[arg(long, value_name = "NAME")]
    pub label: Option<String>,
    /// Accept a new passphrase the zxcvbn estimator rates below 3 of 4 (warn instead of
    /// refusing).
    #[arg(long, conflicts_with = "identity_out")]
    pub weak_passphrase_ok: bool,
}

/// The OS keyring stores scopevault can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyringStoreArg {
    /// The freedesktop Secret Service (gnome-keyring, KeePassXC) over the session D-Bus.
    SecretService,
    /// The Linux kernel key retention service (keyutils): this session's keyring (which must
    /// be this user's own), linked to the user's persistent keyring.
    Keyutils,
}

/// `scopevault cred …`.
#[derive(Debug, Subcommand)]
pub enum CredCommand {
    /// Add a credential (secret values come from a prompt, stdin or files, never arguments).
    Add(CredAddArgs),
    /// Store or replace secret values of an existing credential.
    Set(CredSetArgs),
    /// List credentials (metadata only).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one credential (metadata only: never a secret value).
    Show {
        /// The credential's name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a credential.
    Rm {
        /// The credential's name.
        name: String,
    },
    /// Import credentials from a password manager's CSV export (Bitwarden, 1Password,
    /// KeePassXC), in one atomic save. Values are never printed.
    Import(CredImportArgs),
}

/// `scopevault cred import`.
#[derive(Debug, Args)]
pub struct CredImportArgs {
    /// The exported file. Columns (header row, any order): name|title, username|login_username,
    /// password|login_password, url|login_uri, totp|login_totp; others are ignored.
    #[arg(value_hint = clap::ValueHint::FilePath)]
    pub file: PathBuf,
    /// The file's format.
    #[arg(long, value_enum, default_value_t = ImportFormat::Csv)]
    pub format: ImportFormat,
    /// Replace the values of credentials that already exist (default: keep them, skip the row).
    #[arg(long)]
    pub update: bool,
}

/// Formats `cred import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImportFormat {
    /// Comma-separated values with a header row.
    Csv,
}

/// `scopevault cred add`.
#[derive(Debug, Args)]
pub struct CredAddArgs {
    /// The credential's name: letters, digits, `-`, `_`, `.`; at most 128 bytes.
    pub name: String,
    /// What kind of credential it is.
    #[arg(long, value_parser = kind_parser())]
    pub kind: crate::policy::CredentialKind,
    /// A scope the credential grants in the target system (repeatable).
    #[arg(long = "scope", value_name = "SCOPE")]
    pub scopes: Vec<String>,
    /// An origin the credential is for, scheme://host[:port], e.g. https://shop.example.com
    /// (repeatable; stored lowercase, as the policy writes origins; a port is 1 to 65535, and
    /// the default one, 443 for https and wss, 80 for http and ws, 21 for ftp, is left out; an IP address is written as
    /// a browser writes it, https://[::1], https://127.0.0.1; a URL with a user, path, query or
    /// fragment is refused).
    // A help text shown by clap as written (`<...>` would show in `--help`).
    #[allow(rustdoc::bare_urls)]
    #[arg(long = "origin", value_name = "ORIGIN")]
    pub origins: Vec<String>,
    /// A plain (non-secret) field, e.g. username=monitor (repeatable).
    #[arg(long = "field", value_name = "KEY=VALUE")]
    pub fields: Vec<String>,
    /// Secret inputs.
    #[command(flatten)]
    pub secrets: SecretInputArgs,
}

/// `scopevault cred set`.
#[derive(Debug, Args)]
pub struct CredSetArgs {
    /// The credential's name.
    pub name: String,
    /// A plain (non-secret) field to set, e.g. username=monitor (repeatable).
    #[arg(long = "field", value_name = "KEY=VALUE")]
    pub fields: Vec<String>,
    /// Secret inputs.
    #[command(flatten)]
    pub secrets: SecretInputArgs,
}

/// Where secret values come from.
#[derive(Debug, Args, Default)]
pub struct SecretInputArgs {
    /// A secret field to read from a no-echo prompt, or from stdin when stdin is not a
    /// terminal (then only one) (repeatable), e.g. --secret password.
    #[arg(long = "secret", value_name = "KEY")]
    pub secrets: Vec<String>,
    /// A secret field to read from a file (one trailing newline is ignored) (repeatable).
    #[arg(long = "secret-file", value_name = "KEY=PATH")]
    pub secret_files: Vec<String>,
}

/// `--kind`: the possible values are listed in `--help` and offered by completions.
fn kind_parser() -> impl clap::builder::TypedValueParser<Value = crate::policy::CredentialKind> {
    use clap::builder::TypedValueParser;
    let names = crate::policy::CredentialKind::ALL.map(|k| k.as_str());
    clap::builder::PossibleValuesParser::new(names).try_map(|s| {
        s.parse::<crate::policy::CredentialKind>()
            .map_err(|e| e.to_string())
    })
}

/// `scopevault key …`.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// List key slots.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Add a key slot (needs the vault unlocked by an existing slot).
    Add(KeyAddArgs),
    /// Remove a key slot. The last one cannot be removed, nor one whose removal leaves only
    /// keyring slots this host cannot open (their key is not in this session's store, or the
    /// store cannot be reached), unless --force. A keyring slot's key is deleted from its
    /// store: every item the store holds for the slot's entry.
    Remove {
        /// The slot's id or label, as shown by `key list`.
        #[arg(value_name = "ID|LABEL")]
        slot: String,
        /// Remove it even though no slot left can be opened on this host: the slots left are
        /// keyring slots of another host (or session) where the vault will be opened. This
        /// host can then never open the vault.
        #[arg(long)]
        force: bool,
    },
    /// Change a passphrase slot's passphrase, in one atomic save. The vault is unlocked as for
    /// any command (keyring, --identity-file, --passphrase-file/--passphrase-fd or the prompt);
    /// the new passphrase is prompted twice (no echo) or read from --new-passphrase-file; one a
    /// passphrase slot already takes is refused. The slot keeps its id, label and creation
    /// date; the old passphrase no longer opens it, and the last line says whether another
    /// slot still takes it (it still opens older copies, and the vault key stays: see
    /// docs/security.md, "Limits").
    Passwd(KeyPasswdArgs),
    /// Upgrade a format-version-1 vault to version 2. Unlock it with its passphrase or keyring;
    /// --identity-file FILE keeps that identity file's slot (re-made in the version-2 form).
    Migrate {
        /// Unlock through a version-1 identity-file slot, which cannot authenticate the file,
        /// when the vault has no passphrase or keyring slot. Accepted only if this machine's
        /// rollback record has seen exactly the file's generation. Check the credentials
        /// afterwards.
        #[arg(long)]
        trust_v1_identity_slot: bool,
    },
}

/// `scopevault key add`.
#[derive(Debug, Args)]
pub struct KeyAddArgs {
    /// Add a passphrase slot (the new passphrase is read from --new-passphrase-file or a prompt).
    #[arg(long, conflicts_with_all = ["keyring", "identity_out"], required_unless_present_any = ["keyring", "identity_out"])]
    pub passphrase: bool,
    /// Add an OS keyring slot.
    #[arg(long, conflicts_with = "identity_out")]
    pub keyring: bool,
    /// Add an identity-file slot and write the new identity to FILE (mode 0600).
    #[arg(long, value_name = "FILE")]
    pub identity_out: Option<PathBuf>,
    /// With --passphrase: read the new passphrase from this file.
    #[arg(long, value_name = "FILE", requires = "passphrase")]
    pub new_passphrase_file: Option<PathBuf>,
    /// With --keyring: which store.
    #[arg(long, value_enum, default_value_t = KeyringStoreArg::SecretService)]
    pub keyring_store: KeyringStoreArg,
    /// A short name for the new slot (1-64 printable characters, unique in the vault), shown
    /// by `key list` and accepted by `key remove` and `key passwd --slot`.
    #[arg(long, value_name = "NAME")]
    pub label: Option<String>,
    /// With --passphrase: accept a new passphrase the zxcvbn estimator rates below 3 of 4
    /// (warn instead of refusing).
    #[arg(long, requires = "passphrase")]
    pub weak_passphrase_ok: bool,
}

/// `scopevault key passwd`.
#[derive(Debug, Args)]
pub struct KeyPasswdArgs {
    /// The passphrase slot to change, by id or label (needed when the vault has several).
    #[arg(long, value_name = "ID|LABEL")]
    pub slot: Option<String>,
    /// Read the new passphrase from this file (one trailing newline is ignored) instead of
    /// prompting for it twice.
    #[arg(long, value_name = "FILE")]
    pub new_passphrase_file: Option<PathBuf>,
    /// Accept a new passphrase the zxcvbn estimator rates below 3 of 4 (warn instead of
    /// refusing).
    #[arg(long)]
    pub weak_passphrase_ok: bool,
}

/// `scopevault policy …`.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Lint a policy.toml and store it in the vault (refused if the lint finds errors).
    Apply {
        /// The policy file.
        file: PathBuf,
        /// Show what would change without writing the vault.
        #[arg(long)]
        dry_run: bool,
        /// Also refuse on findings of this class and above.
        #[arg(long, value_enum)]
        deny: Option<DenyLevel>,
    },
    /// Print the applied policy as TOML.
    Export,
}

/// The least severe class that blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum DenyLevel {
    /// Errors only.
    Error,
    /// Errors and security warnings (the default of `lint`).
    SecurityWarning,
    /// Also warnings.
    Warning,
    /// Everything, suggestions included.
    Suggestion,
}

/// Output formats of `scopevault lint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LintFormat {
    /// rustc-style text with the source line.
    Text,
    /// JSON (schema in docs/lint-rules.md).
    Json,
    /// SARIF 2.1.0 for code scanning.
    Sarif,
    /// JUnit XML for CI dashboards.
    Junit,
}

/// `scopevault lint`.
#[derive(Debug, Args)]
#[command(
    after_help = "Exit codes:\n  0  nothing blocking\n  1  blocking findings (errors and security warnings by default; see --deny)\n  2  usage, parse or I/O error"
)]
pub struct LintArgs {
    /// The policy file.
    #[arg(default_value = "policy.toml")]
    pub file: PathBuf,
    /// Also run the rules that need the vault (missing-secret, both-totp-seeds,
    /// unusable-totp-seed, secret-beside-totp-seed, rotation-overdue, vault-differs-from-policy,
    /// totp-seed-handed-out).
    #[arg(long = "with-vault", alias = "check-vault")]
    pub with_vault: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = LintFormat::Text)]
    pub format: LintFormat,
    /// Write the report to this file instead of stdout (not a file lint reads — the policy,
    /// an --audit log, the vault, an unlock file — nor a symbolic link, a vault or an age
    /// file; a report left there by an earlier run is removed when this run writes no report).
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Block on findings of this class and above [default: security-warning].
    #[arg(long, value_enum)]
    pub deny: Option<DenyLevel>,
    /// An audit log to take usage evidence from (repeatable): runs the usage rules
    /// (credential-never-fetched, task-credential-never-fetched, runner-never-seen,
    /// task-never-fetched). Each log's hash chain is verified first.
    #[arg(long = "audit", value_name = "FILE")]
    pub audit: Vec<PathBuf>,
    /// With --audit: judge only the last DURATION of the logs (e.g. 30d, 12h, 2w) [default: all].
    #[arg(long, value_name = "DURATION", requires = "audit")]
    pub since: Option<String>,
}

/// `scopevault serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The audit log [default: $XDG_STATE_HOME/scopevault/audit.jsonl, /var/log/scopevault/audit.jsonl as root].
    #[arg(long, value_name = "PATH", env = "SCOPEVAULT_AUDIT")]
    pub audit: Option<PathBuf>,
    /// Group whose members may lock, unlock and reload (besides root and the daemon's user).
    #[arg(long, value_name = "GROUP")]
    pub admin_group: Option<String>,
    /// User allowed to ask for tickets besides admins (repeatable).
    #[arg(long = "scheduler", value_name = "USER")]
    pub schedulers: Vec<String>,
    /// Maximum simultaneous connections (each costs a buffer, not a thread); extra ones get
    /// `busy`. Root and the daemon's user have 16 more slots that no other uid can take.
    #[arg(long, default_value_t = crate::agent::server::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Seconds a client may take to send one request line, or to read one answer (1 to
    /// 3600); a stop waits up to this and a second for the requests in flight.
    #[arg(long, value_name = "SECONDS", default_value_t = 5, value_parser = read_timeout)]
    pub read_timeout: u64,
    /// Seconds an idle connection stays open (1 to 86400).
    #[arg(long, value_name = "SECONDS", default_value_t = 60, value_parser = idle_timeout)]
    pub idle_timeout: u64,
    /// Let this group reach the socket: its directory becomes 0750 root:GROUP and the socket
    /// 0660 root:GROUP (runner users in GROUP can then connect).
    #[arg(long, value_name = "GROUP")]
    pub socket_group: Option<String>,
    /// Benchmark build only: hand out before the audit record is durable (no journal write,
    /// no fdatasync: a record may be lost in a crash after its secret went out). Only a build
    /// with the cargo feature `bench-no-audit-sync` has it; never run such a build for real.
    #[cfg(feature = "bench-no-audit-sync")]
    #[arg(long)]
    pub no_audit_sync: bool,
    /// Free space (MiB) kept on the audit log's file system for hand-outs: below it,
    /// refusals of non-admins are counted, not written (docs/audit.md, "Growth").
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    pub audit_reserve_mib: u64,
    /// Audit records (KiB a second) each uid that is not an admin may have written for what
    /// it is allowed (fetches, tickets, scrub reports); past it and its burst those requests
    /// get `busy` (docs/audit.md, "Growth").
    #[arg(long, value_name = "KIB", default_value_t = crate::agent::budget::DEFAULT_RATE / 1024)]
    pub audit_rate_kib: u64,
    /// Audit records (KiB) such a uid may have written at once; below the free-space reserve,
    /// also the most it may write until there is room again.
    #[arg(long, value_name = "KIB", default_value_t = crate::agent::budget::DEFAULT_BURST / 1024)]
    pub audit_burst_kib: u64,
    /// The audit log holds records but its HMAC key was lost: make a new key and record that
    /// in the log (without it, such a log stops the start).
    #[arg(long)]
    pub new_audit_key: bool,
    /// The audit log does not match its anchor (records cut from its end, or the anchored
    /// record rewritten): start anyway, recording the gap in the chain (without it, such a log
    /// stops the start).
    #[arg(long)]
    pub accept_audit_gap: bool,
    /// Maximum simultaneous connections of one peer uid (root and the daemon's user are
    /// exempt and always get a slot); the uid's extra ones get `busy`.
    #[arg(long, default_value_t = 64)]
    pub max_connections_per_uid: usize,
    /// Answers (MiB) decided for one peer uid and not yet read by it: past it, that uid's next
    /// requests wait unread until it reads (admins, `--admin-group` members included, are
    /// never held). 1 to 65536, and at most --max-queued-mib.
    #[arg(long, value_name = "MIB", default_value_t = crate::agent::backlog::DEFAULT_MAX_QUEUED_PER_UID / (1024 * 1024), value_parser = queued_mib)]
    pub max_queued_mib_per_uid: usize,
    /// Answers (MiB) decided for every uid together and not yet read: past it, no uid's
    /// requests but the admins' (root, the daemon's user, `--admin-group` members) are read
    /// until answers are. 1 to 65536.
    #[arg(long, value_name = "MIB", default_value_t = crate::agent::backlog::DEFAULT_MAX_QUEUED / (1024 * 1024), value_parser = queued_mib)]
    pub max_queued_mib: usize,
    /// Threads that serve connections (event loops); the default is one per two CPUs, at
    /// most 4.
    #[arg(long, value_name = "N")]
    pub event_loops: Option<usize>,
}

/// `serve --read-timeout SECONDS`: 1 to [`MAX_READ_TIMEOUT`](crate::agent::server::MAX_READ_TIMEOUT).
fn read_timeout(s: &str) -> Result<u64, String> {
    seconds_within(
        s,
        crate::agent::server::MAX_READ_TIMEOUT.as_secs(),
        "longer than an hour is not a bound on one request line (and a stop waits up to it for the requests in flight)",
    )
}

/// `serve --max-queued-mib-per-uid MIB` and `--max-queued-mib MIB`: 1 to
/// [`MAX_QUEUED_MIB`](crate::agent::backlog::MAX_QUEUED_MIB). Any number was taken, up to
/// 2^64-1 MiB, which turned the bound off without a word (twenty-third pass).
fn queued_mib(s: &str) -> Result<usize, String> {
    let max = crate::agent::backlog::MAX_QUEUED_MIB;
    match s.parse::<u64>() {
        Ok(0) => Err(format!(
            "0 would hold every request of a uid that is not an admin: give 1 to {max} MiB"
        )),
        Ok(n) if n <= max as u64 => Ok(n as usize),
        Ok(_) => Err(format!(
            "more than 64 GiB of answers not read is not a bound on the daemon's memory (a typo?): give 1 to {max} MiB"
        )),
        Err(_) => Err(format!("not a whole number of MiB: give 1 to {max}")),
    }
}

/// `serve --idle-timeout SECONDS`: 1 to [`MAX_IDLE_TIMEOUT`](crate::agent::server::MAX_IDLE_TIMEOUT).
fn idle_timeout(s: &str) -> Result<u64, String> {
    seconds_within(
        s,
        crate::agent::server::MAX_IDLE_TIMEOUT.as_secs(),
        "longer than a day is not a bound on an idle connection",
    )
}

/// A whole number of seconds from 1 to `max`; `too_long` says why more is refused. Every
/// duration `serve` takes is bounded here, where it is typed: `--read-timeout
/// 18446744073709551615` was accepted, and the daemon panicked at its stop, adding it to the
/// clock (twentieth pass, found by attacking the daemon as a shared service).
fn seconds_within(s: &str, max: u64, too_long: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(0) => Err(format!(
            "0 would close every connection at once: give 1 to {max} seconds"
        )),
        Ok(n) if n <= max => Ok(n),
        Ok(_) => Err(format!("{too_long}: give 1 to {max} seconds")),
        Err(_) => Err(format!("not a whole number of seconds: give 1 to {max}")),
    }
}

/// `scopevault status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON (as --format json).
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// Output format: text, json, or prometheus (node_exporter textfile collector metrics;
    /// exits 0 whenever the metrics were printed, `scopevault_up 0` says the daemon did
    /// not answer).
    #[arg(long, value_enum)]
    pub format: Option<StatusFormat>,
    /// The audit log whose head is reported [default: the daemon's, which it names to an
    /// admin; else as for `serve`].
    #[arg(long, value_name = "PATH", env = "SCOPEVAULT_AUDIT")]
    pub audit: Option<PathBuf>,
    /// With --format prometheus: write the metrics to FILE (for the textfile collector)
    /// instead of stdout, atomically: a new file of a random name in FILE's directory
    /// (created O_EXCL, never through a link), mode 0644, fsynced, renamed over FILE. The
    /// directory must be this user's or root's and writable by nobody else.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Formats `status` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusFormat {
    /// For people.
    Text,
    /// One JSON object.
    Json,
    /// Prometheus text exposition, for node_exporter's textfile collector.
    Prometheus,
}

/// How long a fetch (`get`, `totp`, `exec`, `redact`) waits for the daemon.
#[derive(Debug, Args, Clone, Copy)]
pub struct FetchWait {
    /// Give up when the daemon has not taken the connection, or has not answered the fetch,
    /// within SECONDS (1 to 3600): exit 5, nothing fetched. A fetch that arrives while the
    /// daemon loads a changed vault file waits for that load.
    #[arg(long = "timeout", value_name = "SECONDS", default_value_t = DEFAULT_FETCH_TIMEOUT, value_parser = fetch_timeout)]
    pub seconds: u64,
}

impl FetchWait {
    /// The bound, for [`crate::client::Client::connect_within`].
    pub fn duration(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.seconds)
    }
}

/// How long a fetch waits by default. A daemon that runs answers a fetch in milliseconds; what
/// can legitimately hold one is the load of a vault file saved since it was loaded (the fetch
/// waits for it, docs/operations.md), which waits in turn for an admin's `unlock` running at
/// that moment (Argon2, about a second at the default parameters). A minute covers that many
/// times over, and still ends a check the runner would otherwise lose for ever on a daemon
/// stopped with `kill -STOP`.
pub const DEFAULT_FETCH_TIMEOUT: u64 = 60;

/// The longest `--timeout` of a fetch: an hour. Longer is a typo, not a bound.
pub const MAX_FETCH_TIMEOUT: u64 = 3600;

/// `--timeout SECONDS` of a fetch: 1 to [`MAX_FETCH_TIMEOUT`].
fn fetch_timeout(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(0) => Err(format!(
            "a timeout of 0 would give up before the daemon could answer: give 1 to {MAX_FETCH_TIMEOUT} seconds"
        )),
        Ok(n) if n <= MAX_FETCH_TIMEOUT => Ok(n),
        Ok(_) => Err(format!(
            "longer than an hour is not a bound: give 1 to {MAX_FETCH_TIMEOUT} seconds"
        )),
        Err(_) => Err(format!(
            "not a whole number of seconds: give 1 to {MAX_FETCH_TIMEOUT}"
        )),
    }
}

/// `scopevault get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The task to fetch for.
    #[arg(long, value_hint = clap::ValueHint::Other)]
    pub task: String,
    /// Which of the task's credentials (needed when it has several).
    #[arg(long)]
    pub credential: Option<String>,
    /// Print only this field's value, raw: its bytes exactly, with no newline added (one is
    /// added only when stdout is a terminal).
    #[arg(long, conflicts_with = "json")]
    pub field: Option<String>,
    /// Print the whole response as JSON.
    #[arg(long)]
    pub json: bool,
    /// How long to wait for the daemon.
    #[command(flatten)]
    pub wait: FetchWait,
}

/// `scopevault totp`.
#[derive(Debug, Args)]
pub struct TotpArgs {
    /// The task to fetch for.
    #[arg(long, value_hint = clap::ValueHint::Other)]
    pub task: String,
    /// Which of the task's credentials.
    #[arg(long)]
    pub credential: Option<String>,
    /// How long to wait for the daemon.
    #[command(flatten)]
    pub wait: FetchWait,
}

/// `scopevault exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The task to fetch for.
    #[arg(long, value_hint = clap::ValueHint::Other)]
    pub task: String,
    /// Which of the task's credentials (default: all of them).
    #[arg(long)]
    pub credential: Option<String>,
    /// How long to wait for the daemon.
    #[command(flatten)]
    pub wait: FetchWait,
    /// Hand secrets over as files in a private directory ($SCOPEVAULT_CREDENTIALS_DIRECTORY).
    #[arg(long)]
    pub files: bool,
    /// Do not mask secret values in the child's output.
    #[arg(long)]
    pub no_mask: bool,
    /// When the command ends, scrub every file under DIR of the task's secret values, in
    /// every form (repeatable): HAR files, traces (zip), logs, reports.
    #[arg(long, value_name = "DIR")]
    pub artifacts: Vec<PathBuf>,
    /// What to do with artefacts that cannot be scrubbed as text (images, video): keep them
    /// (listed on stderr with a warning) or drop them.
    #[arg(long, value_enum, value_name = "WHAT", default_value = "keep")]
    pub artifacts_binary: crate::redact::BinaryPolicy,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<std::ffi::OsString>,
}

/// `scopevault audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain; exit 1 and name the first bad line if it is broken.
    ///
    /// Files moved aside by rotations (`audit.jsonl.20261129T200000Z`, logrotate's
    /// `audit.jsonl.1` …) can be given too: they are put in order by their first seq and
    /// checked as one chain ending with the live log.
    Verify {
        /// The live audit log.
        #[command(flatten)]
        path: AuditPathArgs,
        /// Earlier files of the same log (any order).
        #[arg(value_name = "ROTATED")]
        rotated: Vec<PathBuf>,
    },
    /// Ask the daemon to move the log aside (`<log>.<UTC time>`) and continue the chain in a
    /// new file (admins; or send the daemon SIGUSR1 after moving the file yourself).
    Rotate,
    /// Print the audit log.
    Show {
        /// The audit log.
        #[command(flatten)]
        path: AuditPathArgs,
        /// Keep printing new records as they are written.
        #[arg(long)]
        follow: bool,
    },
    /// Read a value from stdin and print its HMAC, to search the log for it.
    Hash(AuditPathArgs),
}

/// The audit log path.
#[derive(Debug, Args)]
pub struct AuditPathArgs {
    /// The audit log [default: as for `serve`].
    #[arg(long, value_name = "PATH", env = "SCOPEVAULT_AUDIT")]
    pub audit: Option<PathBuf>,
}

/// `scopevault redact`.
#[derive(Debug, Args)]
pub struct RedactArgs {
    /// The task whose values are scrubbed (fetched from the daemon as this runner: authorised
    /// and audited like a fetch).
    #[arg(long, value_hint = clap::ValueHint::Other)]
    pub task: String,
    /// Which of the task's credentials (default: all of them).
    #[arg(long)]
    pub credential: Option<String>,
    /// How long to wait for the daemon.
    #[command(flatten)]
    pub wait: FetchWait,
    /// What to do with files that cannot be scrubbed as text: keep (with a warning) or drop.
    #[arg(long, value_enum, value_name = "WHAT", default_value = "keep")]
    pub artifacts_binary: crate::redact::BinaryPolicy,
    /// Files and directories to scrub (directories are walked; links are not followed).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

/// `scopevault sync …`.
#[derive(Debug, Subcommand)]
pub enum SyncCommand {
    /// Read each credential of the applied policy from OpenBao / HashiCorp Vault KV v2
    /// (`MOUNT/data/PREFIX<credential>`) and store changed values in one atomic save.
    ///
    /// The token comes from --token-file or an AppRole login (--approle-role-id and
    /// --approle-secret-id-file) when one is given, else from BAO_TOKEN or VAULT_TOKEN; never
    /// from an argument.
    Openbao(SyncOpenbaoArgs),
}

/// `scopevault sync openbao`.
#[derive(Debug, Args)]
pub struct SyncOpenbaoArgs {
    /// The server, e.g. https://bao.example.com:8200 (http:// only to a loopback address).
    // A help text shown by clap as written (`<...>` would show in `--help`).
    #[allow(rustdoc::bare_urls)]
    #[arg(long, env = "BAO_ADDR", value_name = "URL")]
    pub addr: String,
    /// The KV version 2 mount, e.g. `secret`.
    #[arg(long, value_name = "MOUNT")]
    pub mount: String,
    /// The path under the mount where credentials live, e.g. `monitoring/`; each credential
    /// is read from `PREFIX<credential name>`.
    #[arg(long, value_name = "PATH/", default_value = "")]
    pub prefix: String,
    /// The namespace (sent as X-Vault-Namespace); empty (or `/`) is the root namespace, none.
    #[arg(long, env = "BAO_NAMESPACE", value_name = "NS")]
    pub namespace: Option<String>,
    /// Show what would change; save nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Remove credentials of the policy that are missing upstream at the path they were synced
    /// from (otherwise only reported; one synced from elsewhere or set by hand is kept).
    #[arg(long)]
    pub prune: bool,
    /// Take a KV version lower than the one synced before (a server restored from a backup,
    /// or a secret deleted and written again); without it such a sync is refused.
    #[arg(long)]
    pub allow_older_versions: bool,
    /// Trust only the CA certificate(s) in this PEM file (a private CA) instead of the
    /// public roots.
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// Read the token from this file (used rather than BAO_TOKEN or VAULT_TOKEN).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// AppRole login: the role id (an identifier, not a secret).
    #[arg(long, value_name = "ID", requires = "approle_secret_id_file")]
    pub approle_role_id: Option<String>,
    /// AppRole login: read the secret id from this file.
    #[arg(long, value_name = "FILE", requires = "approle_role_id")]
    pub approle_secret_id_file: Option<PathBuf>,
    /// Time limit in seconds for each request to OpenBao.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub timeout: u64,
}
