//! Fleet: one master vault and policy publish a signed bundle per checkpoint location
//! (docs: bundle-format.md, docs/operations.md "Fleet"); each checkpoint applies its own.

pub mod allowed_signers;
pub mod apply;
pub mod bundle;
pub mod publish;
pub mod sig;
