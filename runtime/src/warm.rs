//! Warm instances: an instance that answered a request cleanly may answer the next request of
//! the same loaded function (as Kubeless's own runtimes, Lambda and OpenFaaS do), so Python's and
//! Node's interpreters start once rather than per request. Each loaded function keeps at most its
//! `warmInstances` idle ones; the host keeps at most a count and a memory total of idle instances
//! across all functions. What happens to an instance that did not end cleanly is the caller's
//! rule: it is never put back.

use std::sync::{Arc, Mutex, MutexGuard};

/// The host-wide bound on idle instances.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WarmLimits {
    pub max_instances: usize,
    /// The linear memory idle instances may hold between them.
    pub max_bytes: u64,
}

impl Default for WarmLimits {
    fn default() -> Self {
        Self {
            max_instances: 256,
            max_bytes: 2 << 30,
        }
    }
}

/// Idle instances across the host, against [`WarmLimits`].
#[derive(Debug)]
pub struct WarmBudget {
    limits: WarmLimits,
    idle: Mutex<(usize, u64)>,
}

impl WarmBudget {
    pub fn new(limits: WarmLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            idle: Mutex::default(),
        })
    }

    /// Idle instances now, and the linear memory they hold.
    pub fn idle(&self) -> (usize, u64) {
        *self.lock()
    }

    fn lock(&self) -> MutexGuard<'_, (usize, u64)> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn reserve(self: &Arc<Self>, bytes: u64) -> Option<Reservation> {
        let mut idle = self.lock();
        let (count, total) = *idle;
        if count >= self.limits.max_instances || total.saturating_add(bytes) > self.limits.max_bytes
        {
            return None;
        }
        *idle = (count + 1, total + bytes);
        Some(Reservation {
            budget: self.clone(),
            bytes,
        })
    }
}

/// One idle instance's share of the budget, given back when it is taken or dropped.
struct Reservation {
    budget: Arc<WarmBudget>,
    bytes: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut idle = self.budget.lock();
        idle.0 = idle.0.saturating_sub(1);
        idle.1 = idle.1.saturating_sub(self.bytes);
    }
}

/// One loaded function's idle instances.
pub struct Idle<T> {
    items: Mutex<Vec<(T, Reservation)>>,
}

impl<T> Default for Idle<T> {
    fn default() -> Self {
        Self {
            items: Mutex::default(),
        }
    }
}

impl<T> Idle<T> {
    /// The most recently used idle instance, if any.
    pub fn take(&self) -> Option<T> {
        self.lock().pop().map(|(item, _reservation)| item)
    }

    /// Keeps `item` (holding `bytes` of linear memory) for a later request when this function
    /// keeps fewer than `keep` and the host's budget has room; otherwise it is dropped.
    pub fn put(&self, item: T, bytes: u64, keep: usize, budget: &Arc<WarmBudget>) -> bool {
        let mut items = self.lock();
        if items.len() >= keep {
            return false;
        }
        match budget.reserve(bytes) {
            Some(reservation) => {
                items.push((item, reservation));
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<(T, Reservation)>> {
        self.items.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_per_function_and_within_the_hosts_budget() {
        let budget = WarmBudget::new(WarmLimits {
            max_instances: 3,
            max_bytes: 100,
        });
        let (a, b) = (Idle::default(), Idle::default());
        assert!(a.put("a1", 10, 2, &budget));
        assert!(a.put("a2", 10, 2, &budget));
        assert!(!a.put("a3", 10, 2, &budget), "the function keeps 2");
        assert!(!b.put("b1", 90, 4, &budget), "over the host's bytes");
        assert!(b.put("b1", 10, 4, &budget));
        assert!(!b.put("b2", 1, 4, &budget), "over the host's count");
        assert_eq!(budget.idle(), (3, 30));
        assert_eq!(a.take(), Some("a2"), "the most recently used first");
        assert_eq!(budget.idle(), (2, 20));
        assert!(b.put("b2", 1, 4, &budget));
        drop(b);
        assert_eq!(
            budget.idle(),
            (1, 10),
            "a function unloaded gives its share back"
        );
        assert_eq!(a.take(), Some("a1"));
        assert_eq!(a.take(), None);
    }
}
