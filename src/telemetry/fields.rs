//! The text format's field writer: byte for byte what `tracing_subscriber`'s `DefaultFields`
//! writes without colours, at a fraction of the cost.
//!
//! Why: `DefaultFields` writes every field as `{italic(name)}{dimmed("=")}{value:?}`, three
//! `nu_ansi_term` paints and a `fmt::write` per field even when colours are off, and a string
//! value through `str`'s `Debug` (escape checks char by char). On the audit line (eleven
//! fields) and the request span's fields (formatted once per request) that was most of the
//! logging cost (callgrind, README "Performance"). Here, with colours off, a field is
//! `name=value` written with `write_str`; a string that needs no escaping (printable ASCII
//! without `"` or `\`) is copied between quotes, which is exactly what `Debug` prints for it.
//! Everything else (the message, errors, strings that need escaping, `log.*` and `r#` names,
//! and any output with colours) goes to `DefaultFields`' own visitor, so the output cannot
//! differ. `tests::same_bytes_as_default_fields` checks it against `DefaultFields`.
//!
//! The fields are first gathered in a small buffer on the stack ([`StackBuf`]) and handed on in
//! one `write_str`: a span's fields go into a fresh `String` (`tracing_subscriber`'s
//! `FormattedFields`), which then grows once, to its final size, instead of doubling three or
//! four times on the request span (issue #17: one allocation instead of five per request).

use std::fmt;

use tracing::field::{Field, Visit};
use tracing_subscriber::field::{RecordFields, VisitOutput};
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::{DefaultFields, DefaultVisitor, Writer};

/// The text format's [`FormatFields`] (see the module doc).
#[derive(Debug, Default)]
pub(crate) struct PlainFields;

impl<'writer> FormatFields<'writer> for PlainFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        if writer.has_ansi_escapes() {
            return DefaultFields::new().format_fields(writer, fields);
        }
        let mut buf = StackBuf {
            buf: [0; STACK_BUF],
            len: 0,
            out: writer,
        };
        let mut visitor = PlainVisitor {
            writer: Writer::new(&mut buf),
            is_empty: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        let result = visitor.result;
        result.and(buf.flush())
    }
}

/// [`StackBuf`]'s size: a request span's fields (method, path, request ids) fit.
const STACK_BUF: usize = 256;

/// A `fmt::Write` that collects what is written in a fixed stack buffer and passes it on to
/// `out` when full and at the end ([`StackBuf::flush`]). Only whole `str`s are copied in, so
/// the buffer is always valid UTF-8.
struct StackBuf<'a> {
    buf: [u8; STACK_BUF],
    len: usize,
    out: Writer<'a>,
}

impl StackBuf<'_> {
    fn flush(&mut self) -> fmt::Result {
        if self.len == 0 {
            return Ok(());
        }
        let text = std::str::from_utf8(&self.buf[..self.len]).map_err(|_| fmt::Error)?;
        self.len = 0;
        self.out.write_str(text)
    }
}

impl fmt::Write for StackBuf<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if s.len() > STACK_BUF - self.len {
            self.flush()?;
            if s.len() > STACK_BUF {
                return self.out.write_str(s);
            }
        }
        self.buf[self.len..self.len + s.len()].copy_from_slice(s.as_bytes());
        self.len += s.len();
        Ok(())
    }
}

struct PlainVisitor<'a> {
    writer: Writer<'a>,
    is_empty: bool,
    result: fmt::Result,
}

