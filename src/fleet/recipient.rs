//! The age X25519 recipient a location's bundles are encrypted to: the one parser for every
//! place a recipient is taken (the lint's `invalid-recipient`, `publish`, a bundle's manifest,
//! a vault header's recipient before a save).
//!
//! A string age accepts is not always one it can encrypt to: a low-order point (32 zero
//! bytes, `age1qqqq…5cu47z`, a placeholder or a damaged copy) gives every ephemeral key the
//! all-zero shared secret, and the `age` crate then panics ("Generated the all-zero esk; OS
//! RNG is likely failing!"), as `age -r` refuses it ("bad input point: low order point").
//! Such a recipient passed `lint` and made `publish` panic, exit 101, naming no location
//! (twenty-ninth pass, found by the attacker of the fleet over time and at scale).

use std::fmt;

/// Why a recipient is refused. Neither variant quotes the text: the caller names the place
/// (a location) and shows the text cut and escaped as its own messages do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecipientError {
    /// Not an age X25519 recipient at all (`age1…`, bech32).
    NotX25519,
    /// An age X25519 recipient whose point has a small order: no vault has it as its public
    /// key, and nothing can be encrypted to it.
    LowOrder,
}

impl fmt::Display for RecipientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecipientError::NotX25519 => f.write_str("it is not an age X25519 recipient (age1…)"),
            RecipientError::LowOrder => f.write_str(
                "it is a low-order X25519 point, which is no vault's public key and to which nothing can be encrypted (a placeholder such as `age1qqqq…` or a damaged copy)",
            ),
        }
    }
}

impl std::error::Error for RecipientError {}

/// The u-coordinates (little-endian) of the X25519 points of small order, as libsodium lists
/// them (`has_small_order`): 0, 1, the two points of order 8, p − 1, and the non-canonical
/// p and p + 1 (p = 2^255 − 19). X25519 ignores the top bit of the last byte, so each is
/// compared with that bit cleared: 14 encodings in all. With any of them the shared secret
/// is all zeros whatever the ephemeral key (its clamped scalar is a multiple of the cofactor
/// 8); with any other it never is (that scalar is below the prime orders of the curve's and
/// the twist's large subgroups). The unit tests check every encoding against `age` itself.
const LOW_ORDER: [[u8; 32]; 7] = [
    [0; 32],
    {
        let mut one = [0; 32];
        one[0] = 1;
        one
    },
    [
        0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4,
        0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49,
        0xb8, 0x00,
    ],
    [
        0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1, 0x55, 0x9c, 0x83, 0xef,
        0x5b, 0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c, 0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd, 0xd0, 0x9f,
        0x11, 0x57,
    ],
    p_plus(-1),
    p_plus(0),
    p_plus(1),
];

/// p + `d` (p = 2^255 − 19), little-endian, for `d` in −1 ..= 1.
const fn p_plus(d: i8) -> [u8; 32] {
    let mut b = [0xff; 32];
    b[31] = 0x7f;
    b[0] = (0xed_i16 + d as i16) as u8;
    b
}

/// Parse `text` as the age X25519 recipient a bundle (or a vault's payload) is encrypted to:
/// what `age` parses, less the low-order points it cannot encrypt to ([`RecipientError`]).
pub fn parse(text: &str) -> Result<age::x25519::Recipient, RecipientError> {
    let recipient: age::x25519::Recipient = text.parse().map_err(|_| RecipientError::NotX25519)?;
    // `age` keeps the key's bytes to itself: they are read back from its canonical form,
    // which it has just checked (HRP `age`, bech32 checksum, 32 bytes).
    let (_, bytes) =
        bech32::decode(&recipient.to_string()).map_err(|_| RecipientError::NotX25519)?;
    let Ok(mut u) = <[u8; 32]>::try_from(bytes) else {
        return Err(RecipientError::NotX25519);
    };
    u[31] &= 0x7f;
    if LOW_ORDER.contains(&u) {
        return Err(RecipientError::LowOrder);
    }
    Ok(recipient)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(u: &[u8; 32]) -> String {
        bech32::encode::<bech32::Bech32>(bech32::Hrp::parse("age").unwrap(), u).unwrap()
    }

    /// Whether `age` panics encrypting to `r` (the condition this module refuses).
    /// The panic's message goes to the test's captured output: the hook is left alone, as
    /// other tests run meanwhile.
    fn age_panics(r: &age::x25519::Recipient) -> bool {
        let r = r.clone();
        std::panic::catch_unwind(move || {
            let enc = age::Encryptor::with_recipients(std::iter::once(&r as &dyn age::Recipient))
                .unwrap();
            let mut out = Vec::new();
            let w = enc.wrap_output(&mut out).unwrap();
            w.finish().unwrap();
        })
        .is_err()
    }

    /// Every encoding of a low-order point (with and without the ignored top bit) is one
    /// `age` parses and panics on; each is refused as low-order, upper case too. The
    /// attacker's `age1qqqq…5cu47z` is the first.
    #[test]
    fn every_low_order_point_is_one_age_panics_on_and_is_refused() {
        assert_eq!(
            encoded(&[0; 32]),
            "age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq5cu47z"
        );
        for u in LOW_ORDER {
            for top in [0, 0x80] {
                let mut u = u;
                u[31] |= top;
                let text = encoded(&u);
                let by_age: age::x25519::Recipient = text.parse().expect("age parses it");
                assert!(age_panics(&by_age), "age encrypts to {text}");
                assert_eq!(parse(&text).err(), Some(RecipientError::LowOrder), "{text}");
                assert_eq!(
                    parse(&text.to_uppercase()).err(),
                    Some(RecipientError::LowOrder),
                    "{text}"
                );
            }
        }
    }

    /// A vault's recipient, and points next to the low-order ones, are taken, and `age`
    /// encrypts to them; what age does not parse is not an X25519 recipient.
    #[test]
    fn real_and_neighbouring_points_are_taken_and_non_recipients_are_not() {
        let real = age::x25519::Identity::generate().to_public().to_string();
        let mut near = Vec::new();
        for u in LOW_ORDER {
            let mut v = u;
            v[1] ^= 1;
            near.push(encoded(&v));
        }
        let mut two = [0; 32];
        two[0] = 2;
        near.push(encoded(&two));
        for text in std::iter::once(real).chain(near) {
            let r = parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert!(!age_panics(&r), "{text}");
        }
        for text in [
            "",
            "age1notarecipient",
            "AGE-SECRET-KEY-1GQ9778VQXMMJVE8SK7J6VT8UJ4HDQAJUVSFCWCM02D8GEWQ72PVQ2Y5J33",
        ] {
            assert_eq!(parse(text).err(), Some(RecipientError::NotX25519), "{text}");
        }
    }
}
