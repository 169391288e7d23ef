//! Bounds, in one place: the longest interval a param may ask for, and how much of an error
//! text, of a command's output or of a content diff is logged, kept and published.

/// The longest interval any param may ask for (timer `interval`, `meta.poll`, exec `timeout`,
/// one check at `meta.limit`): ten years. Far beyond any real use, and far from the point
/// where adding it to the clock overflows.
pub const MAX_INTERVAL_SECS: u64 = 10 * 365 * 24 * 3600;

/// Bytes of an error text that are logged and kept as a resource's last error (and so
/// published in its host's status).
pub const ERROR_TEXT_MAX: usize = 4096;

/// Bytes of a failed command's output kept with its error: the end of its last lines.
pub const OUTPUT_TAIL_MAX: usize = 1024;

/// Bytes kept of each of a command's stdout and stderr: the last ones.
pub const CAPTURE_MAX: usize = 64 * 1024;

/// Largest content (either side) that is diffed; a bigger change is described by its sizes.
pub const DIFF_INPUT_MAX: u64 = 1024 * 1024;

/// Lines of a content diff that are shown; the rest is counted.
pub const DIFF_LINES_MAX: usize = 200;

/// Bytes of one line of a content diff that are shown.
pub const DIFF_LINE_MAX: usize = 512;

/// Bytes at the start of a content that decide whether it is binary (a NUL byte, or not
/// UTF-8).
pub const BINARY_SNIFF: usize = 8 * 1024;

/// The largest export (its JSON form, as stored in etcd). etcd refuses requests over 1.5 MiB
/// by default; this leaves room for the key and the transaction around it.
pub const MAX_EXPORT_BYTES: usize = 1024 * 1024;
