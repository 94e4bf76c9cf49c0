//! The policy: what each credential can do (scopes), what each monitoring task needs, who may
//! fetch for it, and the lint that compares the two. No secrets live here, and this module
//! imports nothing else of ours: the lint runs in CI with no vault and no daemon.

mod kind;

pub use kind::{CredentialKind, UnknownKind};
