//! stdio for an instance that may serve more than one request. [`LogPipe`] (stdout, stderr):
//! each request's output is taken when it ends, and the size bound holds per request (wasmtime's
//! `MemoryOutputPipe` only grows, so a warm instance would run out of room after a few
//! requests). [`InputPipe`] (stdin): each request's input is set before it starts (wasmtime's
//! `MemoryInputPipe` is read once).

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWrite;
use tokio::io::{AsyncRead, ReadBuf};
use wasmtime_wasi::cli::{IsTerminal, StdinStream, StdoutStream};
use wasmtime_wasi::p2::{InputStream, OutputStream, Pollable, StreamError};

#[derive(Clone)]
pub struct LogPipe {
    capacity: usize,
    buffer: Arc<Mutex<BytesMut>>,
}

impl LogPipe {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            buffer: Arc::default(),
        }
    }

    /// What was written since the last take; the room is whole again.
    pub fn take(&self) -> Bytes {
        self.lock().split().freeze()
    }

    fn lock(&self) -> MutexGuard<'_, BytesMut> {
        self.buffer.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl OutputStream for LogPipe {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        let mut buffer = self.lock();
        // As MemoryOutputPipe: writing past the bound traps the instance.
        if bytes.len() > self.capacity.saturating_sub(buffer.len()) {
            return Err(StreamError::Trap(wasmtime::format_err!(
                "the function wrote more than {} bytes of output",
                self.capacity
            )));
        }
        buffer.extend_from_slice(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        match self.capacity.saturating_sub(self.lock().len()) {
            0 => Err(StreamError::Closed),
            room => Ok(room),
        }
    }
}

#[async_trait::async_trait]
impl Pollable for LogPipe {
    async fn ready(&mut self) {}
}

impl AsyncWrite for LogPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut buffer = self.lock();
        let n = buf.len().min(self.capacity.saturating_sub(buffer.len()));
        buffer.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for LogPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

/// stdin that reads what [`InputPipe::set`] last put in, then end of file.
#[derive(Clone, Default)]
pub struct InputPipe {
    buffer: Arc<Mutex<Bytes>>,
}

impl InputPipe {
    /// What the next reads return, whatever the previous request left unread.
    pub fn set(&self, input: Bytes) {
        *self.lock() = input;
    }

    fn lock(&self) -> MutexGuard<'_, Bytes> {
        self.buffer.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl InputStream for InputPipe {
    fn read(&mut self, size: usize) -> Result<Bytes, StreamError> {
        let mut buffer = self.lock();
        if buffer.is_empty() {
            return Err(StreamError::Closed);
        }
        let n = size.min(buffer.len());
        Ok(buffer.split_to(n))
    }
}

#[async_trait::async_trait]
impl Pollable for InputPipe {
    async fn ready(&mut self) {}
}

impl AsyncRead for InputPipe {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let mut buffer = self.lock();
        let n = buf.remaining().min(buffer.len());
        buf.put_slice(&buffer.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for InputPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdinStream for InputPipe {
    fn p2_stream(&self) -> Box<dyn InputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncRead + Send + Sync> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_holds_per_take() {
        let mut pipe = LogPipe::new(4);
        assert!(pipe.write(Bytes::from_static(b"abc")).is_ok());
        assert!(
            pipe.write(Bytes::from_static(b"de")).is_err(),
            "past the bound"
        );
        assert_eq!(pipe.take(), Bytes::from_static(b"abc"));
        assert_eq!(pipe.check_write().ok(), Some(4));
        assert!(pipe.write(Bytes::from_static(b"abcd")).is_ok());
        assert!(matches!(pipe.check_write(), Err(StreamError::Closed)));
    }

    #[test]
    fn input_is_read_to_its_end_then_set_again() {
        let mut pipe = InputPipe::default();
        pipe.set(Bytes::from_static(b"abc"));
        assert_eq!(pipe.read(2).ok(), Some(Bytes::from_static(b"ab")));
        pipe.set(Bytes::from_static(b"xyz"));
        assert_eq!(
            pipe.read(9).ok(),
            Some(Bytes::from_static(b"xyz")),
            "nothing left over"
        );
        assert!(
            matches!(pipe.read(9), Err(StreamError::Closed)),
            "end of file"
        );
        pipe.set(Bytes::from_static(b"next"));
        assert_eq!(pipe.read(9).ok(), Some(Bytes::from_static(b"next")));
    }
}
