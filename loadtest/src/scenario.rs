//! What to send: snippets with weights and expectations, the built-in scenarios, scenario files, and
//! the seeded weighted choice between snippets.

use std::collections::BTreeSet;
use std::num::NonZeroU64;
use std::path::Path;

use bytes::Bytes;
use runbox_api::{ExecuteRequest, ExecuteResponse, InputFile, LimitRequest, Status};
use serde::{Deserialize, Serialize};

/// What a correct answer looks like. Every field is optional; an empty expectation accepts any
/// `200` response.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The HTTP status code (default 200). Any other code is an error, not a wrong result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<u16>,
    /// The execution `status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// `stdout`, exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout: Option<String>,
    /// A substring of `stdout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout_contains: Option<String>,
    /// An upper bound on `stdout`'s length in bytes (the output limit held).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout_max_bytes: Option<usize>,
    /// `truncated.stdout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncated: Option<bool>,
    /// The paths of the output files, in order, exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<String>>,
}

/// The verdict on one HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// As expected.
    Right,
    /// An HTTP code other than the expected one: counted as an error.
    UnexpectedHttp,
    /// The expected HTTP code, but the body differs from the expectation.
    Wrong(String),
}

impl Expect {
    /// Judges a response: HTTP code first, then the body.
    pub fn check(&self, http: u16, body: Option<&ExecuteResponse>) -> Verdict {
        if http != self.http.unwrap_or(200) {
            return Verdict::UnexpectedHttp;
        }
        let needs_body = self.status.is_some()
            || self.stdout.is_some()
            || self.stdout_contains.is_some()
            || self.stdout_max_bytes.is_some()
            || self.truncated.is_some()
            || self.files.is_some();
        let Some(body) = body else {
            return if needs_body {
                Verdict::Wrong("the body is not an /execute answer".into())
            } else {
                Verdict::Right
            };
        };
        if let Some(want) = self.status
            && body.status != want
        {
            return Verdict::Wrong(format!("status {}, expected {want}", body.status));
        }
        let stdout = body.stdout.as_str();
        if let Some(want) = &self.stdout
            && stdout != want
        {
            return Verdict::Wrong(format!("stdout {:?}, expected {want:?}", clip(stdout)));
        }
        if let Some(want) = &self.stdout_contains
            && !stdout.contains(want.as_str())
        {
            return Verdict::Wrong(format!("stdout {:?} lacks {want:?}", clip(stdout)));
        }
        if let Some(max) = self.stdout_max_bytes
            && stdout.len() > max
        {
            return Verdict::Wrong(format!(
                "stdout has {} bytes, at most {max} expected",
                stdout.len()
            ));
        }
        if let Some(want) = self.truncated {
            let got = body.truncated.stdout;
            if got != want {
                return Verdict::Wrong(format!("truncated.stdout {got}, expected {want}"));
            }
        }
        if let Some(want) = &self.files {
            let got: Vec<&str> = body.files.iter().map(|f| f.path.as_str()).collect();
            if got != *want {
                return Verdict::Wrong(format!("output files {got:?}, expected {want:?}"));
            }
        }
        Verdict::Right
    }
}

fn clip(s: &str) -> String {
    const MAX: usize = 80;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn one() -> u32 {
    1
}

/// One request body with its weight and expectation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snippet {
    /// Shown in reports; defaults to `snippet-<n>`.
    #[serde(default)]
    pub name: String,
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Files placed in the run's working directory (the request's `files`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<InputFile>,
    /// Positive integers; any of `timeout_ms`, `fuel`, `memory_bytes`, `output_bytes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitRequest>,
    /// Relative frequency (default 1; 0 disables the snippet).
    #[serde(default = "one")]
    pub weight: u32,
    #[serde(default)]
    pub expect: Expect,
}

impl Snippet {
    fn new(name: &str, code: &str, weight: u32, expect: Expect) -> Snippet {
        Snippet {
            name: name.into(),
            code: code.into(),
            stdin: None,
            args: Vec::new(),
            files: Vec::new(),
            limits: None,
            weight,
            expect,
        }
    }

    fn limits(mut self, limits: LimitRequest) -> Snippet {
        self.limits = Some(limits);
        self
    }

    /// The request it sends.
    pub fn request(&self) -> ExecuteRequest {
        ExecuteRequest {
            code: Some(self.code.clone()),
            files: (!self.files.is_empty()).then(|| self.files.clone()),
            entry: None,
            stdin: self.stdin.clone(),
            args: (!self.args.is_empty()).then(|| self.args.clone()),
            runtime: None,
            limits: self.limits,
        }
    }

