//! The `python-scientific` runtime in-process: its packages with known
//! results, plots as PNG files, the wasm32 differences users meet, every
//! limit just under and just over, package-shaped attacks, and isolation
//! between runs.

use std::time::Duration;

use executor::runtimes::Runtime;
use executor::runtimes::scientific::load_scientific;
use executor::sandbox::{Job, Limits, Outcome, Status};
use runbox_api::LimitKind;
use tokio::sync::OnceCell;

use super::common::{assert_status, output_file, server_defaults, stderr, stdout};

static RUNTIME: OnceCell<executor::runtimes::Loaded> = OnceCell::const_new();

/// The runtime as the server loads it (`EXECUTOR_SCIENTIFIC_DIR`, set by
/// `cargo xtask test`; `cargo xtask guest` installs it).
async fn runtime() -> &'static executor::runtimes::Loaded {
    RUNTIME
        .get_or_init(|| async {
            load_scientific(&server_defaults())
                .await
                .unwrap_or_else(|e| panic!("loading python-scientific (run `cargo xtask guest`): {e}"))
        })
        .await
}

/// The runtime's own defaults for a request that names no limit.
async fn defaults() -> Limits {
    runtime().await.describe().policy.default
}

async fn run_job(job: Job) -> Outcome {
    runtime().await.execute(&job).await.expect("no host fault")
}

async fn run_limited(code: &str, limits: Limits) -> Outcome {
    run_job(Job::code(code, limits)).await
}

async fn run(code: &str) -> Outcome {
    run_limited(code, defaults().await).await
}

/// After a hostile program: the runtime still runs ordinary code.
async fn assert_still_serves() {
    let o = run("import numpy as np\nprint(int(np.arange(4).sum()))").await;
    assert_status(&o, Status::Ok);
    assert_eq!(stdout(&o), "6\n");
}

#[tokio::test]
async fn it_describes_itself_with_its_bundled_packages() {
    let d = runtime().await.describe();
    assert_eq!(d.name, "python-scientific");
    assert!(d.version.starts_with("3.15"), "{}", d.version);
    for package in [
        "numpy",
        "pandas",
        "scipy",
        "scikit-learn",
        "matplotlib",
        "statsmodels",
    ] {
        assert!(
            d.packages.contains_key(package),
            "{package} missing: {:?}",
            d.packages
        );
    }
    let o = run("import numpy, pandas\nprint(numpy.__version__, pandas.__version__)").await;
    assert_status(&o, Status::Ok);
    assert_eq!(
        stdout(&o),
        format!("{} {}\n", d.packages["numpy"], d.packages["pandas"])
    );
    // Its own defaults: more memory, fuel and time than `python`'s, under
    // the same maxima.
    assert_eq!(d.policy.default.memory_bytes, 256 << 20);
    assert!(d.policy.default.memory_bytes <= d.policy.max.memory_bytes);
    assert!(d.policy.default.timeout <= d.policy.max.timeout);
}

#[tokio::test]
async fn numpy_scipy_and_scikit_learn_compute_known_results() {
    let o = run(r#"
import numpy as np
from scipy import integrate, optimize
from sklearn.linear_model import LinearRegression
x = np.linalg.solve([[2.0, 1.0], [1.0, 3.0]], [3.0, 5.0])
print(np.round(x, 6).tolist())
print(np.round(np.abs(np.fft.fft([1, 0, -1, 0])), 6).tolist())
print(round(integrate.quad(lambda t: t * t, 0, 1)[0], 9))
print(round(float(optimize.brentq(lambda t: t * t - 2, 0, 2)), 9))
X = np.arange(10.0).reshape(-1, 1)
model = LinearRegression().fit(X, 3 * X.ravel() + 1)
print(round(float(model.coef_[0]), 6), round(float(model.intercept_), 6))
"#)
    .await;
    assert_status(&o, Status::Ok);
    assert_eq!(
        stdout(&o),
        "[0.8, 1.4]\n[0.0, 2.0, 0.0, 2.0]\n0.333333333\n1.414213562\n3.0 1.0\n"
    );
}

#[tokio::test]
async fn pandas_groups_and_reads_the_runs_own_csv() {
    let job = Job {
        files: vec![
            ("main.py".to_owned(), b"import pandas as pd\ndf = pd.read_csv('sales.csv')\nprint(df.groupby('region')['amount'].sum().to_dict())\ndf.describe().to_csv('summary.csv')\n".to_vec()),
            ("sales.csv".to_owned(), b"region,amount\nnorth,10\nsouth,5\nnorth,7\n".to_vec()),
        ],
        ..Job::code("", defaults().await)
    };
    let o = run_job(job).await;
    assert_status(&o, Status::Ok);
    assert_eq!(stdout(&o), "{'north': 17, 'south': 5}\n");
    let summary = output_file(&o, "summary.csv").expect("the program's own output file");
    assert!(summary.starts_with(",amount\ncount,3.0\n"), "{summary}");
}

/// Width and height from a PNG's IHDR chunk, after checking its signature.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert_eq!(&bytes[12..16], b"IHDR");
    let be = |b: &[u8]| u32::from_be_bytes(b.try_into().unwrap());
    (be(&bytes[16..20]), be(&bytes[20..24]))
}

