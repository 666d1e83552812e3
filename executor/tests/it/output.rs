//! Output arrives whole up to the cap, whatever the size of one write, and
//! `truncated` is set exactly when bytes were dropped.

use executor::sandbox::Limits;
use executor::sandbox::{LimitKind, Outcome, Status};

use crate::common::*;

const MIB: usize = 1 << 20;

fn capped(output_bytes: usize) -> Limits {
    Limits {
        output_bytes: output_bytes as u64,
        ..limits()
    }
}

/// The ways a snippet writes one string of `n` bytes to `stream` at once.
fn single_writes(stream: &str, n: usize) -> [String; 2] {
    let file = if stream == "stderr" {
        ", file=sys.stderr"
    } else {
        ""
    };
    [
        format!("import sys\nsys.{stream}.write('a' * {n})"),
        format!("import sys\nprint('a' * {n}, end=''{file})"),
    ]
}

fn stream<'o>(o: &'o Outcome, name: &str) -> (&'o [u8], bool) {
    match name {
        "stdout" => (&o.stdout, o.stdout_truncated),
        _ => (&o.stderr, o.stderr_truncated),
    }
}

#[tokio::test]
async fn a_single_write_up_to_the_cap_arrives_whole() {
    for name in ["stdout", "stderr"] {
        for n in [(64 << 10) - 1, 64 << 10, (64 << 10) + 1, MIB - 1, MIB] {
            for code in single_writes(name, n) {
                let o = run_limited(&code, capped(MIB)).await;
                assert_status(&o, Status::Ok);
                let (bytes, truncated) = stream(&o, name);
                assert_eq!(
                    bytes.len(),
                    n,
                    "{name}, {n} bytes: {}",
                    code.lines().last().unwrap()
                );
                assert!(bytes.iter().all(|&b| b == b'a'));
                assert!(
                    !truncated,
                    "{name}, {n} bytes at a cap of {MIB}: nothing was dropped"
                );
                assert_eq!(o.limit, None);
            }
        }
    }
    assert_still_serves().await;
}

#[tokio::test]
async fn a_single_write_past_the_cap_keeps_the_cap_and_is_flagged() {
    for name in ["stdout", "stderr"] {
        for (cap, n) in [
            (MIB, MIB + 1),
            (MIB, 3 * MIB),
            (64 << 10, 100_000),
            (64 << 10, (64 << 10) + 1),
        ] {
            for code in single_writes(name, n) {
                let o = run_limited(&code, capped(cap)).await;
                assert_status(&o, Status::Ok);
                let (bytes, truncated) = stream(&o, name);
                assert_eq!(bytes.len(), cap, "{name}, {n} bytes at a cap of {cap}");
                assert!(
                    truncated,
                    "{name}, {n} bytes at a cap of {cap}: the excess was dropped"
                );
                assert_eq!(o.limit.map(|l| l.kind), Some(LimitKind::Output));
            }
        }
    }
    assert_still_serves().await;
}

#[tokio::test]
async fn truncated_is_set_by_the_first_byte_dropped() {
    // Filling the cap exactly over several writes is not truncation; one
    // byte more is, and the bytes kept are the first ones written.
    let exact = "import sys\nsys.stdout.write('a' * (2**20 - 10))\nsys.stdout.write('b' * 10)";
    let o = run_limited(exact, capped(MIB)).await;
    assert_eq!((o.stdout.len(), o.stdout_truncated), (MIB, false));
    assert_eq!(&o.stdout[MIB - 10..], b"bbbbbbbbbb");
    let over = format!("{exact}\nsys.stdout.write('c')");
    let o = run_limited(&over, capped(MIB)).await;
    assert_eq!((o.stdout.len(), o.stdout_truncated), (MIB, true));
    assert_eq!(&o.stdout[MIB - 10..], b"bbbbbbbbbb");
    // Binary writes take the same path.
    let o = run_limited("import sys\nsys.stdout.buffer.write(b'x' * 2**20)", capped(MIB)).await;
    assert_eq!((o.stdout.len(), o.stdout_truncated), (MIB, false));
    assert_still_serves().await;
}
