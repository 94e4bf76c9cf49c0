//! Fleet: moving what each checkpoint needs from the admin side to many locations
//! (design in `fleet.md`). [`openbao`] reads secret values from an OpenBao / HashiCorp Vault
//! KV v2 engine on the admin side only; checkpoint daemons never talk to the network.

pub mod openbao;