    /// The JSON request body.
    pub fn body(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(&self.request()).expect("a request serialises"))
    }
}

/// A scenario file: `name` and `snippets`, in YAML or JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    #[serde(default)]
    pub name: String,
    pub snippets: Vec<Snippet>,
}

/// The built-in scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Builtin {
    /// `print('hi')`.
    Hello,
    /// A pure-Python loop: ~3.2·10⁸ fuel, about 100 ms in the sandbox (50–200 ms on a busy 2-core VM).
    Cpu,
    /// A multi-file program: a module and a 20 kB CSV in, a report out.
    Files,
    /// A weighted mix including snippets that hit each limit.
    Mixed,
}

fn nz(n: u64) -> Option<NonZeroU64> {
    NonZeroU64::new(n)
}

/// The `cpu` snippet: ~3.2·10⁸ fuel, about 100 ms in the sandbox, ~10 ms in native CPython.
pub const CPU_CODE: &str = "n = 0\nfor i in range(100_000):\n    n += i * i\nprint(n)";
const CPU_STDOUT: &str = "333328333350000\n";

/// The `files` snippet: `main.py` imports `stats.py`, which reads
/// `data.csv` (1000 rows) and writes `report.txt`.
fn files_snippet(weight: u32) -> Snippet {
    let csv: String = (0..1000).map(|i| format!("{i},{}\n", i * 2)).collect();
    let mut s = Snippet::new(
        "files",
        "import stats\nprint(stats.report('data.csv', 'report.txt'))",
        weight,
        Expect {
            status: Some(Status::Ok),
            stdout: Some("999000\n".into()),
            files: Some(vec!["report.txt".into()]),
            ..Expect::default()
        },
    );
    s.files = vec![
        InputFile::text(
            "stats.py",
            "import csv\ndef report(src, dst):\n    total = sum(int(r[1]) for r in csv.reader(open(src)))\n    open(dst, 'w').write(f'total {total}\\n')\n    return total\n",
        ),
        InputFile::text("data.csv", csv),
    ];
    s
}

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("reading {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("parsing {path} as YAML: {source}")]
    Yaml {
        path: String,
        source: serde_norway::Error,
    },
    #[error("parsing {path} as JSON: {source}")]
    Json { path: String, source: serde_json::Error },
    #[error("scenario {0:?} has no snippet with a positive weight")]
    Empty(String),
    #[error("scenario {scenario:?}: two snippets are named {name:?}")]
    DuplicateName { scenario: String, name: String },
}

impl Scenario {
    pub fn builtin(which: Builtin) -> Scenario {
        let ok = |stdout: &str| Expect {
            status: Some(Status::Ok),
            stdout: Some(stdout.into()),
            ..Expect::default()
        };
        let status = |s: Status| Expect {
            status: Some(s),
            ..Expect::default()
        };
        let (name, snippets) = match which {
            Builtin::Hello => ("hello", vec![Snippet::new("hello", "print('hi')", 1, ok("hi\n"))]),
            Builtin::Cpu => ("cpu", vec![Snippet::new("cpu", CPU_CODE, 1, ok(CPU_STDOUT))]),
            Builtin::Files => ("files", vec![files_snippet(1)]),
            Builtin::Mixed => {
                let mut echo = Snippet::new(
                    "stdin-args",
                    "import sys\nprint(sys.argv[1:], input())",
                    10,
                    ok("['-v'] x\n"),
                );
                echo.stdin = Some("x\n".into());
                echo.args = vec!["-v".into()];
                let spin = "while True:\n    pass";
                (
                    "mixed",
                    vec![
                        Snippet::new("hello", "print('hi')", 40, ok("hi\n")),
                        Snippet::new("cpu", CPU_CODE, 10, ok(CPU_STDOUT)),
                        echo,
                        Snippet::new("exception", "1 / 0", 8, status(Status::Error)),
                        Snippet::new("exit-3", "import sys\nsys.exit(3)", 4, status(Status::Error)),
                        Snippet::new("timeout", spin, 4, status(Status::Timeout)).limits(LimitRequest {
                            timeout_ms: nz(300),
                            fuel: nz(100_000_000_000),
                            ..LimitRequest::default()
                        }),
                        Snippet::new(
                            "sleep-timeout",
                            "import time\ntime.sleep(60)",
                            4,
                            status(Status::Timeout),
                        )
                        .limits(LimitRequest {
                            timeout_ms: nz(200),
                            ..LimitRequest::default()
                        }),
                        Snippet::new("fuel", spin, 6, status(Status::FuelExhausted)).limits(LimitRequest {
                            fuel: nz(50_000_000),
                            ..LimitRequest::default()
                        }),
                        Snippet::new(
                            "memory",
                            "x = bytearray(256 * 1024 * 1024)",
                            6,
                            status(Status::MemoryExceeded),
                        )
                        .limits(LimitRequest {
                            memory_bytes: nz(32 * 1024 * 1024),
                            ..LimitRequest::default()
                        }),
                        Snippet::new(
                            "output-flood",
                            "print('x' * 200_000)",
                            8,
                            Expect {
                                status: Some(Status::Ok),
                                stdout_max_bytes: Some(1024),
                                truncated: Some(true),
                                ..Expect::default()
                            },
                        )
                        .limits(LimitRequest {
                            output_bytes: nz(1024),
                            ..LimitRequest::default()
                        }),
                    ],
                )
            }
        };
        Scenario {
            name: name.into(),
            snippets,
        }
    }

