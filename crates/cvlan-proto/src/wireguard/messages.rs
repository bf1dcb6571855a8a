//! Wire formats of §5.4: handshake initiation, handshake response, cookie reply and transport
//! data. Parsing borrows from the datagram and never panics on any input.

use super::constants::*;

/// The message kinds a datagram may carry.
#[derive(Debug, PartialEq, Eq)]
pub enum Message<'a> {
    Initiation(&'a [u8; INITIATION_LEN]),
    Response(&'a [u8; RESPONSE_LEN]),
    CookieReply(&'a [u8; COOKIE_REPLY_LEN]),
    Transport {
        receiver: u32,
        counter: u64,
        payload: &'a [u8],
    },
}

/// Why a datagram is not a WireGuard message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    Truncated,
    Oversized,
    UnknownType,
    BadLength,
}

pub fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Classifies a datagram by its 4-byte type field (type byte, three zero bytes).
pub fn parse(d: &[u8]) -> Result<Message<'_>, ParseError> {
    if d.len() < 4 {
        return Err(ParseError::Truncated);
    }
    if d.len() > MAX_DATAGRAM {
        return Err(ParseError::Oversized);
    }
    if d[1..4] != [0, 0, 0] {
        return Err(ParseError::UnknownType);
    }
    match d[0] {
        MSG_INITIATION => d
            .try_into()
            .map(Message::Initiation)
            .map_err(|_| ParseError::BadLength),
        MSG_RESPONSE => d
            .try_into()
            .map(Message::Response)
            .map_err(|_| ParseError::BadLength),
        MSG_COOKIE_REPLY => d
            .try_into()
            .map(Message::CookieReply)
            .map_err(|_| ParseError::BadLength),
        MSG_TRANSPORT => {
            if d.len() < KEEPALIVE_LEN {
                return Err(ParseError::Truncated);
            }
            let mut c = [0u8; 8];
            c.copy_from_slice(&d[8..16]);
            Ok(Message::Transport {
                receiver: le32(&d[4..8]),
                counter: u64::from_le_bytes(c),
                payload: &d[16..],
            })
        }
        _ => Err(ParseError::UnknownType),
    }
}

/// Field offsets of the initiation (§5.4.2).
pub mod init {
    pub const SENDER: usize = 4;
    pub const EPHEMERAL: usize = 8;
    pub const STATIC: usize = 40; // 32 + 16
    pub const TIMESTAMP: usize = 88; // 12 + 16
    pub const MAC1: usize = 116;
    pub const MAC2: usize = 132;
}

/// Field offsets of the response (§5.4.3).
pub mod resp {
    pub const SENDER: usize = 4;
    pub const RECEIVER: usize = 8;
    pub const EPHEMERAL: usize = 12;
    pub const EMPTY: usize = 44; // 0 + 16
    pub const MAC1: usize = 60;
    pub const MAC2: usize = 76;
}

/// Field offsets of the cookie reply (§5.4.7).
pub mod cookie {
    pub const RECEIVER: usize = 4;
    pub const NONCE: usize = 8;
    pub const COOKIE: usize = 32; // 16 + 16
}

/// Writes the 4-byte type field.
pub fn write_type(buf: &mut [u8], t: u8) {
    buf[..4].copy_from_slice(&[t, 0, 0, 0]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_and_refuses() {
        assert_eq!(parse(&[]), Err(ParseError::Truncated));
        assert_eq!(parse(&[1, 0, 0]), Err(ParseError::Truncated));
        assert_eq!(parse(&[1, 0, 0, 1]), Err(ParseError::UnknownType));
        assert_eq!(parse(&[9, 0, 0, 0]), Err(ParseError::UnknownType));
        assert_eq!(parse(&[1, 0, 0, 0, 0]), Err(ParseError::BadLength));
        let mut i = vec![0u8; INITIATION_LEN];
        i[0] = 1;
        assert!(matches!(parse(&i), Ok(Message::Initiation(_))));
        let mut t = vec![0u8; KEEPALIVE_LEN];
        t[0] = 4;
        t[4] = 7;
        t[8] = 9;
        assert_eq!(
            parse(&t),
            Ok(Message::Transport {
                receiver: 7,
                counter: 9,
                payload: &[0u8; 16][..]
            })
        );
        assert_eq!(parse(&t[..31]), Err(ParseError::Truncated));
        assert_eq!(
            parse(&vec![4u8; MAX_DATAGRAM + 1]),
            Err(ParseError::Oversized)
        );
    }
}
