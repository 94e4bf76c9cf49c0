//! The clock against the audit log's newest record. Every record is dated by this host's
//! clock when it is written, so a clock earlier than the log's last record (beyond the small
//! steps back NTP makes), or implausibly far past it, is wrong: the records written now are
//! dated before the ones they follow, or decades ahead, and what reads their dates misleads
//! (`lint --audit --since` judges its window by them; TOTP codes are wrong too). `serve` says
//! so at start from the last line it reads anyway to continue the chain
//! ([`super::AuditLog::newest_at_open`]), `doctor` from the log's last line ([`newest_record_time`]);
//! neither refuses anything (twenty-fourth pass, found by the attacker of evidence from the
//! audit trail: `doctor` said `ok` for a clock a year behind the log, and `serve` started
//! without a word 35 days behind it).

use std::path::Path;

use time::{Duration, OffsetDateTime};

use super::{read_tail, AuditError};

/// How far the clock may be behind the newest record without a word: NTP's small steps back
/// (the five minutes `lint --audit` allows a record dated ahead of its clock).
pub const CLOCK_BEHIND_SKEW: Duration = Duration::minutes(5);

/// How far past the newest record the clock is taken for wrong rather than for a host whose
/// log was idle so long: a year and a day.
pub const CLOCK_AHEAD_LIMIT: Duration = Duration::days(366);

/// A clock that disagrees with the audit log's newest record ([`ClockVsLog::judge`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockVsLog {
    /// The clock.
    pub now: OffsetDateTime,
    /// The `time` of the log's newest record.
    pub newest: OffsetDateTime,
}

impl ClockVsLog {
    /// `Some` when `now` is more than [`CLOCK_BEHIND_SKEW`] before `newest`, or more than
    /// [`CLOCK_AHEAD_LIMIT`] after it.
    pub fn judge(now: OffsetDateTime, newest: OffsetDateTime) -> Option<ClockVsLog> {
        let off = now - newest;
        (off < -CLOCK_BEHIND_SKEW || off > CLOCK_AHEAD_LIMIT).then_some(ClockVsLog { now, newest })
    }

    /// The clock is behind the newest record (else far past it).
    pub fn behind(&self) -> bool {
        self.now < self.newest
    }
}

impl std::fmt::Display for ClockVsLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (now, newest) = (
            crate::text::rfc3339(self.now),
            crate::text::rfc3339(self.newest),
        );
        if self.behind() {
            write!(
                f,
                "the clock ({now}) is {} behind the newest record of the audit log ({newest}), which this host's clock dated: records written now are dated before the ones they follow, and what reads their dates misleads (`lint --audit --since`), TOTP codes too; sync the clock (timedatectl set-ntp true)",
                span(self.newest - self.now)
            )
        } else {
            write!(
                f,
                "the clock ({now}) is {} past the newest record of the audit log ({newest}), more than a year: unless this host's daemon was really stopped that long, the clock is wrong, and records written now are dated so, TOTP codes wrong; sync the clock (timedatectl set-ntp true)",
                span(self.now - self.newest)
            )
        }
    }
}

/// A duration as people read it: days, else hours, else minutes.
fn span(d: Duration) -> String {
    let plural = |n: i64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    if d.whole_days() >= 2 {
        plural(d.whole_days(), "day")
    } else if d.whole_hours() >= 2 {
        plural(d.whole_hours(), "hour")
    } else {
        plural(d.whole_minutes(), "minute")
    }
}

/// The `time` of the last complete record of the log at `log`, reading back from its end only
/// that line (a log of gigabytes is not read whole; its chain is not verified here). `None`
/// when there is no log or no complete record; an error when the log cannot be read or its
/// last line is not a record. A FIFO or a device at the path is refused unopened.
pub fn newest_record_time(log: &Path) -> Result<Option<OffsetDateTime>, AuditError> {
    let open_err = |e: std::io::Error| AuditError::Open {
        path: log.to_owned(),
        message: e.to_string(),
    };
    let file = match crate::sys::open_regular(log, false) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(open_err(e)),
    };
    let len = file.metadata().map_err(open_err)?.len();
    Ok(read_tail(&file, len, log)?.newest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    /// Twenty-fourth pass: a clock 35 days or a year behind the log's newest record, or in
    /// 2100, was `ok`. Behind beyond five minutes, or more than a year past it, is named;
    /// a small step back and a host idle for months are not.
    #[test]
    fn a_clock_behind_the_logs_newest_record_or_far_past_it_is_named() {
        let newest = datetime!(2026-12-02 14:00 UTC);
        for behind in [
            Duration::days(35),
            Duration::days(365),
            Duration::minutes(6),
        ] {
            let off = ClockVsLog::judge(newest - behind, newest).expect("named");
            assert!(off.behind());
            let said = off.to_string();
            assert!(
                said.contains("behind the newest record") && said.contains("sync the clock"),
                "{said}"
            );
        }
        let said = ClockVsLog::judge(newest - Duration::days(35), newest)
            .unwrap()
            .to_string();
        assert!(
            said.contains("(2026-10-28T14:00:00Z) is 35 days behind")
                && said.contains("(2026-12-02T14:00:00Z)"),
            "{said}"
        );
        let ahead = ClockVsLog::judge(datetime!(2100-01-01 0:00 UTC), newest).expect("named");
        assert!(!ahead.behind());
        assert!(
            ahead.to_string().contains("past the newest record"),
            "{ahead}"
        );
        for fine in [
            Duration::ZERO,
            -Duration::minutes(4),
            Duration::days(200),
            Duration::days(366),
        ] {
            assert_eq!(ClockVsLog::judge(newest + fine, newest), None, "{fine}");
        }
    }

    /// Only the last line is read: the time of the newest record, none for no log or an empty
    /// one, and a torn last line does not count.
    #[test]
    fn the_newest_record_time_is_read_from_the_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        assert_eq!(newest_record_time(&path).unwrap(), None);
        let log = super::super::AuditLog::open(&path, false).unwrap();
        assert_eq!(newest_record_time(&path).unwrap(), None);
        let before = OffsetDateTime::now_utc();
        for _ in 0..3 {
            log.append(super::super::AuditRecord::new(
                crate::protocol::Op::Lock,
                super::super::Decision::Allow,
            ))
            .unwrap();
        }
        let newest = newest_record_time(&path).unwrap().expect("a record");
        assert!(newest >= before - Duration::seconds(1) && newest <= OffsetDateTime::now_utc());
        drop(log);
        let mut text = std::fs::read(&path).unwrap();
        text.extend_from_slice(br#"{"seq":4,"time":"2099-01-01T00:00:00Z""#);
        std::fs::write(&path, &text).unwrap();
        assert_eq!(newest_record_time(&path).unwrap(), Some(newest));
        // The start reads the same line, before it writes its own records.
        let log = super::super::AuditLog::open(&path, false).unwrap();
        assert_eq!(log.newest_at_open(), Some(newest));
    }
}
