//! The gateway's side of the manifests: every variable they set is one the
//! binary accepts (parsed by the real config struct).

use clap::Parser;
use executor::config::env_to_args;
use gateway::config::Config;
use serde_json::Value;

#[test]
fn manifest_environment_is_accepted_by_the_gateway() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../k8s/tests/expected.json");
    let expected: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let containers: Vec<&Value> = expected["containers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["binary"] == "gateway")
        .collect();
    assert!(!containers.is_empty());
    for c in containers {
        let env: Vec<(&str, &str)> = c["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["name"].as_str().unwrap(), e["value"].as_str().unwrap_or("")))
            .collect();
        let args = env_to_args::<Config>(&env).unwrap_or_else(|e| panic!("{}: {e}", c["workload"]));
        let parsed = Config::try_parse_from(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        assert_eq!(
            parsed.discovery_kind(),
            gateway::config::DiscoveryKind::Kubernetes
        );
    }
}
