//! The SSE wire format: encoding an event once into shareable bytes, the
//! control frames (`retry:`, heartbeat, `reset`, `close`), the rules for
//! event names and topics, and the parser for batch publishes.
//!
//! Encoding follows the WHATWG "server-sent events" section: every line of
//! the data (split on CRLF, LF or CR alike) becomes its own `data:` line, so
//! a conforming client rebuilds the data joined by LF. Unlike axum's encoder,
//! a CRLF pair is one line break, not two.

use bytes::{BufMut, Bytes, BytesMut};
use std::fmt::Write as _;

/// The comment line sent to idle streams; one static allocation for all.
pub const HEARTBEAT: Bytes = Bytes::from_static(b":\n");

/// Event names the hub sends itself; publishers may not use them.
pub const RESERVED_NAMES: [&str; 2] = ["reset", "close"];

/// Longest accepted topic, in bytes.
pub const MAX_TOPIC_LEN: usize = 256;
/// Longest accepted event name, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// Encodes one event: `id`, optional `event` name, and the data lines,
/// terminated by the blank line that makes a client dispatch it.
pub fn encode(id: &str, name: Option<&str>, data: &str) -> Bytes {
    // One allocation sized for the common case: a few short lines.
    let mut out = BytesMut::with_capacity(encoded_len_hint(id, name, data));
    encode_into(&mut out, id, name, data);
    out.freeze()
}

/// A capacity that fits most events without growing.
pub fn encoded_len_hint(id: &str, name: Option<&str>, data: &str) -> usize {
    data.len() + id.len() + 32 + name.map_or(0, str::len)
}

/// Appends the encoding of one event to `out` (batches encode many events
/// into one buffer, so every subscriber gets the whole batch as one piece).
pub fn encode_into(out: &mut BytesMut, id: &str, name: Option<&str>, data: &str) {
    encode_fields(out, id, name, None, data);
}

/// [`encode`] with a `retry:` field: a Mercure update may carry the
/// reconnection time its publisher chose.
pub fn encode_with_retry(id: &str, name: Option<&str>, retry: Option<u64>, data: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(encoded_len_hint(id, name, data) + 16);
    encode_fields(&mut out, id, name, retry, data);
    out.freeze()
}

fn encode_fields(out: &mut BytesMut, id: &str, name: Option<&str>, retry: Option<u64>, data: &str) {
    out.put_slice(b"id: ");
    out.put_slice(id.as_bytes());
    out.put_u8(b'\n');
    if let Some(name) = name {
        out.put_slice(b"event: ");
        out.put_slice(name.as_bytes());
        out.put_u8(b'\n');
    }
    if let Some(retry) = retry {
        out.put_slice(format!("retry: {retry}\n").as_bytes());
    }
    for line in lines(data) {
        // Always "data: " with the space: the client strips exactly one, so
        // data that itself starts with a space survives.
        out.put_slice(b"data: ");
        out.put_slice(line.as_bytes());
        out.put_u8(b'\n');
    }
    out.put_u8(b'\n');
}

/// An event the hub emits about the stream itself (`reset`, `close`). The
/// data line is required: EventSource drops events that carry none.
pub fn control(name: &str, id: Option<&str>, data: &str) -> Bytes {
    let mut s = String::with_capacity(32 + data.len());
    if let Some(id) = id {
        let _ = writeln!(s, "id: {id}");
    }
    let _ = writeln!(s, "event: {name}");
    for line in lines(data) {
        let _ = writeln!(s, "data: {line}");
    }
    s.push('\n');
    Bytes::from(s)
}

/// The `retry:` field that opens (or closes) a stream.
pub fn retry(millis: u128) -> Bytes {
    Bytes::from(format!("retry: {millis}\n\n"))
}

/// Splits on CRLF, LF and CR, as the SSE parser does; `""` is one empty line.
pub fn lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let s = rest?;
        // A byte scan: CR and LF are ASCII, so any position found is a char
        // boundary, and it is several times cheaper than a `char` pattern
        // on the publish path (one line of data is the common case).
        match s.bytes().position(|b| b == b'\r' || b == b'\n') {
            None => {
                rest = None;
                Some(s)
            }
            Some(i) => {
                let skip = if s[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&s[i + skip..]);
                Some(&s[..i])
            }
        }
    })
}

/// Why an event name or topic was refused; the text is sent to the client.
pub type Invalid = String;

fn has_line_break_or_nul(s: &str) -> bool {
    s.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0))
}

/// Event names: 1 to 256 bytes, no CR, LF or NUL, and not a reserved name.
pub fn check_event_name(name: &str) -> Result<(), Invalid> {
    if has_line_break_or_nul(name) {
        return Err("event name must not contain CR, LF or NUL".into());
    }
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(format!("event name must be 1 to {MAX_NAME_LEN} bytes"));
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(format!("event name '{name}' is reserved for the hub"));
    }
    Ok(())
}

