//! Property tests over everything the agent takes from outside: graph files (YAML), deploy
//! manifests and records, exports of other hosts and host statuses. For any input, decoding
//! and what the agent then does with the decoded value (validate, collect, render, fetch, list)
//! must not panic, and must not ask for an unbounded amount of memory. Two contracts ride
//! along: a validated value can be run (rate limiter, timer), and a collected file stays a
//! plain file inside the pattern directory.
//!
//! Memory is measured by a counting global allocator: every case runs under [`bounded`],
//! which fails the case when the largest single allocation request of the thread that ran it
//! exceeds [`MAX_ALLOC`] (or the bytes requested in total exceed [`MAX_TOTAL`]). Async code
//! runs on a current-thread runtime, so it is measured too. Requests of [`HUGE`] bytes or more
//! are served by a `MAP_NORESERVE` mapping, so that a runaway
//! `Vec::with_capacity(size_from_input)` is measured and reported instead of aborting the
//! process.
//!
//! `cargo test` runs a few to a few hundred cases per property. `make fuzz` runs them far
//! longer (`PROPTEST_CASES`, read by [`cases`]); failures are saved by proptest in
//! `tests/fuzz.proptest-regressions` and replayed first on every run.

#[path = "integration/common/mod.rs"]
mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::TestCaseError;

use mgmt::deploy::blobs;
use mgmt::deploy::bundle::{self, FileEntry, MODE_EXECUTABLE, MODE_FILE, MODE_SYMLINK, Manifest, sha256_hex};
use mgmt::deploy::store::{DeployKeys, DeployRecord};
use mgmt::engine::assemble::assemble;
use mgmt::engine::rate::RateLimiter;
use mgmt::frontend::yaml;
use mgmt::frontend::{CollectSpec, GraphSpec};
use mgmt::os::FsWatcher;
use mgmt::resources::{self, Resource, WatchCtx};
use mgmt::world::local::LocalWorld;
use mgmt::world::{Exported, HostStatus};

// ---------------------------------------------------------------------------------------------
// The counting allocator.

/// The largest single allocation a case may request.
const MAX_ALLOC: usize = 64 << 20;
/// The most bytes a case may request in total (freed or not).
const MAX_TOTAL: usize = 1 << 30;
/// From this size on, requests are served by a reserved-but-uncommitted mapping.
const HUGE: usize = 1 << 30;
/// The most address space one huge request gets. A larger request (up to `isize::MAX`) gets
/// only this much: the case fails anyway, and nothing in a case writes that far.
const MAPPED_CAP: usize = 1 << 36;
const PAGE: usize = 4096;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
    static TOTAL: Cell<usize> = const { Cell::new(0) };
}

struct Counting;

fn note(size: usize) {
    let _ = LARGEST.try_with(|c| c.set(c.get().max(size)));
    let _ = TOTAL.try_with(|c| c.set(c.get().saturating_add(size)));
}

fn is_huge(l: &Layout) -> bool {
    l.size() >= HUGE && l.align() <= PAGE
}

