//! The tree's rules without a guest: POSIX semantics of each call, and every
//! quota's accounting in both directions.

use super::*;

use std::time::Duration;

fn fs_with(f: impl FnOnce(&mut FileLimits)) -> Fs {
    let mut limits = FileLimits::DEFAULT;
    f(&mut limits);
    Fs::new(
        limits,
        None,
        Box::new(crate::sandbox::clock::CoarseWallClock::new(
            Duration::from_micros(100),
        )),
    )
}

fn create() -> OpenHow {
    OpenHow {
        create: true,
        write: true,
        ..OpenHow::default()
    }
}

#[test]
fn files_are_created_written_read_and_listed() {
    let fs = fs_with(|_| {});
    let wd = fs.workdir();
    let mut t = fs.lock();
    let f = t.open(wd, "a.txt", create()).unwrap();
    assert_eq!(t.write(f.ino, Some(0), b"hello").unwrap(), 5);
    assert_eq!(t.write(f.ino, None, b"!").unwrap(), 1);
    assert_eq!(t.read(f.ino, 0, 100).unwrap(), (b"hello!".to_vec(), true));
    assert_eq!(t.read(f.ino, 1, 2).unwrap(), (b"el".to_vec(), false));
    t.release(f.ino);
    t.mkdir(wd, "d").unwrap();
    assert_eq!(t.mkdir(wd, "d"), Err(ErrorCode::Exist));
    assert_eq!(
        t.list(wd.ino).unwrap(),
        [("a.txt".to_owned(), Kind::File), ("d".to_owned(), Kind::Dir)]
    );
    assert_eq!(t.open(wd, "missing", OpenHow::default()), Err(ErrorCode::NoEntry));
    assert_eq!(t.open(wd, "a.txt/x", create()), Err(ErrorCode::NotDirectory));
    assert_eq!(t.open(wd, "d", create()), Err(ErrorCode::IsDirectory));
    let excl = OpenHow {
        exclusive: true,
        ..create()
    };
    assert_eq!(t.open(wd, "a.txt", excl), Err(ErrorCode::Exist));
    assert_eq!(t.usage().2, 0, "every descriptor was released");
}

#[test]
fn dot_dot_never_climbs_above_the_base_and_absolute_paths_are_refused() {
    let fs = fs_with(|_| {});
    let wd = fs.workdir();
    let mut t = fs.lock();
    t.mkdir(wd, "d").unwrap();
    assert!(t.resolve(wd, "d/..").is_ok());
    assert_eq!(t.resolve(wd, "..").unwrap_err(), ErrorCode::NotPermitted);
    assert_eq!(t.resolve(wd, "d/../../x").unwrap_err(), ErrorCode::NotPermitted);
    assert_eq!(t.resolve(wd, "/etc/passwd").unwrap_err(), ErrorCode::NotPermitted);
    assert_eq!(t.resolve(wd, "").unwrap_err(), ErrorCode::NoEntry);
}

#[test]
fn the_root_lists_the_writable_directories_and_cannot_change() {
    let fs = fs_with(|_| {});
    let root = fs.mounts().iter().find(|m| m.path == "/").unwrap().base;
    let mut t = fs.lock();
    let names: Vec<String> = t.list(root.ino).unwrap().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["sandbox", "tmp"]);
    assert_eq!(t.mkdir(root, "etc"), Err(ErrorCode::Access));
    assert_eq!(t.open(root, "x", create()), Err(ErrorCode::Access));
    assert_eq!(t.rmdir(root, "tmp"), Err(ErrorCode::Access));
    assert_eq!(t.rename(root, "tmp", root, "t2"), Err(ErrorCode::Access));
    // Nothing was charged by the refusals.
    assert_eq!(t.usage(), (0, 0, 0));
}

#[test]
fn bytes_are_charged_at_the_logical_size_and_given_back() {
    let fs = fs_with(|l| {
        l.bytes = 1000;
        l.file_bytes = 600;
    });
    let wd = fs.workdir();
    let mut t = fs.lock();
    let f = t.open(wd, "f", create()).unwrap();
    // Name "f" is one byte.
    assert_eq!(t.usage().0, 1);
    // A write past the file cap, even sparse, is refused whole.
    assert_eq!(t.write(f.ino, Some(600), b"x"), Err(ErrorCode::FileTooLarge));
    assert_eq!(t.write(f.ino, Some(599), b"x").unwrap(), 1);
    assert_eq!(t.usage().0, 601);
    assert_eq!(t.room(f.ino, None), Err(ErrorCode::FileTooLarge));
    let g = t.open(wd, "g", create()).unwrap();
    // 1000 - 601 - 1 ("g") = 398 left.
    assert_eq!(t.room(g.ino, Some(0)).unwrap(), 398);
    assert_eq!(t.room(g.ino, Some(398)), Err(ErrorCode::InsufficientSpace));
    assert_eq!(t.set_size(g.ino, 399), Err(ErrorCode::InsufficientSpace));
    t.set_size(g.ino, 398).unwrap();
    assert_eq!(t.usage().0, 1000);
    assert_eq!(t.open(wd, "h", create()), Err(ErrorCode::InsufficientSpace));
    t.set_size(f.ino, 0).unwrap();
    assert_eq!(t.usage().0, 400);
    t.release(f.ino);
    t.release(g.ino);
    t.unlink(wd, "g").unwrap();
    assert_eq!(t.usage(), (1, 1, 0));
}

