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
