//! Wire format: every frame is a `u32` little-endian payload length followed by the payload.
//! Typed payloads are postcard; `u64` vectors are packed little-endian (8 bytes each).
//!
//! The functions here are pure (or generic over [`std::io::Read`]) so fuzz targets can call
//! them on arbitrary bytes.

use crate::NetError;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io::{ErrorKind, Read};

/// Size of the length prefix of every frame.
pub const FRAME_HEADER_BYTES: usize = 4;

/// Upfront allocation cap when reading a payload; larger (but still allowed) payloads grow
/// as their bytes actually arrive, so a lying length prefix costs at most this much.
pub(crate) const PREALLOC_CAP: usize = 64 << 20;

/// Encodes the length prefix of a `len`-byte payload; errors if `len` exceeds `max` or `u32::MAX`.
pub fn encode_frame_header(len: usize, max: usize) -> Result<[u8; 4], NetError> {
    let max = max.min(u32::MAX as usize);
    if len > max {
        return Err(NetError::FrameTooLarge {
            len: len as u64,
            max,
        });
    }
    // Cannot fail: len <= max <= u32::MAX was checked just above.
    let len32 = u32::try_from(len).map_err(|_| NetError::FrameTooLarge {
        len: len as u64,
        max,
    })?;
    Ok(len32.to_le_bytes())
}

/// Decodes the length prefix at the start of `bytes` and returns the payload length.
///
/// Errors: [`NetError::Truncated`] if fewer than 4 bytes are given, [`NetError::FrameTooLarge`]
/// if the announced length exceeds `max` (nothing is allocated).
pub fn decode_frame_header(bytes: &[u8], max: usize) -> Result<usize, NetError> {
    let Some(header) = bytes.first_chunk::<FRAME_HEADER_BYTES>() else {
        return Err(NetError::Truncated {
            expected: FRAME_HEADER_BYTES,
            got: bytes.len(),
        });
    };
    let len = u32::from_le_bytes(*header) as u64;
    let max = max.min(u32::MAX as usize);
    if len > max as u64 {
        return Err(NetError::FrameTooLarge { len, max });
    }
    // len <= max, which is a usize.
    Ok(len as usize)
}

/// Errors that mean the peer's end of the stream is gone (reported as
/// [`NetError::Disconnected`]).
pub(crate) fn is_connection_gone(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::UnexpectedEof
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::BrokenPipe
            | ErrorKind::NotConnected
    )
}