#[test]
fn an_unlinked_file_keeps_its_bytes_until_its_last_holder_lets_go() {
    let fs = fs_with(|_| {});
    let wd = fs.workdir();
    let mut t = fs.lock();
    let f = t.open(wd, "f", create()).unwrap();
    t.write(f.ino, Some(0), &[7; 100]).unwrap();
    t.hold(f.ino).unwrap(); // a stream
    t.unlink(wd, "f").unwrap();
    assert_eq!(
        t.usage(),
        (100, 1, 1),
        "still held: data and node stay, the name is gone"
    );
    assert_eq!(t.read(f.ino, 0, 1).unwrap().0, [7]);
    t.release(f.ino);
    assert_eq!(t.usage().1, 1);
    t.unhold(f.ino);
    assert_eq!(t.usage(), (0, 0, 0));
}

#[test]
fn counts_depths_lengths_and_descriptors_are_capped() {
    let fs = fs_with(|l| {
        l.count = 3;
        l.depth = 3;
        l.path_bytes = 20;
        l.open = 2;
    });
    let wd = fs.workdir();
    let mut t = fs.lock();
    // `/sandbox` is depth 1 and 8 bytes long.
    t.mkdir(wd, "a").unwrap();
    t.mkdir(wd, "a/b").unwrap();
    assert_eq!(t.mkdir(wd, "a/b/c"), Err(ErrorCode::NameTooLong), "depth 4 > 3");
    assert_eq!(
        t.mkdir(wd, "abcdefghijkl"),
        Err(ErrorCode::NameTooLong),
        "21 bytes > 20"
    );
    t.mkdir(wd, "abcdefghijk").unwrap();
    assert_eq!(
        t.mkdir(wd, "x"),
        Err(ErrorCode::InsufficientSpace),
        "a fourth node"
    );
    t.rmdir(wd, "abcdefghijk").unwrap();
    let one = t.open(wd, "f", create()).unwrap();
    let two = t.open(wd, "f", OpenHow::default()).unwrap();
    assert_eq!(t.open(wd, "f", OpenHow::default()), Err(ErrorCode::Quota));
    t.release(two.ino);
    t.release(one.ino);
    assert!(t.open(wd, "a", OpenHow::default()).is_ok());
}

#[test]
fn renames_follow_posix_and_keep_trees_inside_the_quotas() {
    let fs = fs_with(|l| l.depth = 4);
    let wd = fs.workdir();
    let mut t = fs.lock();
    for d in ["a", "a/b", "e"] {
        t.mkdir(wd, d).unwrap();
    }
    let f = t.open(wd, "f", create()).unwrap();
    t.write(f.ino, Some(0), b"data").unwrap();
    t.release(f.ino);
    assert_eq!(
        t.rename(wd, "a", wd, "a/b/c"),
        Err(ErrorCode::Invalid),
        "into itself"
    );
    assert_eq!(t.rename(wd, "f", wd, "a"), Err(ErrorCode::IsDirectory));
    assert_eq!(t.rename(wd, "e", wd, "f"), Err(ErrorCode::NotDirectory));
    assert_eq!(t.rename(wd, "e", wd, "a"), Err(ErrorCode::NotEmpty));
    // `a/b` moved under `e/x/` would reach depth 5.
    t.mkdir(wd, "e/x").unwrap();
    assert_eq!(t.rename(wd, "a", wd, "e/x/a"), Err(ErrorCode::NameTooLong));
    t.rename(wd, "f", wd, "e/g").unwrap();
    assert_eq!(
        t.read(t.resolve(wd, "e/g").unwrap().ino, 0, 9).unwrap().0,
        b"data"
    );
    // Replacing a file frees the one replaced.
    let h = t.open(wd, "h", create()).unwrap();
    t.write(h.ino, Some(0), &[1; 50]).unwrap();
    t.release(h.ino);
    let before = t.usage();
    t.rename(wd, "h", wd, "e/g").unwrap();
    let after = t.usage();
    assert_eq!(
        (before.0 - after.0, before.1 - after.1),
        (4 + 1, 1),
        "data, name `h` → `g` (same length)"
    );
}

