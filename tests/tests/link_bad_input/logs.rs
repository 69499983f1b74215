//! Captured log lines: every line goes to stderr and to a buffer the tests search.

use std::io::Write;
use std::sync::{Mutex, OnceLock};

/// Installs (once per process) a subscriber that copies every log line to stderr and to a
/// buffer the tests search.
pub fn capture_logs() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
            .with_writer(|| LogWriter)
            .try_init();
    });
}

pub fn log_buffer() -> &'static Mutex<Vec<u8>> {
    static BUFFER: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();
    BUFFER.get_or_init(Mutex::default)
}

pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        log_buffer().lock().unwrap().extend_from_slice(buf);
        std::io::stderr().write_all(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// How many WARN lines logged so far contain every one of `parts`. The buffer is per
/// process: nextest runs each test in its own, so the counts are the test's own.
pub fn warnings(parts: &[&str]) -> usize {
    let buffer = log_buffer().lock().unwrap();
    String::from_utf8_lossy(&buffer)
        .lines()
        .filter(|line| line.contains(" WARN ") && parts.iter().all(|p| line.contains(p)))
        .count()
}