#[tokio::test]
async fn shown_and_open_figures_come_back_as_pngs_of_their_size() {
    let o = run(r#"
import matplotlib
import matplotlib.pyplot as plt
print(matplotlib.get_backend())
plt.plot([1, 2, 3], [3, 1, 2])
plt.title("shown")
plt.show()
plt.figure(figsize=(3, 2), dpi=50)
plt.bar(["a", "b"], [1, 2])
print(plt.get_fignums())
"#)
    .await;
    assert_status(&o, Status::Ok);
    // The shown figure was closed: the next one is number 1 again.
    assert_eq!(stdout(&o), "module://runbox_plots\n[1]\n");
    let paths: Vec<&str> = o.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["figure-1.png", "figure-2.png"]);
    // matplotlib's default figure is 6.4 × 4.8 inches at 100 dpi.
    assert_eq!(png_size(&o.files[0].bytes().unwrap()), (640, 480));
    assert_eq!(png_size(&o.files[1].bytes().unwrap()), (150, 100));
    assert_eq!(stderr(&o), "");
}

#[tokio::test]
async fn figures_past_the_caps_are_closed_unsaved_with_a_note() {
    // Just under the pixel cap (4096 × 4096) and just over it; 16 figures
    // saved, the 17th refused.
    let o = run(r#"
import matplotlib.pyplot as plt
plt.figure(figsize=(40.96, 40.96), dpi=100)
plt.figure(figsize=(40.97, 40.96), dpi=100)
plt.show()
for i in range(16):
    plt.figure(figsize=(1, 1), dpi=10)
print(len(plt.get_fignums()))
"#)
    .await;
    assert_status(&o, Status::Ok);
    let names: Vec<&str> = o.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(names.len(), 16, "{names:?}");
    assert_eq!(png_size(&o.files[0].bytes().unwrap()), (4096, 4096));
    let err = stderr(&o);
    assert!(err.contains("figure 2 not saved: 4097×4096 pixels"), "{err}");
    assert!(err.contains("a run saves at most 16 figures"), "{err}");
}

#[tokio::test]
async fn wasm32_differences_are_what_the_docs_say() {
    let o = run(r#"
import numpy as np, threading, sys
print(np.arange(3).dtype, np.array([2**31 - 1]).dtype, np.intp(0).itemsize)
print(np.array([2**31 - 1]) + 1)
try:
    threading.Thread(target=print).start()
except RuntimeError as e:
    print("threads:", e)
print(sys.platform, sys.maxsize == 2**31 - 1)
try:
    np.zeros(2).tofile("a.bin")
except OSError as e:
    print("tofile:", e.strerror)
np.save("b.npy", np.arange(3))
print(np.load("b.npy").tolist())
"#)
    .await;
    assert_status(&o, Status::Ok);
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "int32 int32 4");
    assert_eq!(lines[1], "[-2147483648]");
    assert!(lines[2].starts_with("threads: "), "{out}");
    assert_eq!(lines[3], "wasi True");
    // `tofile` duplicates the descriptor, which WASI cannot; `np.save` works.
    assert_eq!(lines[4], "tofile: Not supported");
    assert_eq!(lines[5], "[0, 1, 2]");
}

#[tokio::test]
async fn the_program_sees_its_files_and_nothing_of_the_host() {
    let o = run(r#"
import os, socket, sys
print(os.getcwd(), sys.argv, sorted(os.listdir("/")))
for path in ("/etc/passwd", "/proc/self/environ", "/root"):
    try:
        open(path).read()
        print("read", path)
    except OSError as e:
        print(type(e).__name__)
try:
    open("/usr/local/lib/python315.zip", "ab")
    print("wrote the stdlib")
except OSError as e:
    print(type(e).__name__)
try:
    socket.create_connection(("127.0.0.1", 80), timeout=1)
    print("connected")
except Exception as e:
    # The interpreter has no resolver (`_socket.getaddrinfo`) and the
    # host grants no sockets.
    print("no network")
print(sorted(k for k in os.environ))
"#)
    .await;
    assert_status(&o, Status::Ok);
    assert_eq!(
        stdout(&o),
        "/sandbox ['main.py'] ['sandbox', 'tmp']\nFileNotFoundError\nFileNotFoundError\nFileNotFoundError\n\
         OSError\nno network\n['MPLBACKEND', 'MPLCONFIGDIR']\n"
    );
}

#[tokio::test]
async fn stdin_args_exit_codes_and_tracebacks_are_as_for_python() {
    let job = Job {
        stdin: b"ada\n".to_vec(),
        args: vec!["-v".to_owned(), "x y".to_owned()],
        ..Job::code(
            "import sys\nprint(input(), sys.argv)\nsys.exit(3)\n",
            defaults().await,
        )
    };
    let o = run_job(job).await;
    assert_eq!((o.status, o.exit_code), (Status::Error, Some(3)));
    assert_eq!(stdout(&o), "ada ['main.py', '-v', 'x y']\n");
    let o = run("import numpy as np\nnp.zeros(2).reshape(3)\n").await;
    assert_eq!((o.status, o.exit_code), (Status::Error, Some(1)));
    let err = stderr(&o);
    assert!(
        err.starts_with("Traceback (most recent call last):\n  File \"main.py\", line 2"),
        "{err}"
    );
    assert!(
        err.contains("ValueError: cannot reshape array of size 2 into shape (3,)"),
        "{err}"
    );
    // atexit handlers run, and output is flushed, without a trailing newline.
    let o = run("import atexit\natexit.register(lambda: print('bye', end=''))\nprint('x', end='')").await;
    assert_status(&o, Status::Ok);
    assert_eq!(stdout(&o), "xbye");
}

#[tokio::test]
async fn memory_just_under_the_limit_runs_and_just_over_is_memory_exceeded() {
    let mut limits = defaults().await;
    limits.memory_bytes = 192 << 20;
    // numpy and its import take ~40 MiB; 100 MiB of array fits, 200 does not.
    let fill = |mib: u32| format!("import numpy as np\na = np.ones({mib} << 17)\nprint(a.nbytes >> 20)");
    let o = run_limited(&fill(100), limits).await;
    assert_status(&o, Status::Ok);
    assert_eq!(stdout(&o), "100\n");
    let o = run_limited(&fill(200), limits).await;
    assert_status(&o, Status::MemoryExceeded);
    assert_eq!(o.limit.map(|l| l.kind), Some(LimitKind::Memory));
    assert_still_serves().await;
}

#[tokio::test]
async fn package_shaped_memory_attacks_end_cleanly() {
    // Past the memory limit (256 MiB by default) but inside wasm32's
    // address space: the limiter refuses the memory, the run is
    // `memory_exceeded`. Past 2 GiB, numpy itself refuses in the guest
    // (its sizes are 32-bit): the program's own ValueError.
    enum Ends {
        Exceeded,
        Raises(&'static str),
    }
    use Ends::*;
    for (attack, want) in [
        ("import numpy as np\nnp.ones(10**8)", Exceeded),
        (
            "import numpy as np\na = np.random.rand(8000, 8000)\nprint((a @ a).sum())",
            Exceeded,
        ),
        (
            "import numpy as np, pandas as pd\npd.DataFrame(np.zeros((10**8, 1)))",
            Exceeded,
        ),
        (
            "import matplotlib.pyplot as plt\nplt.figure(figsize=(200, 200)).savefig('big.png')",
            Exceeded,
        ),
        (
            "import numpy as np\nnp.ones(10**10)",
            Raises("ValueError: Maximum allowed dimension exceeded"),
        ),
        (
            "import numpy as np\nnp.random.rand(20000, 20000)",
            Raises("ValueError: array is too big"),
        ),
        (
            "import numpy as np, pandas as pd\npd.DataFrame({'a': np.zeros(10**9)})",
            Raises("ValueError: array is too big"),
        ),
    ] {
        let o = run(attack).await;
        match want {
            Exceeded => {
                assert_status(&o, Status::MemoryExceeded);
                assert_eq!(o.limit.map(|l| l.kind), Some(LimitKind::Memory), "{attack}");
            }
            Raises(error) => {
                assert_eq!((o.status, o.exit_code), (Status::Error, Some(1)), "{attack}");
                assert!(stderr(&o).contains(error), "{attack}: {}", stderr(&o));
            }
        }
        assert!(o.files.is_empty(), "{attack}: {:?}", o.files);
    }
    assert_still_serves().await;
}

#[tokio::test]
async fn a_blas_loop_under_a_short_timeout_times_out_and_a_short_one_finishes() {
    let mut limits = defaults().await;
    limits.timeout = Duration::from_secs(2);
    let o = run_limited(
        "import numpy as np\na = np.random.rand(200, 200)\nprint((a @ a).shape)",
        limits,
    )
    .await;
    assert_status(&o, Status::Ok);
    assert_eq!(stdout(&o), "(200, 200)\n");
    limits.fuel = u64::MAX / 4;
    let o = run_limited(
        "import numpy as np\na = np.random.rand(300, 300)\nwhile True:\n    a = a @ a\n    a /= a.max()",
        limits,
    )
    .await;
    assert_status(&o, Status::Timeout);
    assert_still_serves().await;
}

#[tokio::test]
async fn fuel_just_enough_for_numpy_runs_and_less_is_fuel_exhausted() {
    let code = "import numpy as np\nprint(np.arange(5).sum())";
    let o = run(code).await;
    assert_status(&o, Status::Ok);
    let used = o.fuel_used.expect("metered");
    let mut limits = defaults().await;
    limits.fuel = used + used / 10;
    assert_status(&run_limited(code, limits).await, Status::Ok);
    limits.fuel = used / 2;
    let o = run_limited(code, limits).await;
    assert_status(&o, Status::FuelExhausted);
    assert_still_serves().await;
}

#[tokio::test]
async fn output_and_file_quotas_hold_with_the_exact_errno() {
    let mut limits = defaults().await;
    limits.output_bytes = 1000;
    // Exactly the cap, then one byte over it.
    let o = run_limited("import numpy as np\nprint('x' * int(np.int32(999)))", limits).await;
    assert_status(&o, Status::Ok);
    assert_eq!((o.stdout.len(), o.stdout_truncated), (1000, false));
    let o = run_limited("import numpy as np\nprint('x' * int(np.int32(1000)))", limits).await;
    assert_eq!((o.stdout.len(), o.stdout_truncated), (1000, true));
    assert_eq!(o.limit.map(|l| l.kind), Some(LimitKind::Output));
    let mut limits = defaults().await;
    limits.files.file_bytes = 1 << 20;
    // A write past the one-file quota is the ordinary OSError: EFBIG or
    // ENOSPC, as on a full disk, with what fitted kept.
    let o = run_limited(
        r#"
import errno, numpy as np
try:
    open("just.bin", "wb").write(np.zeros((1 << 20) // 8).tobytes())
    print("just under: ok")
    with open("over.bin", "wb") as f:
        f.write(b"x" * ((1 << 20) + 1))
except OSError as e:
    print(errno.errorcode[e.errno])
"#,
        limits,
    )
    .await;
    assert_status(&o, Status::Ok);
    let out = stdout(&o);
    assert!(out.starts_with("just under: ok\n"), "{out}");
    assert!(out.ends_with("EFBIG\n") || out.ends_with("ENOSPC\n"), "{out}");
}

#[tokio::test]
async fn a_canary_in_one_runs_heap_is_never_in_the_next() {
    // A run fills 32 MiB of its heap with a marker, and leaves files; later
    // runs read 64 MiB of uninitialised memory (`np.empty`) and their
    // filesystem, and must find none of it.
    let plant = r#"
import numpy as np, os
a = np.frombuffer(b"RUNBOX-CANARY-7f3a" * ((32 << 20) // 18), dtype=np.uint8).copy()
open("/tmp/canary", "w").write("planted")
os.environ["RUNBOX_CANARY"] = "1"
print(a.size > 0)
"#;
    let o = run(plant).await;
    assert_status(&o, Status::Ok);
    let search = r#"
import numpy as np, os
heap = np.empty(64 << 20, dtype=np.uint8).tobytes()
print(b"RUNBOX-CANARY-7f3a" in heap, os.path.exists("/tmp/canary"), "RUNBOX_CANARY" in os.environ)
"#;
    for _ in 0..4 {
        let o = run(search).await;
        assert_status(&o, Status::Ok);
        assert_eq!(stdout(&o), "False False False\n");
    }
}