/// Whether `str`'s `Debug` prints `s` unchanged between quotes.
fn debug_is_verbatim(s: &str) -> bool {
    s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

/// Names `DefaultFields` treats specially.
fn special(name: &str) -> bool {
    name == "message" || name.starts_with("log.") || name.starts_with("r#")
}

impl PlainVisitor<'_> {
    /// `name=` after a separating space (none before the first field).
    fn name(&mut self, name: &str) -> fmt::Result {
        if self.is_empty {
            self.is_empty = false;
        } else {
            self.writer.write_char(' ')?;
        }
        self.writer.write_str(name)?;
        self.writer.write_char('=')
    }

    /// Lets `DefaultFields`' visitor write this field.
    fn default(&mut self, field: &Field, record: impl FnOnce(&mut DefaultVisitor<'_>)) {
        let mut visitor = DefaultVisitor::new(self.writer.by_ref(), self.is_empty);
        record(&mut visitor);
        self.result = visitor.finish();
        // It writes every field but `log.*` ones.
        self.is_empty = self.is_empty && field.name().starts_with("log.");
    }
}

impl Visit for PlainVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.result.is_err() {
            return;
        }
        if special(field.name()) || !debug_is_verbatim(value) {
            return self.default(field, |v| v.record_str(field, value));
        }
        self.result = self.name(field.name()).and_then(|()| {
            self.writer.write_char('"')?;
            self.writer.write_str(value)?;
            self.writer.write_char('"')
        });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.result.is_err() {
            return;
        }
        if special(field.name()) {
            return self.default(field, |v| v.record_u64(field, value));
        }
        self.result = self
            .name(field.name())
            .and_then(|()| write!(self.writer, "{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.result.is_err() {
            return;
        }
        if special(field.name()) {
            return self.default(field, |v| v.record_i64(field, value));
        }
        self.result = self
            .name(field.name())
            .and_then(|()| write!(self.writer, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.result.is_err() {
            return;
        }
        if special(field.name()) {
            return self.default(field, |v| v.record_bool(field, value));
        }
        self.result = self
            .name(field.name())
            .and_then(|()| self.writer.write_str(if value { "true" } else { "false" }));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if self.result.is_err() {
            return;
        }
        self.default(field, |v| v.record_error(field, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_err() {
            return;
        }
        if special(field.name()) {
            return self.default(field, |v| v.record_debug(field, value));
        }
        // `%value` fields arrive here too (their `Debug` is their `Display`).
        self.result = self
            .name(field.name())
            .and_then(|()| write!(self.writer, "{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    #[derive(Debug)]
    struct Failure(Option<Box<Failure>>);

    impl fmt::Display for Failure {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(if self.0.is_some() { "outer" } else { "inner" })
        }
    }

    impl std::error::Error for Failure {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.0.as_deref().map(|e| e as _)
        }
    }

    /// Every kind of field, plain and needing escapes, in a span and an event.
    fn log_everything() {
        let err = Failure(Some(Box::new(Failure(None))));
        let span = tracing::info_span!(
            "request",
            method = %"GET",
            path = %"/auth",
            id = "0a1b2c3d-1",
            odd = "quote \" and \\ and \u{1} and é and \u{301}",
            n = 7u64,
            client_request_id = tracing::field::Empty
        );
        span.record("client_request_id", "it's mine");
        let _in = span.enter();
        tracing::info!(
            target: "audit",
            audit_version = 1,
            account = "",
            r#type = "x",
            source = "anonymous",
            labels = "team=a,b",
            client_ip = %std::net::IpAddr::from([127, 0, 0, 1]),
            negative = -3i64,
            yes = true,
            ratio = 0.5f64,
            debug = ?vec!["a", "b\""],
            error = &err as &(dyn std::error::Error + 'static),
            newline = "a\nb",
            scopes = %"repository:x/y:pull→pull [acl 0]",
            long = "longer than the stack buffer: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "token issued: {} and \u{1b}[31m",
            "formatted"
        );
        tracing::warn!("only a message");
        tracing::info!(plain = "first field, no message");
    }

    fn render(plain: bool) -> String {
        let buf = Buf::default();
        let builder = tracing_subscriber::fmt()
            .with_writer(buf.clone())
            .with_ansi(false)
            .with_target(true)
            .without_time();
        if plain {
            let subscriber = builder.fmt_fields(PlainFields).finish();
            tracing::subscriber::with_default(subscriber, log_everything);
        } else {
            let subscriber = builder.finish();
            tracing::subscriber::with_default(subscriber, log_everything);
        }
        String::from_utf8(buf.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn same_bytes_as_default_fields() {
        let ours = render(true);
        let theirs = render(false);
        assert_eq!(ours, theirs);
        // And it did log what the test is about.
        assert!(ours.contains(r#"id="0a1b2c3d-1""#), "{ours}");
        assert!(ours.contains("client_request_id=\"it's mine\""), "{ours}");
        assert!(ours.contains(r#"odd="quote \" and \\"#), "{ours}");
        assert!(ours.contains("error=outer error.sources=[inner]"), "{ours}");
        assert!(ours.contains("0123456789abcdef\"\n"), "{ours}");
        assert_eq!(ours.lines().count(), 3, "{ours}");
    }

    #[test]
    fn verbatim_strings_are_those_debug_prints_unchanged() {
        for s in ["", "abc", "a b=c,d:e/f", "~!@#$%^&*()_+{}|:<>?`-=[];',./"] {
            assert!(debug_is_verbatim(s), "{s}");
            assert_eq!(format!("{s:?}"), format!("\"{s}\""));
        }
        for s in ["\"", "\\", "\n", "\u{7f}", "é", "\u{1}"] {
            assert!(!debug_is_verbatim(s), "{s}");
        }
    }
}
