//! The run's in-memory filesystem through the guest: files in and out,
//! multi-file programs, every quota just under and just over, and the
//! hostile cases (traversal, exhaustion, the canary across runs).

use executor::sandbox::{FileLimits, Limits, Status};

use super::common::*;

fn with_files(f: impl FnOnce(&mut FileLimits)) -> Limits {
    let mut l = limits();
    f(&mut l.files);
    l
}

#[tokio::test]
async fn a_run_writes_files_and_gets_them_back() {
    let o = run(r#"
import os, tempfile
open('out.txt', 'w').write('hello')
os.makedirs('reports/2026', exist_ok=True)
with open('reports/2026/data.bin', 'wb') as f:
    f.write(bytes(range(256)))
with open('log.txt', 'a') as f:
    f.write('one\n')
with open('log.txt', 'a') as f:
    f.write('two\n')
with tempfile.NamedTemporaryFile('w', delete=False) as t:
    t.write('scratch')
print(os.getcwd(), t.name.startswith('/tmp/'), open(t.name).read())
print(sorted(os.listdir('.')), sorted(os.listdir('/')))
"#)
    .await;
    assert_status(&o, Status::Ok);
    assert_eq!(
        stdout(&o),
        "/sandbox True scratch\n['log.txt', 'main.py', 'out.txt', 'reports'] ['sandbox', 'tmp']\n"
    );
    let paths: Vec<&str> = o.files.iter().map(|f| f.path.as_str()).collect();
    // The entry was not changed, and /tmp is not the working directory.
    assert_eq!(paths, ["log.txt", "out.txt", "reports/2026/data.bin"]);
    assert_eq!(output_file(&o, "out.txt").as_deref(), Some("hello"));
    assert_eq!(output_file(&o, "log.txt").as_deref(), Some("one\ntwo\n"));
    let bin = o.files.iter().find(|f| f.path.ends_with(".bin")).unwrap();
    assert_eq!(bin.encoding, Some(runbox_api::Encoding::Base64));
    assert_eq!(bin.bytes().unwrap(), (0..=255).collect::<Vec<u8>>());
    assert!(!o.files_truncated);
}

#[tokio::test]
async fn a_multi_file_program_imports_its_own_modules_and_reads_its_data() {
    let main = b"import helper\nfrom pkg import tools\nimport sys, os\nprint(helper.greet('x'), tools.twice(21))\nprint(open('data/in.csv').read().splitlines()[1])\nprint(__file__, sys.argv[0], sys.path[0])\nprint(sorted(os.listdir('pkg')))\n";
    let files: &[(&str, &[u8])] = &[
        ("main.py", main),
        ("helper.py", b"def greet(n):\n    return 'hello ' + n\n"),
        ("pkg/__init__.py", b""),
        ("pkg/tools.py", b"def twice(v):\n    return 2 * v\n"),
        ("data/in.csv", b"a,b\n1,2\n"),
    ];
    let o = run_files(files, "main.py", limits()).await;
    assert_status(&o, Status::Ok);
    assert_eq!(
        stdout(&o),
        "hello x 42\n1,2\nmain.py main.py /sandbox\n['__init__.py', 'tools.py']\n"
    );
    // Importing wrote no `__pycache__`; nothing was changed, nothing returns.
    assert_eq!(o.files, []);
    // Another entry in a subdirectory: its directory leads `sys.path`.
    let o = run_files(
        &[
            ("app/run.py", b"import sys, lib\nprint(sys.path[0], lib.V)\n"),
            ("app/lib.py", b"V = 7\n"),
        ],
        "app/run.py",
        limits(),
    )
    .await;
    assert_status(&o, Status::Ok);
    assert_eq!(stdout(&o), "/sandbox/app 7\n");
}

#[tokio::test]
async fn changed_input_files_come_back_and_deleted_ones_do_not() {
    let files: &[(&str, &[u8])] = &[
        (
            "main.py",
            b"import os\nopen('a.txt', 'a').write('+')\nos.remove('b.txt')\nos.rename('c.txt', 'd.txt')\n",
        ),
        ("a.txt", b"a"),
        ("b.txt", b"b"),
        ("c.txt", b"c"),
        ("e.txt", b"e"),
    ];
    let o = run_files(files, "main.py", limits()).await;
    assert_status(&o, Status::Ok);
    let got: Vec<(&str, String)> = o
        .files
        .iter()
        .map(|f| (f.path.as_str(), String::from_utf8(f.bytes().unwrap()).unwrap()))
        .collect();
    assert_eq!(got, [("a.txt", "a+".to_owned()), ("d.txt", "c".to_owned())]);
}

#[tokio::test]
async fn the_entry_may_be_renamed_or_removed_while_it_runs() {
    let o = run(
        "import os\nos.rename('main.py', 'moved.py')\nos.remove('moved.py')\nprint(os.listdir('.'))\nopen('after.txt', 'w').write('ok')\n",
    )
    .await;
    assert_status(&o, Status::Ok);
    assert_eq!(stdout(&o), "[]\n");
    assert_eq!(output_file(&o, "after.txt").as_deref(), Some("ok"));
    let o = run("import os\nos.rename('main.py', 'kept.py')\n").await;
    assert_status(&o, Status::Ok);
    assert_eq!(
        o.files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
        ["kept.py"]
    );
    assert_still_serves().await;
}

#[tokio::test]
async fn paths_never_leave_the_sandbox() {
    let o = run(r#"
import os, errno
def outcome(f, *a):
    try:
        r = f(*a)
        return 'ok' if r is None else repr(r)
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
print(outcome(open, '../../etc/passwd'))
print(outcome(open, '/etc/passwd'))
print(outcome(open, '/sandbox/../../etc/passwd'))
print(outcome(os.listdir, '/'))
print(outcome(os.listdir, '/etc'))
print(outcome(os.chdir, '..'))
print(os.getcwd())
for _ in range(50):
    try:
        os.chdir('..')
    except OSError:
        pass
print(os.getcwd(), sorted(os.listdir('.')))
print(outcome(open, '/escape.txt', 'w'))
print(outcome(os.mkdir, '/sandbox2'))
print(outcome(os.rename, '/sandbox', '/sandbox/x'))
print(outcome(os.symlink, '/etc/passwd', 'link'))
print(outcome(os.link, 'main.py', 'hard'))
print(outcome(open, b'\xff.txt', 'w'))
"#)
    .await;
    assert_status(&o, Status::Ok);
    assert_eq!(
        stdout(&o),
        "EPERM\nENOENT\nEPERM\n['sandbox', 'tmp']\nENOENT\nEPERM\n/sandbox\n/sandbox ['main.py']\n\
         EACCES\nEACCES\nEINVAL\nEPERM\nEPERM\nEILSEQ\n"
    );
    assert_eq!(o.files, []);
    assert_still_serves().await;
}

/// A write the quota cannot take is cut at the quota (a short write, as on
/// a disk filling up) and the next one fails with `ENOSPC`; making an entry
/// then fails with `ENOSPC` too. (The guest's libc alone would say `EIO`
/// for the write: `xtask/src/write_errors.rs` is what makes it exact.)
#[tokio::test]
async fn total_bytes_hold_just_under_and_fail_just_over() {
    // Names count too: `main.py` (7) and `f` (1) are charged with the data.
    let quota = 1 << 20;
    let code = |n: u64| {
        format!(
            "import errno, os\ndef e(x): return errno.errorcode[x.errno]\ntry:\n    with open('f', 'wb') as f: f.write(b'x' * int('{n:08}'))\n    print('ok')\nexcept OSError as x:\n    print(e(x), os.stat('f').st_size)\ntry:\n    open('g', 'w')\nexcept OSError as x:\n    print(e(x))\n"
        )
    };
    let room = |code: &str| quota - code.len() as u64 - 7 - 1;
    let under = code(0);
    let n = room(&under);
    let (under, over) = (code(n), code(n + 1));
    let limits = with_files(|f| f.bytes = quota);
    // The code's length depends on n's digits; both have the same.
    assert_eq!(under.len(), over.len());
    let o = run_job(&under, "", &[], limits).await;
    assert_status(&o, Status::Ok);
    // All of it fits; nothing is left for even a one-letter name.
    assert_eq!(stdout(&o), "ok\nENOSPC\n");
    assert_eq!(o.files[0].size, n);
    let o = run_job(&over, "", &[], limits).await;
    assert_eq!(stdout(&o), format!("ENOSPC {n}\nENOSPC\n"));
    assert_still_serves().await;
}

#[tokio::test]
async fn a_sparse_file_is_charged_at_its_size() {
    let code = r#"
import errno, os
def sparse(offset):
    try:
        with open('sparse', 'wb') as f:
            f.seek(offset)
            f.write(b'!')
        return str(os.stat('sparse').st_size)
    except OSError as e:
        return errno.errorcode[e.errno]
print(sparse(10 * 2**30), sparse(2**20 - 1), sparse(2**20))
try:
    os.truncate('sparse', 2**20 + 1)
except OSError as e:
    print(errno.errorcode[e.errno])
"#;
    let limits = with_files(|f| {
        f.file_bytes = 1 << 20;
        f.bytes = 8 << 20;
    });
    let o = run_job(code, "", &[], limits).await;
    assert_status(&o, Status::Ok);
    // 10 GiB is past the file size cap; 1 MiB exactly fits; one more does
    // not, written or truncated to.
    assert_eq!(stdout(&o), "EFBIG 1048576 EFBIG\nEFBIG\n");
    // Under a smaller total (and the default, larger, file cap), 10 GiB is
    // still past the file cap, and the 1 MiB file is a full disk.
    let limits = with_files(|f| f.bytes = 1 << 19);
    let o = run_job(code, "", &[], limits).await;
    assert_eq!(stdout(&o), "EFBIG ENOSPC ENOSPC\nENOSPC\n");
    assert_still_serves().await;
}

/// Every way of writing past a quota gets the exact errno, with nothing
/// written and the position unchanged: `os.write` on a raw descriptor,
/// an unbuffered append, a text file flushed at close; a write inside the
/// file (no growth) still succeeds. stdout is unaffected.
#[tokio::test]
async fn writes_past_a_quota_fail_exactly_in_every_mode() {
    let code = r#"
import errno, os
def e(f):
    try:
        return f()
    except OSError as x:
        return errno.errorcode[x.errno]
with open('full', 'wb') as f:
    f.write(b'x' * 4096)
fd = os.open('full', os.O_WRONLY)
os.lseek(fd, 0, os.SEEK_END)
print(e(lambda: os.write(fd, b'y')), os.lseek(fd, 0, os.SEEK_CUR))
def append():
    with open('full', 'ab', buffering=0) as f:
        return f.write(b'y')
print(e(append))
def text():
    with open('full', 'a') as f:
        f.write('y' * 10)
print(e(text))
os.lseek(fd, 0, os.SEEK_SET)
print(os.write(fd, b'z'), os.stat('full').st_size)
os.write(1, b'done\n')
"#;
    let limits = with_files(|f| f.file_bytes = 4096);
    let o = run_job(code, "", &[], limits).await;
    assert_status(&o, Status::Ok);
    assert_eq!(stdout(&o), "EFBIG 4096\nEFBIG\nEFBIG\n1 4096\ndone\n");
    let full = o
        .files
        .iter()
        .find(|f| f.path == "full")
        .expect("the file is returned");
    assert_eq!(full.size, 4096);
    assert_still_serves().await;
}

#[tokio::test]
async fn truncates_renames_and_unlinks_give_their_bytes_back() {
    let code = r#"
import os
block = b'x' * (600 * 1024)
for i in range(20):
    open('a', 'wb').write(block)
    os.truncate('a', 0)
    open('b', 'wb').write(block)
    os.rename('b', 'c')
    os.remove('c')
open('a', 'wb').write(block)
print('ok', os.stat('a').st_size)
"#;
    // Twenty rounds of 1.2 MB each in a 1 MiB + 100 KiB quota: only
    // accounting that returns space lets it finish.
    let limits = with_files(|f| f.bytes = (1 << 20) + (100 << 10));
    let o = run_job(code, "", &[], limits).await;
    assert_status(&o, Status::Ok);
    assert_eq!(stdout(&o), "ok 614400\n");
}

#[tokio::test]
async fn many_tiny_files_stop_at_the_count_with_enospc() {
    let code = r#"
import errno, os
made = 0
try:
    for i in range(100000):
        open(f't{i}', 'w').close()
        made += 1
except OSError as e:
    print(made, errno.errorcode[e.errno])
os.remove('t0')
open('again', 'w').close()
print('freed one, made one')
"#;
    // `main.py` is one of the count.
    let o = run_job(code, "", &[], with_files(|f| f.count = 500)).await;
    assert_status(&o, Status::Ok);
    assert_eq!(stdout(&o), "499 ENOSPC\nfreed one, made one\n");
    assert_still_serves().await;
}

/// The largest count a request may ask for, filled: 100 000 tiny files
/// (the loop makes one more than fits).
#[tokio::test]
async fn a_hundred_thousand_tiny_files_fill_the_largest_count() {
    let code = "import errno\nmade = 0\ntry:\n    for i in range(100001):\n        open(f't{i}', 'w').close()\n        made += 1\nexcept OSError as e:\n    print(made, errno.errorcode[e.errno])\n";
    let limits = Limits {
        timeout: std::time::Duration::from_secs(30),
        fuel: 200_000_000_000,
        ..with_files(|f| f.count = FileLimits::MAX.count)
    };
    let o = run_job(code, "", &[], limits).await;
    assert_status(&o, Status::Ok);
    assert_eq!(stdout(&o), "99999 ENOSPC\n");
    // Each is an output file, but listing them all would be ~7 MB of JSON:
    // the listing is charged to `output_files_bytes` too (1 MiB), and what
    // does not fit is left out and flagged.
    let listed: u64 = o
        .files
        .iter()
        .map(|f| f.path.len() as u64 + executor::sandbox::OUTPUT_FILE_ENTRY_BYTES)
        .sum();
    let budget = FileLimits::DEFAULT.output_bytes;
    assert!(o.files_truncated);
    assert!(
        listed <= budget && listed + 6 + executor::sandbox::OUTPUT_FILE_ENTRY_BYTES > budget,
        "{listed}"
    );
    assert_still_serves().await;
}

#[tokio::test]
async fn deep_trees_stop_at_the_depth_and_long_paths_at_their_length() {
    let code = r#"
import errno, os
depth = 0
try:
    while True:
        os.mkdir('d')
        os.chdir('d')
        depth += 1
except OSError as e:
    print(depth, errno.errorcode[e.errno])
os.chdir('/sandbox')
try:
    open('n' * 300, 'w')
except OSError as e:
    print(errno.errorcode[e.errno])
"#;
    // `/sandbox` is depth 1: 9 more levels fit in 10.
    let o = run_job(code, "", &[], with_files(|f| f.depth = 10)).await;
    assert_status(&o, Status::Ok);
    assert_eq!(stdout(&o), "9 ENAMETOOLONG\nENAMETOOLONG\n");
    // `/sandbox/d/d/...`: 8 + 2 per level; a 40-byte cap stops it at 15.
    let o = run_job(code, "", &[], with_files(|f| f.path_bytes = 40)).await;
    assert_eq!(stdout(&o).lines().next(), Some("16 ENAMETOOLONG"));
    assert_still_serves().await;
}

#[tokio::test]
async fn descriptors_stop_at_the_quota_and_come_back_when_closed() {
    let code = r#"
import errno, os
fds = []
try:
    for i in range(5000):
        fds.append(os.open(f'f{i}', os.O_CREAT | os.O_WRONLY))
except OSError as e:
    print(len(fds), errno.errorcode[e.errno])
for fd in fds:
    os.close(fd)
fds = [os.open('f0', os.O_RDONLY) for _ in range(10)]
print('reopened', len(fds))
"#;
    let o = run_job(code, "", &[], with_files(|f| f.open = 40)).await;
    assert_status(&o, Status::Ok);
    assert_eq!(stdout(&o), "40 EDQUOT\nreopened 10\n");
    assert_still_serves().await;
}

#[tokio::test]
async fn an_unlinked_open_file_lives_until_closed() {
    let o = run(
        "import os\nf = open('t', 'w+')\nf.write('kept')\nf.flush()\nos.remove('t')\nf.seek(0)\nprint(f.read(), os.path.exists('t'))\n",
    )
    .await;
    assert_status(&o, Status::Ok);
    assert_eq!(stdout(&o), "kept False\n");
    assert_eq!(o.files, []);
}

#[tokio::test]
async fn output_files_past_their_cap_are_listed_without_content() {
    let code = "open('a.txt', 'w').write('a' * 600)\nopen('b.txt', 'w').write('b' * 600)\nopen('c.txt', 'w').write('c' * 300)\n";
    // Each listed file costs its path and an entry's JSON besides its content.
    let entry = 5 + executor::sandbox::OUTPUT_FILE_ENTRY_BYTES;
    let o = run_job(code, "", &[], with_files(|f| f.output_bytes = 1000 + 3 * entry)).await;
    assert_status(&o, Status::Ok);
    assert!(o.files_truncated);
    let shape: Vec<(&str, u64, bool)> = o
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.size, f.content.is_some()))
        .collect();
    // In path order while the budget lasts; a later small one still fits.
    assert_eq!(
        shape,
        [("a.txt", 600, true), ("b.txt", 600, false), ("c.txt", 300, true)]
    );
    // Exactly at the cap, nothing is left out; one byte less and the last
    // content is.
    let exact = 1500 + 3 * entry;
    let o = run_job(code, "", &[], with_files(|f| f.output_bytes = exact)).await;
    assert!(!o.files_truncated && o.files.iter().all(|f| f.content.is_some()));
    let o = run_job(code, "", &[], with_files(|f| f.output_bytes = exact - 1)).await;
    assert!(o.files_truncated && o.files[2].content.is_none());
    // The budget counts bytes as sent: 200 control bytes are 1200 in JSON.
    let ctl = "open('c.txt', 'w').write(chr(1) * 200)\n";
    let o = run_job(ctl, "", &[], with_files(|f| f.output_bytes = 1000)).await;
    assert!(o.files_truncated && o.files[0].content.is_none() && o.files[0].size == 200);
    let o = run_job(ctl, "", &[], with_files(|f| f.output_bytes = 1200 + entry)).await;
    assert!(!o.files_truncated && o.files[0].content.as_deref() == Some(&"\u{1}".repeat(200)[..]));
    assert_still_serves().await;
}

