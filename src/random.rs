//! Cheap randomness for reconnect jitter: a per-thread xorshift generator
//! seeded from the standard library's hash keys. Not for secrets; it only
//! has to spread clients over time.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

thread_local! {
    static STATE: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    // RandomState is keyed randomly per process (and per thread after the
    // first), which is all the unpredictability jitter needs.
    let mut h = RandomState::new().build_hasher();
    h.write_usize(&h as *const _ as usize);
    h.finish() | 1
}

fn next() -> u64 {
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        x
    })
}

/// A random duration in `[0, max]`, at millisecond resolution.
pub fn up_to(max: Duration) -> Duration {
    let millis = max.as_millis().min(u64::MAX as u128) as u64;
    Duration::from_millis(next() % (millis.saturating_add(1)).max(1))
}

/// A random word of `len` letters and digits, e.g. a shared log's epoch.
/// Unpredictable enough to tell two incarnations apart, not a secret.
pub fn word(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_in_range_and_spreads() {
        let max = Duration::from_millis(2000);
        let draws: Vec<_> = (0..200).map(|_| up_to(max)).collect();
        assert!(draws.iter().all(|d| *d <= max));
        let distinct: std::collections::HashSet<_> = draws.iter().collect();
        assert!(distinct.len() > 100, "only {} distinct values", distinct.len());
        assert_eq!(up_to(Duration::ZERO), Duration::ZERO);
    }
}
