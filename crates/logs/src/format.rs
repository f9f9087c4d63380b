//! One log line on disk and in memory: `<RFC 3339 UTC, nanoseconds> <stream> F <text>` (the CRI
//! log format). Pure: no I/O.

use std::fmt;

use jiff::Timestamp;

/// The full-line tag of the CRI format; `P` (a partial line) is read but never written.
const FULL: &str = "F";
const PARTIAL: &str = "P";

/// Which output stream of a process a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One line an instance printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// The instance id (the file name without `.log`), e.g. `hello-00001-1`.
    pub instance: String,
    /// When Nimbus read the line from the process.
    pub time: Timestamp,
    pub stream: Stream,
    /// The line without its newline.
    pub text: String,
}

// === impl Stream ===

impl Stream {
    /// `stdout` or `stderr`, as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "stdout" => Some(Self::Stdout),
            "stderr" => Some(Self::Stderr),
            _ => None,
        }
    }
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A timestamp as written in files: RFC 3339 in UTC with exactly nine fractional digits, so
/// every line's prefix has the same width.
pub(crate) fn format_time(time: Timestamp) -> String {
    format!("{time:.9}")
}

/// The record for one line, newline included. `text` must not contain a newline.
pub(crate) fn encode(time: Timestamp, stream: Stream, text: &str) -> String {
    format!("{} {stream} {FULL} {text}\n", format_time(time))
}

/// Parse one record (without its newline). `None` if it is not in the format.
pub(crate) fn decode(line: &str) -> Option<(Timestamp, Stream, &str)> {
    let (time, rest) = line.split_once(' ')?;
    let (stream, rest) = rest.split_once(' ')?;
    let text = match rest.split_once(' ') {
        Some((FULL | PARTIAL, text)) => text,
        None if rest == FULL || rest == PARTIAL => "",
        _ => return None,
    };
    Some((time.parse().ok()?, Stream::parse(stream)?, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn encodes_cri_lines_with_nanoseconds() {
        let t = at("2026-11-27T18:00:00.1234Z");
        assert_eq!(
            encode(t, Stream::Stdout, "hello world"),
            "2026-11-27T18:00:00.123400000Z stdout F hello world\n"
        );
        let t = at("2026-11-27T18:00:00Z");
        assert_eq!(
            encode(t, Stream::Stderr, ""),
            "2026-11-27T18:00:00.000000000Z stderr F \n"
        );
    }

    #[test]
    fn decodes_what_it_encodes() {
        let t = at("2026-11-27T18:00:00.123456789Z");
        for text in ["hello", "", " leading", "F P stdout x", "ünï"] {
            let line = encode(t, Stream::Stderr, text);
            let got = decode(line.trim_end_matches('\n')).unwrap();
            assert_eq!(got, (t, Stream::Stderr, text));
        }
    }

    #[test]
    fn decodes_other_cri_writers() {
        let (t, s, text) = decode("2026-11-27T19:00:00+01:00 stdout P part").unwrap();
        assert_eq!(
            (t, s, text),
            (at("2026-11-27T18:00:00Z"), Stream::Stdout, "part")
        );
        assert_eq!(decode("2026-11-27T18:00:00Z stdout F").unwrap().2, "");
    }

    #[test]
    fn rejects_other_text() {
        for bad in [
            "",
            "hello",
            "2026-11-27T18:00:00Z",
            "2026-11-27T18:00:00Z stdin F x",
            "2026-11-27T18:00:00Z stdout X x",
            "yesterday stdout F x",
        ] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }
}
