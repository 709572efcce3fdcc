//! Shows that a call is still going. On a terminal: a spinner on stderr
//! once the call has taken more than a moment, with the server's latest
//! progress, erased when the call ends. Elsewhere (a pipe, a log, a test):
//! no spinner, and each progress notification as one plain line on stderr,
//! so the output stays line-oriented and greppable.

use crate::render::{cell, number};
use mcp_recovery::blocking::Progress;
use std::io::{IsTerminal, Write};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Quick calls never show a spinner: it would only flicker.
const SPINNER_AFTER: Duration = Duration::from_millis(300);
const FRAME: Duration = Duration::from_millis(100);
const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/// One call in progress; ends (and erases its spinner) when dropped.
pub struct Activity {
    /// The latest progress line, shown by the spinner.
    status: Arc<Mutex<String>>,
    /// Dropping the sender stops the spinner thread at once.
    stop: Option<mpsc::Sender<()>>,
    spinner: Option<JoinHandle<()>>,
}

impl Activity {
    /// Starts watching a call described by `label`.
    pub fn start(label: &str) -> Activity {
        let status = Arc::new(Mutex::new(String::new()));
        if !std::io::stderr().is_terminal() {
            return Activity {
                status,
                stop: None,
                spinner: None,
            };
        }
        let (stop, stopped) = mpsc::channel();
        let label = cell(label, 60);
        let shown = status.clone();
        let spinner = std::thread::spawn(move || spin(&label, &shown, &stopped));
        Activity {
            status,
            stop: Some(stop),
            spinner: Some(spinner),
        }
    }

    /// A progress notification from the server.
    pub fn progress(&self, p: &Progress) {
        let mut line = format!("progress {}", number(p.progress));
        if let Some(total) = p.total {
            line.push_str(&format!("/{}", number(total)));
        }
        if let Some(m) = &p.message {
            line.push(' ');
            line.push_str(&cell(m, 100));
        }
        if self.spinner.is_some() {
            *self.status.lock().unwrap_or_else(PoisonError::into_inner) = line;
        } else {
            eprintln!("{line}");
        }
    }
}

impl Drop for Activity {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.spinner.take() {
            let _ = t.join();
        }
    }
}

fn spin(label: &str, status: &Mutex<String>, stopped: &mpsc::Receiver<()>) {
    let started = Instant::now();
    // Both a message and a hang-up mean the call ended.
    if !matches!(
        stopped.recv_timeout(SPINNER_AFTER),
        Err(RecvTimeoutError::Timeout)
    ) {
        return;
    }
    let mut err = std::io::stderr();
    for frame in FRAMES.iter().cycle() {
        let status = status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let secs = started.elapsed().as_secs_f64();
        // \r + "erase line" redraws in place.
        let _ = write!(err, "\r\x1b[2K{frame} {label} {secs:.1}s {status}");
        let _ = err.flush();
        if !matches!(stopped.recv_timeout(FRAME), Err(RecvTimeoutError::Timeout)) {
            break;
        }
    }
    let _ = write!(err, "\r\x1b[2K");
    let _ = err.flush();
}
