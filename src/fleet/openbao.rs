//! A minimal OpenBao / HashiCorp Vault client for `scopevault sync openbao`: token or AppRole
//! authentication and KV v2 reads, over a blocking HTTP/1.1 client (`ureq`, rustls).
//!
//! Used by the admin-side command only, never by `serve`: checkpoint daemons do not talk to
//! the network.
//!
//! What it never does: put a token or a secret value in a URL, an argument, an error message
//! or a `Debug` string. Response bodies are read into zeroed buffers and KV values go straight
//! into [`SecretString`]s. TLS is verified (Mozilla's roots, or only the CA given with
//! `--ca-cert`); plain `http://` is accepted for loopback addresses only, and `localhost` is
//! then 127.0.0.1 or ::1 whatever the system's resolver says; redirects are not followed (a
//! redirect would carry the token elsewhere); proxies from the environment are not used.

use std::fmt;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::policy::CredentialKind;
use crate::secret::{SecretString, MAX_SECRET_LEN};
use crate::vault::{
    is_secret_field_name, validate_field_key, validate_field_value, FieldMap, SECRET_FIELD_NAMES,
};

/// Most keys read from one KV secret: a credential has a few fields, and a secret with
/// hundreds of thousands (a 4 MiB body holds that many) would be stored field by field.
const MAX_KEYS: usize = 256;
const TOO_MANY_KEYS: &str = "a secret holds more than 256 keys (a credential has a few fields)";
const KEY_TWICE: &str = "a key appears twice";

/// Largest KV version taken: 2^53 − 1, the largest integer a JSON number carries exactly in
/// common implementations (an IEEE double). OpenBao's versions count the writes to one secret,
/// so a real one is far below it; a larger one is a hostile or broken answer, and taken it
/// would stay the version synced before, above which no real version could ever come (every
/// later sync refused as going backwards).
const MAX_KV_VERSION: u64 = (1 << 53) - 1;

/// Largest response body read (a KV v2 secret is at most a few dozen KiB of fields).
const MAX_BODY: u64 = 4 << 20;

/// Everything that can go wrong talking to OpenBao. Messages carry the method, the request
/// path and the HTTP status or transport error; never a token or a secret value.
#[derive(Debug, thiserror::Error)]
pub enum BaoError {
    /// The server answered with an error status.
    #[error("OpenBao answered {method} {path} with HTTP {status}{}{}", detail_of(detail), hint_of(*status, detail))]
    Status {
        /// `GET` or `POST`.
        method: &'static str,
        /// The request path (`/v1/…`).
        path: String,
        /// The HTTP status.
        status: u16,
        /// The server's `errors` strings, escaped and shortened.
        detail: String,
    },
    /// No answer: refused connection, timeout, TLS failure, broken connection.
    #[error("no answer from OpenBao for {method} {path}: {error}")]
    Transport {
        /// `GET` or `POST`.
        method: &'static str,
        /// The request path.
        path: String,
        /// What failed (ureq's error; it never includes headers or bodies).
        error: String,
    },
    /// The answer was not what a KV v2 engine or the auth method returns.
    #[error("OpenBao's answer to {method} {path} is malformed: {why}")]
    Malformed {
        /// `GET` or `POST`.
        method: &'static str,
        /// The request path.
        path: String,
        /// What is wrong (never a value).
        why: String,
    },
    /// Bad options (address, mount, prefix, CA file).
    #[error("{0}")]
    Usage(String),
}

fn detail_of(d: &str) -> String {
    if d.is_empty() {
        String::new()
    } else {
        format!(" ({d})")
    }
}

fn hint_of(status: u16, detail: &str) -> &'static str {
    match status {
        403 => ": the token is invalid, expired, or its policy does not grant read on this path",
        503 if detail.contains("sealed") => {
            ": the store is sealed; unseal it and run the sync again"
        }
        404 => ": no such mount or path (check --mount, and that it is a KV version 2 engine)",
        _ => "",
    }
}

/// What is wrong with a token's text ([`token_fault`]). Its `Display` says so without the
/// token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenFault {
    /// Empty, or only whitespace: no token at all, reported as a missing one is.
    Blank,
    /// Whitespace or a control character among other characters.
    Unusable,
}

impl fmt::Display for TokenFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenFault::Blank => "is empty or only whitespace",
            TokenFault::Unusable => {
                "holds whitespace or a control character, which no OpenBao token has"
            }
        })
    }
}

/// Whether `token` can be a token: one that is empty or only whitespace is none (it was sent
/// as a blank `X-Vault-Token`, which the server takes as no token, twenty-second pass), and
/// no token holds whitespace or a control character anywhere (it would go into a header as
/// it is). Says what is wrong, never the token.
pub fn token_fault(token: &str) -> Option<TokenFault> {
    if token.trim().is_empty() {
        Some(TokenFault::Blank)
    } else if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some(TokenFault::Unusable)
    } else {
        None
    }
}

/// Where the OpenBao token comes from, in the order they are tried.
pub enum Auth {
    /// A token (from `BAO_TOKEN`/`VAULT_TOKEN` or a token file); the string says which.
    Token(SecretString, String),
    /// AppRole: the role id (an identifier, not a secret) and the secret id read from a file.
    AppRole {
        /// The role id.
        role_id: String,
        /// The secret id.
        secret_id: SecretString,
    },
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Token(_, from) => write!(f, "Auth::Token([REDACTED] from {from})"),
            Auth::AppRole { role_id, .. } => {
                write!(
                    f,
                    "Auth::AppRole {{ role_id: {role_id:?}, secret_id: [REDACTED] }}"
                )
            }
        }
    }
}

impl Auth {
    /// Where the token came from, for messages (`BAO_TOKEN`, `token file F`, `AppRole …`).
    pub fn describe(&self) -> String {
        match self {
            Auth::Token(_, from) => from.clone(),
            Auth::AppRole { role_id, .. } => format!("AppRole login (role id {role_id})"),
        }
    }
}

/// Connection options.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Base address, e.g. `https://bao.example.com:8200`.
    pub addr: String,
    /// Enterprise/OpenBao namespace (`X-Vault-Namespace`), if any.
    pub namespace: Option<String>,
    /// PEM file of the CA(s) to trust instead of the public roots.
    pub ca_cert: Option<std::path::PathBuf>,
    /// Time limit for each request (connect, send, receive).
    pub timeout: Duration,
}

/// A connection to OpenBao with a token.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    namespace: Option<String>,
    token: SecretString,
    /// The token and, after an AppRole login, the secret id: what no message may show.
    hidden: Hidden,
    /// The token came from an AppRole login: it is the sync's own, revoked when the client is
    /// dropped (the sync ends, done or failed), rather than left valid for the role's TTL.
    /// Shared with the [`Client::revoker`] a signal handler holds; locked through the revoke,
    /// so that the token is revoked once, by whichever comes first.
    own_token: std::sync::Arc<std::sync::Mutex<bool>>,
}

/// Longest piece of server text a message quotes, in characters (after [`redact_echoes`]).
const MAX_QUOTED: usize = 300;

