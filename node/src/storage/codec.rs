//! The on-disk frame of a log record or snapshot:
//!
//! ```text
//! [len: u32 LE][crc32(len bytes): u32 LE][crc32(payload): u32 LE][payload: len bytes of JSON]
//! ```
//!
//! The header has its own CRC so a damaged length is told apart from a
//! torn tail. A crash never flips bits: it cuts a file short, or, where
//! the write in flight overwrote zeros (the log is preallocated), loses
//! some of its sectors and leaves zeros there. So a file that ends inside
//! a frame is a torn write, and so is a frame that fails a CRC and holds
//! such a hole: a zero word in its header (a complete header has none but
//! by a 1 in 2^32 chance) or a zero byte in its payload (JSON has none).
//! Any other frame that fails a CRC is corruption. Recovery still refuses
//! a torn write before the log's sync mark (`super::watermark`): a hole
//! in what was synced is damage.

use serde::{de::DeserializeOwned, Serialize};

/// Bytes before the payload.
pub const HEADER: usize = 12;

/// Refuse absurd lengths before allocating (a record is far smaller).
pub const MAX_FRAME: u32 = 1 << 30;

/// Appends one framed value to `out`.
pub fn encode<T: Serialize>(value: &T, out: &mut Vec<u8>) {
    let payload = serde_json::to_vec(value).expect("records serialize to JSON infallibly");
    let len = u32::try_from(payload.len()).expect("a record is smaller than 4 GiB");
    let len_bytes = len.to_le_bytes();
    out.extend_from_slice(&len_bytes);
    out.extend_from_slice(&crc32fast::hash(&len_bytes).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
}

/// What the frame at an offset is.
#[derive(Debug, PartialEq)]
pub enum Frame<T> {
    /// A good frame and the offset just after it.
    Good(T, usize),
    /// The buffer ends inside this frame: a torn write.
    Torn,
    /// A complete but damaged frame (or a damaged header).
    Damaged(String),
}

/// Decodes the frame starting at `at`.
pub fn decode<T: DeserializeOwned>(buf: &[u8], at: usize) -> Frame<T> {
    let rest = &buf[at..];
    if rest.len() < HEADER {
        return Frame::Torn;
    }
    let word = |i: usize| u32::from_le_bytes([rest[i], rest[i + 1], rest[i + 2], rest[i + 3]]);
    let (len, len_crc, payload_crc) = (word(0), word(4), word(8));
    if crc32fast::hash(&rest[0..4]) != len_crc {
        if [len, len_crc, payload_crc].contains(&0) {
            return Frame::Torn;
        }
        return Frame::Damaged("header checksum mismatch".into());
    }
    if len > MAX_FRAME {
        return Frame::Damaged(format!("record length {len} is implausible"));
    }
    let end = HEADER + len as usize;
    if rest.len() < end {
        return Frame::Torn;
    }
    let payload = &rest[HEADER..end];
    if crc32fast::hash(payload) != payload_crc {
        if payload.contains(&0) {
            return Frame::Torn;
        }
        return Frame::Damaged("payload checksum mismatch".into());
    }
    match serde_json::from_slice(payload) {
        Ok(v) => Frame::Good(v, at + end),
        Err(e) => Frame::Damaged(format!("checksum ok but not a record: {e}")),
    }
}