// SAFETY: every request goes to `System` except huge ones, which get a fresh anonymous mapping
// (page-aligned, zeroed, at most `MAPPED_CAP` long) that only `dealloc` with the same layout
// unmaps.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        note(l.size());
        if is_huge(&l) { unsafe { map(l.size()) } } else { unsafe { System.alloc(l) } }
    }

    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        note(l.size());
        if is_huge(&l) { unsafe { map(l.size()) } } else { unsafe { System.alloc_zeroed(l) } }
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if is_huge(&l) {
            unsafe { libc::munmap(p.cast(), l.size().min(MAPPED_CAP)) };
        } else {
            unsafe { System.dealloc(p, l) }
        }
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size`, rounded to `l.align()`, fits a Layout.
        let new = unsafe { Layout::from_size_align_unchecked(new_size, l.align()) };
        if !is_huge(&l) && !is_huge(&new) {
            note(new_size);
            return unsafe { System.realloc(p, l, new_size) };
        }
        let q = unsafe { self.alloc(new) };
        if !q.is_null() {
            unsafe {
                std::ptr::copy_nonoverlapping(p, q, l.size().min(new_size).min(MAPPED_CAP));
                self.dealloc(p, l);
            }
        }
        q
    }
}

unsafe fn map(size: usize) -> *mut u8 {
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size.min(MAPPED_CAP),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED { std::ptr::null_mut() } else { p.cast() }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Run `f` on this thread and return what it returned, its largest single allocation
/// request and the bytes it requested in total.
fn measure<R>(f: impl FnOnce() -> R) -> (R, usize, usize) {
    LARGEST.with(|c| c.set(0));
    TOTAL.with(|c| c.set(0));
    let r = f();
    (r, LARGEST.with(Cell::get), TOTAL.with(Cell::get))
}

/// Run one case of a property: it fails if `f` asked for too much memory.
fn bounded<R>(what: &str, f: impl FnOnce() -> R) -> Result<R, TestCaseError> {
    let (r, largest, total) = measure(f);
    if largest > MAX_ALLOC {
        return Err(TestCaseError::fail(format!(
            "{what}: one allocation of {largest} bytes (the bound is {MAX_ALLOC})"
        )));
    }
    if total > MAX_TOTAL {
        return Err(TestCaseError::fail(format!(
            "{what}: {total} bytes allocated in total (the bound is {MAX_TOTAL})"
        )));
    }
    Ok(r)
}

#[test]
fn the_allocator_sees_a_large_allocation_and_bounded_refuses_it() {
    let (_, largest, total) = measure(|| std::hint::black_box(Vec::<u8>::with_capacity(100 << 20)));
    assert!(largest >= 100 << 20, "largest request seen: {largest}");
    assert!(total >= 100 << 20, "total seen: {total}");
    let err = bounded("a 100 MiB vector", || std::hint::black_box(vec![1u8; 100 << 20]).len());
    assert!(err.is_err(), "a 100 MiB allocation passed the bound");
    assert_eq!(bounded("a small vector", || std::hint::black_box(vec![1u8; 1000]).len()).unwrap(), 1000);
}

#[test]
fn the_allocator_survives_and_records_a_runaway_capacity() {
    // One TiB, as a decoder trusting a `size` field would ask for: measured, not fatal.
    let (len, largest, _) = measure(|| {
        let mut v = std::hint::black_box(Vec::<u8>::with_capacity(1 << 40));
        v.extend_from_slice(b"still usable");
        v.len()
    });
    assert_eq!(len, 12);
    assert_eq!(largest, 1 << 40);
    // More than the address space: still measured.
    let (_, largest, _) = measure(|| std::hint::black_box(Vec::<u8>::with_capacity(1 << 60)).capacity());
    assert_eq!(largest, 1 << 60);
    assert!(
        bounded("a 1 TiB capacity", || std::hint::black_box(Vec::<u8>::with_capacity(1 << 40)).capacity())
            .is_err()
    );
}

#[test]
fn growing_past_the_huge_threshold_and_back_keeps_the_contents() {
    let (v, largest, _) = measure(|| {
        let mut v = std::hint::black_box(b"abc".to_vec());
        v.reserve_exact(HUGE);
        v.push(b'd');
        v.shrink_to_fit();
        v
    });
    assert_eq!(v, b"abcd");
    assert!(largest > HUGE);
}

/// Cases per property. `default` is what `cargo test` runs; `PROPTEST_CASES=N` (`make fuzz`)
/// runs N cases of a property whose default is [`FULL`], and proportionally fewer of the slow
/// ones.
fn cases(default: u32) -> u32 {
    match std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse::<u64>().ok()) {
        Some(n) => (n * u64::from(default) / u64::from(FULL)).max(1) as u32,
        None => default,
    }
}

const FULL: u32 = 256;

fn config(default: u32) -> ProptestConfig {
    ProptestConfig { cases: cases(default), max_shrink_iters: 2000, ..ProptestConfig::default() }
}

fn config_max(default: u32, max: u32) -> ProptestConfig {
    ProptestConfig { cases: cases(default).min(max), ..config(default) }
}

// ---------------------------------------------------------------------------------------------
// Values that break decoders.

const WEIRD_STRINGS: &[&str] = &[
    "",
    " ",
    "a",
    "é",
    "aéééééééééééééééééé",
    "日本語のテキスト",
    "\u{202e}evil",
    "\0",
    "a\0b",
    "line\nbreak",
    "cr\rreturn",
    "tab\there",
    "\u{1b}[31mred",
    "\u{feff}bom",
    "\u{fffd}",
    "🦀🦀🦀🦀🦀🦀🦀🦀🦀🦀🦀🦀🦀",
    "@@",
    "@@x",
    "..",
    ".",
    "/",
    "//",
    "=",
    "a=b",
    "'",
    "\"",
    "\\",
    "${HOME}",
    "$(id)",
    "null",
    "~",
];

const WEIRD_PATHS: &[&str] = &[
    "/",
    "//",
    "///",
    "/.",
    "/./",
    "/..",
    "/../",
    "/a/..",
    "/a/../",
    "/a/./b",
    "/a//b",
    "/tmp/x/",
    "/tmp/x/f",
    "/tmp/x/f/",
    "/tmp/x/a\0b",
    "/tmp/x/é",
    "/tmp/x/.",
    "/tmp/x/..",
    "/tmp/x/...",
    "/etc/passwd",
    "/etc/sudoers.d/",
    "relative",
    "a/b",
    "a//b",
    "./a",
    "../a",
    "a/..",
    "a/",
    "g.yaml",
    "a\\b",
    "~/x",
    "",
    ".",
    "..",
];

const SEGMENTS: &[&str] = &["", ".", "..", "...", "a", "b.yaml", "é", "a\0b", "\\", " ", "~", "-", "@@"];

fn weird_string() -> BoxedStrategy<String> {
    prop_oneof![
        4 => select(WEIRD_STRINGS).prop_map(str::to_string),
        3 => any::<String>(),
        2 => "[a-z0-9/._@ -]{0,40}",
        1 => (select(&["a", "é", "/", "..", "\0", "\n", "🦀"][..]), 0usize..20_000)
            .prop_map(|(s, n)| s.repeat(n)),
    ]
    .boxed()
}

fn weird_path() -> BoxedStrategy<String> {
    prop_oneof![
        4 => select(WEIRD_PATHS).prop_map(str::to_string),
        3 => prop::collection::vec(select(SEGMENTS), 0..8).prop_map(|v| format!("/{}", v.join("/"))),
        2 => prop::collection::vec(select(SEGMENTS), 1..6).prop_map(|v| v.join("/")),
        1 => (0usize..400, 1usize..40).prop_map(|(n, d)| format!("/tmp/{}", vec!["x".repeat(n); d].join("/"))),
        1 => weird_string(),
    ]
    .boxed()
}

const BIG_U64S: &[u64] = &[
    0,
    1,
    2,
    59,
    60,
    3600,
    86_400,
    1 << 20,
    (1 << 20) + 1,
    1 << 30,
    1 << 32,
    1 << 40,
    u32::MAX as u64,
    u32::MAX as u64 + 1,
    i64::MAX as u64,
    i64::MAX as u64 + 1,
    u64::MAX - 1,
    u64::MAX,
];

/// JSON (and YAML) number literals, some beyond every integer type.
const RAW_NUMBERS: &[&str] = &[
    "-1",
    "-0",
    "0.5",
    "1e-300",
    "5e-324",
    "1e300",
    "1e400",
    "-1e400",
    "18446744073709551616",
    "-9223372036854775809",
    "340282366920938463463374607431768211456",
    "1.0",
    "4294967295",
    "4294967296",
];

fn number_token() -> BoxedStrategy<String> {
    prop_oneof![
        4 => select(BIG_U64S).prop_map(|n| n.to_string()),
        2 => any::<u64>().prop_map(|n| n.to_string()),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        2 => select(RAW_NUMBERS).prop_map(str::to_string),
    ]
    .boxed()
}

/// JSON texts of the wrong shape for any field.
fn json_oddity() -> BoxedStrategy<String> {
    prop_oneof![
        select(
            &["null", "true", "false", "[]", "{}", "[null]", "{\"a\":1}", "\"\\ud800\"", "\"\\u0000\""][..]
        )
        .prop_map(str::to_string),
        (1usize..300).prop_map(|d| format!("{}{}", "[".repeat(d), "]".repeat(d))),
        (1usize..300).prop_map(|d| format!("{}1{}", "{\"a\":".repeat(d), "}".repeat(d))),
        number_token(),
    ]
    .boxed()
}

fn json_string(s: BoxedStrategy<String>) -> BoxedStrategy<String> {
    s.prop_map(|s| serde_json::to_string(&s).unwrap()).boxed()
}

/// A field value: mostly of the right type (`good`), sometimes anything.
fn field(good: BoxedStrategy<String>) -> BoxedStrategy<String> {
    prop_oneof![20 => good, 1 => json_oddity()].boxed()
}

fn opt(good: BoxedStrategy<String>) -> BoxedStrategy<String> {
    prop_oneof![1 => Just("null".to_string()), 4 => good].boxed()
}

/// A JSON object as text. Each field may be left out (1 in 10) or given twice (1 in 40), and
/// an unknown field may be added (1 in 20).
fn object(fields: Vec<(&'static str, BoxedStrategy<String>)>) -> BoxedStrategy<String> {
    let parts: Vec<BoxedStrategy<Vec<String>>> = fields
        .into_iter()
        .map(|(k, v)| {
            (v, 0u8..40)
                .prop_map(move |(v, r)| {
                    let kv = format!("{}:{v}", serde_json::to_string(k).unwrap());
                    match r {
                        0..=3 => vec![],
                        4 => vec![kv.clone(), kv],
                        _ => vec![kv],
                    }
                })
                .boxed()
        })
        .collect();
    (parts, prop::option::weighted(0.05, json_oddity()))
        .prop_map(|(parts, extra)| {
            let mut all: Vec<String> = parts.into_iter().flatten().collect();
            if let Some(x) = extra {
                all.push(format!("\"unknown\":{x}"));
            }
            format!("{{{}}}", all.join(","))
        })
        .boxed()
}

fn array(item: BoxedStrategy<String>, max: usize) -> BoxedStrategy<String> {
    prop::collection::vec(item, 0..max).prop_map(|v| format!("[{}]", v.join(","))).boxed()
}

fn boolean() -> BoxedStrategy<String> {
    any::<bool>().prop_map(|b| b.to_string()).boxed()
}

fn hex64() -> BoxedStrategy<String> {
    prop_oneof![
        4 => any::<[u8; 8]>().prop_map(|b| sha256_hex(&b)),
        1 => Just("g".repeat(64)),
        1 => Just("../../../../etc".into()),
        1 => weird_string(),
    ]
    .boxed()
}

// ---------------------------------------------------------------------------------------------
// Deploy manifests.

fn mode_token() -> BoxedStrategy<String> {
    prop_oneof![
        6 => select(&[MODE_FILE, MODE_EXECUTABLE, MODE_SYMLINK][..]).prop_map(|m| m.to_string()),
        2 => select(&[0u32, 0o040000, 0o104755, 0o160000, u32::MAX][..]).prop_map(|m| m.to_string()),
        1 => number_token(),
    ]
    .boxed()
}

fn manifest_json() -> BoxedStrategy<String> {
    let entry = object(vec![
        ("path", field(json_string(weird_path()))),
        ("mode", field(mode_token())),
        ("size", field(number_token())),
        ("sha256", field(json_string(hex64()))),
    ]);
    object(vec![
        (
            "frontend",
            field(json_string(prop_oneof![4 => Just("yaml".to_string()), 1 => weird_string()].boxed())),
        ),
        ("entry", field(json_string(weird_path()))),
        ("files", field(array(entry, 6))),
    ])
}

/// Manifests that pass [`Manifest::new`]'s rules, with sizes that need not match anything.
fn valid_manifest() -> BoxedStrategy<Manifest> {
    let file = (
        prop::collection::vec(select(&["a", "b", "g.yaml", "é", "dir", ".hidden", "x y"][..]), 1..4),
        select(&[MODE_FILE, MODE_FILE, MODE_EXECUTABLE, MODE_SYMLINK][..]),
        prop_oneof![3 => select(BIG_U64S), 1 => any::<u64>()],
        hex64(),
    )
        .prop_map(|(parts, mode, size, sha256)| FileEntry { path: parts.join("/"), mode, size, sha256 });
    prop::collection::vec(file, 1..6)
        .prop_filter_map("not a valid manifest", |mut files| {
            files.sort_by(|a, b| a.path.cmp(&b.path));
            files.dedup_by(|a, b| a.path == b.path);
            let entry = files[0].path.clone();
            Manifest::new("yaml", &entry, files).ok()
        })
        .boxed()
}

/// What the agent does with a manifest it decoded: check it, hash it, verify files against
/// it and place them.
fn use_manifest(m: &Manifest, content: &[u8], other_id: &str) {
    let checked = m.check().is_ok();
    let id = m.id();
    let _ = m.verify_id(&id);
    let _ = m.verify_id(other_id);
    let _ = Manifest::new(&m.frontend, &m.entry, m.files.clone());
    for f in &m.files {
        let _ = m.verify_file(f, content);
        let _ = bundle::validate_path(&f.path);
        let _ = bundle::symlink_stays_inside(&f.path, &String::from_utf8_lossy(content));
        if checked {
            let root = Path::new("/prefix/bundles/x");
            assert!(Manifest::local_path(root, f).starts_with(root));
        }
    }
    let _ = bundle::chunks(content);
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn manifests_decode_and_check_within_bounds(text in manifest_json(), content in weird_string(), other in hex64()) {
        bounded("manifest", || {
            if let Ok(m) = serde_json::from_str::<Manifest>(&text) {
                use_manifest(&m, content.as_bytes(), &other);
            }
        })?;
    }

    #[test]
    fn valid_manifests_with_extreme_sizes_check_within_bounds(m in valid_manifest(), content in weird_string()) {
        let text = serde_json::to_string(&m).unwrap();
        bounded("manifest", || {
            let back: Manifest = serde_json::from_str(&text).expect("a manifest reads back");
            use_manifest(&back, content.as_bytes(), &m.id());
        })?;
    }

    #[test]
    fn arbitrary_bytes_decode_within_bounds(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        bounded("bytes", || {
            if let Ok(m) = serde_json::from_slice::<Manifest>(&bytes) {
                use_manifest(&m, &bytes, "");
            }
            if let Ok(r) = serde_json::from_slice::<DeployRecord>(&bytes) {
                use_record(&r);
            }
            if let Ok(h) = serde_json::from_slice::<HostStatus>(&bytes) {
                let _ = mgmt::cli::status::table(&[h], 0);
            }
            if let Ok(e) = serde_json::from_slice::<Exported>(&bytes) {
                collect(&[e]);
            }
        })?;
    }
}

// ---------------------------------------------------------------------------------------------
// Deploy records.

fn record_json() -> BoxedStrategy<String> {
    let text = || json_string(weird_string());
    object(vec![
        ("id", field(number_token())),
        ("commit", field(opt(text()))),
        ("bundle", field(json_string(hex64()))),
        ("frontend", field(text())),
        ("entry", field(json_string(weird_path()))),
        ("parent", field(opt(json_string(hex64())))),
        ("author", field(opt(text()))),
        ("time", field(number_token())),
        ("message", field(opt(text()))),
        ("rollback_of", field(opt(number_token()))),
        ("deployer", field(opt(text()))),
        ("reason", field(opt(text()))),
    ])
}

fn use_record(r: &DeployRecord) {
    let _ = r.hash();
    let _ = mgmt::cli::deploy::utc(r.time);
    let keys = DeployKeys::new("/_mgmt");
    let _ = keys.record(r.id);
    let _ = keys.blob(&r.bundle);
    let _ = serde_json::to_vec(r).unwrap();
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn deploy_records_decode_within_bounds(text in record_json()) {
        bounded("record", || {
            if let Ok(r) = serde_json::from_str::<DeployRecord>(&text) {
                use_record(&r);
            }
        })?;
    }

    #[test]
    fn any_time_renders_as_a_date(t in prop_oneof![select(BIG_U64S), any::<u64>()]) {
        let s = bounded("utc", || mgmt::cli::deploy::utc(t))?;
        prop_assert!(s.len() < 64, "{s}");
    }
}

// ---------------------------------------------------------------------------------------------
// Host statuses.

fn status_json() -> BoxedStrategy<String> {
    let text = || json_string(weird_string());
    object(vec![
        ("hostname", field(text())),
        ("version", field(text())),
        ("pid", field(number_token())),
        ("graph", field(text())),
        ("source", field(json_string(weird_path()))),
        ("deploy", field(opt(number_token()))),
        ("deploy_error", field(opt(text()))),
        ("converged", field(boolean())),
        ("resources", field(number_token())),
        ("failed", field(array(text(), 8))),
        ("last_error", field(opt(text()))),
        ("started", field(number_token())),
        ("updated", field(number_token())),
    ])
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn host_statuses_decode_and_render_within_bounds(
        texts in prop::collection::vec(status_json(), 0..4),
        now in prop_oneof![select(BIG_U64S), any::<u64>()],
    ) {
        bounded("status", || {
            let hosts: Vec<HostStatus> = texts.iter().filter_map(|t| serde_json::from_str(t).ok()).collect();
            let table = mgmt::cli::status::table(&hosts, now);
            for h in &hosts {
                let one = mgmt::cli::status::host_report(h, Some(now), now);
                assert!(one.lines().all(|l| l.len() < 4096), "{one}");
            }
            let _ = serde_json::to_string_pretty(&hosts).unwrap();
            assert!(table.starts_with("HOST"));
        })?;
    }
}

// ---------------------------------------------------------------------------------------------
// Exports, collected as the collector in `engine::assemble` does.

const PATTERNS: &[&str] =
    &["/tmp/collect/", "/tmp/collect", "/", "//", "/tmp/../", "relative/", "/tmp/c\0/", ""];

fn meta_json() -> BoxedStrategy<String> {
    // Mostly values that validate, so that what validation lets through is reached.
    let usual =
        |usual: &'static [&'static str]| field(prop_oneof![3 => ystr(usual), 1 => number_token()].boxed());
    object(vec![
        ("retry", usual(&["-1", "-2", "0", "3", "2147483647"])),
        ("delay", usual(&["0", "10", "86400000", "86400001"])),
        ("poll", usual(&["0", "1", "60"])),
        ("limit", field(opt(usual(&["1e-300", "5e-324", "1e-10", "1e300", "0.001", "10", "0", "-1"])))),
        ("burst", usual(&["1", "2", "4294967295", "0"])),
        ("noop", field(boolean())),
    ])
}

fn params_json(kind: &'static str) -> BoxedStrategy<String> {
    let text = || json_string(weird_string());
    let path = || json_string(weird_path());
    let name = ("name", field(json_string(prop_oneof![2 => weird_path(), 1 => weird_string()].boxed())));
    let meta = ("meta", prop_oneof![Just("{}".to_string()), field(meta_json())].boxed());
    let mut fields = vec![name, meta];
    match kind {
        "file" => fields.extend([
            ("path", field(opt(path()))),
            ("content", field(opt(text()))),
            ("source", field(opt(path()))),
            (
                "state",
                field(json_string(
                    select(&["exists", "absent", "Exists", ""][..]).prop_map(str::to_string).boxed(),
                )),
            ),
            (
                "mode",
                field(opt(json_string(
                    select(&["0644", "4755", "6777", "7777", "0o1777", "777", "0", "99999", "-1", ""][..])
                        .prop_map(str::to_string)
                        .boxed(),
                ))),
            ),
            (
                "owner",
                field(opt(json_string(
                    select(&["root", "0", "4294967295", "4294967296", "-1", "", " "][..])
                        .prop_map(str::to_string)
                        .boxed(),
                ))),
            ),
            (
                "group",
                field(opt(json_string(
                    select(&["root", "0", "4294967295", "", "wheel"][..]).prop_map(str::to_string).boxed(),
                ))),
            ),
            ("recurse", field(boolean())),
            ("purge", field(boolean())),
            ("force", field(boolean())),
        ]),
        "exec" => fields.extend([
            ("cmd", field(text())),
            ("args", field(array(text(), 4))),
            ("shell", field(opt(path()))),
            ("cwd", field(opt(path()))),
            (
                "env",
                field(
                    prop::collection::btree_map(weird_string(), weird_string(), 0..3)
                        .prop_map(|m| serde_json::to_string(&m).unwrap())
                        .boxed(),
                ),
            ),
            ("ifcmd", field(opt(text()))),
            ("creates", field(opt(path()))),
            ("watchcmd", field(opt(text()))),
            ("donecmd", field(opt(text()))),
            ("timeout", field(opt(number_token()))),
        ]),
        "kv" => fields.extend([("key", field(opt(text()))), ("value", field(text()))]),
        "print" => fields.push(("msg", field(opt(text())))),
        "svc" => fields.extend([
            (
                "state",
                field(opt(json_string(
                    select(&["running", "stopped", "x"][..]).prop_map(str::to_string).boxed(),
                ))),
            ),
            (
                "startup",
                field(opt(json_string(
                    select(&["enabled", "disabled", "x"][..]).prop_map(str::to_string).boxed(),
                ))),
            ),
            ("session", field(boolean())),
        ]),
        "timer" => fields.push(("interval", field(number_token()))),
        _ => {}
    }
    object(fields)
}

fn exported() -> BoxedStrategy<Exported> {
    let kind =
        select(&["file", "file", "file", "exec", "kv", "noop", "print", "svc", "timer", "nope", ""][..]);
    (
        kind,
        weird_string(),
        prop_oneof![2 => weird_path(), 1 => weird_string()],
        select(&["peer", "h", ""][..]),
    )
        .prop_flat_map(|(kind, _, name, host)| (Just(kind), Just(name), Just(host), params_json(kind)))
        .prop_map(|(kind, name, host, params)| Exported {
            host: host.to_string(),
            kind: kind.to_string(),
            name,
            params: serde_json::from_str(&params).unwrap_or(serde_json::Value::Null),
            to: None,
        })
        .boxed()
}

/// The collector: every kind collected, into each pattern in turn, as `assemble` does.
fn collect(exports: &[Exported]) {
    for pattern in PATTERNS {
        let spec = GraphSpec {
            name: "g".into(),
            collect: resources::KINDS
                .iter()
                .map(|k| CollectSpec {
                    kind: k.to_string(),
                    pattern: Some(pattern.to_string()),
                    ..Default::default()
                })
                .collect(),
            ..GraphSpec::default()
        };
        if let Ok(a) = assemble(&spec, "h", exports) {
            for v in &a.graph.vertices {
                use_resource(v.as_ref());
            }
        }
    }
    for e in exports {
        if let Ok(mut r) = resources::from_json(&e.kind, e.params.clone()) {
            r.set_name(e.name.clone());
            let _ = r.collected(Some("/tmp/collect/"));
            let _ = r.meta().validate().and_then(|_| r.validate());
        }
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn exports_collect_within_bounds(exports in prop::collection::vec(exported(), 0..5)) {
        bounded("collect", || collect(&exports))?;
    }
}

/// The collected files of `assemble`, for exports collected into `/tmp/collect/`.
fn collected_files(exports: &[Exported]) -> Vec<resources::file::File> {
    let spec = GraphSpec {
        name: "g".into(),
        collect: vec![CollectSpec {
            kind: "file".into(),
            pattern: Some("/tmp/collect/".into()),
            ..Default::default()
        }],
        ..GraphSpec::default()
    };
    let Ok(a) = assemble(&spec, "h", exports) else { return vec![] };
    a.graph
        .vertices
        .iter()
        .filter_map(|v| v.as_any().downcast_ref::<resources::file::File>().cloned())
        .collect()
}

proptest! {
    #![proptest_config(config(256))]

    /// A peer decides what a collected file contains, nothing else: it lands directly inside
    /// the pattern directory, under a plain name, and takes no source, owner, group, purge,
    /// recurse, force, nor a setuid, setgid or sticky mode.
    #[test]
    fn collected_files_stay_inside_the_pattern_directory(
        exports in prop::collection::vec(
            (prop_oneof![2 => weird_path(), 1 => weird_string()], params_json("file"))
                .prop_map(|(name, params)| Exported {
                    host: "peer".into(),
                    kind: "file".into(),
                    name,
                    params: serde_json::from_str(&params).unwrap_or(serde_json::Value::Null),
                    to: None,
                }),
            1..4,
        ),
    ) {
        let files = bounded("collect", || collected_files(&exports))?;
        for f in files {
            let target = f.target();
            prop_assert_eq!(target.parent(), Some(Path::new("/tmp/collect")), "{:?}", f);
            let name = target.file_name().and_then(|n| n.to_str()).unwrap_or("");
            prop_assert!(!name.is_empty() && name != "." && name != "..", "{:?}", f);
            // An exported directory is collected as a plain directory: nothing goes in it.
            prop_assert!(!f.is_dir() || f.content.is_none(), "{:?}", f);
            prop_assert!(f.source.is_none() && f.owner.is_none() && f.group.is_none(), "{:?}", f);
            prop_assert!(!f.purge && !f.recurse && !f.force, "{:?}", f);
            let mode = f.mode.as_deref().map(|m| resources::file::parse_mode(m).unwrap_or(0)).unwrap_or(0);
            prop_assert_eq!(mode & 0o7000, 0, "{:?}", f);
        }
    }

    /// Whatever passes validation (from a graph or from a peer) can be run: the engine's rate
    /// limiter and a timer's ticker take any validated value.
    #[test]
    fn validated_numbers_run_without_panic(
        (kind, params) in select(&["timer", "timer", "noop", "file"][..]).prop_flat_map(|k| (Just(k), params_json(k))),
    ) {
        let Ok(value) = serde_json::from_str(&params) else { return Ok(()) };
        let Ok(r) = resources::from_json(kind, value) else { return Ok(()) };
        if r.meta().validate().and_then(|_| r.validate()).is_ok() {
            bounded("run", || run_briefly(r.as_ref()))?;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// What a validated resource may be used for without I/O.

/// Pure uses of a resource that passed validation: none may panic.
fn use_resource(r: &dyn Resource) {
    let _ = r.autoedges();
    let json = r.to_json();
    let back = resources::from_json(r.kind(), json).expect("an exported resource reads back");
    let _ = back.validate();
}

/// What the engine does with a validated resource's numbers: rate-limit its checks, and, for
/// a timer, start ticking.
fn run_briefly(r: &dyn Resource) {
    if let Some(limit) = r.meta().limit {
        // Two checks in a row empty a bucket of one token: the second one waits 1/limit.
        let mut l = RateLimiter::new(limit, 1);
        let now = Instant::now();
        let _ = l.reserve(now);
        let _ = l.reserve(now);
    }
    if let Some(t) = r.as_any().downcast_ref::<resources::timer::Timer>() {
        timer_starts(t);
    }
}

/// A validated timer's watch runs (for a moment) without panicking.
fn timer_starts(t: &resources::timer::Timer) {
    static FS: OnceLock<Arc<FsWatcher>> = OnceLock::new();
    let fs = FS.get_or_init(|| FsWatcher::new().expect("inotify")).clone();
    let world = Arc::new(LocalWorld::new("h"));
    let ctx = WatchCtx::new(Arc::new(|| {}), fs, world);
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    rt.block_on(async {
        let _ = tokio::time::timeout(Duration::from_millis(1), t.watch(ctx)).await;
    });
}

// ---------------------------------------------------------------------------------------------
// The YAML frontend.

/// A YAML value on one line: good values and the ones that break parsers.
fn yaml_value(good: BoxedStrategy<String>) -> BoxedStrategy<String> {
    prop_oneof![
        8 => good,
        2 => json_string(weird_string()),
        1 => number_token(),
        2 => select(&[
            "18446744073709551615", "18446744073709551616", "-9223372036854775809", "1e400", ".nan", ".inf",
            "-.inf", "0x7fffffffffffffff", "0o777", "1e-300", "4294967295", "-1", "0", "~", "null", "true",
            "yes", "''", "!!int 5", "!custom x", "!!binary aGVsbG8=", "!<tag:yaml.org,2002:str> x", "!!str 1",
            "!!map {}", "!!seq []", "!!null ''", "*a", "&a x", "&b [1, 2]", "{}", "[]", "[a, {b: c}]", "? x",
            "\"\\x00\"", "\"\\ud800\"", "'it''s'", "- x", ": x", "@x", "`x`", "%x", "|", ">",
        ][..]).prop_map(str::to_string),
        1 => (1usize..3000, select(&["[", "{a: "][..])).prop_map(|(d, open)| {
            let close = if open == "[" { "]" } else { "}" };
            format!("{}x{}", open.repeat(d), close.repeat(d))
        }),
    ]
    .boxed()
}

fn ystr(s: &'static [&'static str]) -> BoxedStrategy<String> {
    select(s).prop_map(str::to_string).boxed()
}

fn yaml_meta() -> BoxedStrategy<String> {
    let keys = prop::collection::vec(
        (
            select(&["retry", "delay", "poll", "limit", "burst", "noop", "bogus"][..]),
            yaml_value(ystr(&[
                "0", "1", "3", "-1", "1e-300", "5e-324", "0.5", "true", "86400000", "86400001",
            ])),
        ),
        0..4,
    );
    keys.prop_map(|kv| {
        let inner: Vec<String> = kv.into_iter().map(|(k, v)| format!("{k}: {v}")).collect();
        format!("{{{}}}", inner.join(", "))
    })
    .boxed()
}

fn yaml_fields(kind: &'static str) -> Vec<(&'static str, BoxedStrategy<String>)> {
    let path =
        || yaml_value(ystr(&["/tmp/x/f", "/tmp/x/d/", "/tmp/x/g", "/", "/.", "//", "/a/..", "/tmp/x/é"]));
    let text = || yaml_value(ystr(&["hello", "\"a\\nb\"", "''", "x"]));
    let mut f = vec![("meta", yaml_meta())];
    match kind {
        "file" => f.extend([
            ("path", path()),
            ("content", text()),
            ("source", path()),
            ("state", yaml_value(ystr(&["exists", "absent"]))),
            ("mode", yaml_value(ystr(&["\"0644\"", "\"4755\"", "\"0o7777\"", "\"99999\"", "0644"]))),
            ("owner", yaml_value(ystr(&["root", "\"0\"", "\"4294967295\"", "\"\""]))),
            ("group", yaml_value(ystr(&["root", "\"0\"", "\"4294967295\""]))),
            ("recurse", yaml_value(ystr(&["true", "false"]))),
            ("purge", yaml_value(ystr(&["true", "false"]))),
            ("force", yaml_value(ystr(&["true", "false"]))),
        ]),
        "exec" => f.extend([
            ("cmd", yaml_value(ystr(&["echo hi", "\"sh -c 'x\"", "true"]))),
            ("args", yaml_value(ystr(&["[a, b]", "[]", "[\"a\\u0000\"]"]))),
            ("shell", yaml_value(ystr(&["/bin/sh", "sh"]))),
            ("cwd", path()),
            ("env", yaml_value(ystr(&["{A: b}", "{\"\": x}", "{\"a=b\": c}"]))),
            ("ifcmd", text()),
            ("creates", path()),
            ("watchcmd", text()),
            ("donecmd", text()),
            ("timeout", yaml_value(ystr(&["1", "0", "18446744073709551615"]))),
        ]),
        "kv" => f.extend([("key", text()), ("value", text())]),
        "print" => f.push(("msg", text())),
        "svc" => f.extend([
            ("state", yaml_value(ystr(&["running", "stopped"]))),
            ("startup", yaml_value(ystr(&["enabled", "disabled"]))),
            ("session", yaml_value(ystr(&["true", "false"]))),
        ]),
        "timer" => f.push((
            "interval",
            yaml_value(ystr(&["1", "60", "9223372036854775807", "18446744073709551615"])),
        )),
        _ => {}
    }
    f
}

/// One resource entry of `kind`, in block style, each field present with probability 1/2
/// (the first few more often: they are the required ones).
fn yaml_resource(kind: &'static str, index: usize) -> BoxedStrategy<String> {
    let fields: Vec<BoxedStrategy<Option<String>>> = yaml_fields(kind)
        .into_iter()
        .enumerate()
        .map(|(i, (k, v))| {
            let p = if i <= 2 { 0.8 } else { 0.4 };
            prop::option::weighted(p, v).prop_map(move |v| v.map(|v| format!("    {k}: {v}\n"))).boxed()
        })
        .collect();
    let name = yaml_value(
        prop_oneof![
            Just(format!("r{index}")),
            Just(format!("\"@@r{index}\"")),
            Just(format!("/tmp/x/n{index}")),
        ]
        .boxed(),
    );
    (name, fields)
        .prop_map(|(name, fields)| {
            format!("  - name: {name}\n{}", fields.into_iter().flatten().collect::<String>())
        })
        .boxed()
}

fn yaml_graph() -> BoxedStrategy<String> {
    let kinds =
        prop::collection::vec(select(&["file", "exec", "kv", "noop", "print", "svc", "timer"][..]), 0..5);
    kinds
        .prop_flat_map(|kinds| {
            let res: Vec<BoxedStrategy<(&'static str, String)>> = kinds
                .iter()
                .enumerate()
                .map(|(i, k)| {
                    let k: &'static str = k;
                    yaml_resource(k, i).prop_map(move |r| (k, r)).boxed()
                })
                .collect();
            let n = kinds.len().max(1);
            let edge = (0..n, 0..n, any::<bool>(), prop::option::of(select(&["stdout", "content", "x"][..])))
                .prop_map(|(a, b, notify, send)| (a, b, notify, send));
            let collect = (
                select(&["file", "exec", "nope"][..]),
                prop::option::of(yaml_value(ystr(&["/tmp/collect/", "/", "relative"]))),
            );
            (
                Just(kinds),
                res,
                prop::collection::vec(edge, 0..3),
                prop::collection::vec(collect, 0..2),
                prop::option::weighted(0.1, yaml_value(ystr(&["g"]))),
            )
        })
        .prop_map(|(kinds, res, edges, collect, graph_name)| {
            let mut out = format!("graph: {}\n", graph_name.unwrap_or_else(|| "g".into()));
            if !res.is_empty() {
                out.push_str("resources:\n");
                let mut by_kind: Vec<(&str, Vec<String>)> = Vec::new();
                for (k, r) in res {
                    match by_kind.iter_mut().find(|(kk, _)| *kk == k) {
                        Some((_, v)) => v.push(r),
                        None => by_kind.push((k, vec![r])),
                    }
                }
                for (k, rs) in by_kind {
                    out.push_str(&format!("  {k}:\n{}", rs.concat()));
                }
            }
            if !edges.is_empty() && !kinds.is_empty() {
                out.push_str("edges:\n");
                for (a, b, notify, send) in edges {
                    let (ka, kb) = (kinds[a % kinds.len()], kinds[b % kinds.len()]);
                    out.push_str(&format!(
                        "- name: e{a}{b}\n  from: {{kind: {ka}, name: r{a}}}\n  to: {{kind: {kb}, name: r{b}}}\n  notify: {notify}\n"
                    ));
                    if let Some(s) = send {
                        out.push_str(&format!("  send: {s}\n  recv: content\n"));
                    }
                }
            }
            if !collect.is_empty() {
                out.push_str("collect:\n");
                for (k, p) in collect {
                    out.push_str(&format!("- kind: {k}\n"));
                    if let Some(p) = p {
                        out.push_str(&format!("  pattern: {p}\n"));
                    }
                }
            }
            out
        })
        .boxed()
}

/// Split a text into tokens: runs of word characters, runs of spaces, single other chars.
fn tokens(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let class = |c: char| {
        if c.is_alphanumeric() || c == '_' {
            0
        } else if c == ' ' {
            1
        } else {
            2
        }
    };
    for c in text.chars() {
        match out.last_mut() {
            Some(last) if class(c) != 2 && last.chars().next().map(class) == Some(class(c)) => last.push(c),
            _ => out.push(c.to_string()),
        }
    }
    out
}

const YAML_TOKENS: &[&str] = &[
    " ",
    "  ",
    "\n",
    "\t",
    "\r\n",
    ":",
    ": ",
    "- ",
    "-",
    "[",
    "]",
    "{",
    "}",
    ",",
    "&a ",
    "*a",
    "&b ",
    "*b",
    "!!int ",
    "!custom ",
    "!!binary ",
    "!!str ",
    "<<: ",
    "? ",
    "|",
    ">",
    "|-",
    "#",
    "'",
    "\"",
    "%YAML 1.2\n",
    "---\n",
    "...\n",
    "~",
    "null",
    "18446744073709551616",
    "-9223372036854775809",
    "1e400",
    ".nan",
    "\0",
    "\u{feff}",
    "é",
    "name",
    "path",
    "meta",
    "graph",
    "resources",
    "edges",
    "collect",
    "file",
    "exec",
    "@@",
];

#[derive(Debug, Clone)]
enum Edit {
    Insert(usize, String),
    Delete(usize),
    Replace(usize, String),
    Repeat(usize, usize),
}

fn edit() -> BoxedStrategy<Edit> {
    let token = prop_oneof![4 => ystr(YAML_TOKENS), 1 => any::<String>(), 1 => number_token()];
    prop_oneof![
        (any::<usize>(), token.clone()).prop_map(|(i, t)| Edit::Insert(i, t)),
        any::<usize>().prop_map(Edit::Delete),
        (any::<usize>(), token).prop_map(|(i, t)| Edit::Replace(i, t)),
        (any::<usize>(), 1usize..50).prop_map(|(i, n)| Edit::Repeat(i, n)),
    ]
    .boxed()
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut t = tokens(text);
    for e in edits {
        let at = |i: usize, len: usize| if len == 0 { 0 } else { i % len };
        match e {
            Edit::Insert(i, s) => {
                let i = at(*i, t.len() + 1);
                t.insert(i, s.clone());
            }
            Edit::Delete(i) if !t.is_empty() => {
                let i = at(*i, t.len());
                t.remove(i);
            }
            Edit::Replace(i, s) if !t.is_empty() => {
                let i = at(*i, t.len());
                t[i] = s.clone();
            }
            Edit::Repeat(i, n) if !t.is_empty() => {
                let i = at(*i, t.len());
                let s = t[i].repeat(*n);
                t[i] = s;
            }
            _ => {}
        }
    }
    t.concat()
}

const CORPUS: &[&str] = &[
    include_str!("../examples/yaml/file1.yaml"),
    include_str!("../examples/yaml/cluster-a.yaml"),
    include_str!("../examples/yaml/cluster-b.yaml"),
    include_str!("../examples/yaml/cluster-c.yaml"),
    "graph: g\nresources:\n  exec:\n  - name: a\n    cmd: echo hi\n    meta: {retry: 3, delay: 10, limit: 2.5, burst: 2}\n  - name: b\n    shell: /bin/sh\n    cmd: \"cat\"\n    env: {A: b}\n    timeout: 5\n  file:\n  - name: f\n    path: /tmp/x/f\n    mode: \"0644\"\n    owner: root\n  timer:\n  - name: t\n    interval: 60\n  kv:\n  - name: k\n    value: v\nedges:\n- name: e\n  from: {kind: exec, name: a}\n  to: {kind: file, name: f}\n  notify: true\n  send: stdout\n  recv: content\ncollect:\n- kind: file\n  pattern: /tmp/collect/\n",
];

/// Stack for parsing in this (debug) test binary. In release the parser needs less than 512
/// KiB at its nesting limit, well inside the 2 MiB of a tokio worker (where the deploy follower
/// parses); debug frames are many times larger, so the test thread gets the margin instead.
const PARSE_STACK: usize = 16 << 20;

/// One case of a YAML property: parse and use `texts` on a thread with [`PARSE_STACK`].
fn yaml_case(texts: Vec<String>) -> Result<(), TestCaseError> {
    let t = std::thread::Builder::new().stack_size(PARSE_STACK).spawn(move || {
        bounded("yaml", || {
            for t in &texts {
                use_graph(t);
            }
        })
    });
    match t.expect("spawning a parser thread").join() {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// What the agent does with a parsed graph before anything touches the machine.
fn use_graph(text: &str) {
    let Ok(spec) = yaml::parse(text, "g.yaml") else { return };
    for r in &spec.resources {
        use_resource(r.as_ref());
    }
    if let Ok(a) = assemble(&spec, "h", &[]) {
        let _ = collect_own_exports(&spec, &a.exports);
    }
}

/// A peer running the same graph: this graph's exports, collected under another host name.
fn collect_own_exports(spec: &GraphSpec, exports: &[Exported]) -> usize {
    let peers: Vec<Exported> = exports
        .iter()
        .cloned()
        .map(|mut e| {
            e.host = "peer".into();
            e
        })
        .collect();
    assemble(spec, "h", &peers).map(|a| a.graph.vertices.len()).unwrap_or(0)
}

fn billion_laughs() -> BoxedStrategy<String> {
    (1usize..12, 2usize..10, any::<bool>())
        .prop_map(|(levels, width, valid_type)| {
            let mut out = String::from("graph: g\nresources:\n  exec:\n");
            out.push_str("  - name: a0\n    cmd: x\n    args: &a0 [lol, lol, lol, lol]\n");
            for l in 1..levels {
                let refs = vec![format!("*a{}", l - 1); width].join(", ");
                out.push_str(&format!("  - name: a{l}\n    cmd: x\n    args: &a{l} [{refs}]\n"));
            }
            if valid_type {
                out.push_str(&format!("  - name: last\n    cmd: x\n    env: *a{}\n", levels - 1));
            }
            out
        })
        .boxed()
}

fn deep_block(depth: usize) -> String {
    let mut out = String::from("graph: g\nresources:\n  print:\n  - name: p\n    msg:\n");
    for d in 0..depth {
        out.push_str(&" ".repeat(6 + 2 * d));
        out.push_str("- \n");
    }
    out
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn arbitrary_text_parses_within_bounds(text in any::<String>()) {
        yaml_case(vec![text])?;
    }

    #[test]
    fn yaml_alphabet_soup_parses_within_bounds(text in "[ \n\t:\\-\\[\\]{}&*!|>'\"#%@,?a-z0-9.~<]{0,400}") {
        let nested = format!("graph: g\nresources:\n  file:\n  - {text}");
        yaml_case(vec![text, nested])?;
    }

    #[test]
    fn generated_graphs_parse_within_bounds(text in yaml_graph()) {
        yaml_case(vec![text])?;
    }

    #[test]
    fn mutated_graphs_parse_within_bounds(
        base in prop_oneof![select(CORPUS).prop_map(str::to_string), yaml_graph()],
        edits in prop::collection::vec(edit(), 1..8),
    ) {
        yaml_case(vec![apply(&base, &edits)])?;
    }

}

proptest! {
    // Refusing a bomb takes seconds in a debug build (half a second in release: the parser's
    // budget stops the expansion), and there are only 216 shapes.
    #![proptest_config(config_max(1, 64))]

    #[test]
    fn alias_bombs_parse_within_bounds(text in billion_laughs()) {
        yaml_case(vec![text])?;
    }
}

proptest! {
    #![proptest_config(config(16))]

    #[test]
    fn deep_nesting_parses_within_bounds(depth in 1usize..400, flow in 1usize..20_000) {
        yaml_case(vec![
            deep_block(depth),
            format!("graph: g\nresources:\n  print:\n  - name: p\n    msg: {}x{}\n", "[".repeat(flow), "]".repeat(flow)),
            format!("graph: g\ncomment: {}\n", "{a: ".repeat(flow)),
        ])?;
    }
}

// ---------------------------------------------------------------------------------------------
// Fetching a deploy from a real etcd, as agents and `mgmt deploy show` do.

/// Store a manifest and blobs for its files as a crafted deploy would, then fetch it.
async fn fetch(c: &mut etcd_client::Client, keys: &DeployKeys, m: &Manifest, chunks: usize) -> String {
    for f in &m.files {
        for n in 0..chunks {
            c.put(keys.chunk(&f.sha256, n), vec![b'x'; 16], None).await.unwrap();
        }
    }
    let raw = m.canonical_json();
    let id = m.id();
    for (n, part) in bundle::chunks(&raw).iter().enumerate() {
        c.put(keys.chunk(&id, n), part.to_vec(), None).await.unwrap();
    }
    id
}

#[test]
fn crafted_deploys_fetch_within_bounds() {
    let dir = common::TestDir::new();
    let etcd = common::etcd::Etcd::start(&dir);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let client = rt.block_on(etcd_client::Client::connect([etcd.url()], None)).unwrap();
    let keys = DeployKeys::new("/_mgmt");
    let mut runner =
        proptest::test_runner::TestRunner::new(ProptestConfig { failure_persistence: None, ..config(16) });
    runner
        .run(&(valid_manifest(), 1usize..4), |(m, chunks)| {
            let mut c = client.clone();
            let id = rt.block_on(fetch(&mut c, &keys, &m, chunks));
            bounded("fetch", || {
                let _ = rt.block_on(blobs::fetch_bundle(&mut c, &keys, &id));
            })?;
            Ok(())
        })
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// `mgmt deploy list|show` and `mgmt status` over whatever etcd holds.

fn record() -> BoxedStrategy<String> {
    let text = || prop::option::of(weird_string());
    let structured = (
        (prop_oneof![select(BIG_U64S), any::<u64>()], text(), weird_string(), weird_string(), weird_path()),
        (text(), text(), prop_oneof![select(BIG_U64S), any::<u64>()], text(), prop::option::of(any::<u64>())),
    )
        .prop_map(
            |((id, commit, bundle, frontend, entry), (parent, author, time, message, rollback_of))| {
                let r = DeployRecord {
                    id,
                    commit,
                    bundle,
                    frontend,
                    entry,
                    parent,
                    author,
                    time,
                    message,
                    rollback_of,
                    ..Default::default()
                };
                serde_json::to_string(&r).unwrap()
            },
        );
    prop_oneof![3 => structured, 1 => record_json()].boxed()
}

fn status() -> BoxedStrategy<String> {
    let structured = (
        (weird_string(), weird_string(), weird_string(), weird_path(), prop::option::of(any::<u64>())),
        (
            prop::option::of(weird_string()),
            prop::collection::vec(weird_string(), 0..3),
            prop::option::of(weird_string()),
        ),
        (any::<u32>(), any::<bool>(), any::<usize>(), prop_oneof![select(BIG_U64S), any::<u64>()]),
    )
        .prop_map(
            |(
                (hostname, version, graph, source, deploy),
                (deploy_error, failed, last_error),
                (pid, converged, resources, started),
            )| {
                let h = HostStatus {
                    hostname,
                    version,
                    pid,
                    graph,
                    source,
                    deploy,
                    deploy_error,
                    converged,
                    resources,
                    failed,
                    last_error,
                    started,
                    updated: started,
                    ..HostStatus::default()
                };
                serde_json::to_string(&h).unwrap()
            },
        );
    prop_oneof![3 => structured, 1 => status_json()].boxed()
}

/// Run `mgmt ARGS`; it must exit with one of `codes` (a panic exits with 101).
fn mgmt_exits_with(codes: &[i32], args: &[&str]) -> Result<(), TestCaseError> {
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_mgmt")).args(args).output().expect("running mgmt");
    if !out.status.code().is_some_and(|c| codes.contains(&c)) {
        return Err(TestCaseError::fail(format!(
            "mgmt {} exited with {:?}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}

#[test]
fn crafted_records_and_statuses_are_shown_without_panic() {
    let dir = common::TestDir::new();
    let etcd = common::etcd::Etcd::start(&dir);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let client = rt.block_on(etcd_client::Client::connect([etcd.url()], None)).unwrap();
    let case = std::cell::Cell::new(0u64);
    let latest = prop_oneof![select(BIG_U64S).prop_map(|n| n.to_string()), weird_string()];
    let strategy = (prop::collection::vec(record(), 0..4), prop::collection::vec(status(), 0..4), latest);
    let check =
        |(records, statuses, latest): (Vec<String>, Vec<String>, String)| -> Result<(), TestCaseError> {
            case.set(case.get() + 1);
            let ns = format!("/fuzz{}", case.get());
            let mut c = client.clone();
            rt.block_on(async {
                for (i, r) in records.iter().enumerate() {
                    c.put(format!("{ns}/deploy/{}", i + 1), r.as_bytes(), None).await.unwrap();
                }
                c.put(format!("{ns}/deploy/latest"), latest.as_bytes(), None).await.unwrap();
                for (i, s) in statuses.iter().enumerate() {
                    c.put(format!("{ns}/hosts/h{i}"), s.as_bytes(), None).await.unwrap();
                }
            });
            let cluster = ["--seeds", etcd.url(), "--etcd-namespace", &ns];
            // Listing skips what it cannot read; showing one deploy may refuse it.
            // A status exits 1 when a host is failing or behind, or is not there.
            let commands: [(&[i32], &[&str]); 9] = [
                (&[0], &["deploy", "list"]),
                (&[0], &["deploy", "list", "--json"]),
                (&[0, 1], &["deploy", "show", "1"]),
                (&[0, 1], &["deploy", "show", "1", "--json"]),
                (&[0, 1], &["deploy", "diff", "1"]),
                (&[0, 1], &["status"]),
                (&[0, 1], &["status", "--json"]),
                (&[0, 1], &["status", "h0"]),
                (&[0, 1], &["status", "h0", "--json"]),
            ];
            for (codes, cmd) in commands {
                let mut args = vec![cmd[0]];
                args.extend_from_slice(&cluster);
                args.extend_from_slice(&cmd[1..]);
                mgmt_exits_with(codes, &args)?;
            }
            Ok(())
        };
    // Text that must be cut on a character boundary, whatever the random cases hold.
    let wide = format!("a{}", "é".repeat(20));
    let record = DeployRecord {
        id: 1,
        commit: Some(wide.clone()),
        bundle: wide.clone(),
        frontend: wide.clone(),
        entry: wide.clone(),
        parent: Some(wide.clone()),
        author: Some(wide.clone()),
        time: u64::MAX,
        message: Some(wide.clone()),
        rollback_of: None,
        ..Default::default()
    };
    let host = HostStatus { hostname: wide.clone(), last_error: Some(wide.clone()), ..HostStatus::default() };
    let seed = (
        vec![serde_json::to_string(&record).unwrap()],
        vec![serde_json::to_string(&host).unwrap()],
        "1".to_string(),
    );
    if let Err(e) = check(seed.clone()) {
        panic!("{e}\ninput: {seed:?}");
    }
    let mut runner =
        proptest::test_runner::TestRunner::new(ProptestConfig { failure_persistence: None, ..config(4) });
    runner.run(&strategy, check).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Paths: whatever a file resource is given, once it validates it never means `/` for
// anything that removes, purges, copies into or forces, and its normal form is stable.

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn no_valid_file_resource_destroys_root(
        path in weird_path(),
        state in select(&["exists", "absent"][..]),
        (purge, recurse, force) in (any::<bool>(), any::<bool>(), any::<bool>()),
    ) {
        let params = serde_json::json!({
            "name": "f", "path": path, "state": state, "purge": purge, "recurse": recurse, "force": force,
        });
        let checked = bounded("validate", || {
            let r = resources::from_json("file", params).ok()?;
            r.validate().ok()?;
            Some(mgmt::contract::path::normalize_path(&path))
        })?;
        if let Some(normal) = checked {
            let normal = normal.expect("a valid path has a normal form");
            prop_assert_eq!(mgmt::contract::path::normalize_path(&normal), Ok(normal.clone()));
            if state == "absent" || purge || recurse || force {
                prop_assert_ne!(normal.trim_end_matches('/'), "", "{} passed as {}", path, state);
            }
        }
    }
}
