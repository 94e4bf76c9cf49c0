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
pub mod recipient;
pub mod sig;

/// Why an input file that is there is not read: refused by the check that reads it (the
/// format check for a bundle, the signature check for a signature or an allowed signers
/// file), not an I/O error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unusable {
    /// A FIFO, a device or a directory.
    NotRegular,
    /// More than the limit: the size found.
    TooLarge(u64),
}

impl Unusable {
    /// What is wrong, for a file whose limit is `max` bytes.
    pub(crate) fn describe(self, max: u64) -> String {
        match self {
            Unusable::NotRegular => {
                "not a regular file (a FIFO, a device or a directory)".to_owned()
            }
            Unusable::TooLarge(len) => {
                format!("{len} bytes, more than the {max} bytes the format allows")
            }
        }
    }
}

/// Read an input file of at most `max` bytes (a bundle, its signature, an allowed signers
/// file): a regular file only. What the path leads to is judged before it is opened
/// ([`crate::sys::open_regular`]), so a FIFO or a device planted at the path (or behind a
/// link there) is refused at once instead of blocking the read (or, as `/dev/zero`, filling
/// memory), and never opened (it was, non-blocking, then judged: twentieth pass); its size is
/// judged before anything is read (a file over the limit cost a read of the limit first:
/// 272 MiB for a bundle); the read is bounded too, for a file that grows. `Ok(Err(_))`: the
/// file is there but [`Unusable`].
pub(crate) fn read_regular(
    path: &std::path::Path,
    max: u64,
) -> std::io::Result<Result<Vec<u8>, Unusable>> {
    Ok(read_regular_with_metadata(path, max)?.map(|(bytes, _)| bytes))
}

/// [`read_regular`], with the metadata of the file read (its owner and mode, judged by a
/// caller that trusts what it reads: [`allowed_signers::AllowedSigners::read`]).
pub(crate) fn read_regular_with_metadata(
    path: &std::path::Path,
    max: u64,
) -> std::io::Result<Result<(Vec<u8>, std::fs::Metadata), Unusable>> {
    use std::io::Read;
    let file = match crate::sys::open_regular(path, false) {
        Ok(file) => file,
        Err(e) if crate::sys::is_not_a_regular_file(&e) => return Ok(Err(Unusable::NotRegular)),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    let size = meta.len();
    if size > max {
        return Ok(Err(Unusable::TooLarge(size)));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(max + 1).read_to_end(&mut bytes)?;
    let len = bytes.len() as u64;
    Ok(if len > max {
        Err(Unusable::TooLarge(len))
    } else {
        Ok((bytes, meta))
    })
}
