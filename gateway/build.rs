//! The playground (`frontend/dist/`) is embedded by `rust-embed` (see
//! `src/assets.rs`). Cargo tracks the files a build included, but not the
//! folder: without this line, a playground built (or a file added) after the
//! gateway was compiled would leave a release binary without it.

fn main() {
    println!("cargo:rerun-if-changed=../frontend/dist");
}
