//! Fleet: one master vault and policy publish a signed bundle per checkpoint location
//! (docs: bundle-format.md, docs/operations.md "Fleet"); each checkpoint applies its own.
//! [`openbao`] reads secret values from an OpenBao / HashiCorp Vault KV v2 engine on the
//! admin side only; checkpoint daemons never talk to the network. [`health`] is what
//! `status` reports about the applied bundle and the audit log's head.

pub mod allowed_signers;
pub mod apply;
pub mod bundle;
pub mod health;
pub mod openbao;
pub mod publish;
pub mod sig;

/// Read an input file of at most `max` bytes (a bundle, its signature, an allowed signers
/// file): a regular file only. It is opened non-blocking, so a FIFO or a device planted at the
/// path is refused at once instead of blocking the read (or, as `/dev/zero`, filling memory).
/// `Ok(None)` if it holds more than `max` bytes.
pub(crate) fn read_regular(path: &std::path::Path, max: u64) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let fd = rustix::fs::open(
        path,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    let st = rustix::fs::fstat(&fd)?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file (a FIFO, a device or a directory)",
        ));
    }
    let mut bytes = Vec::new();
    std::fs::File::from(fd)
        .take(max + 1)
        .read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= max).then_some(bytes))
}