#[test]
fn input_files_make_their_directories_and_count_as_unchanged() {
    let fs = fs_with(|_| {});
    let wd = fs.workdir();
    let mut t = fs.lock();
    t.put("main.py", b"print(1)").unwrap();
    t.put("pkg/sub/mod.py", b"x = 1").unwrap();
    assert_eq!(t.put("main.py/x", b""), Err(ErrorCode::NotDirectory));
    assert!(t.changed_files().is_empty());
    let f = t.open(wd, "pkg/sub/mod.py", create()).unwrap();
    t.write(f.ino, None, b"\n").unwrap();
    t.release(f.ino);
    let new = t.open(wd, "new.txt", create()).unwrap();
    t.release(new.ino);
    let changed: Vec<(String, Vec<u8>)> = t
        .changed_files()
        .into_iter()
        .map(|(p, d)| (p, d.to_vec()))
        .collect();
    assert_eq!(
        changed,
        [
            ("new.txt".to_owned(), Vec::new()),
            ("pkg/sub/mod.py".to_owned(), b"x = 1\n".to_vec())
        ]
    );
}

#[test]
fn the_shared_layer_is_read_in_place_and_never_written() {
    let content = Bytes::from_static(b"shared data");
    let mut layer = Layer::from_files(
        "/usr/share/runbox",
        [
            ("lib/a.txt".to_owned(), content.clone()),
            ("b.txt".to_owned(), Bytes::from_static(b"b")),
        ],
    );
    // A second tree, mounted under a path of the first's (as a runtime's
    // data directory beside its zip).
    layer.mount_files(
        "/usr/share/runbox/b.txt/data",
        [("c".to_owned(), Bytes::from_static(b"c"))],
    );
    assert_eq!(layer.files(), 3);
    assert_eq!(
        layer.mount_points().collect::<Vec<_>>(),
        ["/usr/share/runbox", "/usr/share/runbox/b.txt/data"]
    );
    let fs = Fs::new(
        FileLimits::DEFAULT,
        Some(Arc::new(layer)),
        Box::new(crate::sandbox::clock::CoarseWallClock::new(
            Duration::from_micros(100),
        )),
    );
    let m = fs
        .mounts()
        .iter()
        .find(|m| m.path == "/usr/share/runbox")
        .unwrap()
        .base;
    let mut t = fs.lock();
    let f = t.open(m, "lib/a.txt", OpenHow::default()).unwrap();
    assert_eq!(t.read(f.ino, 0, 100).unwrap().0, b"shared data");
    assert_eq!(t.write(f.ino, Some(0), b"x"), Err(ErrorCode::ReadOnly));
    assert_eq!(t.set_size(f.ino, 0), Err(ErrorCode::ReadOnly));
    t.release(f.ino);
    let write = OpenHow {
        write: true,
        ..OpenHow::default()
    };
    assert_eq!(t.open(m, "b.txt", write), Err(ErrorCode::ReadOnly));
    assert_eq!(t.open(m, "new", create()), Err(ErrorCode::ReadOnly));
    assert_eq!(t.mkdir(m, "d"), Err(ErrorCode::ReadOnly));
    assert_eq!(t.unlink(m, "b.txt"), Err(ErrorCode::ReadOnly));
    assert_eq!(t.list(m.ino).unwrap().len(), 2);
    let data = fs
        .mounts()
        .iter()
        .find(|m| m.path.ends_with("/data"))
        .unwrap()
        .base;
    assert_eq!(data.depth, 5);
    let c = t.open(data, "c", OpenHow::default()).unwrap();
    assert_eq!(t.read(c.ino, 0, 10).unwrap().0, b"c");
    assert_eq!(t.open(data, "d", create()), Err(ErrorCode::ReadOnly));
    t.release(c.ino);
    // The layer costs the run nothing.
    assert_eq!(t.usage(), (0, 0, 0));
}

/// A stream write fails only where `room` says there is none; the `python`
/// guest then asks a one-byte positioned write at the same place for the
/// errno (`xtask/src/write_errors.rs`). The two must agree everywhere:
/// same refusal and same code, or both taking the byte.
#[test]
fn room_and_a_one_byte_write_agree_on_every_refusal() {
    for (total, file) in [(1000, 600), (600, 1000), (700, 700)] {
        for size in [0, 1, 300, 598, 599, 600] {
            for at in [0, 1, 299, 300, 597, 598, 599, 600, 601, 699, 700, 10_000] {
                let fs = fs_with(|l| {
                    l.bytes = total;
                    l.file_bytes = file;
                });
                let wd = fs.workdir();
                let mut t = fs.lock();
                let f = t.open(wd, "f", create()).unwrap();
                if size > 0 && t.set_size(f.ino, size).is_err() {
                    continue;
                }
                let room = t.room(f.ino, Some(at));
                let write = t.write(f.ino, Some(at), b"x");
                let case = format!("total {total}, file cap {file}, size {size}, at {at}");
                match room {
                    Ok(n) => assert!(n > 0 && write == Ok(1), "{case}: {room:?} vs {write:?}"),
                    Err(code) => assert_eq!(write, Err(code), "{case}"),
                }
            }
        }
    }
}
