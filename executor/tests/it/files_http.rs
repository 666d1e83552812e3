//! Files over HTTP against the real executor binary: the request's paths
//! and entry are checked (400 naming the path), quotas on input files (413),
//! files come back in the response, `GET /runtimes` shows the quotas, the
//! shared layer is read-only, and nothing of a run touches the host.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{Value, json};

use testkit::Proc;

async fn post(ex: &Proc, body: &Value) -> (u16, Value) {
    let r = ex.post_json("/execute", body).await;
    (
        r.status.as_u16(),
        serde_json::from_slice(&r.body).expect("a JSON body"),
    )
}

#[track_caller]
fn assert_invalid(got: &(u16, Value), status: u16, code: &str, mentions: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["error"]["code"], code, "{}", got.1);
    let message = got.1["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(mentions), "{message:?} lacks {mentions:?}");
}

#[tokio::test]
async fn bad_paths_entries_and_contents_are_400s_naming_them() {
    let ex = testkit::executor("files-400").ready().await;
    let file = |path: &str| json!({"path": path, "content": "x"});
    for (path, says) in [
        ("../x", "`..`"),
        ("a/../../etc/passwd", "`..`"),
        ("/etc/passwd", "absolute"),
        ("", "empty"),
        (".", "empty"),
        ("a\\b", "separator"),
    ] {
        let got = post(&ex, &json!({"code": "print(1)", "files": [file(path)]})).await;
        assert_invalid(&got, 400, "invalid_request", says);
    }
    let twice = post(&ex, &json!({"files": [file("main.py"), file("./main.py")]})).await;
    assert_invalid(&twice, 400, "invalid_request", "`main.py` is given twice");
    let entry_twice = post(&ex, &json!({"code": "1", "files": [file("main.py")]})).await;
    assert_invalid(&entry_twice, 400, "invalid_request", "is the entry");
    let dir_and_file = post(&ex, &json!({"files": [file("main.py"), file("a"), file("a/b")]})).await;
    assert_invalid(&dir_and_file, 400, "invalid_request", "`a` is also a directory");
    let nothing = post(&ex, &json!({})).await;
    assert_invalid(&nothing, 400, "invalid_request", "`code` or `files`");
    let no_entry = post(&ex, &json!({"files": [file("helper.py")]})).await;
    assert_invalid(&no_entry, 400, "invalid_request", "`main.py` is not among");
    let bad_entry = post(&ex, &json!({"code": "1", "entry": "../main.py"})).await;
    assert_invalid(&bad_entry, 400, "invalid_request", "`entry`");
    let b64 = post(
        &ex,
        &json!({"code": "1", "files": [{"path": "b", "content": "@@", "encoding": "base64"}]}),
    )
    .await;
    assert_invalid(&b64, 400, "invalid_request", "not valid base64");
    let binary_entry = post(
        &ex,
        &json!({"files": [{"path": "main.py", "content": "/w==", "encoding": "base64"}]}),
    )
    .await;
    assert_invalid(&binary_entry, 400, "invalid_request", "not UTF-8");
    let unknown = post(
        &ex,
        &json!({"code": "1", "files": [{"path": "a", "content": "", "mode": 7}]}),
    )
    .await;
    assert_invalid(&unknown, 400, "invalid_request", "mode");
    // Input files past a quota: 413, and the run never started.
    let big = post(
        &ex,
        &json!({"code": "1", "files": [{"path": "big", "content": "x".repeat(2000)}], "limits": {"file_bytes": 1000}}),
    )
    .await;
    assert_invalid(&big, 413, "payload_too_large", "`big`");
    // After all of that, the next request is served.
    let ok = post(&ex, &json!({"code": "print('still here')"})).await;
    assert_eq!((ok.0, ok.1["stdout"].as_str()), (200, Some("still here\n")));
}

