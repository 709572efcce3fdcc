//! The async client's I/O: hyper on smol's sockets (`http`), an
//! `event-listener` raced against an `async-io` timer for waiting, smol's
//! blocking pool for user code, and a detached task for the listening
//! stream.

use crate::http::{Body as HttpBody, Http};
use async_io::Timer;
use event_listener::EventListener;
use futures_lite::future;
use mcp_recovery_client::drive::{Body, Exchange, Io, Response};
use mcp_recovery_client::Settings;
use mcp_recovery_core::TransportFailure;
use std::future::Future;
use std::time::{Duration, Instant};

impl Io for Http {
    type Body = HttpBody;

    fn new(s: &Settings) -> Self {
        Http::new(s.connect_timeout)
    }

    fn send(
        &self,
        x: &Exchange<'_>,
    ) -> impl Future<Output = Result<Response<HttpBody>, TransportFailure>> + Send {
        // Each read's timeout comes from the driver, cut to the call's
        // deadline, so `x.deadline` needs nothing more here.
        Http::send(self, x.request, x.read_timeout)
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

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) -> Result<(), String> {
        smol::spawn(task).detach();
        Ok(())
    }
}

impl Body for HttpBody {
    fn chunk(
        &mut self,
        read_timeout: Duration,
    ) -> impl Future<Output = Result<Option<&[u8]>, TransportFailure>> + Send {
        HttpBody::chunk(self, read_timeout)
    }
}
