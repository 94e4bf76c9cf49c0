//! The encrypted vault: data model, file format, key slots, store.
