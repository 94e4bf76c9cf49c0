//! Echo is off before the passphrase prompt is shown — checked in the order of the syscalls,
//! not by racing a typist (issue 16, item 13). The leak audit's
//! `regression_prompt_echoed_an_answer_typed_as_soon_as_it_appeared` types the answer as soon
//! as the prompt appears, which catches the old order only when it wins the race. Here the
//! binary runs on a real pseudo-terminal (the python3 pty driver of tests/it/common/pty.rs) under
//! `strace -f`, and the process that writes the prompt must have set the terminal's modes
//! without `echo` before that write.

use crate::common::pty;
use crate::common::skip;
use crate::common::vault as common_vault;

use common_vault::{Env, PASS};

/// `(pid, line)` of a `strace -f -o` log line.
fn split_pid(line: &str) -> (&str, &str) {
    match line.split_once(' ') {
        Some((p, r)) if p.chars().all(|c| c.is_ascii_digit()) => (p, r.trim_start()),
        _ => ("", line),
    }
}

/// In a trace: the index of the first write of `prompt`, and whether the same process last
/// set the terminal's modes (`TCSETS*`) with echo off before it. `Err` if there is no such
/// write.
fn echo_off_before(log: &str, prompt: &str) -> Result<(usize, Option<String>), String> {
    let lines: Vec<&str> = log.lines().collect();
    let (at, pid) = lines
        .iter()
        .enumerate()
        .find_map(|(i, l)| {
            let (pid, rest) = split_pid(l);
            (rest.starts_with("write") && rest.contains(prompt)).then_some((i, pid))
        })
        .ok_or_else(|| format!("no write of {prompt:?} in the trace"))?;
    let last_set = lines[..at]
        .iter()
        .rev()
        .find(|l| {
            let (p, rest) = split_pid(l);
            p == pid && rest.starts_with("ioctl(") && rest.contains(", TCSETS")
        })
        .map(|l| l.to_string());
    Ok((at, last_set))
}

/// Whether an strace-decoded `TCSETS*` ioctl sets modes without ECHO (strace prints the
/// abbreviated modes as `echo`/`-echo`, the verbose ones as `c_lflag=…|ECHO|…`).
fn turns_echo_off(ioctl: &str) -> bool {
    if ioctl.contains("c_lflag=") {
        let lflag = ioctl.split("c_lflag=").nth(1).unwrap_or("");
        let lflag = lflag.split([',', '}']).next().unwrap_or("");
        !lflag.split('|').any(|f| f == "ECHO")
    } else {
        ioctl.contains("-echo ") || ioctl.contains("-echo}")
    }
}

#[test]
fn echo_is_turned_off_on_the_terminal_before_the_prompt_is_written() {
    if !pty::available() {
        return skip::skip("python3 with the pty module is needed to drive a pseudo-terminal");
    }
    if !std::process::Command::new("strace")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return skip::skip("strace is not installed (scripts/setup/strace installs it)");
    }
    let e = Env::new();
    e.ok(&["init", "--passphrase-file", &e.pf()], b"");
    let log = e.path("strace.log");
    let mut c = e.wrapper("strace");
    c.args([
        "-f",
        "-qq",
        "-s",
        "256",
        "-e",
        "trace=ioctl,write,writev",
        "-o",
    ])
    .arg(&log)
    .arg("python3");
    pty::drive(&mut c, env!("CARGO_BIN_EXE_scopevault"), "cred list");
    let out = e.run_cmd(&mut c, format!("Passphrase for={PASS}\n").as_bytes());
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{screen}");
    assert!(
        screen.contains("Passphrase for"),
        "the prompt was shown: {screen}"
    );
    assert!(
        !screen.contains(PASS),
        "the passphrase was echoed: {screen}"
    );

    let log = std::fs::read_to_string(&log).unwrap();
    let (at, last_set) = echo_off_before(&log, "Passphrase for").unwrap();
    let last_set = last_set.unwrap_or_else(|| {
        panic!("the prompt (trace line {at}) was written before the process set any terminal modes:\n{log}")
    });
    assert!(
        turns_echo_off(&last_set),
        "the last terminal setting before the prompt (trace line {at}) leaves echo on: {last_set}"
    );
    println!("prompt order: {last_set} then the prompt at trace line {at}");
}

#[test]
fn the_echo_decoder_reads_both_strace_forms() {
    assert!(turns_echo_off(
        "ioctl(3, TCSETS, {B38400 opost isig icanon -echo ...}) = 0"
    ));
    assert!(!turns_echo_off(
        "ioctl(3, TCSETS, {B38400 opost isig icanon echo ...}) = 0"
    ));
    assert!(turns_echo_off(
        "ioctl(3, TCSETS, {c_iflag=ICRNL, c_lflag=ISIG|ICANON|ECHOE|ECHOK, c_line=0}) = 0"
    ));
    assert!(!turns_echo_off(
        "ioctl(3, TCSETS, {c_iflag=ICRNL, c_lflag=ISIG|ICANON|ECHO|ECHOE, c_line=0}) = 0"
    ));
    let log = "10 ioctl(3, TCSETS, {B38400 -echo ...}) = 0\n10 write(3, \"Passphrase for x: \", 18) = 18\n";
    let (at, set) = echo_off_before(log, "Passphrase for").unwrap();
    assert_eq!(at, 1);
    assert!(turns_echo_off(&set.unwrap()));
    let log = "10 write(3, \"Passphrase for x: \", 18) = 18\n10 ioctl(3, TCSETS, {B38400 -echo ...}) = 0\n";
    assert_eq!(echo_off_before(log, "Passphrase for").unwrap().1, None);
}
