//! Exponential backoff: for the controller's watches (kube-runtime's default waits up to 30 s
//! after an API-server restart; ours at most a few seconds) and for retrying builds that failed
//! for the builder's reasons rather than the source's.

use std::time::Duration;

/// Delays from `min`, doubling up to `max`, forever; [`kube::runtime::utils::Backoff::reset`]
/// starts over (a watch stream resets it on each event it delivers).
#[derive(Clone, Debug)]
pub struct Exponential {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Exponential {
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            next: min,
        }
    }

    /// For the watches: a restarted API server is back within a second or two, and a retry
    /// every 2 s costs it nothing.
    pub fn watch() -> Self {
        Self::new(Duration::from_millis(250), Duration::from_secs(2))
    }
}

impl Iterator for Exponential {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        Some(delay)
    }
}

impl kube::runtime::utils::Backoff for Exponential {
    fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::utils::Backoff;

    #[test]
    fn doubles_up_to_the_maximum_and_starts_over_on_reset() {
        let ms = Duration::from_millis;
        let mut b = Exponential::new(ms(250), ms(1500));
        let delays: Vec<_> = b.by_ref().take(5).collect();
        assert_eq!(delays, [ms(250), ms(500), ms(1000), ms(1500), ms(1500)]);
        b.reset();
        assert_eq!(b.next(), Some(ms(250)));
    }
}
