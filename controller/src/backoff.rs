//! The watches' backoff: kube-runtime's default waits up to 30 s after an API-server restart;
//! ours at most a few seconds.

use std::time::Duration;

use wasmless_build::backoff::Exponential;

/// [`Exponential`] from 250 ms to 2 s, as kube-runtime's watchers take it: a restarted API
/// server is back within a second or two, and a retry every 2 s costs it nothing. A watch
/// stream resets it on each event it delivers.
#[derive(Clone, Debug)]
pub struct Watch(Exponential);

impl Watch {
    pub fn new() -> Self {
        Self(Exponential::new(
            Duration::from_millis(250),
            Duration::from_secs(2),
        ))
    }
}

impl Default for Watch {
    fn default() -> Self {
        Self::new()
    }
}

impl Iterator for Watch {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.0.next()
    }
}

impl kube::runtime::utils::Backoff for Watch {
    fn reset(&mut self) {
        self.0.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::utils::Backoff;

    #[test]
    fn a_delivered_event_starts_the_delays_over() {
        let ms = Duration::from_millis;
        let mut b = Watch::new();
        let delays: Vec<_> = b.by_ref().take(5).collect();
        assert_eq!(delays, [ms(250), ms(500), ms(1000), ms(2000), ms(2000)]);
        Backoff::reset(&mut b);
        assert_eq!(b.next(), Some(ms(250)));
    }
}