#[tokio::test]
async fn input_files_past_a_quota_are_refused_before_running() {
    let job = executor::sandbox::Job {
        files: vec![
            ("main.py".to_owned(), b"print(1)".to_vec()),
            ("big.bin".to_owned(), vec![0; 2000]),
        ],
        ..executor::sandbox::Job::code("", with_files(|f| f.file_bytes = 1000))
    };
    let err = sandbox().await.execute(&job).await.unwrap_err();
    assert!(
        matches!(&err, executor::sandbox::SandboxError::InputFiles { path, .. } if path == "big.bin"),
        "{err}"
    );
}

/// The canary: what one run writes, anywhere it can, no later or concurrent
/// run sees.
#[tokio::test]
async fn no_file_survives_its_run_or_reaches_another() {
    let plant = "import os, time\nopen('canary.txt', 'w').write('planted')\nopen('/tmp/canary', 'w').write('planted')\nos.makedirs('/tmp/d/e')\ntime.sleep(0.2)\nprint('planted')\n";
    let look = "import os\nprint(sorted(os.listdir('.')), sorted(os.listdir('/tmp')), os.path.exists('canary.txt'))\n";
    let (a, b) = tokio::join!(run(plant), run(look));
    assert_eq!(stdout(&a), "planted\n");
    assert_eq!(stdout(&b), "['main.py'] [] False\n");
    let after = run(look).await;
    assert_eq!(stdout(&after), "['main.py'] [] False\n");
}

