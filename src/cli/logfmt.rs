//! How log events print as text: the message, then any other field as ` key=value`, then
//! multi-line details (`diff`, `output`) on the lines below it, as they are. The fields
//! the message already says (`kind`, `name`, `change`) are not repeated.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::Writer;

/// The text format's field formatter (`tracing_subscriber::fmt().fmt_fields(TextFields)`).
pub struct TextFields;

/// Fields that the message of a change already says.
const IN_MESSAGE: [&str; 3] = ["kind", "name", "change"];
/// Fields printed on the lines below the message.
const BELOW: [&str; 2] = ["diff", "output"];

#[derive(Default)]
struct Collect {
    message: String,
    inline: String,
    below: String,
}

impl Visit for Collect {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_debug(field, &format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let name = field.name();
        let _ = if name == "message" {
            write!(self.message, "{value:?}")
        } else if BELOW.contains(&name) {
            write!(self.below, "\n{value:?}")
        } else if IN_MESSAGE.contains(&name) {
            Ok(())
        } else {
            write!(self.inline, " {name}={value:?}")
        };
    }
}

impl<'w> FormatFields<'w> for TextFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut c = Collect::default();
        fields.record(&mut c);
        let inline = if c.message.is_empty() { c.inline.trim_start() } else { &c.inline };
        write!(writer, "{}{inline}{}", c.message, c.below)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::TextFields;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().write(b)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What `log` prints in the text format, without time and level.
    fn printed(log: impl FnOnce()) -> String {
        let buf = Buf::default();
        let out = buf.clone();
        let sub = tracing_subscriber::fmt()
            .fmt_fields(TextFields)
            .without_time()
            .with_level(false)
            .with_target(false)
            .with_ansi(false)
            .with_writer(move || out.clone())
            .finish();
        tracing::subscriber::with_default(sub, log);
        String::from_utf8(buf.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn a_change_prints_its_message_then_its_diff_below() {
        let text = printed(|| {
            let diff = "--- f (current)\n+++ f (desired)\n-old\n+new";
            tracing::info!(kind = "file", name = "f", change = %"replace content", diff = %diff, "file[f]: replace content");
        });
        assert_eq!(text, "file[f]: replace content\n--- f (current)\n+++ f (desired)\n-old\n+new\n");
    }

    #[test]
    fn other_fields_follow_the_message_on_its_line() {
        let text = printed(|| tracing::warn!(host = "h1", tries = 3, "etcd is slow"));
        assert_eq!(text, "etcd is slow host=h1 tries=3\n");
    }
}
