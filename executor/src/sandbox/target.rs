//! The CPU the guest is compiled for: a named x86-64 level rather than the
//! build machine's own features, so one artifact loads on every node of it.

use wasmtime::Config;

use super::{SandboxError, load_err};

/// The CPU features compiled guest code may use (`EXECUTOR_CPU_TARGET`).
///
/// The default is `x86-64-v2` (SSE3 to SSE4.2, POPCNT, CMPXCHG16B): every
/// x86-64 server CPU since 2009 (Nehalem, Bulldozer) and every x86 cloud
/// instance type has it, so an image built anywhere loads everywhere. `v3`
/// (AVX, AVX2, BMI1/2, FMA, LZCNT: Haswell 2013, Zen 2017) is missing on some
/// nodes still in service (Atom-based and low-end Xeon D/Pentium parts, VMs
/// whose hypervisor masks AVX), and the CPython interpreter loop, scalar
/// code, has little use for it.
///
/// Off x86-64 every value compiles for the host's own features (`native`):
/// Cranelift has no named levels there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CpuTarget {
    #[default]
    X86_64V2,
    X86_64V3,
    /// The features this host has, as detected at start (the artifact's name
    /// then differs between CPU generations).
    Native,
}

/// A Cranelift ISA flag and the name the standard library (and wasmtime's
/// check at load) detects the feature by.
type Feature = (&'static str, &'static str);

/// The psABI's x86-64-v2, as far as Cranelift has flags for it (LAHF/SAHF has
/// none, so compiled code never uses it).
const V2: &[Feature] = &[
    ("has_cmpxchg16b", "cmpxchg16b"),
    ("has_sse3", "sse3"),
    ("has_ssse3", "ssse3"),
    ("has_sse41", "sse4.1"),
    ("has_sse42", "sse4.2"),
    ("has_popcnt", "popcnt"),
];

/// x86-64-v3: v2 and the AVX2 generation (F16C, MOVBE and XSAVE have no
/// Cranelift flag). Cranelift's own `x86-64-v3` preset leaves out `has_avx`.
const V3: &[Feature] = &[
    ("has_cmpxchg16b", "cmpxchg16b"),
    ("has_sse3", "sse3"),
    ("has_ssse3", "ssse3"),
    ("has_sse41", "sse4.1"),
    ("has_sse42", "sse4.2"),
    ("has_popcnt", "popcnt"),
    ("has_avx", "avx"),
    ("has_avx2", "avx2"),
    ("has_bmi1", "bmi1"),
    ("has_bmi2", "bmi2"),
    ("has_fma", "fma"),
    ("has_lzcnt", "lzcnt"),
];

/// This build's target triple where the named levels apply. An explicit
/// [`Config::target`] turns off wasmtime's host-feature inference, and must
/// equal the host's triple for wasmtime to run the code.
const X86_64_TRIPLE: Option<&str> = if cfg!(all(
    target_arch = "x86_64",
    target_os = "linux",
    target_env = "gnu"
)) {
    Some("x86_64-unknown-linux-gnu")
} else if cfg!(all(
    target_arch = "x86_64",
    target_os = "linux",
    target_env = "musl"
)) {
    Some("x86_64-unknown-linux-musl")
} else if cfg!(all(target_arch = "x86_64", target_os = "macos")) {
    Some("x86_64-apple-darwin")
} else {
    None
};

impl CpuTarget {
    pub const ALL: [CpuTarget; 3] = [CpuTarget::X86_64V2, CpuTarget::X86_64V3, CpuTarget::Native];