/// The values no message may show (the token, the AppRole secret id), and the one way text
/// the server chose becomes message text: the `errors` strings of an error answer, the
/// mount's type and KV version, a KV key name, a number it sent, a transport error (which can
/// quote the answer) all go through [`Hidden::quote`] or [`Hidden::redacted`], which cut
/// every echo of a hidden value out first ([`redact_echoes`]). A server (or a proxy before it)
/// can put what it was sent anywhere in an answer, a 200 as well as an error (twenty-first
/// pass: the mount's `data.type` and `options.version` and a key name were quoted raw).
pub struct Hidden(Vec<SecretString>);

impl fmt::Debug for Hidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hidden([REDACTED; {}])", self.0.len())
    }
}

impl Hidden {
    /// Nothing to hide (tests, and messages about text no server sent).
    pub fn none() -> Hidden {
        Hidden(Vec::new())
    }

    /// `server_text` with every echo of a hidden value replaced by `[REDACTED]`, shortened to
    /// [`MAX_QUOTED`] characters: for text shown as it is (a transport error).
    pub fn redacted(&self, server_text: &str) -> String {
        let hide: Vec<&SecretString> = self.0.iter().collect();
        redact_echoes(server_text, &hide)
            .chars()
            .take(MAX_QUOTED)
            .collect()
    }

    /// [`Hidden::redacted`], then escaped (`escape_debug`): for text quoted inside a message
    /// (a key name, the mount's type), where a control character must not reach the terminal.
    /// Redacted first, so an escape in the middle of an echo does not hide it.
    pub fn quote(&self, server_text: &str) -> String {
        self.redacted(server_text).escape_debug().to_string()
    }
}

/// A sync that ends any way (done, refused, failed) revokes the token its AppRole login gave;
/// until the thirty-first pass each run left one more live token for the role's whole TTL.
impl Drop for Client {
    fn drop(&mut self) {
        if let Err(e) = self.revoke_own_token() {
            // A warning that cannot be written is lost, never a panic in a drop.
            let _ = writeln!(
                std::io::stderr().lock(),
                "scopevault: warning: the token the AppRole login gave this sync could not be revoked ({e}): it stays valid until the role's token_ttl runs out (a role's tokens may revoke themselves when they carry the `default` policy, which allows `update` on `auth/token/revoke-self`)"
            );
        }
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("namespace", &self.namespace)
            .field("token", &"[REDACTED]")
            .finish()
    }
}

/// The own-token flag, locked (a panic elsewhere does not stop the revoke).
fn lock_own(own: &std::sync::Mutex<bool>) -> std::sync::MutexGuard<'_, bool> {
    own.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Check the address: `https://…`, or `http://` to a loopback host only (the token would
/// otherwise cross the network in the clear). Returns it without a trailing `/`.
pub fn check_addr(addr: &str) -> Result<String, BaoError> {
    let bad = |why: &str| Err(BaoError::Usage(format!("--addr: {why}")));
    let a = addr.trim_end_matches('/');
    if a.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return bad("the address contains spaces or control characters");
    }
    let (scheme, rest) = match a.split_once("://") {
        Some(p) => p,
        None => return bad("give a URL such as https://bao.example.com:8200"),
    };
    let host_port = rest.split('/').next().unwrap_or("");
    if host_port.is_empty() || rest.contains('@') || rest.contains('?') || rest.contains('#') {
        return bad("give a URL such as https://bao.example.com:8200 (no user, query or fragment)");
    }
    match scheme {
        "https" => {}
        "http" => {
            let host = if let Some(h) = host_port.strip_prefix('[') {
                h.split(']').next().unwrap_or("")
            } else {
                host_port.rsplit_once(':').map_or(host_port, |(h, _)| h)
            };
            // Host names are case-insensitive (the resolver below takes `localhost` in any
            // case as loopback); `localhost.` is not taken, there either.
            let loopback = host.eq_ignore_ascii_case("localhost")
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if !loopback {
                return bad("plain http:// is accepted only for a loopback address (127.0.0.1, ::1, localhost): the token would cross the network in the clear. Use https://");
            }
        }
        _ => return bad("the scheme must be https:// (or http:// to a loopback address)"),
    }
    Ok(a.to_owned())
}

/// The name resolution of the sync's HTTP agent. For plain `http://`, which [`check_addr`]
/// lets through for a loopback host only, the system is never asked: `localhost` (in any
/// case) is 127.0.0.1 then ::1, as RFC 6761 (6.3) has it and as curl and the browsers answer
/// it themselves, a literal address is itself, and a host that is neither, or an address that
/// is not loopback, is refused. The system's answer (an /etc/hosts line, a DNS search domain)
/// could send `localhost` anywhere, and the token with it in the clear (found by attacking
/// the fleet surface from the documents, nineteenth pass). For `https://` the system
/// resolves as usual: TLS checks the name.
///
/// ureq's resolver trait is in its `unversioned` module (outside its semver promise): the
/// lock file pins the version, and the unit test below pins the behaviour.
#[derive(Debug, Default)]
struct LoopbackHttp<R = ureq::unversioned::resolver::DefaultResolver> {
    /// The system's resolver, for `https://` only.
    system: R,
}

impl<R: ureq::unversioned::resolver::Resolver> ureq::unversioned::resolver::Resolver
    for LoopbackHttp<R>
{
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
        if uri.scheme() == Some(&ureq::http::uri::Scheme::HTTPS) {
            return self.system.resolve(uri, config, timeout);
        }
        let host = uri.host().unwrap_or("");
        let port = uri.port_u16().unwrap_or(80);
        let ips: Vec<IpAddr> = if host.eq_ignore_ascii_case("localhost") {
            vec![Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()]
        } else {
            // `http::Uri` keeps an IPv6 literal's brackets.
            let literal = host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host);
            literal.parse::<IpAddr>().into_iter().collect()
        };
        let mut out = self.empty();
        for ip in ips.into_iter().filter(IpAddr::is_loopback) {
            out.push(SocketAddr::new(ip, port));
        }
        if out.is_empty() {
            return Err(ureq::Error::HostNotFound);
        }
        Ok(out)
    }
}

/// Check a mount or prefix path segment list: `[A-Za-z0-9._-]` segments separated by `/`,
/// no empty, `.` or `..` segment.
pub fn check_path(what: &str, p: &str, allow_empty: bool) -> Result<(), BaoError> {
    if p.is_empty() {
        return if allow_empty {
            Ok(())
        } else {
            Err(BaoError::Usage(format!("{what} is empty")))
        };
    }
    let ok = p.len() <= 512
        && p.split('/').all(|s| {
            !s.is_empty()
                && s != "."
                && s != ".."
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        });
    if ok {
        Ok(())
    } else {
        Err(BaoError::Usage(format!(
            "{what} \"{}\" must be path segments of letters, digits, `-`, `_` and `.` separated by `/`",
            p.escape_debug()
        )))
    }
}

