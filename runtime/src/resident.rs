//! Which functions keep their compiled code loaded. Each loaded module holds ~2 memory mappings
//! and ~33 KiB (measured with 10,000 WAT hellos): the kernel's `vm.max_map_count` (65,530 by
//! default) stopped a host at 31,714 functions, and 100,000 would take ~4 GiB. Past
//! [`Resident::max`], the least recently used functions' code is dropped, and loaded again from
//! its artifact (no compilation: it is precompiled) at their next request.
//!
//! Dropping is in batches of a tenth of the bound, so the walk that finds the oldest (over every
//! function) runs once per that many loads, not at each.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, TryLockError};

use arc_swap::ArcSwapOption;

use crate::abi::Prepared;
use wasmless_api::Abi;

/// Prepares a function's code again, from its artifact.
pub type Reload = Arc<dyn Fn() -> Result<Prepared, String> + Send + Sync>;

/// The bound, and what is loaded under it.
pub struct Resident {
    /// Functions whose code stays loaded at most (0: no bound).
    max: usize,
    loaded: AtomicUsize,
    /// Counts uses: a function's last use is the clock's value then.
    clock: AtomicU64,
    /// One walk at a time.
    dropping: Mutex<()>,
}

impl Resident {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            loaded: AtomicUsize::new(0),
            clock: AtomicU64::new(0),
            dropping: Mutex::new(()),
        })
    }

    /// Functions whose code is loaded now and could be dropped.
    pub fn loaded(&self) -> usize {
        self.loaded.load(Ordering::Relaxed)
    }

    /// Whether loads went past the bound: [`Resident::drop_oldest`] should run.
    pub fn over(&self) -> bool {
        self.max > 0 && self.loaded() > self.max
    }

    /// Drops the code of the least recently used of `codes` until a tenth of the bound is
    /// free. Code in use stays alive until its calls end (they hold it).
    pub fn drop_oldest<'a>(&self, codes: impl Iterator<Item = &'a Code>) -> usize {
        let _one = match self.dropping.try_lock() {
            Ok(guard) => guard,
            // (A walk that panicked left nothing half done: the lock guards no data.)
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return 0, // another walk is under way
        };
        if !self.over() {
            return 0;
        }
        let target = self.max - self.max / 10;
        let mut candidates: Vec<(u64, &Code)> = codes
            .filter(|c| c.reload.is_some() && c.is_loaded())
            .map(|c| (c.used.load(Ordering::Relaxed), c))
            .collect();
        let excess = self.loaded().saturating_sub(target).min(candidates.len());
        if excess == 0 {
            return 0;
        }
        candidates.select_nth_unstable_by_key(excess - 1, |(used, _)| *used);
        candidates[..excess]
            .iter()
            .filter(|(_, code)| code.unload())
            .count()
    }
}

/// A function's code: loaded (pre-instantiated), or dropped until its next request.
pub struct Code {
    prepared: ArcSwapOption<Prepared>,
    abi: Abi,
    /// How to load it again; none: it is never dropped.
    reload: Option<Reload>,
    used: AtomicU64,
    resident: Arc<Resident>,
}

impl Code {
    /// Code that can be loaded again counts against the bound; code that cannot (a wasm
    /// compiled on the host) neither counts nor is dropped.
    pub fn new(prepared: Prepared, reload: Option<Reload>, resident: &Arc<Resident>) -> Self {
        if reload.is_some() {
            resident.loaded.fetch_add(1, Ordering::Relaxed);
        }
        Self {
            abi: prepared.abi(),
            prepared: ArcSwapOption::from_pointee(prepared),
            reload,
            used: AtomicU64::new(resident.clock.fetch_add(1, Ordering::Relaxed)),
            resident: resident.clone(),
        }
    }

    pub fn abi(&self) -> Abi {
        self.abi
    }

    pub fn is_loaded(&self) -> bool {
        self.prepared.load().is_some()
    }

