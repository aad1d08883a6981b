//! A function's stderr: into the host log (with its namespace and name) and into a bounded
//! per-function buffer that `wasmless function logs` reads.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use wasmless_api::admin::LogLine;
use wasmless_api::function::FunctionKey;

/// The last `capacity` lines of one function, across its revisions, and at most `max_bytes` of
/// text: a tenant's noise costs the host a bounded amount of memory.
#[derive(Debug)]
pub struct LogBuffer {
    key: FunctionKey,
    capacity: usize,
    max_bytes: usize,
    inner: Mutex<Kept>,
}

#[derive(Debug, Default)]
struct Kept {
    next: u64,
    bytes: usize,
    lines: VecDeque<LogLine>,
}

impl LogBuffer {
    fn new(key: FunctionKey, capacity: usize, max_bytes: usize) -> Self {
        Self {
            key,
            capacity,
            max_bytes,
            inner: Mutex::default(),
        }
    }

    /// Records what one request wrote to stderr, a line at a time.
    pub fn record(&self, output: &[u8]) {
        if output.is_empty() {
            return;
        }
        let time = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        let text = String::from_utf8_lossy(output);
        let mut kept = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        for line in text.lines() {
            tracing::info!(target: "function", namespace = %self.key.namespace, function = %self.key.name, "{line}");
            kept.next += 1;
            kept.bytes += line.len();
            let seq = kept.next;
            kept.lines.push_back(LogLine {
                seq,
                time,
                line: line.to_string(),
            });
            while kept.lines.len() > self.capacity
                || (kept.bytes > self.max_bytes && kept.lines.len() > 1)
            {
                if let Some(old) = kept.lines.pop_front() {
                    kept.bytes -= old.line.len();
                }
            }
        }
    }

    /// Lines after `since` (all kept lines when `since` is 0).
    pub fn since(&self, since: u64) -> Vec<LogLine> {
        let kept = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        kept.lines
            .iter()
            .filter(|l| l.seq > since)
            .cloned()
            .collect()
    }
}

/// Every function's buffer, kept while the host runs so logs survive a replace.
#[derive(Debug)]
pub struct Logs {
    capacity: usize,
    max_bytes: usize,
    buffers: Mutex<HashMap<FunctionKey, Arc<LogBuffer>>>,
}

impl Logs {
    pub fn new(capacity: usize, max_bytes: usize) -> Self {
        Self {
            capacity,
            max_bytes,
            buffers: Mutex::default(),
        }
    }

    /// The buffer of `key`, made on first use. Called when a function loads, not per request.
    pub fn buffer(&self, key: &FunctionKey) -> Arc<LogBuffer> {
        let mut map = self.buffers.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry(key.clone())
            .or_insert_with(|| Arc::new(LogBuffer::new(key.clone(), self.capacity, self.max_bytes)))
            .clone()
    }

    pub fn get(&self, key: &FunctionKey) -> Option<Arc<LogBuffer>> {
        let map = self.buffers.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(key).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_lines_in_order() {
        let logs = Logs::new(3, 1 << 20);
        let key = FunctionKey::new("ns", "f");
        let buf = logs.buffer(&key);
        buf.record(b"one\ntwo\n");
        buf.record(b"three\nfour");
        let lines: Vec<_> = buf.since(0).into_iter().map(|l| (l.seq, l.line)).collect();
        assert_eq!(
            lines,
            vec![(2, "two".into()), (3, "three".into()), (4, "four".into())]
        );
        assert_eq!(buf.since(3).len(), 1);
        assert!(Arc::ptr_eq(&buf, &logs.buffer(&key)));
    }

    #[test]
    fn keeps_at_most_max_bytes_but_always_the_last_line() {
        let logs = Logs::new(100, 10);
        let buf = logs.buffer(&FunctionKey::new("ns", "f"));
        buf.record(b"aaaa\nbbbb\ncccc\n");
        let lines: Vec<_> = buf.since(0).into_iter().map(|l| l.line).collect();
        assert_eq!(lines, vec!["bbbb".to_string(), "cccc".into()]);
        buf.record("x".repeat(50).as_bytes());
        assert_eq!(buf.since(0).len(), 1);
    }
}
