//! Progress of a replay: on a terminal an `indicatif` progress bar (files done / total,
//! records, bytes, rate, ETA); otherwise one structured log line every [`LOG_EVERY`]
//! with the same figures. Lines about the input (rejects, unreadable files) go through
//! [`Reporter::say`] so that they do not tear the bar.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often the progress log line is written when stderr is not a terminal.
pub const LOG_EVERY: Duration = Duration::from_secs(5);

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A bar when stderr is a terminal, log lines otherwise.
    Auto,
    Bar,
    Log,
    None,
}

/// The figures of a running replay, shared by the reader, the engine and the reporter.
#[derive(Debug, Default)]
pub struct Counters {
    pub files_total: AtomicU64,
    pub files_done: AtomicU64,
    pub records_read: AtomicU64,
    pub bytes: AtomicU64,
    pub sent: AtomicU64,
    pub delivered: AtomicU64,
    pub duplicates: AtomicU64,
    pub filtered: AtomicU64,
    pub rejected: AtomicU64,
}

/// Shows the progress of one replay.
#[derive(Clone)]
pub struct Reporter {
    bar: Option<ProgressBar>,
    log: bool,
    counters: Arc<Counters>,
    started: tokio::time::Instant,
}

impl Reporter {
    /// `total_bytes`: the size of the input files (0 when unknown).
    pub fn new(mode: Mode, total_bytes: u64, counters: Arc<Counters>) -> Reporter {
        let terminal = std::io::stderr().is_terminal();
        let (bar, log) = match mode {
            Mode::Auto if terminal => (true, false),
            Mode::Auto => (false, true),
            Mode::Bar => (true, false),
            Mode::Log => (false, true),
            Mode::None => (false, false),
        };
        let bar = bar.then(|| {
            let b = ProgressBar::with_draw_target(
                Some(total_bytes.max(1)),
                ProgressDrawTarget::stderr(),
            );
            b.set_style(
                ProgressStyle::with_template(
                    "{bar:30} {bytes}/{total_bytes} {msg} [{elapsed_precise}, ETA {eta}]",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        Reporter {
            bar,
            log,
            counters,
            started: tokio::time::Instant::now(),
        }
    }

    /// Prints one line about the input (above the bar, if there is one).
    pub fn say(&self, line: &str) {
        match &self.bar {
            Some(b) => b.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    fn rate(&self) -> f64 {
        let secs = self.started.elapsed().as_secs_f64();
        if secs > 0.0 {
            self.counters.records_read.load(Ordering::Relaxed) as f64 / secs
        } else {
            0.0
        }
    }

    /// Called every [`LOG_EVERY`] (and more often is fine): updates the bar, or writes
    /// the log line.
    pub fn tick(&self) {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        if let Some(b) = &self.bar {
            b.set_position(get(&c.bytes));
            b.set_message(format!(
                "files {}/{}, {} records, {} delivered, {:.0}/s",
                get(&c.files_done),
                get(&c.files_total),
                get(&c.records_read),
                get(&c.delivered),
                self.rate()
            ));
        } else if self.log {
            tracing::info!(
                files_done = get(&c.files_done),
                files_total = get(&c.files_total),
                records = get(&c.records_read),
                sent = get(&c.sent),
                delivered = get(&c.delivered),
                duplicates = get(&c.duplicates),
                rejected = get(&c.rejected),
                bytes = get(&c.bytes),
                records_per_second = self.rate() as u64,
                "replay progress"
            );
        }
    }

    /// The end: the bar goes away (the summary follows).
    pub fn done(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
