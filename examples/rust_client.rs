//! A check written in Rust that fetches its login from the scopevault daemon.
//!
//! ```sh
//! cargo run --example rust_client -- checkout-flow
//! ```
//!
//! The socket comes from `SCOPEVAULT_SOCKET` or the default path. The password is used and
//! dropped (zeroed); only its length is printed here.
use std::path::PathBuf;
use std::process::ExitCode;

use scopevault::client::Client;

fn main() -> ExitCode {
    let task = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "checkout-flow".into());
    let socket = std::env::var_os("SCOPEVAULT_SOCKET")
        .map(PathBuf::from)
        .unwrap_or_else(scopevault::agent::server::default_socket_path);
    let fetched = match Client::connect(&socket).and_then(|mut c| c.fetch(&task, None)) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("cannot fetch the credentials of task {task}: {e}");
            return ExitCode::from(5);
        }
    };
    for cred in &fetched.credentials {
        for w in &cred.warnings {
            eprintln!("warning: {w}");
        }
        let user = cred
            .fields
            .get("username")
            .map(String::as_str)
            .unwrap_or("-");
        match (&cred.totp, cred.secrets.get("password")) {
            (Some(t), _) => println!(
                "{}: TOTP code with {} s left ({} digits)",
                cred.name,
                t.seconds_left,
                t.code.len()
            ),
            (None, Some(pw)) => println!(
                "{}: would sign in as {user} with a {}-character password",
                cred.name,
                pw.len()
            ),
            (None, None) => println!("{}: fields {:?}", cred.name, cred.fields.keys()),
        }
    }
    println!("audit record #{}", fetched.audit_seq);
    ExitCode::SUCCESS
}
