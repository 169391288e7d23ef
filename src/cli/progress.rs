//! A progress line on a terminal for steps that take a while: `mgmt: storing blobs
//! 412/1000`, rewritten in place, shown once the command has run for a second and cleared
//! when the step ends. Nothing when stderr is not a terminal (a hook, a pipe, a log).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How long a command runs before a progress line appears.
const AFTER: Duration = Duration::from_secs(1);
/// The least time between two updates of the line.
const EVERY: Duration = Duration::from_millis(100);

pub struct Progress {
    what: &'static str,
    start: Instant,
    tty: bool,
    last: Option<Instant>,
}

impl Progress {
    /// A progress line for `what` (e.g. `storing blobs`), its second counted from now.
    pub fn new(what: &'static str) -> Progress {
        Progress { what, start: Instant::now(), tty: std::io::stderr().is_terminal(), last: None }
    }

    pub fn update(&mut self, done: usize, total: usize) {
        let now = Instant::now();
        if !self.tty || !due(now - self.start, self.last.map(|l| now - l)) {
            return;
        }
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[K{}", line(self.what, done, total));
        let _ = err.flush();
        self.last = Some(now);
    }

    /// Clear the line, if one is shown.
    pub fn finish(&mut self) {
        if self.last.take().is_some() {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Whether to draw the line now, `elapsed` into the command and `since` the last draw (pure).
fn due(elapsed: Duration, since: Option<Duration>) -> bool {
    elapsed >= AFTER && since.is_none_or(|s| s >= EVERY)
}

fn line(what: &str, done: usize, total: usize) -> String {
    format!("mgmt: {what} {done}/{total}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_appears_after_a_second_at_most_ten_times_a_second() {
        let ms = Duration::from_millis;
        assert!(!due(ms(999), None));
        assert!(due(ms(1000), None));
        assert!(!due(ms(1050), Some(ms(50))));
        assert!(due(ms(1150), Some(ms(100))));
        assert_eq!(line("storing blobs", 412, 1000), "mgmt: storing blobs 412/1000");
    }
}