    /// Parses a scenario: JSON if `path` ends in `.json`, else YAML.
    pub fn parse(path: &str, text: &str) -> Result<Scenario, ScenarioError> {
        let mut scenario: Scenario = if path.ends_with(".json") {
            serde_json::from_str(text).map_err(|source| ScenarioError::Json {
                path: path.into(),
                source,
            })?
        } else {
            serde_norway::from_str(text).map_err(|source| ScenarioError::Yaml {
                path: path.into(),
                source,
            })?
        };
        if scenario.name.is_empty() {
            scenario.name = Path::new(path)
                .file_stem()
                .map_or_else(|| "scenario".into(), |s| s.to_string_lossy().into_owned());
        }
        scenario.validate()?;
        Ok(scenario)
    }

    pub fn from_file(path: &Path) -> Result<Scenario, ScenarioError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: shown.clone(),
            source,
        })?;
        Scenario::parse(&shown, &text)
    }

    /// A one-snippet scenario from a Python file.
    pub fn from_code_file(path: &Path, expect: Expect) -> Result<Scenario, ScenarioError> {
        let code = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let name = path
            .file_name()
            .map_or_else(|| "code".into(), |s| s.to_string_lossy().into_owned());
        let scenario = Scenario {
            name: name.clone(),
            snippets: vec![Snippet::new(&name, &code, 1, expect)],
        };
        scenario.validate()?;
        Ok(scenario)
    }

    /// Names unnamed snippets and checks that something can be sent.
    fn validate(&self) -> Result<(), ScenarioError> {
        if self.snippets.iter().all(|s| s.weight == 0) {
            return Err(ScenarioError::Empty(self.name.clone()));
        }
        let mut seen = BTreeSet::new();
        for (i, s) in self.snippets.iter().enumerate() {
            let name = snippet_name(s, i);
            if !seen.insert(name.clone()) {
                return Err(ScenarioError::DuplicateName {
                    scenario: self.name.clone(),
                    name,
                });
            }
        }
        Ok(())
    }

    /// The snippets, each named.
    pub fn named(mut self) -> Scenario {
        for (i, s) in self.snippets.iter_mut().enumerate() {
            s.name = snippet_name(s, i);
        }
        self
    }
}

fn snippet_name(s: &Snippet, i: usize) -> String {
    if s.name.is_empty() {
        format!("snippet-{}", i + 1)
    } else {
        s.name.clone()
    }
}

/// SplitMix64: a small, seedable generator, good enough to pick snippets.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (multiply-shift; the bias is below 2⁻³² for small `n`).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// Weighted choice over snippets by cumulative weights.
#[derive(Debug, Clone)]
pub struct Picker {
    cumulative: Vec<u64>,
}

impl Picker {
    pub fn new(weights: impl IntoIterator<Item = u32>) -> Picker {
        let mut total = 0u64;
        let cumulative = weights
            .into_iter()
            .map(|w| {
                total += u64::from(w);
                total
            })
            .collect();
        Picker { cumulative }
    }

    pub fn total(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }

    /// The index whose weight interval holds `r` (`0 ≤ r < total`).
    pub fn index_of(&self, r: u64) -> usize {
        self.cumulative.partition_point(|&c| c <= r)
    }

    pub fn pick(&self, rng: &mut Rng) -> usize {
        if self.cumulative.len() == 1 {
            return 0;
        }
        self.index_of(rng.below(self.total()))
    }
}

