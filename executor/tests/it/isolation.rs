//! A fresh instance per run: nothing one snippet does is visible to the next.

use executor::sandbox::Status;

use crate::common::*;

const PLANT: &str = r#"
import builtins, sys, random, os
builtins.RUNBOX_CANARY = "planted"
sys.modules["runbox_canary"] = type(sys)("runbox_canary")
sys.path.append("/canary")
os.environ["RUNBOX_CANARY"] = "planted"
random.seed(1234)
GLOBAL_CANARY = "planted"
try:
    open("canary.txt", "w").write("planted")
except OSError:
    pass
print("planted")
"#;

const SEARCH: &str = r#"
import builtins, sys, os
found = [
    name for name, hit in [
        ("builtins", hasattr(builtins, "RUNBOX_CANARY")),
        ("sys.modules", "runbox_canary" in sys.modules),
        ("sys.path", "/canary" in sys.path),
        ("environ", "RUNBOX_CANARY" in os.environ),
        ("globals", "GLOBAL_CANARY" in globals()),
        ("file", os.path.exists("canary.txt")),
    ] if hit
]
print(found)
"#;

#[tokio::test]
async fn a_canary_planted_by_one_run_is_never_seen_by_later_ones() {
    let o = run(PLANT).await;
    assert_status(&o, Status::Ok);
    assert_eq!(stdout(&o), "planted\n");
    let searches = (0..16).map(|_| run(SEARCH));
    for o in futures::future::join_all(searches).await {
        assert_status(&o, Status::Ok);
        assert_eq!(stdout(&o), "[]\n");
    }
}

#[tokio::test]
async fn random_state_differs_between_runs() {
    // The interpreter snapshot is taken once at build time; each run must
    // still get fresh randomness.
    let code = "import random, os\nprint(random.random(), os.urandom(8).hex())";
    let mut seen = std::collections::HashSet::new();
    for _ in 0..8 {
        let o = run(code).await;
        assert_status(&o, Status::Ok);
        assert!(
            seen.insert(stdout(&o)),
            "a run repeated a previous run's randomness"
        );
    }
}

#[tokio::test]
async fn stdin_and_argv_reach_the_snippet() {
    let code =
        "import sys\nname = input()\nrest = sys.stdin.read()\nprint(f'hi {name}', sys.argv, repr(rest))";
    let o = run_job(code, "ada\nline2\n", &["-x", "two words"], limits()).await;
    assert_status(&o, Status::Ok);
    assert_eq!(stdout(&o), "hi ada ['main.py', '-x', 'two words'] 'line2\\n'\n");
    let o = run_job("input()", "", &[], limits()).await;
    assert_status(&o, Status::Error);
    assert!(stderr(&o).contains("EOFError"), "{}", stderr(&o));
}