impl Client {
    /// Build the HTTP agent (TLS verified, no redirects, no proxy) and authenticate: a
    /// token is used as it is, once [`token_fault`] finds nothing wrong with it; AppRole logs
    /// in first.
    pub fn connect(opts: &ClientOptions, auth: Auth) -> Result<Client, BaoError> {
        let base = check_addr(&opts.addr)?;
        if let Auth::Token(t, from) = &auth {
            if let Some(fault) = token_fault(t.expose()) {
                return Err(BaoError::Usage(format!("the token from {from} {fault}")));
            }
        }
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(ca) = &opts.ca_cert {
            tls = tls.root_certs(load_ca(ca)?);
        }
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(None)
            .timeout_global(Some(opts.timeout))
            .tls_config(tls.build())
            .user_agent(concat!("scopevault/", env!("CARGO_PKG_VERSION")))
            .build();
        let agent = ureq::Agent::with_parts(
            config,
            ureq::unversioned::transport::DefaultConnector::default(),
            LoopbackHttp::<ureq::unversioned::resolver::DefaultResolver>::default(),
        );
        let mut client = Client {
            agent,
            base,
            namespace: opts.namespace.clone(),
            token: SecretString::from(String::new()),
            hidden: Hidden::none(),
            own_token: Default::default(),
        };
        match auth {
            Auth::Token(t, _) => {
                client.hidden.0.push(t.clone());
                client.token = t;
            }
            Auth::AppRole { role_id, secret_id } => {
                // The secret id stays hidden after the login: a later answer can echo it too.
                client.hidden.0.push(secret_id.clone());
                client.token = client.approle_login(&role_id, &secret_id)?;
                client.hidden.0.push(client.token.clone());
                *lock_own(&client.own_token) = true;
            }
        }
        Ok(client)
    }

    /// Revoke the token an AppRole login gave (`auth/token/revoke-self`, which the `default`
    /// policy allows); a token handed in is the caller's and is left alone. Once only.
    pub fn revoke_own_token(&self) -> Result<(), BaoError> {
        let mut own = lock_own(&self.own_token);
        if !std::mem::take(&mut *own) {
            return Ok(());
        }
        let path = "/v1/auth/token/revoke-self";
        let (status, bytes) = self.send("POST", path, Some(b"{}"), true)?;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(status_error("POST", path, status, &bytes, &self.hidden))
        }
    }

    /// Whether the token is the sync's own (an AppRole login's), not yet revoked.
    pub fn owns_token(&self) -> bool {
        *lock_own(&self.own_token)
    }

    /// A second handle on this connection, for a signal handler: it revokes the same own
    /// token ([`Client::revoke_own_token`]), once between the two.
    pub fn revoker(&self) -> Client {
        Client {
            agent: self.agent.clone(),
            base: self.base.clone(),
            namespace: self.namespace.clone(),
            token: self.token.clone(),
            hidden: Hidden(self.hidden.0.clone()),
            own_token: self.own_token.clone(),
        }
    }

    /// What no message may show, for messages built outside the client ([`classify`]).
    pub fn hidden(&self) -> &Hidden {
        &self.hidden
    }

    fn approle_login(
        &self,
        role_id: &str,
        secret_id: &SecretString,
    ) -> Result<SecretString, BaoError> {
        let path = "/v1/auth/approle/login".to_owned();
        // The body holds the secret id: built in a zeroed buffer.
        let body = Zeroizing::new(
            serde_json::to_vec(&serde_json::json!({
                "role_id": role_id,
                "secret_id": secret_id.expose(),
            }))
            .map_err(|e| BaoError::Usage(e.to_string()))?,
        );
        let (status, bytes) = self.send("POST", &path, Some(&body), false)?;
        if status != 200 {
            return Err(status_error("POST", &path, status, &bytes, &self.hidden));
        }
        #[derive(Deserialize)]
        struct Login {
            auth: Option<LoginAuth>,
        }
        #[derive(Deserialize)]
        struct LoginAuth {
            client_token: SecretString,
        }
        let login: Login =
            serde_json::from_slice(&bytes).map_err(|e| malformed("POST", &path, e))?;
        match login.auth {
            Some(a) if token_fault(a.client_token.expose()).is_none() => Ok(a.client_token),
            Some(a) => Err(BaoError::Malformed {
                method: "POST",
                path,
                why: format!(
                    "the login answer's auth.client_token {}",
                    token_fault(a.client_token.expose()).unwrap_or(TokenFault::Blank)
                ),
            }),
            None => Err(BaoError::Malformed {
                method: "POST",
                path,
                why: "no auth.client_token in the login answer".into(),
            }),
        }
    }

    /// One request; returns the status and the body (zeroed on drop).
    fn send(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&[u8]>,
        with_token: bool,
    ) -> Result<(u16, Zeroizing<Vec<u8>>), BaoError> {
        let url = format!("{}{}", self.base, path);
        let transport = |e: ureq::Error| BaoError::Transport {
            method,
            path: path.to_owned(),
            error: self.hidden.redacted(&describe_ureq(&e)),
        };
        let result = match body {
            Some(b) => {
                let mut r = self
                    .agent
                    .post(&url)
                    .header("Content-Type", "application/json");
                if let Some(ns) = &self.namespace {
                    r = r.header("X-Vault-Namespace", ns);
                }
                if with_token {
                    r = r.header("X-Vault-Token", self.token.expose());
                }
                r.send(b)
            }
            None => {
                let mut r = self.agent.get(&url);
                if let Some(ns) = &self.namespace {
                    r = r.header("X-Vault-Namespace", ns);
                }
                if with_token {
                    r = r.header("X-Vault-Token", self.token.expose());
                }
                r.call()
            }
        };
        let mut resp = result.map_err(transport)?;
        let status = resp.status().as_u16();
        let mut buf = Zeroizing::new(Vec::with_capacity(16 * 1024));
        resp.body_mut()
            .as_reader()
            .take(MAX_BODY + 1)
            .read_to_end(&mut buf)
            .map_err(|e| BaoError::Transport {
                method,
                path: path.to_owned(),
                error: format!(
                    "reading the answer failed: {}",
                    self.hidden.redacted(&e.to_string())
                ),
            })?;
        if buf.len() as u64 > MAX_BODY {
            return Err(BaoError::Malformed {
                method,
                path: path.to_owned(),
                why: format!("the answer is larger than {} MiB", MAX_BODY >> 20),
            });
        }
        Ok((status, buf))
    }

    /// Check that `mount` is a KV version 2 engine, when the token may ask
    /// (`sys/internal/ui/mounts`, which OpenBao answers for any token with access under the
    /// mount). Returns `Ok(false)` when it could not tell (403/404: the reads will say more).
    pub fn check_kv2_mount(&self, mount: &str) -> Result<bool, BaoError> {
        let path = format!("/v1/sys/internal/ui/mounts/{mount}");
        let (status, bytes) = self.send("GET", &path, None, true)?;
        match status {
            200 => {}
            403 | 404 => return Ok(false),
            _ => return Err(status_error("GET", &path, status, &bytes, &self.hidden)),
        }
        #[derive(Deserialize)]
        struct Answer {
            data: Option<MountInfo>,
        }
        #[derive(Deserialize)]
        struct MountInfo {
            #[serde(rename = "type")]
            kind: Option<String>,
            options: Option<MountOptions>,
            /// The mount's own path (`secret/`): OpenBao answers for any path inside a mount
            /// with that mount.
            path: Option<String>,
        }
        #[derive(Deserialize)]
        struct MountOptions {
            version: Option<String>,
        }
        let a: Answer = serde_json::from_slice(&bytes).map_err(|e| malformed("GET", &path, e))?;
        let info = a.data.ok_or_else(|| BaoError::Malformed {
            method: "GET",
            path: path.clone(),
            why: "no `data` member".into(),
        })?;
        // `--mount secret/data` (the API path a policy names) or `secret/monitoring` is a path
        // inside the mount `secret`: every read under it would find no secret, and `--prune`
        // would remove every credential.
        if let Some(found) = info.path.as_deref().map(|p| p.trim_matches('/')) {
            if !found.is_empty() && found != mount {
                let found = self.hidden.quote(found);
                return Err(BaoError::Usage(format!(
                    "--mount {mount} is a path inside the mount `{found}`, not a mount: give the mount itself (`--mount {found}`) and the path under it in --prefix (KV version 2 adds the `data/` of its API paths itself)"
                )));
            }
        }
        let kind = info.kind.unwrap_or_default();
        let version = info.options.and_then(|o| o.version).unwrap_or_default();
        if kind != "kv" || version != "2" {
            return Err(BaoError::Usage(format!(
                "the mount `{mount}` is a `{}` engine{}: sync reads a KV version 2 engine (`bao secrets enable -version=2 -path={mount} kv`)",
                self.hidden.quote(&kind),
                if kind == "kv" { format!(" of version {}", self.hidden.quote(&version)) } else { String::new() },
            )));
        }
        Ok(true)
    }

    /// Read the current version of `MOUNT/data/PATH`. `Ok(None)` when there is no secret
    /// there, or its current version is deleted or destroyed.
    pub fn read_kv2(&self, mount: &str, path: &str) -> Result<Option<KvSecret>, BaoError> {
        let req = format!("/v1/{mount}/data/{path}");
        let (status, bytes) = self.send("GET", &req, None, true)?;
        match status {
            200 => {}
            404 => {
                // A missing secret is 404 with an empty `errors` list (or a deleted version's
                // metadata and null data); a missing mount or route names the route in `errors`.
                if errors_of(&bytes).is_some_and(|e| e.is_empty()) || has_null_data(&bytes) {
                    return Ok(None);
                }
                return Err(status_error("GET", &req, status, &bytes, &self.hidden));
            }
            _ => return Err(status_error("GET", &req, status, &bytes, &self.hidden)),
        }
        #[derive(Deserialize)]
        struct Answer {
            data: Option<Kv2Data>,
        }
        #[derive(Deserialize)]
        struct Kv2Data {
            data: Option<KvFields>,
            metadata: Option<Kv2Meta>,
        }
        #[derive(Deserialize)]
        struct Kv2Meta {
            version: u64,
            created_time: String,
            #[serde(default)]
            deletion_time: String,
            #[serde(default)]
            destroyed: bool,
        }
        let a: Answer = serde_json::from_slice(&bytes).map_err(|e| malformed("GET", &req, e))?;
        let mal = |why: &str| BaoError::Malformed {
            method: "GET",
            path: req.clone(),
            why: why.to_owned(),
        };
        let d = a
            .data
            .ok_or_else(|| mal("no `data` member (is this a KV version 2 mount?)"))?;
        let meta = d
            .metadata
            .ok_or_else(|| mal("no `data.metadata` member (is this a KV version 2 mount?)"))?;
        // KV version 2 numbers a secret's versions from 1; a 0 is no answer of OpenBao's (it
        // would show as a version that went backwards).
        if meta.version == 0 {
            return Err(mal(
                "`data.metadata.version` is 0 (KV version 2 numbers versions from 1)",
            ));
        }
        // Implausibly large: it would block every real version after it (MAX_KV_VERSION).
        if meta.version > MAX_KV_VERSION {
            return Err(mal(&format!(
                "`data.metadata.version` is {}, above {MAX_KV_VERSION} (2^53 - 1): KV version 2 counts a secret's writes, and no real secret has that many",
                self.hidden.quote(&meta.version.to_string())
            )));
        }
        if meta.destroyed {
            return Ok(None);
        }
        // A deletion time is set in advance on every version written under a mount or secret
        // with `delete_version_after`: the version is deleted only once that time has come
        // (OpenBao then answers 404 itself).
        if !meta.deletion_time.is_empty() {
            let at = OffsetDateTime::parse(
                &meta.deletion_time,
                &time::format_description::well_known::Rfc3339,
            )
            .map_err(|_| mal("`data.metadata.deletion_time` is not an RFC 3339 time"))?;
            if at <= OffsetDateTime::now_utc() {
                return Ok(None);
            }
        }
        let fields = d.data.ok_or_else(|| mal("no `data.data` member"))?;
        let updated = OffsetDateTime::parse(
            &meta.created_time,
            &time::format_description::well_known::Rfc3339,
        )
        .map_err(|_| mal("`data.metadata.created_time` is not an RFC 3339 time"))?;
        Ok(Some(KvSecret {
            path: format!("{mount}/data/{path}"),
            version: meta.version,
            // Kept to the nanosecond OpenBao gives: a secret deleted with its metadata and
            // written again starts at the same version, and only this time tells the two
            // apart (thirty-second pass: cut to whole seconds, a rewrite within the second
            // was taken for the version synced before, and never synced).
            updated,
            fields: fields.0,
        }))
    }
}

