//! Recovery on open: read the tail of an existing log to continue its chain.

use super::*;

/// Read the end of an existing log to continue its chain. Returns the chain and, if the file
/// ended in an incomplete line, how many bytes were cut.
pub(super) fn read_tail(
    file: &File,
    len: u64,
    path: &Path,
) -> Result<(Chain, u64, Option<u64>), AuditError> {
    let read_err = |e: std::io::Error| AuditError::Open {
        path: path.to_owned(),
        message: e.to_string(),
    };
    if len == 0 {
        return Ok((
            Chain {
                seq: 0,
                prev: GENESIS.to_owned(),
            },
            0,
            None,
        ));
    }
    // Read backwards in blocks until we hold the last complete line and the byte before it.
    let mut tail: Vec<u8> = Vec::new();
    let mut start = len;
    loop {
        let block = (64 * 1024u64).min(start);
        let from = start.saturating_sub(block);
        let mut chunk = vec![0u8; (start - from) as usize];
        file.read_exact_at(&mut chunk, from).map_err(read_err)?;
        chunk.extend_from_slice(&tail);
        tail = chunk;
        start = from;
        let end_of_complete = tail.iter().rposition(|&b| b == b'\n');
        if let Some(nl) = end_of_complete {
            if tail[..nl].contains(&b'\n') || start == 0 {
                break;
            }
        }
        if start == 0 || tail.len() > 2 * MAX_LINE {
            break;
        }
    }
    let Some(nl) = tail.iter().rposition(|&b| b == b'\n') else {
        if start != 0 {
            return Err(AuditError::Corrupt {
                path: path.to_owned(),
                line: 0,
                why: format!("no line break in the last {} bytes", tail.len()),
            });
        }
        // Not one complete line: the whole file is a torn first write.
        file.set_len(0).map_err(read_err)?;
        return Ok((
            Chain {
                seq: 0,
                prev: GENESIS.to_owned(),
            },
            0,
            Some(len),
        ));
    };
    let torn = (tail.len() - 1 - nl) as u64;
    let complete_len = len - torn;
    if torn > 0 {
        file.set_len(complete_len).map_err(read_err)?;
        file.sync_data().map_err(read_err)?;
    }
    let line_start = tail[..nl]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    if line_start == 0 && start != 0 {
        return Err(AuditError::Corrupt {
            path: path.to_owned(),
            line: 0,
            why: format!("the last line is longer than {MAX_LINE} bytes"),
        });
    }
    let last = &tail[line_start..nl];
    let line_no = count_lines(file, start + line_start as u64).map_err(read_err)? + 1;
    let parsed = parse_chain_fields(last).map_err(|why| AuditError::Corrupt {
        path: path.to_owned(),
        line: line_no,
        why,
    })?;
    Ok((
        Chain {
            seq: parsed.0,
            prev: HEXLOWER.encode(&Sha256::digest(last)),
        },
        complete_len,
        (torn > 0).then_some(torn),
    ))
}

/// Number of newlines in the first `upto` bytes of `file`.
pub(super) fn count_lines(file: &File, upto: u64) -> std::io::Result<u64> {
    let mut n = 0u64;
    let mut off = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    while off < upto {
        let want = ((upto - off) as usize).min(buf.len());
        let got = file.read_at(&mut buf[..want], off)?;
        if got == 0 {
            break;
        }
        n += buf[..got].iter().filter(|&&b| b == b'\n').count() as u64;
        off += got as u64;
    }
    Ok(n)
}