    /// The code for a call, and whether it had to be loaded again (the count went up: the
    /// caller then makes room). Marks it used, when it is code that may be dropped: a shared
    /// clock bumped at every request of every function would be contention for nothing.
    pub fn get(&self) -> Result<(Arc<Prepared>, bool), String> {
        if self.reload.is_some() && self.resident.max > 0 {
            self.used.store(
                self.resident.clock.fetch_add(1, Ordering::Relaxed),
                Ordering::Relaxed,
            );
        }
        if let Some(prepared) = self.prepared.load_full() {
            return Ok((prepared, false));
        }
        let reload = self
            .reload
            .as_ref()
            .ok_or_else(|| "its code is not loaded".to_string())?;
        let prepared = Arc::new(reload()?);
        // Two requests may load it at once: the first stored is kept, and counted once.
        let before = self
            .prepared
            .compare_and_swap(&None::<Arc<Prepared>>, Some(prepared.clone()));
        match &*before {
            None => {
                self.resident.loaded.fetch_add(1, Ordering::Relaxed);
                Ok((prepared, true))
            }
            Some(other) => Ok((other.clone(), false)),
        }
    }

    /// Drops the loaded code (calls holding it finish); whether it was loaded.
    fn unload(&self) -> bool {
        if self.reload.is_none() {
            return false;
        }
        let was = self.prepared.swap(None).is_some();
        if was {
            self.resident.loaded.fetch_sub(1, Ordering::Relaxed);
        }
        was
    }
}

impl Drop for Code {
    fn drop(&mut self) {
        // A replaced or unloaded function's code leaves the count.
        self.unload();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::Linkers;
    use crate::engine::{EngineConfig, compile};
    use crate::warm::{WarmBudget, WarmLimits};

    #[test]
    fn the_least_recently_used_are_dropped_and_loaded_again_when_called() {
        let engine = EngineConfig::default().build().unwrap();
        let linkers = Arc::new(Linkers::new(&engine).unwrap());
        let budget = WarmBudget::new(WarmLimits::default());
        let prepare = {
            let (engine, linkers, budget) = (engine.clone(), linkers.clone(), budget.clone());
            move || {
                let compiled = compile(
                    &engine,
                    br#"(module (memory (export "memory") 1) (func (export "_start")))"#,
                )
                .unwrap();
                Prepared::new(&linkers, &compiled, 0, budget.clone()).map_err(|e| e.to_string())
            }
        };
        let loads = Arc::new(AtomicUsize::new(0));
        let reload: Reload = {
            let (prepare, loads) = (prepare.clone(), loads.clone());
            Arc::new(move || {
                loads.fetch_add(1, Ordering::Relaxed);
                prepare()
            })
        };
        let resident = Resident::new(10);
        let codes: Vec<Code> = (0..12)
            .map(|_| Code::new(prepare().unwrap(), Some(reload.clone()), &resident))
            .collect();
        // One that cannot be loaded again: never counted, never dropped.
        let pinned = Code::new(prepare().unwrap(), None, &resident);
        assert_eq!(resident.loaded(), 12);
        assert!(resident.over());

        // All used since, but 3 and 7: those go first, then the oldest (0) to free a tenth.
        for (i, code) in codes.iter().enumerate() {
            if i != 3 && i != 7 {
                code.get().unwrap();
            }
        }
        assert_eq!(resident.drop_oldest(codes.iter().chain([&pinned])), 3);
        assert_eq!(resident.loaded(), 9);
        let dropped: Vec<usize> = (0..12).filter(|i| !codes[*i].is_loaded()).collect();
        assert_eq!(dropped, [0, 3, 7]);
        assert!(pinned.is_loaded());
        assert!(!resident.over());

        // Called again: loaded from its artifact, counted again.
        assert!(codes[3].get().unwrap().1, "loaded again");
        assert!(codes[3].is_loaded());
        assert_eq!(loads.load(Ordering::Relaxed), 1);
        assert_eq!(resident.loaded(), 10);
        assert!(!codes[3].get().unwrap().1);
        assert_eq!(loads.load(Ordering::Relaxed), 1, "loaded once");

        drop(codes);
        assert_eq!(resident.loaded(), 0);
    }
}