/// One KV v2 secret version as read.
#[derive(Debug)]
pub struct KvSecret {
    /// `MOUNT/data/PATH`.
    pub path: String,
    /// Its KV version.
    pub version: u64,
    /// When this version was written (`created_time`, to the nanosecond OpenBao gives).
    pub updated: OffsetDateTime,
    /// Its keys and values (values in secret types until classified).
    pub fields: Vec<(String, KvValue)>,
}

/// One KV value: a string (kept secret until classified) or another JSON type (refused).
pub enum KvValue {
    /// A string.
    Str(SecretString),
    /// Not a string: the JSON type's name.
    Other(&'static str),
}

impl fmt::Debug for KvValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvValue::Str(_) => f.write_str("Str([REDACTED])"),
            KvValue::Other(t) => write!(f, "Other({t})"),
        }
    }
}

/// The `data.data` object, read without a `serde_json::Value` copy of the strings.
struct KvFields(Vec<(String, KvValue)>);

impl<'de> Deserialize<'de> for KvFields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KvFields;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of keys and values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<KvFields, A::Error> {
                let mut out = Vec::new();
                let mut seen = std::collections::HashSet::new();
                while let Some(k) = a.next_key::<String>()? {
                    if out.len() == MAX_KEYS {
                        return Err(de::Error::custom(TOO_MANY_KEYS));
                    }
                    if !seen.insert(k.clone()) {
                        return Err(de::Error::custom(KEY_TWICE));
                    }
                    let v = a.next_value::<KvValue>()?;
                    out.push((k, v));
                }
                Ok(KvFields(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl<'de> Deserialize<'de> for KvValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KvValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<KvValue, E> {
                Ok(KvValue::Str(SecretString::from(s.to_owned())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<KvValue, E> {
                Ok(KvValue::Str(SecretString::from(s)))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<KvValue, E> {
                Ok(KvValue::Other("boolean"))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<KvValue, E> {
                Ok(KvValue::Other("number"))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<KvValue, E> {
                Ok(KvValue::Other("number"))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<KvValue, E> {
                Ok(KvValue::Other("number"))
            }
            fn visit_unit<E: de::Error>(self) -> Result<KvValue, E> {
                Ok(KvValue::Other("null"))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<KvValue, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(KvValue::Other("object"))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut a: A) -> Result<KvValue, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(KvValue::Other("array"))
            }
        }
        d.deserialize_any(V)
    }
}

/// The secret fields a credential of `kind` must have one of (empty: none required).
pub fn required_secrets(kind: CredentialKind) -> &'static [&'static str] {
    match kind {
        CredentialKind::Login => &["password", "passphrase"],
        CredentialKind::Token => &[
            "token",
            "api_key",
            "access_token",
            "secret",
            "client_secret",
        ],
        CredentialKind::Totp => &["totp_seed", "otpauth"],
        CredentialKind::Certificate => &["private_key"],
        CredentialKind::Generic => &[],
    }
}

/// Split a KV secret's keys into plain fields and secret fields by the kind's rules:
///
/// - a key named in [`SECRET_FIELD_NAMES`] is a secret (`password`, `token`, `totp_seed`, …);
///   a `totp_seed`/`otpauth` must produce a code, and a secret holds one of the two, never
///   both;
/// - the kind's required secret must be there ([`required_secrets`]);
/// - any other key becomes a plain field, unless it looks like a secret (`db_password`,
///   `ssh_key`, …): then the sync refuses, naming the key, so a secret never lands in a field
///   that `cred show` prints;
/// - keys must be valid field names and values strings.
///
/// Errors name the key and the path, never a value; a key is quoted through `hidden`
/// ([`Client::hidden`]), so a key that echoes the token shows `[REDACTED]` in its place.
pub fn classify(
    kind: CredentialKind,
    secret: KvSecret,
    hidden: &Hidden,
) -> Result<(FieldMap<String>, FieldMap<SecretString>), String> {
    let path = &secret.path;
    let mut fields = FieldMap::new();
    let mut secrets = FieldMap::new();
    for (k, v) in secret.fields {
        // Only for a message: the key as the server named it, echoes cut out, escaped.
        let quoted = || hidden.quote(&k);
        if validate_field_key(&k).is_err() {
            return Err(format!(
                "{path}: key `{}` is not a valid field name ({}): rename it in OpenBao",
                quoted(),
                crate::vault::FIELD_NAME_RULE
            ));
        }
        let v = match v {
            KvValue::Str(s) => s,
            KvValue::Other(t) => {
                return Err(format!(
                    "{path}: key `{}` holds a JSON {t}; only string values are synced",
                    quoted()
                ))
            }
        };
        if SECRET_FIELD_NAMES.contains(&k.as_str()) {
            if v.is_empty() {
                return Err(format!("{path}: secret key `{}` is empty", quoted()));
            }
            if !crate::secret::within_secret_limit(v.len()) {
                return Err(format!(
                    "{path}: secret key `{}` is larger than {} KiB",
                    quoted(),
                    MAX_SECRET_LEN / 1024
                ));
            }
            if matches!(k.as_str(), "totp_seed" | "otpauth") {
                // Under 80 bits is refused (`sync` warns of one under 128).
                if let Err(e) = crate::agent::totp::check_new_seed(&k, &v) {
                    return Err(format!(
                        "{path}: key `{}` is not a usable TOTP secret: {e}",
                        quoted()
                    ));
                }
            }
            secrets.insert(k, v);
            continue;
        }
        // The same rule as `cred set --field`: a key named like a secret never becomes a
        // plain field, which `cred show` prints and `exec` does not mask.
        if is_secret_field_name(&k, Some(kind)) {
            return Err(format!(
                "{path}: key `{}` looks like a secret but is not one of the secret field names ({}): rename it in OpenBao to one of those, or to a name that is not secret-looking if it really is a plain field",
                quoted(),
                SECRET_FIELD_NAMES.join(", ")
            ));
        }
        // The message names the key as given: quoted, as above.
        if let Err(e) = validate_field_value(&quoted(), v.expose()) {
            return Err(format!("{path}: {e}"));
        }
        fields.insert(k, v.expose().to_owned());
    }
    if crate::vault::holds_both_totp_seeds(secrets.keys().map(String::as_str)) {
        return Err(format!(
            "{path}: the secret has both `totp_seed` and `otpauth` keys: two TOTP seeds, and codes come from one only, so a credential holds one of them; remove the one not in use from the secret in OpenBao (`bao kv put` it again without that key)"
        ));
    }
    // A `totp` credential holds its seed alone: its runners get codes, never a secret
    // (twenty-eighth pass).
    if kind == CredentialKind::Totp {
        if let Some(k) = crate::vault::secret_beside_seed(secrets.keys().map(String::as_str)) {
            return Err(format!(
                "{path}: key `{}` is a secret, and a totp credential holds only its seed (`totp_seed` or `otpauth`): its runners get codes, never a secret; remove the key from the secret in OpenBao (`bao kv put` it again without that key), or sync it into a credential of another kind",
                hidden.quote(k)
            ));
        }
    }
    let need = required_secrets(kind);
    if !need.is_empty() && !need.iter().any(|n| secrets.contains_key(n)) {
        return Err(format!(
            "{path}: a {kind} credential needs a secret key named {} and there is none",
            need.iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(" or ")
        ));
    }
    // The bound on one credential (vault-format.md, "Payload"), as `cred set` has it: before
    // anything is saved, naming the path, never a value.
    if let Some(over) = crate::vault::credential_over_bound(&fields, &secrets) {
        return Err(format!(
            "{path}: the secret makes a credential over the bound on one credential: {over}; split it into several secrets in OpenBao"
        ));
    }
    Ok((fields, secrets))
}

/// Largest `--ca-cert` file read: 1 MiB. A CA bundle is a few KiB per certificate (the whole
/// Mozilla set is about 200 KiB); read whole with no bound, `--ca-cert /dev/zero` took all the
/// memory there was (twenty-first pass). A pipe is read as a file is, and no further than this.
const MAX_CA_FILE: usize = 1 << 20;

fn load_ca(path: &Path) -> Result<ureq::tls::RootCerts, BaoError> {
    let cannot = |e: std::io::Error| {
        BaoError::Usage(format!("--ca-cert {}: cannot read it: {e}", path.display()))
    };
    let mut pem = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_CA_FILE as u64 + 1).read_to_end(&mut pem))
        .map_err(cannot)?;
    if pem.len() > MAX_CA_FILE {
        return Err(BaoError::Usage(format!(
            "--ca-cert {} is more than {MAX_CA_FILE} bytes (1 MiB), more than a CA bundle holds: give the PEM file of the CA certificate(s) that sign OpenBao's certificate",
            path.display()
        )));
    }
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => {
                return Err(BaoError::Usage(format!(
                    "--ca-cert {}: not a PEM file: {e}",
                    path.display()
                )))
            }
        }
    }
    if certs.is_empty() {
        return Err(BaoError::Usage(format!(
            "--ca-cert {}: no certificate in it",
            path.display()
        )));
    }
    Ok(ureq::tls::RootCerts::new_with_certs(&certs))
}

fn describe_ureq(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(t) => format!("timed out ({t})"),
        ureq::Error::ConnectionFailed => "connection failed".into(),
        ureq::Error::HostNotFound => "host not found".into(),
        ureq::Error::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => {
                "connection refused (is OpenBao running at --addr?)".into()
            }
            _ => format!("{io}"),
        },
        other => other.to_string(),
    }
}

