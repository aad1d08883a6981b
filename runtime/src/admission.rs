//! Admission control: how many instances may run at once, per function and per host, and how
//! much linear memory they may claim together. A request that does not fit waits in a short
//! bounded queue, then is refused: `429` when its own function is at its limit (the tenant's
//! problem), `503` when the host is (everyone's), each with `Retry-After`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use http::StatusCode;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};

use wasmless_api::function::FunctionKey;

/// The host-wide bounds on what runs at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdmissionLimits {
    /// Instances running at once across all functions.
    pub max_in_flight: u32,
    /// Instances of one function running at once.
    pub max_in_flight_per_function: u32,
    /// Requests waiting for a slot across all functions.
    pub max_queued: u32,
    /// Requests of one function waiting for a slot.
    pub max_queued_per_function: u32,
    /// How long a request may wait for a slot.
    pub queue_timeout: Duration,
    /// The sum of the memory caps of the instances running at once never exceeds this.
    pub memory_budget_bytes: u64,
}

impl Default for AdmissionLimits {
    fn default() -> Self {
        Self {
            max_in_flight: 256,
            max_in_flight_per_function: 64,
            max_queued: 128,
            max_queued_per_function: 16,
            queue_timeout: Duration::from_secs(1),
            memory_budget_bytes: 8 << 30,
        }
    }
}

/// Why a request was refused before (or instead of) running; the `reason` label of
/// `wasmless_rejected_total`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Reason {
    /// Its function already runs as many instances as one function may.
    function_concurrency,
    /// The host already runs as many instances as it may.
    host_concurrency,
    /// The host's memory budget has no room for another instance of this size.
    memory_budget,
    /// The request body is larger than the host allows.
    body_too_large,
    /// The request body did not arrive in time.
    body_timeout,
    /// The host already holds as many connections as it may.
    connections,
    /// A wasi:http function asked for an address it may not call.
    outbound,
}

impl Reason {
    /// What the client is told.
    pub fn status(self) -> StatusCode {
        match self {
            Reason::function_concurrency => StatusCode::TOO_MANY_REQUESTS,
            Reason::host_concurrency | Reason::memory_budget | Reason::connections => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Reason::body_too_large => StatusCode::PAYLOAD_TOO_LARGE,
            Reason::body_timeout => StatusCode::REQUEST_TIMEOUT,
            Reason::outbound => StatusCode::FORBIDDEN,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectedLabels {
    pub reason: Reason,
}

/// A refused admission: the reason and a message for the client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Rejected {
    pub reason: Reason,
    pub message: String,
}

/// Seconds a refused client is told to wait (`Retry-After`).
pub const RETRY_AFTER_SECONDS: u64 = 1;

#[derive(Default)]
struct Counts {
    running: u32,
    waiting: u32,
}

#[derive(Default)]
struct State {
    running: u32,
    waiting: u32,
    memory_bytes: u64,
    /// Only functions with a request running or waiting have an entry.
    functions: HashMap<FunctionKey, Counts>,
}

/// The host's admission state. Cheap to share: one lock held for a few comparisons.
pub struct Admission {
    limits: AdmissionLimits,
    state: Mutex<State>,
    released: tokio::sync::Notify,
}

impl Admission {
    pub fn new(limits: AdmissionLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            state: Mutex::default(),
            released: tokio::sync::Notify::new(),
        })
    }

    pub fn limits(&self) -> &AdmissionLimits {
        &self.limits
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What stops one more instance of `key` with a `memory_bytes` cap from starting now.
    fn blocker(&self, state: &State, key: &FunctionKey, memory_bytes: u64) -> Option<Reason> {
        let mine = state.functions.get(key).map_or(0, |c| c.running);
        if mine >= self.limits.max_in_flight_per_function {
            Some(Reason::function_concurrency)
        } else if state.running >= self.limits.max_in_flight {
            Some(Reason::host_concurrency)
        } else if state.memory_bytes.saturating_add(memory_bytes) > self.limits.memory_budget_bytes
        {
            Some(Reason::memory_budget)
        } else {
            None
        }
    }

    /// A slot for one instance of `key` whose linear memory is capped at `memory_bytes`: at
    /// once, after a wait in the queue, or refused.
    pub async fn admit(
        self: &Arc<Self>,
        key: &FunctionKey,
        memory_bytes: u64,
    ) -> Result<Permit, Rejected> {
        if memory_bytes > self.limits.memory_budget_bytes {
            return Err(Rejected {
                reason: Reason::memory_budget,
                message: format!(
                    "the function's memory cap of {memory_bytes} bytes is above this host's memory budget of {} bytes",
                    self.limits.memory_budget_bytes
                ),
            });
        }
        let deadline = tokio::time::Instant::now() + self.limits.queue_timeout;
        let mut queued: Option<Queued> = None;
        loop {
            // Registered before the check, so a release between the check and the wait wakes it.
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            let blocker = {
                let mut state = self.lock();
                match self.blocker(&state, key, memory_bytes) {
                    None => {
                        if let Some(q) = queued.take() {
                            q.leave(&mut state);
                        }
                        state.running += 1;
                        state.memory_bytes += memory_bytes;
                        state.functions.entry(key.clone()).or_default().running += 1;
                        return Ok(Permit {
                            admission: self.clone(),
                            key: key.clone(),
                            memory_bytes,
                        });
                    }
                    Some(reason) if queued.is_none() => {
                        let mine = state.functions.get(key).map_or(0, |c| c.waiting);
                        if mine >= self.limits.max_queued_per_function
                            || state.waiting >= self.limits.max_queued
                        {
                            return Err(self.rejected(reason, "and its queue is full"));
                        }
                        state.waiting += 1;
                        state.functions.entry(key.clone()).or_default().waiting += 1;
                        queued = Some(Queued {
                            admission: self.clone(),
                            key: key.clone(),
                            counted: true,
                        });
                        reason
                    }
                    Some(reason) => reason,
                }
            };
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                let waited = self.limits.queue_timeout.as_millis();
                return Err(self.rejected(blocker, &format!("after {waited} ms in its queue")));
            }
        }
    }

