//! Detached SSH signatures over bundle files: the sshsig format of `ssh-keygen -Y sign`,
//! namespace [`NAMESPACE`], checked against an OpenSSH allowed_signers file.

use ssh_key::{HashAlg, LineEnding, PrivateKey, SshSig};
use time::OffsetDateTime;

use super::allowed_signers::AllowedSigners;

/// The sshsig namespace of bundle signatures.
pub const NAMESPACE: &str = "scopevault-bundle";

/// The largest signature file read (64 KiB: an ed25519 one is ~300 bytes).
pub const MAX_SIG_BYTES: usize = 64 << 10;

/// The largest `publish --sign-key` file read (64 KiB: an OpenSSH ed25519 private key is ~400
/// bytes, an RSA-4096 one ~3.4 KiB). Read whole with no bound, `--sign-key /dev/zero` took all
/// the memory there was (twenty-first pass).
pub const MAX_SIGN_KEY_BYTES: usize = 64 << 10;

/// Who signed, once the signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The key's fingerprint, `SHA256:…` as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    /// The principals of every allowed_signers line that authorised the key.
    pub principals: Vec<String>,
}

/// Parse an OpenSSH private key; `passphrase` is asked only if the key is encrypted.
pub fn load_signing_key(
    text: &str,
    passphrase: impl FnOnce() -> anyhow::Result<crate::secret::SecretString>,
) -> anyhow::Result<PrivateKey> {
    let key = PrivateKey::from_openssh(text)
        .map_err(|e| anyhow::anyhow!("the signing key is not an OpenSSH private key: {e}"))?;
    if key.is_encrypted() {
        let p = passphrase()?;
        return key
            .decrypt(p.expose().as_bytes())
            .map_err(|_| anyhow::anyhow!("wrong passphrase for the signing key"));
    }
    Ok(key)
}

/// Sign `data`: the PEM text of an `-----BEGIN SSH SIGNATURE-----` block, as `ssh-keygen -Y
/// sign -n scopevault-bundle` writes (SHA-512).
pub fn sign(key: &PrivateKey, data: &[u8]) -> anyhow::Result<String> {
    let sig = key
        .sign(NAMESPACE, HashAlg::Sha512, data)
        .map_err(|e| anyhow::anyhow!("cannot sign with this key: {e}"))?;
    sig.to_pem(LineEnding::LF)
        .map_err(|e| anyhow::anyhow!("cannot encode the signature: {e}"))
}

/// Verify a detached signature over `data`: it parses, its namespace is [`NAMESPACE`], its key
/// is allowed for that namespace at `now`, and the signature is valid.
pub fn verify(
    sig_pem: &[u8],
    data: &[u8],
    allowed: &AllowedSigners,
    now: OffsetDateTime,
) -> Result<Verified, String> {
    // Said as it is: the PEM parser calls an empty file "PEM preamble contains invalid data
    // (NUL byte)".
    if sig_pem.iter().all(u8::is_ascii_whitespace) {
        return Err(
            "the signature file is empty: an unsigned bundle is never applied (sign it with `publish --sign-key` or `ssh-keygen -Y sign`)".to_owned(),
        );
    }
    let sig = SshSig::from_pem(sig_pem).map_err(|e| match e {
        // A key type this build has no verifier for (ECDSA) cannot even be decoded.
        ssh_key::Error::AlgorithmUnknown | ssh_key::Error::AlgorithmUnsupported { .. } => {
            "the signature is by a key type not verified here: bundles are verified with ssh-ed25519 (or sk-ssh-ed25519) keys only; sign with one (ssh-keygen -t ed25519)".to_owned()
        }
        e => format!("the signature file is not an SSH signature: {e}"),
    })?;
    // OpenSSH (sshsig.c) writes the reserved field empty and verifies over an empty one,
    // whatever the file carries; verifying over the file's value made the two disagree both
    // ways (found by attacking the fleet surface from the documents, nineteenth pass). No
    // signer either trusts writes another value: refused, saying so.
    if !sig.reserved().is_empty() {
        return Err(format!(
            "the signature's reserved field is not empty ({} bytes): `ssh-keygen -Y sign` and `publish --sign-key` always write it empty, and OpenSSH verifies as if it were, so this signature was not made by either; sign the bundle again",
            sig.reserved().len()
        ));
    }
    if sig.namespace() != NAMESPACE {
        let shown: String = sig.namespace().chars().take(64).collect();
        return Err(format!(
            "the signature is for namespace {shown:?}, not `{NAMESPACE}`"
        ));
    }
    let key = sig.public_key();
    let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
    if !matches!(
        key,
        ssh_key::public::KeyData::Ed25519(_) | ssh_key::public::KeyData::SkEd25519(_)
    ) {
        return Err(format!(
            "the signature is by a {} key ({fingerprint}): bundles are verified with ssh-ed25519 (or sk-ssh-ed25519) keys only; sign with one (ssh-keygen -t ed25519)",
            key.algorithm()
        ));
    }
    let signers = allowed
        .authorise(key, NAMESPACE, now)
        .map_err(|e| format!("{e} (key {fingerprint})"))?;
    ssh_key::PublicKey::from(key.clone())
        .verify(NAMESPACE, data, &sig)
        .map_err(|_| {
            format!("the signature by {fingerprint} does not match the bundle: the file was modified after signing")
        })?;
    let mut principals: Vec<String> = signers
        .iter()
        .flat_map(|s| s.principals.iter().cloned())
        .collect();
    principals.sort();
    principals.dedup();
    Ok(Verified {
        fingerprint,
        principals,
    })
}
