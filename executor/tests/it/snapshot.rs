//! The built component carries nothing of the machine that built it:
//! componentize-py snapshots the interpreter's heap, so whatever the build
//! could see (site-packages listings, temporary and home paths) would ship
//! to every client who can read memory.

use std::collections::BTreeSet;
use std::path::Path;

/// Strings that name a place on a build machine.
fn needles() -> Vec<String> {
    let mut n: Vec<String> = [
        "/root/",
        "/home/",
        "/tmp/",
        "/var/folders/",
        "site-packages/",
        ".dist-info",
        ".egg-info/",
        "pyenv",
        "/.cache/",
        "/.local/lib/",
    ]
    .map(String::from)
    .to_vec();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace");
    n.push(workspace.display().to_string());
    if let Some(home) = std::env::var_os("HOME").filter(|h| h.len() > 1) {
        n.push(Path::new(&home).display().to_string());
    }
    n
}

/// Text that contains a needle and is not the build machine's: constants
/// compiled into componentize-py's own runtime (the paths of the CI that
/// built its wheel; the same bytes in every build of this guest), and the
/// standard library's docstrings. Each is matched at the needle's place.
const VENDORED: &[&str] = &[
    // componentize-py's CPython build prefix (`sys.base_prefix` at its build).
    "/home/runner/work/componentize-py/componentize-py/cpython/builddir/wasi/install",
    // Panic locations of the Rust crates in componentize-py's runtime.
    "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/pyo3-",
    "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/num-bigint-",
    "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/anyhow-",
    "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/once_cell-",
    "/root/.cargo/git/checkouts/wasm-tools-",
    // CPython: the perf-map path, and docstrings of zipimport, tempfile, site.
    "/tmp/perf-%jd.map",
    "'/tmp/myimport.zip'",
    "'/tmp/myimport.zip/mydirectory'",
    "(4, '/tmp/tmptpu9nin8')",
    "b'/tmp/tmppbi8f0hy'",
    "/usr/local/lib/python2.5/site-packages/bar",
    "/usr/local/lib/python2.5/site-packages/foo",
];

/// Runs of printable ASCII (and newlines) of at least 4 bytes, as `strings`.
fn printable_runs(bytes: &[u8]) -> impl Iterator<Item = &str> {
    bytes
        .split(|&b| !(b == b'\n' || b == b'\t' || (0x20..0x7f).contains(&b)))
        .filter(|r| r.len() >= 4)
        .map(|r| std::str::from_utf8(r).expect("ASCII"))
}

/// Is the needle found at `at` in `run` part of a vendored string?
fn vendored(run: &str, at: usize, needle: &str) -> bool {
    VENDORED.iter().any(|v| {
        // Every place the vendored string contains the needle, aligned at `at`.
        v.match_indices(needle).any(|(offset, _)| {
            at.checked_sub(offset)
                .is_some_and(|start| run.get(start..).is_some_and(|rest| rest.starts_with(v)))
        })
    })
}

/// Every needle occurrence in `bytes` that is not vendored, with context.
fn leaks(bytes: &[u8], needles: &[String]) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for run in printable_runs(bytes) {
        for needle in needles {
            for (at, _) in run.match_indices(needle.as_str()) {
                if !vendored(run, at, needle) {
                    // The runs are ASCII: any index is a char boundary.
                    let start = at.saturating_sub(60);
                    let end = (at + needle.len() + 60).min(run.len());
                    found.insert(format!("{needle:?} in {:?}", &run[start..end]));
                }
            }
        }
    }
    found
}

#[test]
fn the_checker_finds_what_it_looks_for() {
    let needles = needles();
    let planted = b"\0/root/.cache/runbox/venv/lib/python3.11/site-packages/idna-3.13.dist-info\0\
        \x01/tmp/.tmpAbC123/wit_world\0/home/runner/work/componentize-py/componentize-py/cpython/builddir/wasi/install\0";
    let found = leaks(planted, &needles);
    for n in ["/root/", "site-packages/", ".dist-info", "/tmp/", "/.cache/"] {
        let reported = format!("{n:?} in");
        assert!(
            found.iter().any(|f| f.starts_with(&reported)),
            "{n} not reported: {found:#?}"
        );
    }
    assert!(
        !found.iter().any(|f| f.contains("builddir")),
        "the vendored prefix is allowed: {found:#?}"
    );
    assert!(leaks(b"\0(4, '/tmp/tmptpu9nin8')\0", &needles).is_empty());
}

#[test]
fn the_guest_component_holds_no_build_machine_paths() {
    let path = testkit::guest_wasm();
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("reading {} (run `cargo xtask guest`): {e}", path.display()));
    let found = leaks(&bytes, &needles());
    assert!(
        found.is_empty(),
        "{} holds {} build-machine strings:\n{}",
        path.display(),
        found.len(),
        found.into_iter().collect::<Vec<_>>().join("\n")
    );
}
