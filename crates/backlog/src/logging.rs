//! The log on stderr: tracing's text format, and for a supervised worker each line prefixed
//! with the worker's name (`[w0.g1] `), since every worker writes to the supervisor's
//! stderr and two workers starting at once would otherwise interleave lines that nothing
//! tells apart.
//!
//! Writing never panics: a closed stderr (a log pipe whose reader went away) loses the line,
//! never the thread that logged it.

use std::io::Write;
use tracing_subscriber::fmt::MakeWriter;

/// Install the subscriber: `RUST_LOG` or `info`, colours only on a terminal, and `worker`'s
/// name before every line when there is one.
pub fn init(worker: Option<String>) {
    tracing_subscriber::fmt()
        .with_writer(Stderr {
            prefix: worker.map(|w| format!("[{w}] ")),
        })
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // Its default reports a failed write with `eprintln!`, which panics on a closed
        // stderr — in whichever thread logged, the signal thread included.
        .log_internal_errors(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
}

/// Makes one [`Line`] writer per event.
struct Stderr {
    prefix: Option<String>,
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line {
            prefix: self.prefix.as_deref(),
            buf: Vec::new(),
        }
    }
}

/// One event's text, written to stderr whole when the event is done: a single write(2) of
/// at most a few hundred bytes, which a pipe keeps in one piece (below PIPE_BUF), so lines
/// of different processes never mix within a line.
struct Line<'a> {
    prefix: Option<&'a str>,
    buf: Vec<u8>,
}

impl Write for Line<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.buf.is_empty() {
            if let Some(prefix) = self.prefix {
                self.buf.extend_from_slice(prefix.as_bytes());
            }
        }
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line<'_> {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            let _ = std::io::stderr().lock().write_all(&self.buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_prefixes_each_event_once() {
        let make = Stderr {
            prefix: Some("[w1.g0] ".into()),
        };
        let mut line = make.make_writer();
        line.write_all(b"INFO ").unwrap();
        line.write_all(b"backlog serving\n").unwrap();
        assert_eq!(line.buf, b"[w1.g0] INFO backlog serving\n");
        line.buf.clear(); // nothing to write in the test
        let mut plain = Stderr { prefix: None }.make_writer();
        plain.write_all(b"x\n").unwrap();
        assert_eq!(plain.buf, b"x\n");
        plain.buf.clear();
    }
}
