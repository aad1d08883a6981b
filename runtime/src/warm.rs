//! Warm instances: an instance that answered a request cleanly may answer the next request of
//! the same loaded function (as Kubeless's own runtimes, Lambda and OpenFaaS do), so Python's and
//! Node's interpreters start once rather than per request. Each loaded function runs and keeps at
//! most its `warmInstances` ones; the host keeps at most a count and a memory total of idle
//! instances across all functions. What happens to an instance that did not end cleanly is the caller's
//! rule: it is never put back.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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

/// One loaded function's warm instances. A function that keeps `n` runs at most `n` instances at
/// once: a request that finds them all busy waits for one to come back rather than starting a
/// fresh one, which costs an interpreter's start (milliseconds of CPU: under load the fresh
/// path, not the queue, is what runs out of cores). A function that keeps none has no bound
/// here: a fresh instance per request, as many as admission lets run.
pub struct Pool<T> {
    keep: usize,
    /// One permit per instance the function may run at once (none when it keeps none).
    turns: Option<Arc<Semaphore>>,
    budget: Arc<WarmBudget>,
    idle: Mutex<Vec<(T, Reservation)>>,
}

/// A request's turn at one of its function's instances: held until the instance is back among
/// the idle ones or dropped.
pub struct Turn<T> {
    /// The most recently used idle instance, if one was idle.
    pub warm: Option<T>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl<T> Pool<T> {
    pub fn new(keep: usize, budget: Arc<WarmBudget>) -> Self {
        Self {
            keep,
            turns: (keep > 0).then(|| Arc::new(Semaphore::new(keep))),
            budget,
            idle: Mutex::default(),
        }
    }

    /// Waits for a turn: at once when the function keeps none or fewer than it keeps run.
    pub async fn turn(&self) -> Turn<T> {
        let permit = match &self.turns {
            // Never closed, so acquiring only fails if it were.
            Some(turns) => turns.clone().acquire_owned().await.ok(),
            None => None,
        };
        Turn {
            warm: self.lock().pop().map(|(item, _reservation)| item),
            _permit: permit,
        }
    }

    /// Keeps `item` (holding `bytes` of linear memory) for a later request when the host's
    /// budget has room; otherwise it is dropped. Ends `turn` either way.
    pub fn put(&self, item: T, bytes: u64, turn: Turn<T>) -> bool {
        let mut idle = self.lock();
        let kept = idle.len() < self.keep
            && match self.budget.reserve(bytes) {
                Some(reservation) => {
                    idle.push((item, reservation));
                    true
                }
                None => false,
            };
        drop(idle);
        drop(turn);
        kept
    }

    fn lock(&self) -> MutexGuard<'_, Vec<(T, Reservation)>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    /// A turn that must be free now.
    fn turn<T>(pool: &Pool<T>) -> Turn<T> {
        pool.turn().now_or_never().expect("a turn is free")
    }

    #[test]
    fn kept_per_function_and_within_the_hosts_budget() {
        let budget = WarmBudget::new(WarmLimits {
            max_instances: 3,
            max_bytes: 100,
        });
        let a = Pool::new(2, budget.clone());
        let b = Pool::new(4, budget.clone());
        let (a1, a2) = (turn(&a), turn(&a));
        assert!(a.put("a1", 10, a1));
        assert!(a.put("a2", 10, a2));
        assert!(!b.put("b1", 90, turn(&b)), "over the host's bytes");
        assert!(b.put("b1", 10, turn(&b)));
        assert_eq!(budget.idle(), (3, 30));
        let (b1, b2) = (turn(&b), turn(&b));
        assert_eq!((b1.warm, b2.warm), (Some("b1"), None));
        assert!(b.put("b1", 10, b1));
        assert!(!b.put("b2", 1, b2), "over the host's count");
        let taken = turn(&a);
        assert_eq!(taken.warm, Some("a2"), "the most recently used first");
        drop(taken);
        assert_eq!(budget.idle(), (2, 20));
        drop(b);
        assert_eq!(
            budget.idle(),
            (1, 10),
            "a function unloaded gives its share back"
        );
        assert_eq!(turn(&a).warm, Some("a1"));
        assert_eq!(turn(&a).warm, None);
    }

    #[test]
    fn a_request_waits_for_one_of_the_instances_a_function_keeps() {
        let pool = Pool::new(2, WarmBudget::new(WarmLimits::default()));
        let (first, second) = (turn(&pool), turn(&pool));
        let mut third = Box::pin(pool.turn());
        assert!((&mut third).now_or_never().is_none(), "both instances busy");
        assert!(pool.put("one", 1, first));
        let third = third.now_or_never().expect("a turn once one is back");
        assert_eq!(third.warm, Some("one"));
        // A failed instance is dropped with its turn: the turn is free again.
        drop(second);
        assert!(pool.turn().now_or_never().is_some());
    }

    #[test]
    fn a_function_that_keeps_none_never_waits() {
        let pool = Pool::new(0, WarmBudget::new(WarmLimits::default()));
        let turns: Vec<_> = (0..100).map(|_| pool.turn().now_or_never()).collect();
        assert!(
            turns
                .iter()
                .all(|t| matches!(t, Some(Turn { warm: None, .. })))
        );
        assert!(!pool.put("kept?", 1, turn(&pool)), "keeps none");
    }
}
