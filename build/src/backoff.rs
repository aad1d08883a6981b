//! Exponential backoff: for retrying builds that failed for the builder's reasons rather than
//! the source's, and (wrapped by the controller) for its watches.

use std::time::Duration;

/// Delays from `min`, doubling up to `max`, forever; [`Exponential::reset`] starts over.
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

    /// The next delay is `min` again.
    pub fn reset(&mut self) {
        self.next = self.min;
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

#[cfg(test)]
mod tests {
    use super::*;

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
