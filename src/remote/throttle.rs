//! Throttling of secret checks by source address: the agent's login (an Argon2 verification
//! of ~19 MiB and tens of milliseconds each) and the controller's join. A few failures from
//! an address are free (a mistyped password); after them every further failure blocks the
//! address for a delay that doubles, up to [`MAX_BLOCK`], and a blocked address is answered
//! 429 with `Retry-After` before anything is checked. Parallel attempts count together: the
//! record is per address, not per request. A success clears the address. IPv6 addresses
//! count by their /64, which one host usually holds whole.
//!
//! Plain logic with the time passed in, so it is tested without waiting; it never sees a
//! secret.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures from one address before it is blocked.
pub const FREE_FAILURES: u32 = 3;

/// The first block; each later failure doubles it.
pub const FIRST_BLOCK: Duration = Duration::from_secs(1);

/// The longest block.
pub const MAX_BLOCK: Duration = Duration::from_secs(300);

/// An address without a failure for this long starts again from zero.
const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// Addresses remembered at most; the ones longest quiet are forgotten first.
const MAX_ADDRESSES: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    blocked_until: Option<Instant>,
    last_failure: Instant,
}

/// Failures by source address.
#[derive(Debug, Default)]
pub struct Throttle {
    records: Mutex<HashMap<IpAddr, Record>>,
}

/// The key an address counts under: itself, or its /64 for IPv6.
fn key(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::from(segments)
            }
        },
    }
}

impl Throttle {
    pub fn new() -> Throttle {
        Throttle::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Record>> {
        // A panic while holding the map leaves counts, never a half-written secret.
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `Err(wait)` while `address` is blocked: how long until it may try again.
    pub fn check(&self, address: IpAddr, now: Instant) -> Result<(), Duration> {
        let records = self.lock();
        match records
            .get(&key(address))
            .and_then(|record| record.blocked_until)
        {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Record a failure; `Some(block)` when the address is now blocked for that long.
    pub fn failed(&self, address: IpAddr, now: Instant) -> Option<Duration> {
        let mut records = self.lock();
        if records.len() >= MAX_ADDRESSES && !records.contains_key(&key(address)) {
            records.retain(|_, r| now.saturating_duration_since(r.last_failure) < FORGET_AFTER);
            if records.len() >= MAX_ADDRESSES
                && let Some(quietest) = records
                    .iter()
                    .filter(|(_, r)| r.blocked_until.is_none_or(|until| until <= now))
                    .min_by_key(|(_, r)| r.last_failure)
                    .map(|(address, _)| *address)
            {
                records.remove(&quietest);
            }
        }
        let record = records.entry(key(address)).or_insert(Record {
            failures: 0,
            blocked_until: None,
            last_failure: now,
        });
        if now.saturating_duration_since(record.last_failure) >= FORGET_AFTER {
            record.failures = 0;
        }
        record.failures = record.failures.saturating_add(1);
        record.last_failure = now;
        let over = record.failures.checked_sub(FREE_FAILURES + 1)?;
        let block = FIRST_BLOCK
            .saturating_mul(1u32 << over.min(16))
            .min(MAX_BLOCK);
        record.blocked_until = Some(now + block);
        Some(block)
    }

    /// A success: the address starts again from zero.
    pub fn succeeded(&self, address: IpAddr) {
        self.lock().remove(&key(address));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_block_an_address_for_a_doubling_delay() {
        let throttle = Throttle::new();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        // (failure number, block after it)
        let expected = [
            (1, None),
            (2, None),
            (3, None),
            (4, Some(1)),
            (5, Some(2)),
            (6, Some(4)),
            (7, Some(8)),
        ];
        let mut now = t0;
        for (n, block) in expected {
            assert_eq!(throttle.check(a, now), Ok(()), "attempt {n} is let through");
            let got = throttle.failed(a, now);
            assert_eq!(got, block.map(Duration::from_secs), "failure {n}");
            if let Some(block) = got {
                assert_eq!(throttle.check(a, now), Err(block));
                now += block;
            }
        }
        assert_eq!(
            throttle.check(b, now),
            Ok(()),
            "another address is not blocked"
        );
        for _ in 0..40 {
            throttle.failed(a, now);
        }
        assert_eq!(
            throttle.check(a, now),
            Err(MAX_BLOCK),
            "the block is capped"
        );
        throttle.succeeded(a);
        assert_eq!(throttle.check(a, now), Ok(()));
        assert_eq!(throttle.failed(a, now), None, "a success starts from zero");
    }

    #[test]
    fn an_ipv6_host_counts_by_its_prefix() {
        let throttle = Throttle::new();
        let now = Instant::now();
        for i in 0..=FREE_FAILURES {
            let address: IpAddr = format!("2001:db8::{i}").parse().unwrap();
            throttle.failed(address, now);
        }
        assert!(
            throttle
                .check("2001:db8::99".parse().unwrap(), now)
                .is_err()
        );
        assert!(
            throttle
                .check("2001:db8:0:1::1".parse().unwrap(), now)
                .is_ok()
        );
    }
}
