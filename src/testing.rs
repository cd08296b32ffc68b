//! Helpers shared by the unit tests.

/// A xorshift64 generator: deterministic random input for the fuzz-style
/// tests of the parsers, so a failure reproduces exactly.
pub(crate) fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed.max(1);
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}
