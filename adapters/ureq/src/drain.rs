//! Finishing responses the core is done with, so their connections go back
//! to the pool (see [`DrainBudget`] for why and how far).
//!
//! A blocking read cannot peek for the server's closing chunk, and waiting
//! for it on the caller's thread would hold the caller hostage to a server
//! that keeps the stream open. So one thread per client, started on first
//! use, reads what is left.

use mcp_recovery_client::DrainBudget;
use std::io::{ErrorKind, Read};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::OnceLock;
use std::time::Instant;
use ureq::BodyReader;

/// Responses waiting for the drain thread; more are closed, not queued.
const QUEUE: usize = 16;

#[derive(Default)]
pub(crate) struct Drainer {
    tx: OnceLock<SyncSender<BodyReader<'static>>>,
}

impl Drainer {
    /// Reads the rest of `reader` on the drain thread (started on first
    /// use), or closes its connection if that thread is busy or gone.
    pub fn finish(&self, reader: BodyReader<'static>) {
        let tx = self.tx.get_or_init(|| {
            let (tx, rx) = sync_channel(QUEUE);
            // If the thread cannot start, `rx` is dropped with the closure
            // and every `try_send` below fails: connections get closed.
            let _ = std::thread::Builder::new()
                .name("mcp-recovery-drain".into())
                .spawn(move || run(rx));
            tx
        });
        // Full or gone: dropping the reader closes the connection.
        let _ = tx.try_send(reader);
    }
}

/// Ends when the client (the sender) is dropped.
fn run(rx: Receiver<BodyReader<'static>>) {
    let mut buf = [0u8; 4096];
    for mut reader in rx {
        let mut budget = DrainBudget::new(Instant::now());
        loop {
            match reader.read(&mut buf) {
                // The end: ureq has put the connection back in its pool.
                Ok(0) => break,
                Ok(n) if budget.spend(n, Instant::now()) => {}
                Ok(_) => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    }
}
