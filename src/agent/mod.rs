//! The daemon: accept loop, protocol, peer authentication, authorisation, audit log, TOTP.
