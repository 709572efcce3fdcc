//! The async client's I/O: hyper on smol's sockets (`http`), an
//! `event-listener` raced against an `async-io` timer for waiting, smol's
//! blocking pool for user code, and a detached task for the listening
//! stream.

use crate::http::{Body as HttpBody, Http};
use async_io::Timer;
use event_listener::EventListener;
use futures_lite::future;
use mcp_recovery_client::drive::{Body, Exchange, Io, Response};
use mcp_recovery_client::{CancelHandle, Settings};
use mcp_recovery_core::{FailureKind, TransportFailure};
use std::future::Future;
use std::time::{Duration, Instant};

/// How often a read of a call with a cancel handle looks at it: the most
/// a cancel from another thread waits when the server is silent.
const SLICE: Duration = Duration::from_millis(50);

/// Resolves once `cancel` fired (looked at every [`SLICE`]). A cancel
/// from another thread wakes the driver's waiters, not a read parked on a
/// silent socket: this is what ends that read.
async fn cancelled(cancel: &CancelHandle) -> TransportFailure {
    while !cancel.is_cancelled() {
        Timer::after(SLICE).await;
    }
    TransportFailure::after_send(FailureKind::Cancelled, "call cancelled")
}

/// A response body and the cancel handle of the call reading it.
pub(crate) struct SmolBody {
    inner: HttpBody,
    cancel: Option<CancelHandle>,
}

impl Io for Http {
    type Body = SmolBody;

    fn new(s: &Settings) -> Self {
        Http::new(s.connect_timeout, s.pool_idle, s.tls_roots())
    }

    async fn send(&self, x: &Exchange<'_>) -> Result<Response<SmolBody>, TransportFailure> {
        // Each read's timeout comes from the driver, cut to the call's
        // deadline, so `x.deadline` needs nothing more here.
        let sent = Http::send(self, x.request, x.read_timeout);
        let response = match &x.cancel {
            Some(c) => future::or(sent, async { Err(cancelled(c).await) }).await,
            None => sent.await,
        }?;
        Ok(Response {
            status: response.status,
            headers: response.headers,
            body: SmolBody {
                inner: response.body,
                cancel: x.cancel.clone(),
            },
        })
    }

    async fn wait(&self, listener: EventListener, until: Option<Instant>) {
        match until {
            Some(at) => {
                future::or(listener, async {
                    Timer::at(at).await;
                })
                .await
            }
            None => listener.await,
        }
    }

    fn blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> impl Future<Output = R> + Send {
        smol::unblock(f)
    }

    fn on_idle(&self, hook: std::sync::Arc<dyn Fn() + Send + Sync>) {
        Http::on_idle(self, hook);
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) -> Result<(), String> {
        smol::spawn(task).detach();
        Ok(())
    }
}

impl Body for SmolBody {
    async fn chunk(&mut self, read_timeout: Duration) -> Result<Option<&[u8]>, TransportFailure> {
        let read = HttpBody::chunk(&mut self.inner, read_timeout);
        match &self.cancel {
            Some(c) => future::or(read, async { Err(cancelled(c).await) }).await,
            None => read.await,
        }
    }
}