    pub fn as_str(self) -> &'static str {
        match self {
            CpuTarget::X86_64V2 => "x86-64-v2",
            CpuTarget::X86_64V3 => "x86-64-v3",
            CpuTarget::Native => "native",
        }
    }

    /// The features the level names; none for `native` and off x86-64.
    fn features(self) -> &'static [Feature] {
        match (self, X86_64_TRIPLE) {
            (_, None) | (CpuTarget::Native, _) => &[],
            (CpuTarget::X86_64V2, Some(_)) => V2,
            (CpuTarget::X86_64V3, Some(_)) => V3,
        }
    }

    /// Compiles for exactly this level's features instead of the host's.
    pub(super) fn configure(self, config: &mut Config) -> Result<(), SandboxError> {
        let (Some(triple), [_, ..]) = (X86_64_TRIPLE, self.features()) else {
            return Ok(());
        };
        config.target(triple).map_err(load_err)?;
        for (flag, _) in self.features() {
            // SAFETY: code using a feature the host lacks is never run:
            // wasmtime checks every enabled flag against the host's CPU before
            // it maps compiled code, and `check_host` refuses to load first.
            #[allow(unsafe_code)]
            unsafe {
                config.cranelift_flag_enable(flag);
            }
        }
        Ok(())
    }

    /// Refuses a level this host's CPU lacks features of, naming them and a
    /// setting that would load: compiled code for it could not run here, and
    /// wasmtime would refuse it only after compiling it (~15 s on 2 cores).
    pub fn check_host(self) -> Result<(), SandboxError> {
        self.check(host_has)
    }

    fn check(self, has: impl Fn(&str) -> bool) -> Result<(), SandboxError> {
        let missing: Vec<&str> = self
            .features()
            .iter()
            .map(|&(_, feature)| feature)
            .filter(|f| !has(f))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let levels: Vec<&str> = CpuTarget::ALL
            .into_iter()
            .filter(|&t| t != self && t != CpuTarget::Native && t.features().iter().all(|&(_, f)| has(f)))
            .map(CpuTarget::as_str)
            .collect();
        let levels = if levels.is_empty() {
            String::new()
        } else {
            format!(
                "{}, with an artifact precompiled for it, or to ",
                levels.join(" or ")
            )
        };
        Err(SandboxError::Load(format!(
            "EXECUTOR_CPU_TARGET={self} needs CPU features this host lacks: {}; set \
             EXECUTOR_CPU_TARGET to {levels}native (compiles for this host at every start)",
            missing.join(", "),
        )))
    }

    /// Whether code compiled for this level runs on this host.
    pub fn runs_here(self) -> bool {
        self.check_host().is_ok()
    }
}

impl std::fmt::Display for CpuTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for CpuTarget {
    type Err = String;

    fn from_str(s: &str) -> Result<CpuTarget, String> {
        CpuTarget::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                let all: Vec<&str> = CpuTarget::ALL.iter().map(|t| t.as_str()).collect();
                format!("unknown CPU target `{s}`; one of {}", all.join(", "))
            })
    }
}

