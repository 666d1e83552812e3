//! The Kubernetes manifests against the real executor: every metric the
//! autoscaler refers to is exported with the labels it expects. (That the
//! manifests' environment variables are accepted is checked, for both
//! binaries, in `gateway/tests/it/manifests.rs`.)
//! `k8s/tests/expected.json` is extracted from the manifests by
//! `k8s/tests/check.sh`, which also checks it is current.

use serde_json::Value;

fn expected() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../k8s/tests/expected.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("k8s/tests/expected.json"))
        .expect("valid JSON")
}

/// The label names on the first sample line of `metric`, if it is exported.
pub fn exported_labels(text: &str, metric: &str) -> Option<Vec<String>> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let rest = line.strip_prefix(metric)?;
        if let Some(labels) = rest.strip_prefix('{') {
            let body = labels.split('}').next()?;
            Some(
                body.split(',')
                    .filter_map(|kv| kv.split('=').next())
                    .map(str::to_owned)
                    .collect(),
            )
        } else if rest.starts_with(' ') {
            Some(Vec::new())
        } else {
            None
        }
    })
}

#[tokio::test]
async fn every_metric_the_autoscaler_uses_is_exported_with_its_labels() {
    let ex = testkit::executor("test").ready().await;
    let text = reqwest::get(ex.metrics_url())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let expected = expected();
    let metrics: Vec<&Value> = expected["metrics"]
        .as_array()
        .expect("metrics")
        .iter()
        .filter(|m| m["exporter"] == "executor")
        .collect();
    assert!(!metrics.is_empty(), "the manifests refer to no executor metric");
    for m in metrics {
        let name = m["name"].as_str().unwrap();
        let labels = exported_labels(&text, name)
            .unwrap_or_else(|| panic!("{name} (used by {}) is not exported:\n{text}", m["referenced_by"]));
        for want in m["labels"].as_array().unwrap() {
            assert!(
                labels.iter().any(|l| l == want.as_str().unwrap()),
                "{name} lacks label {want}"
            );
        }
        for added in m["target_labels"].as_array().unwrap() {
            assert!(
                !labels.iter().any(|l| l == added.as_str().unwrap()),
                "{name} must not export {added}: the scrape adds it"
            );
        }
    }
}
