//! The logger: `env_logger` filtered by `RUST_LOG` (default `info`), writing
//! to stderr as text, or with `--log-format json` one JSON object per line
//! for log pipelines.
//!
//! No timestamps in either: systemd, docker and kubectl add their own. In
//! JSON, an access line's `key=value` pairs (see [`crate::access_log`])
//! become members of the object, numbers as numbers, so a pipeline can
//! filter on `status` without parsing the message.

use std::io::Write as _;

use crate::access_log;
use crate::config::LogFormat;

/// Installs the process's logger. Call once, before anything logs.
pub fn init(format: LogFormat) {
    let mut builder = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if format == LogFormat::Json {
        builder.format(|buf, record| {
            let message = record.args().to_string();
            writeln!(
                buf,
                "{}",
                json_line(record.level().as_str(), record.target(), &message)
            )
        });
    }
    builder.init();
}

/// One log record as a JSON object.
pub fn json_line(level: &str, target: &str, message: &str) -> String {
    let mut out = String::with_capacity(message.len() + 64);
    out.push_str("{\"level\":");
    push_str(&mut out, &level.to_ascii_lowercase());
    out.push_str(",\"target\":");
    push_str(&mut out, target);
    if target == access_log::TARGET {
        for pair in message.split(' ') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            out.push(',');
            push_str(&mut out, key);
            out.push(':');
            let number = !value.is_empty() && value.len() < 16 && value.bytes().all(|b| b.is_ascii_digit());
            if number {
                out.push_str(value);
            } else {
                push_str(&mut out, value);
            }
        }
    } else {
        out.push_str(",\"message\":");
        push_str(&mut out, message);
    }
    out.push('}');
    out
}

/// Appends `s` as a JSON string (also the console's `/stats`).
pub(crate) fn push_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_keep_their_message() {
        assert_eq!(
            json_line("WARN", "ssehub::server", "a \"quoted\"\nline"),
            r#"{"level":"warn","target":"ssehub::server","message":"a \"quoted\"\nline"}"#
        );
    }

    #[test]
    fn access_lines_become_members() {
        assert_eq!(
            json_line(
                "INFO",
                access_log::TARGET,
                "peer=127.0.0.1:1 path=/events?topic=a&x=\"y\" status=200 duration_ms=12"
            ),
            r#"{"level":"info","target":"ssehub::access","peer":"127.0.0.1:1","path":"/events?topic=a&x=\"y\"","status":200,"duration_ms":12}"#
        );
    }
}