fn malformed(method: &'static str, path: &str, e: serde_json::Error) -> BaoError {
    // Not serde's message: "invalid type: string \"…\"" would quote a value. Our own
    // refusals ([`KvFields`]) name no value, and say what is wrong.
    let msg = e.to_string();
    let what = match e.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => "it is not JSON",
        _ => [KEY_TWICE, TOO_MANY_KEYS]
            .into_iter()
            .find(|m| msg.starts_with(m))
            .unwrap_or("a member is missing or has the wrong type"),
    };
    BaoError::Malformed {
        method,
        path: path.to_owned(),
        why: format!("{what} (line {}, column {})", e.line(), e.column()),
    }
}

fn errors_of(bytes: &[u8]) -> Option<Vec<String>> {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<String>,
    }
    serde_json::from_slice::<Errors>(bytes)
        .ok()
        .map(|e| e.errors)
}

fn has_null_data(bytes: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Answer {
        data: Option<Inner>,
    }
    #[derive(Deserialize)]
    struct Inner {
        data: Option<IgnoredAny>,
        metadata: Option<IgnoredAny>,
    }
    serde_json::from_slice::<Answer>(bytes)
        .ok()
        .and_then(|a| a.data)
        .is_some_and(|d| d.data.is_none() && d.metadata.is_some())
}

