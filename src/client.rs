//! The socket client used by `get`, `exec`, tests and examples.
