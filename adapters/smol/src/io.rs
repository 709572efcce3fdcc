//! The async client's I/O: hyper on smol's sockets (`http`), an
//! `event-listener` raced against an `async-io` timer for waiting, smol's
//! blocking pool for user code, and a detached task for the listening
//! stream.

use crate::http::{Body as HttpBody, Http};
use async_io::Timer;
use event_listener::EventListener;
use futures_lite::future;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use mcp_recovery_client::drive::{Body, Exchange, Io, Response};
use mcp_recovery_client::Settings;
use mcp_recovery_core::oauth::redirect_head_done;
use mcp_recovery_core::TransportFailure;
use smol::net::TcpListener;
use std::future::Future;
use std::io;
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

    type Listener = TcpListener;

    fn bind_loopback(&self, port: u16) -> io::Result<(TcpListener, u16)> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
        let listener = TcpListener::try_from(listener)?;
        let port = listener.local_addr()?.port();
        Ok((listener, port))
    }

    async fn serve_one(
        &self,
        listener: &TcpListener,
        until: Instant,
        reply: fn(&[u8]) -> Vec<u8>,
    ) -> io::Result<Option<Vec<u8>>> {
        let accepted = future::or(async { Some(listener.accept().await) }, async {
            Timer::at(until).await;
            None
        });
        let Some(accepted) = accepted.await else {
            return Ok(None);
        };
        let (mut stream, _) = accepted?;
        let mut head = Vec::new();
        let mut chunk = [0u8; 1024];
        // Never past the flow's own deadline.
        let read_until = until.min(Instant::now() + Duration::from_secs(5));
        while !redirect_head_done(&head) {
            let read = future::or(async { Some(stream.read(&mut chunk).await) }, async {
                Timer::at(read_until).await;
                None
            });
            match read.await {
                Some(Ok(n)) if n > 0 => head.extend_from_slice(&chunk[..n]),
                _ => break,
            }
        }
        // The browser may have gone: its page is all that is lost.
        let _ = stream.write_all(&reply(&head)).await;
        Ok(Some(head))
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