/// Reads one frame (header + payload) from a byte stream; this is what the TCP reader thread
/// runs, and what a fuzz target can run on `&mut &[u8]`.
///
/// Errors: [`NetError::Disconnected`] (naming `peer`) on end of stream before any header byte,
/// [`NetError::Truncated`] on end of stream inside the header or payload,
/// [`NetError::FrameTooLarge`] if the header announces more than `max` bytes (nothing is
/// allocated; the payload is not read), [`NetError::Io`] on other I/O errors.
pub fn read_frame<R: Read + ?Sized>(
    reader: &mut R,
    max: usize,
    peer: &str,
) -> Result<Vec<u8>, NetError> {
    let mut header = [0u8; FRAME_HEADER_BYTES];
    let mut got = 0;
    while got < FRAME_HEADER_BYTES {
        match reader.read(&mut header[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if is_connection_gone(e.kind()) => break,
            Err(e) => return Err(NetError::Io(e)),
        }
    }
    if got == 0 {
        return Err(NetError::Disconnected {
            peer: peer.to_owned(),
        });
    }
    let len = decode_frame_header(&header[..got], max)?;
    let mut payload = Vec::with_capacity(len.min(PREALLOC_CAP));
    match reader.take(len as u64).read_to_end(&mut payload) {
        Ok(_) => {}
        Err(e) if is_connection_gone(e.kind()) => {}
        Err(e) => return Err(NetError::Io(e)),
    }
    if payload.len() < len {
        return Err(NetError::Truncated {
            expected: len,
            got: payload.len(),
        });
    }
    Ok(payload)
}

/// Encodes a message with postcard (the payload of a typed frame).
pub fn encode<T: Serialize + ?Sized>(msg: &T) -> Result<Vec<u8>, NetError> {
    postcard::to_allocvec(msg)
        .map_err(|e| NetError::Encode(format!("{}: {e}", std::any::type_name::<T>())))
}

/// Decodes a typed frame's payload. Trailing bytes after a valid value are an error, so a
/// frame decodes as at most one type shape. Never panics on arbitrary input.
pub fn decode<T: DeserializeOwned>(frame: &[u8]) -> Result<T, NetError> {
    let (value, rest) = postcard::take_from_bytes::<T>(frame)
        .map_err(|e| NetError::Decode(format!("{}: {e}", std::any::type_name::<T>())))?;
    if !rest.is_empty() {
        return Err(NetError::Decode(format!(
            "{}: {} trailing bytes after the value",
            std::any::type_name::<T>(),
            rest.len()
        )));
    }
    Ok(value)
}

/// Spare capacity at the end of every buffer [`encode_u64s`] returns (and
/// that protocol code building a frame should leave): the in-process link
/// model ([`crate::emulator::HopTransport`]) appends a hop stamp of
/// `8 + 8 * MODELLED.len()` bytes to each frame, and without room for it every
/// message was reallocated at double its size and copied (a fresh mapping
/// above 32 MiB: page faults and zeroing on every large message).
pub const FRAME_SPARE: usize = 64;
const _: () = assert!(FRAME_SPARE >= 8 + 8 * crate::emulator::MODELLED.len());

/// Packs `u64`s little-endian, 8 bytes each: one copy into an uninitialised
/// buffer with [`FRAME_SPARE`] spare bytes (shares are most of the traffic).
pub fn encode_u64s(v: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * 8 + FRAME_SPARE);
    if cfg!(target_endian = "little") {
        // SAFETY: u8 has alignment 1 and every byte of a u64 is initialised,
        // so the byte view of exactly 8 * len bytes of `v` is valid while `v`
        // is borrowed; on little-endian targets it is the wire encoding.
        let bytes = unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), v.len() * 8) };
        out.extend_from_slice(bytes);
    } else {
        for x in v {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    out
}

/// Unpacks little-endian `u64`s; errors if the length is not a multiple of 8.
pub fn decode_u64s(bytes: &[u8]) -> Result<Vec<u64>, NetError> {
    check_u64s(bytes)?;
    let mut out = Vec::with_capacity(bytes.len() / 8);
    out.extend(
        bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("chunks_exact(8)"))),
    );
    Ok(out)
}

/// Adds the little-endian `u64`s of `bytes` into `z` (wrapping), decoding as
/// it adds (no decoded copy); errors if `bytes` does not hold exactly
/// `z.len()` of them.
pub fn add_u64s_into(bytes: &[u8], z: &mut [u64]) -> Result<(), NetError> {
    check_u64s(bytes)?;
    if bytes.len() / 8 != z.len() {
        return Err(NetError::Decode(format!(
            "Vec<u64>: expected {} elements, got {}",
            z.len(),
            bytes.len() / 8
        )));
    }
    for (zi, c) in z.iter_mut().zip(bytes.chunks_exact(8)) {
        *zi = zi.wrapping_add(u64::from_le_bytes(c.try_into().expect("chunks_exact(8)")));
    }
    Ok(())
}

fn check_u64s(bytes: &[u8]) -> Result<(), NetError> {
    if bytes.len().is_multiple_of(8) {
        Ok(())
    } else {
        Err(NetError::Decode(format!(
            "Vec<u64>: packed frame of {} bytes is not a multiple of 8",
            bytes.len()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The one-copy encoding is 8 little-endian bytes per element, leaves
        /// the spare room, decodes back and adds back; frames that are not
        /// whole words, or hold another count, are refused.
        #[test]
        fn u64_codec_round_trips(v in proptest::collection::vec(any::<u64>(), 0..300), cut in 1usize..8, base in any::<u64>()) {
            let bytes = encode_u64s(&v);
            let reference: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            prop_assert_eq!(&bytes, &reference);
            prop_assert!(bytes.capacity() >= bytes.len() + FRAME_SPARE);
            prop_assert_eq!(decode_u64s(&bytes).unwrap(), v.clone());
            let mut z = vec![base; v.len()];
            add_u64s_into(&bytes, &mut z).unwrap();
            let want: Vec<u64> = v.iter().map(|x| x.wrapping_add(base)).collect();
            prop_assert_eq!(&z, &want);
            let mut longer = vec![0u64; v.len() + 1];
            prop_assert!(add_u64s_into(&bytes, &mut longer).is_err());
            if !bytes.is_empty() {
                prop_assert!(decode_u64s(&bytes[..bytes.len() - cut]).is_err());
                prop_assert!(add_u64s_into(&bytes[..bytes.len() - cut], &mut z).is_err());
            }
        }
    }
}
