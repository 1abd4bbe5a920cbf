//! Retry pacing for everything that talks to the orchestrator: exponential backoff with
//! jitter, so a fleet of agents that lost the orchestrator together does not come back
//! in lock-step and flatten it again.

use rand::Rng;
use std::time::Duration;

pub const INITIAL_DELAY: Duration = Duration::from_millis(500);
pub const MAX_DELAY: Duration = Duration::from_secs(30);

#[derive(Clone, Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(INITIAL_DELAY, MAX_DELAY)
    }
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            next: initial,
        }
    }

    /// The delay before the next attempt: the current step with ±25% jitter (never above
    /// the cap), then the step doubles.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.next;
        self.next = (self.next * 2).min(self.max);
        let factor = rand::rng().random_range(0.75..=1.25);
        step.mul_f64(factor).min(self.max)
    }

    /// The slowest pace, for failures that retrying fast cannot fix (a revoked key).
    pub fn slow_delay(&mut self) -> Duration {
        self.next = self.max;
        self.next_delay()
    }

    /// Called after a success: the next failure starts again from the initial delay.
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_with_jitter_and_resets() {
        let mut backoff = Backoff::default();
        let first = backoff.next_delay();
        assert!(first >= Duration::from_millis(375) && first <= Duration::from_millis(625));
        let second = backoff.next_delay();
        assert!(second >= Duration::from_millis(750) && second <= Duration::from_millis(1250));
        for _ in 0..20 {
            assert!(backoff.next_delay() <= MAX_DELAY);
        }
        assert!(backoff.next_delay() >= MAX_DELAY.mul_f64(0.75));
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(625));
    }
}
