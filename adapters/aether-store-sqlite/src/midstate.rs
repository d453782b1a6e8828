//! SHA-256 that can be stopped and resumed at block boundaries: a chunked blob records the
//! hash's internal state before each chunk, so a new version that shares its first chunks with
//! an old one hashes only from the first chunk that differs.

use sha2::digest::generic_array::GenericArray;

/// SHA-256's internal state between blocks.
pub(crate) type State = [u32; 8];

/// The state before any input (FIPS 180-4, 5.3.3).
pub(crate) const INITIAL: State = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// The block size: a resumable state sits at a multiple of it.
pub(crate) const BLOCK: usize = 64;

/// Feeds whole blocks (`data.len()` must be a multiple of [`BLOCK`]).
pub(crate) fn absorb(state: &mut State, data: &[u8]) {
    debug_assert_eq!(data.len() % BLOCK, 0, "only whole blocks can be absorbed");
    for block in data.chunks_exact(BLOCK) {
        sha2::compress256(state, std::slice::from_ref(GenericArray::from_slice(block)));
    }
}

/// Ends the hash: `tail` (shorter than a block or not, any length) follows what `state` has
/// absorbed, and `total` is the length of the whole message in bytes.
pub(crate) fn finish(mut state: State, tail: &[u8], total: u64) -> [u8; 32] {
    let whole = tail.len() - tail.len() % BLOCK;
    absorb(&mut state, &tail[..whole]);
    let rest = &tail[whole..];
    // Padding: 0x80, zeros, then the message length in bits, big-endian, ending a block.
    let mut last = [0u8; 2 * BLOCK];
    last[..rest.len()].copy_from_slice(rest);
    last[rest.len()] = 0x80;
    let blocks = if rest.len() + 1 + 8 <= BLOCK { 1 } else { 2 };
    let end = blocks * BLOCK;
    last[end - 8..end].copy_from_slice(&(total.wrapping_mul(8)).to_be_bytes());
    absorb(&mut state, &last[..end]);
    let mut out = [0u8; 32];
    for (word, bytes) in state.iter().zip(out.chunks_exact_mut(4)) {
        bytes.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// A state as 32 bytes, for the index file.
pub(crate) fn to_bytes(state: &State) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (word, bytes) in state.iter().zip(out.chunks_exact_mut(4)) {
        bytes.copy_from_slice(&word.to_le_bytes());
    }
    out
}

pub(crate) fn from_bytes(bytes: &[u8; 32]) -> State {
    let mut state = [0u32; 8];
    for (word, b) in state.iter_mut().zip(bytes.chunks_exact(4)) {
        *word = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use sha2::Digest;

    proptest! {
        /// Stopping at any block boundary and resuming from the saved state gives SHA-256.
        #[test]
        fn resumed_hashes_are_sha256(
            data in proptest::collection::vec(any::<u8>(), 0..700),
            cut in 0usize..12,
        ) {
            let at = (cut * BLOCK).min(data.len() - data.len() % BLOCK);
            let mut state = INITIAL;
            absorb(&mut state, &data[..at]);
            let saved = from_bytes(&to_bytes(&state));
            let ours = finish(saved, &data[at..], data.len() as u64);
            prop_assert_eq!(hex::encode(ours), hex::encode(sha2::Sha256::digest(&data)));
        }
    }

    #[test]
    fn lengths_around_the_padding_edge_are_sha256() {
        // 55 bytes pad within one block, 56 need a second: both sides of the edge.
        for len in [0, 1, 55, 56, 63, 64, 65, 119, 120, 128] {
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            assert_eq!(
                hex::encode(finish(INITIAL, &data, len as u64)),
                hex::encode(sha2::Sha256::digest(&data)),
                "length {len}"
            );
        }
    }
}