/// Topics: 1 to 256 printable ASCII characters (`!` to `~`): letters,
/// digits and punctuation, so URLs work as topics; no spaces or controls.
pub fn check_topic(topic: &str) -> Result<(), Invalid> {
    if has_line_break_or_nul(topic) {
        return Err("topic must not contain CR, LF or NUL".into());
    }
    if topic.is_empty() || topic.len() > MAX_TOPIC_LEN {
        return Err(format!("topic must be 1 to {MAX_TOPIC_LEN} characters"));
    }
    if !topic.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("topic may contain only printable ASCII characters without spaces".into());
    }
    Ok(())
}

/// One event of a batch, ready to publish.
#[derive(Debug, PartialEq, Eq)]
pub struct BatchEvent {
    pub name: Option<String>,
    pub data: String,
}

/// Why a batch was refused. Nothing of a refused batch is published.
#[derive(Debug, PartialEq, Eq)]
pub enum BatchError {
    /// Malformed: answered with 400.
    Invalid(String),
    /// One event's data is over the limit: answered with 413.
    TooLarge(String),
}

/// Parses a `text/event-stream` body into events, following the
/// specification's line rules (CRLF, LF and CR; a leading BOM; `:` comments;
/// an optional space after the colon). `event` names the event, `data` adds
/// a line; `id` and `retry` are ignored because the hub assigns ids and
/// timing, so a stream from another server can be piped in unchanged;
/// unknown fields are ignored as the specification says.
///
/// Stricter than a client, because a publisher's mistake should be loud: a
/// block with fields but no `data` line, an invalid event name, or a batch
/// with no event at all is refused. A final event not followed by a blank
/// line is published (a client would drop it; a publisher means it).
pub fn parse_batch(
    body: &str,
    default_name: Option<&str>,
    max_event_bytes: usize,
) -> Result<Vec<BatchEvent>, BatchError> {
    let body = body.strip_prefix('\u{feff}').unwrap_or(body);
    let mut events = Vec::new();
    let mut data: Option<String> = None;
    let mut name: Option<&str> = None;
    let mut block_start: Option<usize> = None;

    let mut flush = |data: &mut Option<String>,
                     name: &mut Option<&str>,
                     block_start: &mut Option<usize>|
     -> Result<(), BatchError> {
        let Some(start) = block_start.take() else {
            return Ok(());
        };
        let Some(data) = data.take() else {
            return Err(BatchError::Invalid(format!(
                "event at line {start} has no data line"
            )));
        };
        let name = name.take().or(default_name);
        if let Some(name) = name {
            check_event_name(name).map_err(|e| BatchError::Invalid(format!("line {start}: {e}")))?;
        }
        events.push(BatchEvent {
            name: name.map(str::to_string),
            data,
        });
        Ok(())
    };

    for (index, line) in lines(body).enumerate() {
        let number = index + 1;
        if line.is_empty() {
            flush(&mut data, &mut name, &mut block_start)?;
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => {
                block_start.get_or_insert(number);
                // Lines after the first are joined by LF, as a client would.
                let buf = match &mut data {
                    Some(buf) => {
                        buf.push('\n');
                        buf.push_str(value);
                        buf
                    }
                    None => data.insert(value.to_string()),
                };
                if buf.len() > max_event_bytes {
                    return Err(BatchError::TooLarge(format!(
                        "event at line {} is over {max_event_bytes} bytes",
                        block_start.unwrap_or(number)
                    )));
                }
            }
            "event" => {
                block_start.get_or_insert(number);
                name = Some(value);
            }
            // Ids and reconnection times belong to the hub, not the publisher.
            "id" | "retry" => {
                block_start.get_or_insert(number);
            }
            _ => {}
        }
    }
    flush(&mut data, &mut name, &mut block_start)?;
    if events.is_empty() {
        return Err(BatchError::Invalid("batch contains no event".into()));
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(b: &Bytes) -> &str {
        std::str::from_utf8(b).unwrap()
    }

    #[test]
    fn event_with_name_and_one_line() {
        let e = encode("7", Some("greeting"), "hello");
        assert_eq!(text(&e), "id: 7\nevent: greeting\ndata: hello\n\n");
    }

    #[test]
    fn every_line_ending_starts_a_new_data_line() {
        let e = encode("1", None, "a\nb\r\nc\rd");
        assert_eq!(text(&e), "id: 1\ndata: a\ndata: b\ndata: c\ndata: d\n\n");
    }

    #[test]
    fn crlf_is_one_line_break_not_two() {
        let e = encode("1", None, "a\r\n\r\nb");
        assert_eq!(text(&e), "id: 1\ndata: a\ndata: \ndata: b\n\n");
    }

    #[test]
    fn empty_data_is_still_an_event() {
        // "data: " gives the client a non-empty data buffer ("\n"), so it
        // dispatches an event whose data is "".
        assert_eq!(text(&encode("1", None, "")), "id: 1\ndata: \n\n");
    }

    #[test]
    fn trailing_newline_survives_as_an_empty_last_line() {
        assert_eq!(text(&encode("1", None, "a\n")), "id: 1\ndata: a\ndata: \n\n");
    }

    #[test]
    fn leading_space_and_colons_in_data_survive() {
        assert_eq!(text(&encode("1", None, " x: y")), "id: 1\ndata:  x: y\n\n");
    }

    #[test]
    fn unicode_passes_through_unchanged() {
        let e = encode("1", Some("naïve"), "héllo 🌍\nсвет");
        assert_eq!(text(&e), "id: 1\nevent: naïve\ndata: héllo 🌍\ndata: свет\n\n");
    }

    #[test]
    fn control_events_carry_data() {
        assert_eq!(
            text(&control("reset", Some("9"), "unknown id")),
            "id: 9\nevent: reset\ndata: unknown id\n\n"
        );
        assert_eq!(
            text(&control("close", None, "news")),
            "event: close\ndata: news\n\n"
        );
        assert_eq!(text(&retry(3500)), "retry: 3500\n\n");
    }

    #[test]
    fn names_and_topics_refuse_line_breaks_nul_and_reserved_words() {
        assert!(check_event_name("update").is_ok());
        for bad in ["", "a\nb", "a\rb", "a\0b", "reset", "close"] {
            assert!(check_event_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_topic("https://example.com/books/1").is_ok());
        for bad in ["", "a b", "a\nb", "a\0", "é", &"x".repeat(257)] {
            assert!(check_topic(bad).is_err(), "{bad:?}");
        }
    }

    fn batch(body: &str) -> Result<Vec<BatchEvent>, BatchError> {
        parse_batch(body, None, 1024)
    }

    fn ev(name: Option<&str>, data: &str) -> BatchEvent {
        BatchEvent {
            name: name.map(Into::into),
            data: data.into(),
        }
    }

    #[test]
    fn batch_splits_events_on_blank_lines() {
        let got = batch("data: one\n\nevent: e\ndata: two\ndata: lines\n\n").unwrap();
        assert_eq!(got, [ev(None, "one"), ev(Some("e"), "two\nlines")]);
    }

    #[test]
    fn batch_accepts_all_three_line_endings_and_a_bom() {
        let got = batch("\u{feff}data: a\r\n\r\ndata: b\r\rdata: c\n\n").unwrap();
        assert_eq!(got, [ev(None, "a"), ev(None, "b"), ev(None, "c")]);
    }

    #[test]
    fn batch_follows_the_field_rules() {
        // No space after the colon, only one space stripped, comments skipped,
        // a bare "data" line is an empty line of data, ids are ignored.
        let got = batch(": comment\ndata:x\ndata:  y\ndata\nid: 5\nretry: 1\nfoo: bar\n\n").unwrap();
        assert_eq!(got, [ev(None, "x\n y\n")]);
    }

    #[test]
    fn batch_publishes_a_final_event_without_blank_line() {
        assert_eq!(batch("data: last").unwrap(), [ev(None, "last")]);
    }

    #[test]
    fn batch_default_name_applies_to_unnamed_events() {
        let got = parse_batch("data: a\n\nevent: b\ndata: c\n\n", Some("d"), 64).unwrap();
        assert_eq!(got, [ev(Some("d"), "a"), ev(Some("b"), "c")]);
    }

    #[test]
    fn batch_refuses_mistakes_whole() {
        assert!(matches!(batch(""), Err(BatchError::Invalid(_))));
        assert!(matches!(
            batch(": only a comment\n\n"),
            Err(BatchError::Invalid(_))
        ));
        assert!(matches!(batch("event: x\n\n"), Err(BatchError::Invalid(_))));
        assert!(matches!(
            batch("data: a\n\nevent: reset\ndata: b\n\n"),
            Err(BatchError::Invalid(_))
        ));
        assert!(matches!(
            parse_batch("data: 12345\n\n", None, 4),
            Err(BatchError::TooLarge(_))
        ));
    }

    #[test]
    fn batch_event_with_empty_data_is_kept() {
        assert_eq!(batch("data:\n\n").unwrap(), [ev(None, "")]);
        assert_eq!(batch("data:\ndata:\n\n").unwrap(), [ev(None, "\n")]);
    }

    /// Random bytes (biased towards the characters the parser cares about)
    /// never panic the batch parser; deterministic, so a failure repeats.
    #[test]
    fn batch_parser_survives_random_input() {
        let alphabet: Vec<char> = "data:event:id:retry: \r\n\u{feff}xé\u{0}".chars().collect();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 64) as usize;
            let text: String = (0..len)
                .map(|i| alphabet[((seed >> (i % 50)) as usize + i * 7) % alphabet.len()])
                .collect();
            let _ = parse_batch(&text, Some("n"), 16);
            let _ = encode("1", Some("n"), &text);
        }
    }
}
