//! Ctrl-C. The first cancels the running tool call: the client tells the
//! server (`notifications/cancelled`), the call returns, the spinner line
//! goes, the session is deleted and `mcpr` exits 130. With no call to
//! cancel (listing, reading), or on a second Ctrl-C, it exits 130 at once.

use mcp_recovery::blocking::CancelHandle;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static RUNNING: Mutex<Option<CancelHandle>> = Mutex::new(None);

/// The exit status of a run ended by Ctrl-C (128 + SIGINT, as shells do).
pub const STATUS: u8 = 130;

/// Installs the handler; without one (no signal support), Ctrl-C keeps its
/// default: the process ends.
pub fn install() {
    let _ = ctrlc::set_handler(|| {
        let running = RUNNING.lock().ok().and_then(|r| r.clone());
        match running {
            Some(call) if !INTERRUPTED.swap(true, Ordering::SeqCst) => call.cancel(),
            _ => {
                INTERRUPTED.store(true, Ordering::SeqCst);
                clear_line();
                std::process::exit(i32::from(STATUS));
            }
        }
    });
}

/// Whether Ctrl-C ended the run.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Makes `handle` the call Ctrl-C cancels, until the guard is dropped.
pub fn cancels(handle: CancelHandle) -> Guard {
    if let Ok(mut r) = RUNNING.lock() {
        *r = Some(handle);
    }
    Guard
}

/// See [`cancels`].
pub struct Guard;

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(mut r) = RUNNING.lock() {
            *r = None;
        }
    }
}

/// Erases the spinner's line, if stderr is a terminal.
fn clear_line() {
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let _ = std::io::stderr().write_all(b"\r\x1b[K");
    }
}
