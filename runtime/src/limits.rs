//! Per-function limits: how long a request may run and how much linear memory it may use.

use std::time::Duration;

use thiserror::Error;
use wasmtime::ResourceLimiter;

use wasmless_api::function::{FunctionSpec, Runtime, Settings};
use wasmless_api::limits::{DEFAULT_MEMORY_BYTES, DEFAULT_TIMEOUT, DEFAULT_WARM_INSTANCES};
use wasmless_api::validate::{self, Field, FieldError, Invalid};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    pub timeout: Duration,
    pub memory_bytes: u64,
    /// Idle instances kept for later requests (`warmInstances`): 0, a fresh one per request.
    pub warm_instances: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
            memory_bytes: DEFAULT_MEMORY_BYTES,
            warm_instances: 0,
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum LimitError {
    #[error("{0}")]
    Invalid(#[from] Invalid),
    #[error("memory {requested} bytes is above this host's per-instance maximum of {max} bytes")]
    MemoryTooLarge { requested: u64, max: u64 },
    /// A Secret's or ConfigMap's key it reads is missing (grouped here: it is what the spec
    /// asks for that this host cannot give).
    #[error("{0}")]
    Values(#[from] crate::values::ResolveError),
}

impl Limits {
    /// Reads the limits a manifest asks for, as the validator does; `max_memory` is what the
    /// host's engine allows.
    pub fn from_spec(spec: &FunctionSpec, max_memory: u64) -> Result<Self, LimitError> {
        let field = |field, message| Invalid(vec![FieldError { field, message }]);
        let settings = Settings::of(spec);
        let timeout = validate::merged_timeout(&settings).map_err(|(f, m)| field(f, m))?;
        let memory = validate::merged_memory(&settings).map_err(|(f, m)| field(f, m))?;
        let warm = validate::warm_instances(spec.warm_instances.as_ref())
            .map_err(|m| field(Field::WarmInstances, m))?;
        let memory_bytes = match memory {
            Some(requested) if requested > max_memory => {
                return Err(LimitError::MemoryTooLarge {
                    requested,
                    max: max_memory,
                });
            }
            Some(requested) => requested,
            None => DEFAULT_MEMORY_BYTES.min(max_memory),
        };
        let warm_instances = match warm {
            Some(n) => n as usize,
            None => match Runtime::parse(&spec.runtime) {
                Some(Runtime::Python | Runtime::Nodejs | Runtime::Go | Runtime::Ruby) => {
                    DEFAULT_WARM_INSTANCES
                }
                _ => 0,
            },
        };
        Ok(Self {
            timeout,
            memory_bytes,
            warm_instances,
        })
    }
}

/// The store's resource limiter: caps each linear memory and remembers a refused grow, so the
/// response can say that the memory limit, not the function, ended the request.
pub struct MemoryLimiter {
    max_bytes: usize,
    pub refused: Option<usize>,
    /// Linear memory the store's instances hold (what a warm instance keeps while idle).
    grown: usize,
}

impl MemoryLimiter {
    pub fn new(max_bytes: u64) -> Self {
        Self {
            max_bytes: usize::try_from(max_bytes).unwrap_or(usize::MAX),
            refused: None,
            grown: 0,
        }
    }

    pub fn memory_bytes(&self) -> u64 {
        u64::try_from(self.grown).unwrap_or(u64::MAX)
    }

    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.refused = Some(desired);
            // An error (rather than `Ok(false)`) traps the instance: guests rarely handle a failed
            // grow well, and a clear 500 beats a confusing crash later.
            wasmtime::bail!(
                "memory limit exceeded: the function needed {desired} bytes of linear memory, its limit is {} bytes",
                self.max_bytes
            );
        }
        self.grown = self.grown.saturating_add(desired.saturating_sub(current));
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(maximum.is_none_or(|m| desired <= m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmless_api::function::IntOrString;

    #[test]
    fn limits_from_spec() {
        let spec = FunctionSpec {
            timeout: Some(IntOrString::String("5".into())),
            memory: Some(IntOrString::String("1Mi".into())),
            ..Default::default()
        };
        let l = Limits::from_spec(&spec, 1 << 30).unwrap();
        assert_eq!(l.timeout, Duration::from_secs(5));
        assert_eq!(l.memory_bytes, 1 << 20);

        let spec = FunctionSpec {
            timeout: Some(IntOrString::Int(0)),
            ..Default::default()
        };
        let e = Limits::from_spec(&spec, 1 << 30).map_err(|e| e.to_string());
        assert_eq!(
            e,
            Err("spec.timeout: 0 must be whole seconds from 1 to 3600".into())
        );

        // Under the validator's maximum, above this host's.
        let spec = FunctionSpec {
            memory: Some(IntOrString::String("512Mi".into())),
            ..Default::default()
        };
        assert!(matches!(
            Limits::from_spec(&spec, 256 << 20),
            Err(LimitError::MemoryTooLarge { .. })
        ));

        let l = Limits::from_spec(&FunctionSpec::default(), 64 << 20).unwrap();
        assert_eq!(
            l,
            Limits {
                timeout: DEFAULT_TIMEOUT,
                memory_bytes: 64 << 20,
                warm_instances: 0,
            }
        );
    }

    #[test]
    fn warm_instances_default_per_runtime() {
        let warm = |runtime: &str, asked: Option<i64>| {
            let spec = FunctionSpec {
                runtime: runtime.into(),
                warm_instances: asked.map(IntOrString::Int),
                ..Default::default()
            };
            Limits::from_spec(&spec, 1 << 30).map(|l| l.warm_instances)
        };
        assert_eq!(warm("python3.12", None), Ok(DEFAULT_WARM_INSTANCES));
        assert_eq!(warm("nodejs20", None), Ok(DEFAULT_WARM_INSTANCES));
        assert_eq!(warm("go1.21", None), Ok(DEFAULT_WARM_INSTANCES));
        assert_eq!(warm("rust", None), Ok(0));
        assert_eq!(warm("wat", None), Ok(0));
        assert_eq!(warm("python", Some(0)), Ok(0));
        assert_eq!(warm("rust", Some(2)), Ok(2));
        assert!(warm("python", Some(99)).is_err());
    }
}
