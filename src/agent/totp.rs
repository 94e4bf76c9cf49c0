//! TOTP codes (RFC 6238) from a stored seed.
