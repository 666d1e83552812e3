//! The manifests' environment against the binaries: every variable set on
//! the gateway containers (`k8s/tests/expected.json`, extracted and kept
//! current by `k8s/tests/check.sh`) is one the gateway accepts, parsed by its
//! real config struct as built for the image (the Kubernetes image has no
//! embedded executor, so this also runs under `--no-default-features`);
//! with feature `embedded`, the executor containers' too.

use clap::Parser;
use serde_json::Value;
use testkit::env_to_args;

/// Each container of `binary` in the manifests, as (workload, env pairs).
fn containers(binary: &str) -> Vec<(String, Vec<(String, String)>)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../k8s/tests/expected.json");
    let expected: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let found: Vec<_> = expected["containers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["binary"] == binary)
        .map(|c| {
            let env = c["env"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    let name = e["name"].as_str().unwrap().to_owned();
                    (name, e["value"].as_str().unwrap_or("").to_owned())
                })
                .collect();
            (c["workload"].to_string(), env)
        })
        .collect();
    assert!(!found.is_empty(), "the manifests have no {binary} container");
    found
}

/// Parses every `binary` container's environment with the config struct `C`.
fn accepted<C: clap::CommandFactory + Parser>(binary: &str) -> Vec<C> {
    containers(binary)
        .into_iter()
        .map(|(workload, env)| {
            let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let args = env_to_args::<C>(&pairs).unwrap_or_else(|e| panic!("{workload}: {e}"));
            C::try_parse_from(&args).unwrap_or_else(|e| panic!("{workload}: {args:?} rejected: {e}"))
        })
        .collect()
}

#[cfg(feature = "embedded")]
#[test]
fn manifest_environment_is_accepted_by_the_executor() {
    for config in accepted::<executor::config::Config>("executor") {
        assert_eq!(config.listen.port(), 8080);
    }
}

#[test]
fn manifest_environment_is_accepted_by_the_gateway() {
    for config in accepted::<gateway::config::Config>("gateway") {
        assert_eq!(
            config.discovery_kind(),
            gateway::config::DiscoveryKind::Kubernetes
        );
    }
}

#[test]
fn unknown_variables_are_named() {
    let e = env_to_args::<gateway::config::Config>(&[("GATEWAY_NOPE", "1")]).unwrap_err();
    assert!(e.contains("GATEWAY_NOPE"), "{e}");
    let args = env_to_args::<gateway::config::Config>(&[("GATEWAY_BALANCE", "least-inflight")]).unwrap();
    assert_eq!(args, ["gateway", "--balance=least-inflight"]);
}