#[tokio::test]
async fn a_multi_file_program_runs_and_its_files_come_back() {
    let ex = testkit::executor("files-200").ready().await;
    let png_ish: Vec<u8> = vec![0x89, b'P', b'N', b'G', 0, 0xff];
    let (status, body) = post(
        &ex,
        &json!({
            "entry": "app/main.py",
            "files": [
                {"path": "app/main.py", "content": "import util\nutil.go()\n"},
                {"path": "app/util.py", "content": "def go():\n    data = open('/sandbox/in.bin', 'rb').read()\n    open('out.bin', 'wb').write(data[::-1])\n    open('report.txt', 'w').write('ok')\n    print(len(data))\n"},
                {"path": "in.bin", "content": base64(&png_ish), "encoding": "base64"},
            ],
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(body["stdout"], "6\n");
    let files = body["files"].as_array().unwrap();
    let paths: Vec<&str> = files.iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["out.bin", "report.txt"]);
    let reversed: Vec<u8> = png_ish.iter().rev().copied().collect();
    assert_eq!(files[0]["encoding"], "base64");
    assert_eq!(files[0]["content"], base64(&reversed));
    assert_eq!(files[0]["size"], 6);
    assert_eq!(
        files[1],
        json!({"path": "report.txt", "size": 2, "encoding": "utf8", "content": "ok"})
    );
    assert_eq!(body["truncated"]["files"], false);
    // Over the output cap: listed, not returned.
    let (_, capped) = post(
        &ex,
        &json!({"code": "open('big.txt', 'w').write('x' * 5000)", "limits": {"output_files_bytes": 4999}}),
    )
    .await;
    assert_eq!(capped["truncated"]["files"], true, "{capped}");
    assert_eq!(
        capped["files"],
        json!([{"path": "big.txt", "size": 5000, "encoding": null, "content": null}])
    );
}

#[tokio::test]
async fn runtimes_show_the_file_quotas_and_requests_are_clamped_to_them() {
    let ex = testkit::executor("files-limits")
        .envs(&[
            ("EXECUTOR_MAX_FILES_COUNT", "50"),
            ("EXECUTOR_DEFAULT_FILES_COUNT", "20"),
        ])
        .ready()
        .await;
    let r = ex.get("/runtimes").await;
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    let limits = &v["runtimes"][0]["limits"];
    for key in [
        "files_bytes",
        "files_count",
        "file_bytes",
        "open_files",
        "path_bytes",
        "path_depth",
        "output_files_bytes",
    ] {
        assert!(limits["default"][key].as_u64().is_some(), "{key}: {limits}");
        assert!(limits["max"][key].as_u64().is_some(), "{key}: {limits}");
    }
    assert_eq!(
        (
            limits["default"]["files_count"].as_u64(),
            limits["max"]["files_count"].as_u64()
        ),
        (Some(20), Some(50))
    );
    let make = "import errno\nn = 0\ntry:\n    while True:\n        open(f'f{n}', 'w').close(); n += 1\nexcept OSError as e:\n    print(n, errno.errorcode[e.errno])\n";
    // Asked for more than the maximum: clamped to 50 (main.py is one).
    let (_, body) = post(&ex, &json!({"code": make, "limits": {"files_count": 1000}})).await;
    assert_eq!(body["stdout"], "49 ENOSPC\n", "{body}");
    let (_, body) = post(&ex, &json!({"code": make})).await;
    assert_eq!(body["stdout"], "19 ENOSPC\n", "{body}");
}

#[tokio::test]
async fn the_shared_directory_is_read_only_for_every_run() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/table.csv"), "a,b\n1,2\n").unwrap();
    let ex = testkit::executor("files-shared")
        .env("EXECUTOR_SHARED_DIR", dir.path())
        .ready()
        .await;
    let code = "import errno, os\nprint(open('/shared/data/table.csv').read().split()[1])\nfor f in [lambda: open('/shared/data/table.csv', 'w'), lambda: open('/shared/new', 'w'), lambda: os.remove('/shared/data/table.csv')]:\n    try:\n        f()\n    except OSError as e:\n        print(errno.errorcode[e.errno])\n";
    let (_, body) = post(&ex, &json!({"code": code})).await;
    assert_eq!(body["stdout"], "1,2\nEROFS\nEROFS\nEROFS\n", "{body}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("data/table.csv")).unwrap(),
        "a,b\n1,2\n"
    );
}

/// Regular files (not sockets, pipes, anon inodes) the process holds open.
fn open_files(pid: u32) -> BTreeSet<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the executor's fd table")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|p| p.starts_with('/') && !p.starts_with("/dev/"))
        .collect()
}

fn entries(dir: &Path) -> Vec<String> {
    walk(dir).into_iter().map(|p| p.display().to_string()).collect()
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        out.push(e.path());
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        }
    }
    out
}

/// Every file case of the suite, over HTTP, with the executor's `TMPDIR`
/// and `HOME` pointed at an empty directory: it is still empty after, and
/// the process holds no file it did not hold before.
#[tokio::test]
async fn no_run_writes_to_the_host() {
    let home = tempfile::tempdir().unwrap();
    let ex = testkit::executor("files-host")
        .env("TMPDIR", home.path())
        .env("HOME", home.path())
        .ready()
        .await;
    let warm = post(&ex, &json!({"code": "open('w', 'w').write('warm')"})).await;
    assert_eq!(warm.0, 200);
    let before = open_files(ex.pid());
    let cases = [
        "import tempfile, os\nwith tempfile.NamedTemporaryFile(delete=False) as f: f.write(b'x' * 100000)\nos.makedirs('a/b/c')\nopen('a/b/c/d', 'w').write('d')\nos.rename('a', 'z')",
        "import os\nwhile True: os.mkdir('d'); os.chdir('d')",
        "n = 0\nwhile True:\n    open(f'f{n}', 'w').write('x'); n += 1",
        "with open('s', 'wb') as f:\n    f.seek(2**40); f.write(b'x')",
        "fs = [open('main.py') for _ in range(10000)]",
        "import os\nos.remove('main.py')\nopen('/tmp/t', 'w').write('t' * 10**6)",
        "open('../../etc/passwd', 'w')",
        "import shutil\nshutil.copytree('/sandbox', '/tmp/copy')\nprint(os.listdir('/tmp/copy'))",
    ];
    for code in cases {
        let (status, body) = post(&ex, &json!({"code": code})).await;
        assert_eq!(status, 200, "{code}: {body}");
    }
    assert_eq!(
        entries(home.path()),
        Vec::<String>::new(),
        "the run wrote to the host"
    );
    assert_eq!(open_files(ex.pid()), before, "the process opened files for runs");
}

fn base64(bytes: &[u8]) -> String {
    runbox_api::InputFile::binary("x", bytes).content
}