/// A 200 answer with `status` and `stdout`, for tests.
#[cfg(test)]
pub(crate) fn test_response(status: Status, stdout: &str, executor: &str) -> ExecuteResponse {
    ExecuteResponse {
        id: "id".into(),
        status,
        exit_code: (status == Status::Ok).then_some(0),
        stdout: stdout.into(),
        stderr: String::new(),
        truncated: runbox_api::Truncated::default(),
        files: Vec::new(),
        duration_ms: 1.0,
        fuel_used: None,
        limit: None,
        runtime: runbox_api::RuntimeRef {
            name: "python".into(),
            version: "3".into(),
        },
        executor: executor.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
name: smoke
snippets:
  - name: hi
    code: print('hi')
    weight: 3
    expect: { status: ok, stdout: "hi\n" }
  - code: |
      while True:
          pass
    limits: { timeout_ms: 200 }
    expect: { status: timeout }
  - name: off
    code: "1"
    weight: 0
"#;

    #[test]
    fn yaml_scenarios_parse_with_defaults() {
        let s = Scenario::parse("s.yaml", YAML).unwrap().named();
        assert_eq!(s.name, "smoke");
        assert_eq!(s.snippets.len(), 3);
        assert_eq!(s.snippets[0].weight, 3);
        assert_eq!(s.snippets[0].expect.stdout.as_deref(), Some("hi\n"));
        assert_eq!(s.snippets[1].name, "snippet-2");
        assert_eq!(s.snippets[1].weight, 1);
        assert_eq!(s.snippets[1].expect.status, Some(Status::Timeout));
        assert_eq!(s.snippets[1].limits.unwrap().timeout_ms, nz(200));
        assert_eq!(s.snippets[1].code, "while True:\n    pass\n");
    }

    #[test]
    fn json_scenarios_parse_and_name_from_the_file() {
        let json = r#"{"snippets": [{"code": "print(1)", "expect": {"stdout": "1\n"}}]}"#;
        let s = Scenario::parse("dir/my-mix.json", json).unwrap();
        assert_eq!(s.name, "my-mix");
        assert_eq!(s.snippets[0].expect.stdout.as_deref(), Some("1\n"));
    }

    #[test]
    fn bad_scenarios_are_refused() {
        let typo = "snippets:\n  - code: x\n    expect: { stauts: ok }\n";
        assert!(matches!(
            Scenario::parse("t.yaml", typo),
            Err(ScenarioError::Yaml { .. })
        ));
        let bad_status = "snippets:\n  - code: x\n    expect: { status: fine }\n";
        assert!(Scenario::parse("t.yaml", bad_status).is_err());
        let unknown_limit = "snippets:\n  - code: x\n    limits: { cpu: 1 }\n";
        assert!(Scenario::parse("t.yaml", unknown_limit).is_err());
        // The contract's limits are positive integers: a zero is caught before sending.
        let zero_limit = "snippets:\n  - code: x\n    limits: { fuel: 0 }\n";
        assert!(Scenario::parse("t.yaml", zero_limit).is_err());
        let negative = r#"{"snippets": [{"code": "x", "limits": {"timeout_ms": -1}}]}"#;
        assert!(Scenario::parse("t.json", negative).is_err());
        let zero = "snippets:\n  - code: x\n    weight: 0\n";
        assert!(matches!(
            Scenario::parse("t.yaml", zero),
            Err(ScenarioError::Empty(_))
        ));
        let dup = "snippets:\n  - {name: a, code: x}\n  - {name: a, code: y}\n";
        assert!(matches!(
            Scenario::parse("t.yaml", dup),
            Err(ScenarioError::DuplicateName { .. })
        ));
        let bad_json = r#"{"snippets": [{"code": 1}]}"#;
        assert!(matches!(
            Scenario::parse("t.json", bad_json),
            Err(ScenarioError::Json { .. })
        ));
    }

    #[test]
    fn bodies_carry_only_what_is_set() {
        let s = Scenario::builtin(Builtin::Mixed);
        let body = |name: &str| -> serde_json::Value {
            let snippet = s.snippets.iter().find(|x| x.name == name).unwrap();
            serde_json::from_slice(&snippet.body()).unwrap()
        };
        assert_eq!(body("hello"), serde_json::json!({"code": "print('hi')"}));
        assert_eq!(body("stdin-args")["args"], serde_json::json!(["-v"]));
        assert_eq!(body("stdin-args")["stdin"], "x\n");
        assert_eq!(
            body("timeout")["limits"],
            serde_json::json!({"timeout_ms": 300, "fuel": 100_000_000_000u64})
        );
    }

    #[test]
    fn the_files_scenario_sends_its_files_and_expects_its_report() {
        let s = Scenario::builtin(Builtin::Files);
        let body: serde_json::Value = serde_json::from_slice(&s.snippets[0].body()).unwrap();
        let paths: Vec<&str> = body["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["path"].as_str().unwrap())
            .collect();
        assert_eq!(paths, ["stats.py", "data.csv"]);
        let expect = &s.snippets[0].expect;
        let mut right = response("ok", "999000\n", false);
        right.files = vec![runbox_api::OutputFile::with_content(
            "report.txt".into(),
            b"total 999000\n",
        )];
        assert_eq!(expect.check(200, Some(&right)), Verdict::Right);
        let none = response("ok", "999000\n", false);
        assert!(matches!(expect.check(200, Some(&none)), Verdict::Wrong(w) if w.contains("report.txt")));
    }

    #[test]
    fn the_mix_covers_every_status() {
        let s = Scenario::builtin(Builtin::Mixed);
        for status in Status::ALL {
            assert!(
                s.snippets.iter().any(|x| x.expect.status == Some(status)),
                "{status:?}"
            );
        }
        assert!(s.snippets.iter().any(|x| x.expect.truncated == Some(true)));
        assert!(s.validate().is_ok());
    }

    fn response(status: &str, stdout: &str, truncated: bool) -> ExecuteResponse {
        let status = serde_json::from_value(status.into()).unwrap();
        let mut r = test_response(status, stdout, "e");
        r.truncated.stdout = truncated;
        r
    }

    #[test]
    fn expectations_judge_code_status_and_stdout() {
        let hello = Scenario::builtin(Builtin::Hello).snippets[0].expect.clone();
        assert_eq!(
            hello.check(200, Some(&response("ok", "hi\n", false))),
            Verdict::Right
        );
        assert_eq!(hello.check(429, None), Verdict::UnexpectedHttp);
        assert!(matches!(
            hello.check(200, Some(&response("ok", "bye\n", false))),
            Verdict::Wrong(_)
        ));
        assert!(matches!(
            hello.check(200, Some(&response("error", "hi\n", false))),
            Verdict::Wrong(_)
        ));
        assert!(matches!(hello.check(200, None), Verdict::Wrong(_)));
        assert_eq!(Expect::default().check(200, None), Verdict::Right);

        let flood = Expect {
            stdout_max_bytes: Some(4),
            truncated: Some(true),
            stdout_contains: Some("x".into()),
            ..Expect::default()
        };
        assert_eq!(
            flood.check(200, Some(&response("ok", "xxxx", true))),
            Verdict::Right
        );
        assert!(matches!(
            flood.check(200, Some(&response("ok", "xxxxx", true))),
            Verdict::Wrong(_)
        ));
        assert!(matches!(
            flood.check(200, Some(&response("ok", "xxxx", false))),
            Verdict::Wrong(_)
        ));
        assert!(matches!(
            flood.check(200, Some(&response("ok", "yy", true))),
            Verdict::Wrong(_)
        ));

        let too_big = Expect {
            http: Some(413),
            ..Expect::default()
        };
        assert_eq!(too_big.check(413, None), Verdict::Right);
        assert_eq!(too_big.check(200, None), Verdict::UnexpectedHttp);
    }

    #[test]
    fn weighted_choice_follows_the_weights() {
        let picker = Picker::new([1, 0, 3]);
        assert_eq!(picker.total(), 4);
        assert_eq!(
            (0..4).map(|r| picker.index_of(r)).collect::<Vec<_>>(),
            [0, 2, 2, 2]
        );
        let mut rng = Rng::new(7);
        let mut counts = [0u32; 3];
        for _ in 0..40_000 {
            counts[picker.pick(&mut rng)] += 1;
        }
        assert_eq!(counts[1], 0, "a zero weight is never picked");
        let share = f64::from(counts[2]) / 40_000.0;
        assert!((share - 0.75).abs() < 0.01, "{counts:?}");
    }

    #[test]
    fn the_generator_is_seeded_and_uniform_enough() {
        let a: Vec<u64> = (0..5).scan(Rng::new(1), |r, _| Some(r.next_u64())).collect();
        let b: Vec<u64> = (0..5).scan(Rng::new(1), |r, _| Some(r.next_u64())).collect();
        assert_eq!(a, b);
        let mut rng = Rng::new(2);
        let mut buckets = [0u32; 10];
        for _ in 0..100_000 {
            buckets[rng.below(10) as usize] += 1;
        }
        assert!(
            buckets.iter().all(|&n| (9_500..10_500).contains(&n)),
            "{buckets:?}"
        );
    }
}