    fn rejected(&self, reason: Reason, how: &str) -> Rejected {
        let l = &self.limits;
        let what = match reason {
            Reason::function_concurrency => format!(
                "this function already runs {} instances, its limit on this host,",
                l.max_in_flight_per_function
            ),
            Reason::host_concurrency => {
                format!(
                    "this host already runs {} instances, its limit,",
                    l.max_in_flight
                )
            }
            _ => format!(
                "this host's memory budget of {} bytes is taken by running instances",
                l.memory_budget_bytes
            ),
        };
        Rejected {
            reason,
            message: format!("{what} {how}: retry later"),
        }
    }

    /// Instances running now, and the sum of their memory caps.
    pub fn in_use(&self) -> (u32, u64) {
        let state = self.lock();
        (state.running, state.memory_bytes)
    }
}

/// A request's place in the queue; leaving (admitted, refused or dropped by a client that went
/// away) frees it.
struct Queued {
    admission: Arc<Admission>,
    key: FunctionKey,
    /// Still counted in the queue: `Drop` must take it out.
    counted: bool,
}

impl Queued {
    /// Leaves the queue under a lock the caller already holds.
    fn leave(mut self, state: &mut State) {
        state.waiting -= 1;
        forget_idle(state, &self.key, |c| c.waiting -= 1);
        self.counted = false;
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        if self.counted {
            let mut state = self.admission.lock();
            state.waiting -= 1;
            forget_idle(&mut state, &self.key, |c| c.waiting -= 1);
        }
    }
}

fn forget_idle(state: &mut State, key: &FunctionKey, change: impl FnOnce(&mut Counts)) {
    if let Some(c) = state.functions.get_mut(key) {
        change(c);
        if c.running == 0 && c.waiting == 0 {
            state.functions.remove(key);
        }
    }
}

/// One running instance's slot, given back when dropped.
pub struct Permit {
    admission: Arc<Admission>,
    key: FunctionKey,
    memory_bytes: u64,
}

impl Drop for Permit {
    fn drop(&mut self) {
        {
            let mut state = self.admission.lock();
            state.running -= 1;
            state.memory_bytes -= self.memory_bytes;
            forget_idle(&mut state, &self.key, |c| c.running -= 1);
        }
        self.admission.released.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> AdmissionLimits {
        AdmissionLimits {
            max_in_flight: 3,
            max_in_flight_per_function: 2,
            max_queued: 2,
            max_queued_per_function: 1,
            queue_timeout: Duration::from_millis(50),
            memory_budget_bytes: 100,
        }
    }

    #[tokio::test]
    async fn per_function_then_host_then_memory() {
        let a = Admission::new(limits());
        let (f, g, h) = (
            FunctionKey::new("t", "f"),
            FunctionKey::new("t", "g"),
            FunctionKey::new("t", "h"),
        );
        let _f1 = a.admit(&f, 10).await.unwrap();
        let _f2 = a.admit(&f, 10).await.unwrap();
        let e = a.admit(&f, 10).await.err().map(|e| e.reason);
        assert_eq!(e, Some(Reason::function_concurrency));
        let g1 = a.admit(&g, 70).await.unwrap();
        assert_eq!(a.in_use(), (3, 90));
        let e = a.admit(&h, 1).await.err().map(|e| e.reason);
        assert_eq!(e, Some(Reason::host_concurrency));
        drop(g1);
        let e = a.admit(&g, 81).await.err().map(|e| e.reason);
        assert_eq!(e, Some(Reason::memory_budget));
        let e = a.admit(&g, 101).await.err().map(|e| e.reason);
        assert_eq!(e, Some(Reason::memory_budget), "never fits");
        assert_eq!(a.in_use(), (2, 20));
    }

    #[tokio::test]
    async fn a_queued_request_runs_when_a_slot_frees_and_a_full_queue_refuses_at_once() {
        let mut l = limits();
        l.queue_timeout = Duration::from_secs(30);
        let a = Admission::new(l);
        let f = FunctionKey::new("t", "f");
        let first = a.admit(&f, 1).await.unwrap();
        let _second = a.admit(&f, 1).await.unwrap();
        let waiter = tokio::spawn({
            let (a, f) = (a.clone(), f.clone());
            async move { a.admit(&f, 1).await.map(drop) }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        // The queue of one is taken: refused without waiting.
        let refused = tokio::time::timeout(Duration::from_secs(5), a.admit(&f, 1)).await;
        assert!(matches!(
            refused,
            Ok(Err(Rejected {
                reason: Reason::function_concurrency,
                ..
            }))
        ));
        drop(first);
        assert!(waiter.await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn waiting_ends_at_the_queue_timeout_and_dropped_waiters_leave_the_queue() {
        let a = Admission::new(limits());
        let f = FunctionKey::new("t", "f");
        let _held = (a.admit(&f, 1).await.unwrap(), a.admit(&f, 1).await.unwrap());
        let e = a.admit(&f, 1).await.err().unwrap();
        assert!(e.message.contains("50 ms"), "{}", e.message);
        // A client that goes away while queued gives its place back.
        let gone = tokio::time::timeout(Duration::from_millis(5), a.admit(&f, 1)).await;
        assert!(gone.is_err());
        let state = a.lock();
        assert_eq!((state.waiting, state.functions[&f].waiting), (0, 0));
    }
}