/// Whether this host's CPU has `feature` (a standard-library name).
#[cfg(target_arch = "x86_64")]
fn host_has(feature: &str) -> bool {
    match feature {
        "cmpxchg16b" => std::is_x86_feature_detected!("cmpxchg16b"),
        "sse3" => std::is_x86_feature_detected!("sse3"),
        "ssse3" => std::is_x86_feature_detected!("ssse3"),
        "sse4.1" => std::is_x86_feature_detected!("sse4.1"),
        "sse4.2" => std::is_x86_feature_detected!("sse4.2"),
        "popcnt" => std::is_x86_feature_detected!("popcnt"),
        "avx" => std::is_x86_feature_detected!("avx"),
        "avx2" => std::is_x86_feature_detected!("avx2"),
        "bmi1" => std::is_x86_feature_detected!("bmi1"),
        "bmi2" => std::is_x86_feature_detected!("bmi2"),
        "fma" => std::is_x86_feature_detected!("fma"),
        "lzcnt" => std::is_x86_feature_detected!("lzcnt"),
        _ => false,
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn host_has(_feature: &str) -> bool {
    true
}

#[cfg(test)]
mod tests {
    use wasmtime::{Engine, Module};

    use super::*;

    /// The smallest module: a header and nothing else.
    const EMPTY: &[u8] = b"\0asm\x01\0\0\0";

    /// Compiles `EMPTY` for `target` and maps it the way the service maps the
    /// guest, on a host whose features `detect` reports; wasmtime's verdict.
    #[allow(unsafe_code)]
    fn wasmtime_loads(target: CpuTarget, detect: Option<fn(&str) -> Option<bool>>) -> Result<(), String> {
        let mut config = Config::new();
        target.configure(&mut config).unwrap();
        if let Some(detect) = detect {
            // SAFETY: the detector only ever reports fewer features than the
            // host has, and the module has no code to run.
            unsafe {
                config.detect_host_feature(detect);
            }
        }
        let engine = Engine::new(&config).map_err(|e| format!("{e:#}"))?;
        let compiled = engine.precompile_module(EMPTY).map_err(|e| format!("{e:#}"))?;
        // SAFETY: compiled a moment ago by this engine.
        unsafe { Module::deserialize(&engine, &compiled) }
            .map(drop)
            .map_err(|e| format!("{e:#}"))
    }

    #[test]
    fn names_round_trip() {
        for t in CpuTarget::ALL {
            assert_eq!(t.as_str().parse::<CpuTarget>(), Ok(t));
            assert_eq!(t.to_string(), t.as_str());
        }
        let err = "x86-64-v4".parse::<CpuTarget>().unwrap_err();
        assert!(err.contains("x86-64-v2, x86-64-v3, native"), "{err}");
        assert_eq!(CpuTarget::default(), CpuTarget::X86_64V2);
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn v3_is_v2_and_the_avx2_generation() {
        let v2 = CpuTarget::X86_64V2.features();
        let v3 = CpuTarget::X86_64V3.features();
        assert!(v2.iter().all(|f| v3.contains(f)));
        let added: Vec<&str> = v3.iter().filter(|f| !v2.contains(f)).map(|f| f.1).collect();
        assert_eq!(added, ["avx", "avx2", "bmi1", "bmi2", "fma", "lzcnt"]);
        assert!(CpuTarget::Native.features().is_empty());
    }

    /// Every flag is one Cranelift knows (an unknown one fails `Engine::new`),
    /// and the triple is this host's (wasmtime refuses to map code compiled
    /// for another), so every level this CPU has loads here.
    #[test]
    fn this_host_agrees_with_wasmtime() {
        for t in CpuTarget::ALL {
            assert_eq!(
                wasmtime_loads(t, None).is_ok(),
                t.runs_here(),
                "{t}: wasmtime says {:?}, check_host says {:?}",
                wasmtime_loads(t, None),
                t.check_host()
            );
        }
        assert!(CpuTarget::Native.runs_here());
    }

    /// A host without AVX2, simulated through wasmtime's own feature-detection
    /// hook (so it runs on any CPU): wasmtime refuses the v3 code and loads
    /// the v2 code, and `check` says so before any compiling, naming the
    /// feature, the setting and what would load.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn a_level_the_host_lacks_is_refused() {
        fn no_avx2(feature: &str) -> Option<bool> {
            Some(feature != "avx2" && host_has(feature))
        }
        let refused = wasmtime_loads(CpuTarget::X86_64V3, Some(no_avx2)).unwrap_err();
        assert!(refused.contains("has_avx2"), "{refused}");
        assert_eq!(
            wasmtime_loads(CpuTarget::X86_64V2, Some(no_avx2)),
            wasmtime_loads(CpuTarget::X86_64V2, None)
        );

        let has = |f: &str| no_avx2(f) == Some(true);
        let err = CpuTarget::X86_64V3.check(has).unwrap_err().to_string();
        assert!(err.contains("EXECUTOR_CPU_TARGET=x86-64-v3"), "{err}");
        assert!(err.contains("lacks: avx2;"), "{err}");
        if CpuTarget::X86_64V2.runs_here() {
            assert!(
                err.contains("to x86-64-v2, with an artifact precompiled for it, or to native"),
                "{err}"
            );
            assert!(CpuTarget::X86_64V2.check(has).is_ok());
        }
        assert!(CpuTarget::Native.check(|_| false).is_ok());
    }
}
