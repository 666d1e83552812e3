//! Prometheus `file_sd_configs` output: the scrape targets of this node's pods.
//!
//! A pod is listed while one of its containers runs and its annotations say
//! `prometheus.io/scrape: "true"` (port from `prometheus.io/port`, path from
//! `prometheus.io/path`, `/metrics` by default), the convention of the
//! prometheus chart's `kubernetes-pods` job. A terminating pod stays listed
//! until its containers have exited. Each change rewrites the whole file
//! atomically (a temporary file in the same directory, then a rename), so
//! Prometheus never reads half a list; with no targets the file is `[]`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use k8s_openapi::api::core::v1::Pod;
use serde::Serialize;

/// One pod's scrape target.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Target {
    pub namespace: String,
    pub pod: String,
    pub address: String,
    pub metrics_path: String,
}

impl Target {
    /// The pod's target if its annotations ask to be scraped.
    pub fn of(pod: &Pod, pod_ip: &str) -> Option<Self> {
        let ann = pod.metadata.annotations.as_ref()?;
        if ann.get("prometheus.io/scrape").map(String::as_str) != Some("true") {
            return None;
        }
        let port: u16 = ann.get("prometheus.io/port")?.parse().ok()?;
        Some(Self {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            pod: pod.metadata.name.clone().unwrap_or_default(),
            address: format!("{pod_ip}:{port}"),
            metrics_path: ann
                .get("prometheus.io/path")
                .cloned()
                .unwrap_or_else(|| "/metrics".into()),
        })
    }
}

#[derive(Serialize)]
struct Group<'a> {
    targets: [&'a str; 1],
    labels: BTreeMap<&'static str, &'a str>,
}

/// The file's content for `targets`, sorted by namespace, pod, address.
pub fn render<'a>(targets: impl IntoIterator<Item = &'a Target>) -> String {
    let sorted: BTreeSet<&Target> = targets.into_iter().collect();
    let groups: Vec<Group<'_>> = sorted
        .into_iter()
        .map(|t| Group {
            targets: [t.address.as_str()],
            labels: [
                ("__metrics_path__", t.metrics_path.as_str()),
                ("namespace", t.namespace.as_str()),
                ("pod", t.pod.as_str()),
            ]
            .into(),
        })
        .collect();
    serde_json::to_string_pretty(&groups).unwrap_or_else(|_| "[]".into()) + "\n"
}

/// Writes `content` to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, content: &str) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(content.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The live set, by pod UID, and the file it is written to.
#[derive(Debug)]
pub struct FileSd {
    path: PathBuf,
    targets: Mutex<BTreeMap<String, Target>>,
}

impl FileSd {
    /// Starts with an empty list on disk.
    pub fn create(path: PathBuf) -> std::io::Result<Self> {
        write_atomic(&path, &render([]))?;
        Ok(Self {
            path,
            targets: Mutex::new(BTreeMap::new()),
        })
    }

    /// Empties the list (the agent is stopping and its containers are gone).
    pub fn clear(&self) {
        let mut targets = self.targets.lock().unwrap_or_else(PoisonError::into_inner);
        targets.clear();
        if let Err(e) = write_atomic(&self.path, &render([])) {
            tracing::warn!(path = %self.path.display(), error = %e, "writing file_sd failed");
        }
    }

    /// Sets (or with `None` removes) pod `uid`'s target; rewrites the file if that changed anything.
    pub fn set(&self, uid: &str, target: Option<Target>) {
        let mut targets = self.targets.lock().unwrap_or_else(PoisonError::into_inner);
        let changed = match target {
            Some(t) => targets.insert(uid.to_owned(), t.clone()).as_ref() != Some(&t),
            None => targets.remove(uid).is_some(),
        };
        if changed {
            let content = render(targets.values());
            match write_atomic(&self.path, &content) {
                Ok(()) => {
                    tracing::debug!(path = %self.path.display(), targets = targets.len(), "file_sd written")
                }
                Err(e) => tracing::warn!(path = %self.path.display(), error = %e, "writing file_sd failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(name: &str, ann: &[(&str, &str)]) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("runbox".into()),
                annotations: Some(ann.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn targets_come_from_the_annotations() {
        let scrape = [("prometheus.io/scrape", "true"), ("prometheus.io/port", "9090")];
        let t = Target::of(&pod("a", &scrape), "127.0.1.2").unwrap();
        assert_eq!(t.address, "127.0.1.2:9090");
        assert_eq!(t.metrics_path, "/metrics");
        let with_path = [scrape[0], scrape[1], ("prometheus.io/path", "/m")];
        assert_eq!(
            Target::of(&pod("a", &with_path), "127.0.1.2")
                .unwrap()
                .metrics_path,
            "/m"
        );
        assert_eq!(
            Target::of(&pod("a", &[("prometheus.io/scrape", "false"), scrape[1]]), "x"),
            None
        );
        assert_eq!(
            Target::of(&pod("a", &[scrape[0]]), "x"),
            None,
            "no port, no target"
        );
    }

    #[test]
    fn render_is_sorted_prometheus_file_sd() {
        let t = |pod: &str, ip: &str| Target {
            namespace: "runbox".into(),
            pod: pod.into(),
            address: format!("{ip}:9090"),
            metrics_path: "/metrics".into(),
        };
        let out = render([&t("b", "127.0.1.3"), &t("a", "127.0.1.2")]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!([
                {"targets": ["127.0.1.2:9090"], "labels": {"namespace": "runbox", "pod": "a", "__metrics_path__": "/metrics"}},
                {"targets": ["127.0.1.3:9090"], "labels": {"namespace": "runbox", "pod": "b", "__metrics_path__": "/metrics"}},
            ])
        );
        assert_eq!(render([]), "[]\n");
    }

    #[test]
    fn the_file_follows_the_set() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sd.json");
        let sd = FileSd::create(path.clone()).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "[]\n");
        let target = Target::of(
            &pod(
                "a",
                &[("prometheus.io/scrape", "true"), ("prometheus.io/port", "9090")],
            ),
            "127.0.1.2",
        );
        sd.set("uid-a", target);
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(v[0]["targets"][0], "127.0.1.2:9090");
        sd.set("uid-a", None);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "[]\n");
        // No temporary files are left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