#[tokio::test]
async fn file_metadata_behaves_as_posix() {
    let o = run(r#"
import os, stat, time
open('f', 'w').write('abc')
s = os.stat('f')
print(stat.S_ISREG(s.st_mode), s.st_size, s.st_nlink, abs(s.st_mtime - time.time()) < 60)
os.utime('f', (1_000_000_000, 1_000_000_000))
print(int(os.stat('f').st_mtime))
os.mkdir('d')
print(stat.S_ISDIR(os.stat('d').st_mode), os.path.isdir('d'), os.path.isfile('d'))
open('d/x', 'w').close()
for f, a in [(os.rmdir, ('d',)), (os.remove, ('d',)), (os.mkdir, ('d',)), (os.rename, ('f', 'd'))]:
    try:
        f(*a)
    except OSError as e:
        print(type(e).__name__)
os.remove('d/x'); os.rmdir('d')
with open('g', 'w+b') as g:
    g.write(b'0123456789'); g.seek(3); print(g.read(3)); g.truncate(4); g.seek(0, 2); print(g.tell())
print(sorted(os.listdir('.')))
"#)
    .await;
    assert_status(&o, Status::Ok);
    assert_eq!(
        stdout(&o),
        "True 3 1 True\n1000000000\nTrue True False\nOSError\nIsADirectoryError\nFileExistsError\nIsADirectoryError\nb'345'\n4\n['f', 'g', 'main.py']\n"
    );
}

#[tokio::test]
async fn the_sandbox_still_serves_after_every_filesystem_attack() {
    let attacks = [
        "while True: open(f'{__import__(\"uuid\").uuid4()}', 'w').write('x' * 4096)",
        "import os\nwhile True:\n    os.mkdir('d'); os.chdir('d')",
        "fs = []\nwhile True: fs.append(open('main.py'))",
        "with open('s', 'wb') as f:\n    f.seek(2**62)\n    f.write(b'x')",
    ];
    for attack in attacks {
        let o = run(attack).await;
        assert_eq!(o.status, Status::Error, "{attack}: {}", stderr(&o));
        assert!(stderr(&o).contains("Error"), "{attack}: {}", stderr(&o));
        assert_still_serves().await;
    }
}
