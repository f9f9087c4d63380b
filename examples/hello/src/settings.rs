//! What the program reads from its environment, read once at start.

use std::time::Duration;

/// The environment-derived settings of one `nimbus-hello` process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// `PORT` (default 8080): where to listen when no socket is handed over.
    pub port: u16,
    /// `TARGET` (default `World`): who the greeting greets.
    pub target: String,
    /// `K_REVISION`, empty when unset.
    pub revision: String,
    /// `K_SERVICE`, empty when unset.
    pub service: String,
    /// `STARTUP_DELAY_MS`: wait this long before listening (simulates a slow start).
    pub startup_delay: Option<Duration>,
    /// `EXIT_IMMEDIATELY=<code>`: exit at once with this code (simulates a broken build).
    pub exit_immediately: Option<i32>,
}

impl Default for Settings {
    /// The settings of an empty environment.
    fn default() -> Self {
        Self::from_lookup(|_| None)
    }
}

impl Settings {
    /// Read the process environment.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Read settings through `lookup` (the environment, or a map in tests). Malformed numbers
    /// fall back to the defaults rather than refusing to start.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let number = |name: &str| lookup(name).and_then(|v| v.trim().parse::<u64>().ok());
        Self {
            port: number("PORT")
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(8080),
            target: lookup("TARGET").unwrap_or_else(|| "World".to_owned()),
            revision: lookup("K_REVISION").unwrap_or_default(),
            service: lookup("K_SERVICE").unwrap_or_default(),
            startup_delay: number("STARTUP_DELAY_MS").map(Duration::from_millis),
            exit_immediately: lookup("EXIT_IMMEDIATELY").and_then(|v| v.trim().parse().ok()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(pairs: &[(&str, &str)]) -> Settings {
        Settings::from_lookup(|name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn defaults() {
        let s = from(&[]);
        assert_eq!(s.port, 8080);
        assert_eq!(s.target, "World");
        assert_eq!(s.startup_delay, None);
        assert_eq!(s.exit_immediately, None);
        assert_eq!(s, Settings::default());
    }

    #[test]
    fn reads_every_knob() {
        let s = from(&[
            ("PORT", "9001"),
            ("TARGET", "Nimbus"),
            ("K_REVISION", "hello-00001"),
            ("K_SERVICE", "hello"),
            ("STARTUP_DELAY_MS", "250"),
            ("EXIT_IMMEDIATELY", "3"),
        ]);
        assert_eq!(s.port, 9001);
        assert_eq!(s.target, "Nimbus");
        assert_eq!(s.revision, "hello-00001");
        assert_eq!(s.service, "hello");
        assert_eq!(s.startup_delay, Some(Duration::from_millis(250)));
        assert_eq!(s.exit_immediately, Some(3));
    }

    #[test]
    fn malformed_port_falls_back() {
        assert_eq!(from(&[("PORT", "99999")]).port, 8080);
        assert_eq!(from(&[("PORT", "x")]).port, 8080);
    }
}