/// An error answer as a [`BaoError::Status`]. Its `errors` strings are OpenBao's own messages,
/// shown escaped and shortened; a server (or a proxy before it) that echoes what it was sent
/// would show the token or the AppRole secret id: the entries, joined as they are shown, are
/// quoted through `hidden` ([`Hidden::quote`]), which cuts every echo of each out first.
fn status_error(
    method: &'static str,
    path: &str,
    status: u16,
    bytes: &[u8],
    hidden: &Hidden,
) -> BaoError {
    let joined = Zeroizing::new(
        errors_of(bytes)
            .unwrap_or_default()
            .iter()
            .map(|e| e.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
            .join("; "),
    );
    BaoError::Status {
        method,
        path: path.to_owned(),
        status,
        detail: hidden.quote(&joined),
    }
}

/// The shortest run of a hidden value's characters (or of one of its forms) that
/// [`redact_echoes`] cuts out wherever it stands. A random token's 8 characters are about
/// 48 bits, far from anything an error message says by chance.
const ECHO_RUN: usize = 8;

/// `text` with every echo of a `hide` value replaced by `[REDACTED]`. Looked for, without
/// regard to ASCII case: each form [`crate::secret::secret_forms`] gives of the value (the
/// value itself; base64 and base64url, whole and the part that depends on the value alone at
/// each of the three alignments; percent-, JSON- and HTML-escaped; hex; base32: the list
/// `exec` masks with), and not only whole: every run of [`ECHO_RUN`] or more consecutive
/// characters of a form is cut, so a value split in two (across `errors` entries, with text
/// between the parts) goes as well. A form shorter than that is cut only whole.
///
/// A server can always transform a value beyond recognition (reverse it, split it finer);
/// this catches what echoes and the usual encodings do. The server holds the token anyway:
/// the point is that the user's terminal and logs do not.
fn redact_echoes(text: &str, hide: &[&SecretString]) -> Zeroizing<String> {
    // Every lower-cased form, then every ECHO_RUN-byte run of the long ones (sorted, for a
    // binary search): secret material, zeroed on drop, and the runs' buffer sized once so
    // that no reallocation leaves a copy behind.
    let mut forms: Vec<Zeroizing<Vec<u8>>> = Vec::new();
    for h in hide.iter().map(|h| h.expose()).filter(|h| !h.is_empty()) {
        forms.push(Zeroizing::new(h.to_ascii_lowercase().into_bytes()));
        for f in crate::secret::secret_forms(h) {
            forms.push(Zeroizing::new(f.text.to_ascii_lowercase().into_bytes()));
        }
    }
    let (long, short): (Vec<_>, Vec<_>) = forms.into_iter().partition(|f| f.len() >= ECHO_RUN);
    let mut runs: Zeroizing<Vec<[u8; ECHO_RUN]>> = Zeroizing::new(Vec::with_capacity(
        long.iter().map(|f| f.len() + 1 - ECHO_RUN).sum(),
    ));
    for f in &long {
        for w in f.windows(ECHO_RUN) {
            let mut run = [0u8; ECHO_RUN];
            run.copy_from_slice(w);
            runs.push(run);
        }
    }
    runs.sort_unstable();
    runs.dedup();
    let lower = Zeroizing::new(text.to_ascii_lowercase().into_bytes());
    let mut cut = vec![false; lower.len()];
    for (i, w) in lower.windows(ECHO_RUN).enumerate() {
        if runs.binary_search_by(|r| r.as_slice().cmp(w)).is_ok() {
            cut[i..i + ECHO_RUN].fill(true);
        }
    }
    for f in short.iter().filter(|f| !f.is_empty()) {
        for (i, w) in lower.windows(f.len()).enumerate() {
            if w == f.as_slice() {
                cut[i..i + f.len()].fill(true);
            }
        }
    }
    // A character any of whose bytes is cut goes whole; each cut stretch is one `[REDACTED]`.
    let mut out = Zeroizing::new(String::with_capacity(text.len()));
    let mut in_cut = false;
    for (i, c) in text.char_indices() {
        if cut[i..i + c.len_utf8()].contains(&true) {
            if !in_cut {
                out.push_str("[REDACTED]");
            }
            in_cut = true;
        } else {
            out.push(c);
            in_cut = false;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by attacking get/exec/totp as a check author (sixteenth pass): a credential
    /// could hold both TOTP seed fields, and codes came from one of them in silence. A KV
    /// secret with both keys is refused by the sync, naming both keys and never a value.
    #[test]
    fn regression_a_kv_secret_with_both_totp_seeds_is_refused() {
        for kind in [CredentialKind::Totp, CredentialKind::Login] {
            let s = secret(&[
                ("password", "pw-canary"),
                ("totp_seed", "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"),
                ("otpauth", "otpauth://totp/x?secret=JBSWY3DPEHPK3PXP"),
            ]);
            let e = classify(kind, s).unwrap_err();
            assert!(
                e.contains("`totp_seed`")
                    && e.contains("`otpauth`")
                    && e.contains("secret/data/m/x"),
                "{e}"
            );
            assert!(
                !e.contains("GEZDGNBV") && !e.contains("JBSWY3DP") && !e.contains("pw-canary"),
                "{e}"
            );
        }
        let (_, s) = classify(
            CredentialKind::Totp,
            secret(&[("otpauth", "otpauth://totp/x?secret=JBSWY3DPEHPK3PXP")]),
        )
        .unwrap();
        assert_eq!(s.len(), 1);
    }

    /// Twenty-second pass (found by an attacker forging signed bundles): nothing bounded a
    /// credential's fields, and a KV secret may have any number of plain keys. One that makes
    /// a credential of more than 64 fields is refused, naming the path and the bound, never a
    /// value; 64 fields are synced.
    #[test]
    fn regression_a_kv_secret_over_the_bound_on_one_credential_is_refused() {
        let keys: Vec<(String, &str)> = (0..64)
            .map(|i| (format!("k{i:02}"), "plain-canary"))
            .collect();
        let mut pairs: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        pairs.push(("password", "pw-canary"));
        let e = classify(CredentialKind::Login, secret(&pairs)).unwrap_err();
        assert!(
            e.contains("secret/data/m/x")
                && e.contains("65 fields")
                && e.contains("more than the 64 one credential may hold"),
            "{e}"
        );
        assert!(!e.contains("canary"), "{e}");
        pairs.remove(0);
        let (f, s) = classify(CredentialKind::Login, secret(&pairs)).unwrap();
        assert_eq!(f.len() + s.len(), 64);
    }

    /// [`super::classify`] with nothing to hide.
    fn classify(
        kind: CredentialKind,
        secret: KvSecret,
    ) -> Result<(FieldMap<String>, FieldMap<SecretString>), String> {
        super::classify(kind, secret, &Hidden::none())
    }

    fn secret(pairs: &[(&str, &str)]) -> KvSecret {
        KvSecret {
            path: "secret/data/m/x".into(),
            version: 1,
            updated: OffsetDateTime::UNIX_EPOCH,
            fields: pairs
                .iter()
                .map(|(k, v)| {
                    (
                        (*k).to_owned(),
                        KvValue::Str(SecretString::from((*v).to_owned())),
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn classify_splits_by_the_kinds_rules_and_names_refused_keys_without_values() {
        let (f, s) = classify(
            CredentialKind::Login,
            secret(&[("username", "mon"), ("password", "pw-canary")]),
        )
        .unwrap();
        assert_eq!(f.get("username").map(String::as_str), Some("mon"));
        assert_eq!(
            s.get("password").map(SecretString::expose),
            Some("pw-canary")
        );
        assert!(!f.contains_key("password"));

        let e = classify(
            CredentialKind::Login,
            secret(&[("password", "pw"), ("db_password", "v-canary")]),
        )
        .unwrap_err();
        assert!(
            e.contains("`db_password`") && !e.contains("v-canary"),
            "{e}"
        );

        let e = classify(CredentialKind::Login, secret(&[("username", "u")])).unwrap_err();
        assert!(e.contains("`password`"), "{e}");

        let e = classify(CredentialKind::Generic, secret(&[("Bad Key", "v-canary")])).unwrap_err();
        assert!(e.contains("Bad Key") && !e.contains("v-canary"), "{e}");

        let e = classify(
            CredentialKind::Totp,
            secret(&[("totp_seed", "not base32!")]),
        )
        .unwrap_err();
        assert!(
            e.contains("`totp_seed`") && !e.contains("not base32"),
            "{e}"
        );

        let mut s = secret(&[("password", "pw")]);
        s.fields.push(("port".into(), KvValue::Other("number")));
        let e = classify(CredentialKind::Login, s).unwrap_err();
        assert!(e.contains("`port`") && e.contains("number"), "{e}");

        let (f, s) = classify(CredentialKind::Generic, secret(&[("region", "eu")])).unwrap();
        assert_eq!((f.len(), s.len()), (1, 0));
    }

    /// A key `.` or `..` cannot be a field: `exec --files` makes each field a file name
    /// (sixteenth pass); `...` can.
    #[test]
    fn classify_refuses_dot_and_dotdot_keys() {
        for key in [".", ".."] {
            let e = classify(CredentialKind::Generic, secret(&[(key, "v-canary")])).unwrap_err();
            assert!(
                e.contains(&format!("key `{key}`"))
                    && e.contains("not `.` or `..`")
                    && !e.contains("v-canary"),
                "{e}"
            );
        }
        classify(CredentialKind::Generic, secret(&[("...", "eu")])).unwrap();
    }

    /// Twenty-eighth pass (found by the attacker of a long-running daemon): a `totp`
    /// credential holds only its seed, so a secret key beside it (`password`, `token`) is
    /// refused, naming the key and never a value; a seed alone, with plain fields, is synced.
    #[test]
    fn classify_refuses_a_secret_beside_the_seed_of_a_totp_credential() {
        const SEED: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
        for key in ["password", "token"] {
            let e = classify(
                CredentialKind::Totp,
                secret(&[("totp_seed", SEED), (key, "v-canary")]),
            )
            .unwrap_err();
            assert!(
                e.contains(&format!("key `{key}`"))
                    && e.contains("holds only its seed")
                    && !e.contains("v-canary")
                    && !e.contains(SEED),
                "{e}"
            );
        }
        let (fields, secrets) = classify(
            CredentialKind::Totp,
            secret(&[("totp_seed", SEED), ("username", "u")]),
        )
        .unwrap();
        assert_eq!(secrets.keys().collect::<Vec<_>>(), ["totp_seed"]);
        assert_eq!(fields.keys().collect::<Vec<_>>(), ["username"]);
    }

    #[test]
    fn addresses_refuse_cleartext_http_off_loopback() {
        assert!(check_addr("https://bao.example.com:8200/").is_ok());
        assert!(check_addr("http://127.0.0.1:8200").is_ok());
        assert!(check_addr("http://[::1]:8200").is_ok());
        assert!(check_addr("http://localhost:8200").is_ok());
        assert!(check_addr("http://bao.example.com:8200").is_err());
        assert!(check_addr("http://10.0.0.1").is_err());
        assert!(check_addr("ftp://x").is_err());
        assert!(check_addr("https://user@x").is_err());
        assert!(check_path("--prefix", "monitoring/prod", false).is_ok());
        assert!(check_path("--prefix", "monitoring/../x", false).is_err());
        assert!(check_path("--mount", "a//b", false).is_err());
    }

    /// Found by attacking this pass's fixes (nineteenth pass): `--addr http://LOCALHOST:8200`
    /// was refused as not loopback, though host names are case-insensitive and the resolver
    /// below already took `localhost` in any case. `localhost` is now loopback in any ASCII
    /// case here too (and still 127.0.0.1 then ::1, never the system's answer); `localhost.`
    /// (the fully qualified form) stays refused, here and by the resolver.
    #[test]
    fn localhost_is_loopback_in_any_case_and_localhost_dot_is_not() {
        for host in ["LOCALHOST", "LocalHost", "localHOST"] {
            assert!(check_addr(&format!("http://{host}:8200")).is_ok(), "{host}");
            assert!(check_addr(&format!("http://{host}")).is_ok(), "{host}");
        }
        assert!(check_addr("http://localhost.:8200").is_err());
        assert!(check_addr("http://LOCALHOST.:8200").is_err());
        assert!(check_addr("http://localhost.example.com:8200").is_err());
        assert!(check_addr("http://localhostx:8200").is_err());
        use ureq::unversioned::resolver::Resolver;
        let r = LoopbackHttp {
            system: HostileSystem::default(),
        };
        let config = ureq::Agent::config_builder().build();
        let resolve = |u: &str| {
            r.resolve(
                &u.parse().unwrap(),
                &config,
                ureq::unversioned::transport::NextTimeout::default(),
            )
            .map(|a| a.iter().map(|a| a.to_string()).collect::<Vec<_>>())
        };
        assert_eq!(
            resolve("http://LOCALHOST:8200/v1/x").unwrap(),
            ["127.0.0.1:8200", "[::1]:8200"]
        );
        assert!(resolve("http://localhost.:8200/v1/x").is_err());
        assert_eq!(r.system.0.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    /// A stand-in for the system's resolver that answers every name with 10.9.9.9 (what an
    /// /etc/hosts line `10.9.9.9 localhost` or a DNS search domain can make of `localhost`),
    /// counting the questions.
    #[derive(Debug, Default)]
    struct HostileSystem(std::sync::atomic::AtomicUsize);

    impl ureq::unversioned::resolver::Resolver for HostileSystem {
        fn resolve(
            &self,
            uri: &ureq::http::Uri,
            _: &ureq::config::Config,
            _: ureq::unversioned::transport::NextTimeout,
        ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut out = self.empty();
            out.push(std::net::SocketAddr::from((
                [10, 9, 9, 9],
                uri.port_u16().unwrap_or(443),
            )));
            Ok(out)
        }
    }

    /// Found by attacking the fleet surface from the documents (nineteenth pass): `--addr
    /// http://localhost:8200` passed the loopback check by its name, and the system resolved
    /// the name: /etc/hosts mapping `localhost` to 10.9.9.9 sent the token there in the clear.
    /// For plain http the system is never asked: `localhost` is 127.0.0.1 then ::1, a literal
    /// address is itself, and anything not loopback is refused; https resolves as before.
    #[test]
    fn regression_plain_http_never_resolves_localhost_through_the_system() {
        use ureq::unversioned::resolver::Resolver;
        let r = LoopbackHttp {
            system: HostileSystem::default(),
        };
        let config = ureq::Agent::config_builder().build();
        let resolve = |u: &str| {
            r.resolve(
                &u.parse().unwrap(),
                &config,
                ureq::unversioned::transport::NextTimeout::default(),
            )
            .map(|a| a.iter().map(|a| a.to_string()).collect::<Vec<_>>())
        };
        assert_eq!(
            resolve("http://localhost:8200/v1/x").unwrap(),
            ["127.0.0.1:8200", "[::1]:8200"]
        );
        assert_eq!(
            resolve("http://LocalHost:8200/v1/x").unwrap(),
            ["127.0.0.1:8200", "[::1]:8200"]
        );
        assert_eq!(resolve("http://[::1]:8200/").unwrap(), ["[::1]:8200"]);
        assert_eq!(resolve("http://127.0.0.1/").unwrap(), ["127.0.0.1:80"]);
        // Never let through by check_addr, and refused here as well.
        assert!(resolve("http://bao.example.com:8200/").is_err());
        assert!(resolve("http://10.0.0.1:8200/").is_err());
        assert_eq!(r.system.0.load(std::sync::atomic::Ordering::SeqCst), 0);
        // https: the system's answer, as before (TLS checks the name).
        assert_eq!(
            resolve("https://localhost:8200/").unwrap(),
            ["10.9.9.9:8200"]
        );
        assert_eq!(r.system.0.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    /// What [`redact_echoes`] cuts, precisely: runs of 8 or more characters of a form in any
    /// case, a short value only whole, nothing of the text around them; a split finer than
    /// 8 characters is the documented limit.
    #[test]
    fn redact_echoes_cuts_runs_of_eight_in_any_case_and_leaves_the_rest() {
        let tok = SecretString::from("hvs.Token-1234567".to_owned());
        let short = SecretString::from("Ab3".to_owned());
        let r = |t: &str| redact_echoes(t, &[&tok, &short]).to_string();
        assert_eq!(r("permission denied"), "permission denied");
        assert_eq!(r("bad HVS.TOKEN-1234567!"), "bad [REDACTED]!");
        assert_eq!(r("a hvs.Toke; b n-1234567"), "a [REDACTED]; b [REDACTED]");
        assert_eq!(r("é-1234567é"), "é[REDACTED]é");
        assert_eq!(r("id ab3, x"), "id [REDACTED], x");
        // Seven characters at a time are not recognised as the token's.
        assert_eq!(r("hvs.Tok en-1234 567"), "hvs.Tok en-1234 567");
    }

    /// [`Hidden::quote`] redacts before it escapes: an echo behind or between control
    /// characters is cut, and the control characters are escaped, not printed.
    #[test]
    fn hidden_quote_cuts_echoes_then_escapes() {
        let h = Hidden(vec![SecretString::from("hvs.Token-1234567".to_owned())]);
        assert_eq!(
            h.quote("kv\u{1b}]0;x\u{7}HVS.TOKEN-1234567\n"),
            "kv\\u{1b}]0;x\\u{7}[REDACTED]\\n"
        );
        assert_eq!(h.redacted("a hvs.Token-1234567 b"), "a [REDACTED] b");
        assert_eq!(Hidden::none().quote("key\u{1b}"), "key\\u{1b}");
        assert_eq!(h.quote(&"x".repeat(400)).len(), MAX_QUOTED);
        assert!(!format!("{h:?}").contains("Token"));
    }

    /// A blank token is none; whitespace or a control character anywhere in one is refused;
    /// the fault's text never holds the token.
    #[test]
    fn token_fault_finds_blank_tokens_and_whitespace_or_control_characters() {
        for blank in ["", " ", "  ", "\t", " \t\r\n ", "\u{a0}"] {
            assert_eq!(token_fault(blank), Some(TokenFault::Blank), "{blank:?}");
        }
        for bad in [
            "a b", "a\tb", "a\u{1b}b", "a\u{7f}", "\u{85}a", " a", "a ", "a\n",
        ] {
            assert_eq!(token_fault(bad), Some(TokenFault::Unusable), "{bad:?}");
        }
        for good in ["hvs.CAESIJ-x_y", "s.abc", "root-tok-Xq7-openbao-test"] {
            assert_eq!(token_fault(good), None, "{good:?}");
        }
        let unusable = TokenFault::Unusable.to_string();
        assert!(!unusable.contains("a b"), "{unusable}");
    }

    #[test]
    fn kv_values_and_auth_never_show_in_debug() {
        let s = secret(&[("password", "dbg-canary")]);
        let a = Auth::Token(
            SecretString::from("tok-canary".to_owned()),
            "BAO_TOKEN".into(),
        );
        let all = format!("{s:?} {a:?}");
        assert!(!all.contains("canary"), "{all}");
    }
}
