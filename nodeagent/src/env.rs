//! A container's environment, command and args, resolved as a kubelet does.
//!
//! `env` entries are taken in order; a literal `value` has `$(VAR)` expanded
//! against the entries before it (an unknown `$(VAR)` stays as written,
//! `$$` is a literal `$`), and `command`/`args` are expanded against the whole
//! list. `valueFrom.fieldRef` is resolved for the fields a pod on this node
//! knows. Everything else in `valueFrom` (secrets, config maps, resource
//! fields) and `envFrom` is refused with a message for the pod status: this
//! agent has no volumes or API credentials to read them with. Service links
//! (`*_SERVICE_HOST`) are never added.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Container, EnvVar, Pod};

/// What a `fieldRef` can be resolved against.
#[derive(Debug, Clone)]
pub struct PodFields<'a> {
    pub pod: &'a Pod,
    pub pod_ip: String,
    pub host_ip: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvError {
    #[error("env {name}: valueFrom.{from} is not supported by runbox-node")]
    UnsupportedSource { name: String, from: &'static str },
    #[error("env {name}: fieldRef {path} is not supported by runbox-node")]
    UnsupportedField { name: String, path: String },
    #[error("container {0}: envFrom is not supported by runbox-node")]
    EnvFrom(String),
}

/// The container's environment, in order, with every value resolved.
pub fn resolve(container: &Container, fields: &PodFields<'_>) -> Result<Vec<(String, String)>, EnvError> {
    if container.env_from.as_ref().is_some_and(|e| !e.is_empty()) {
        return Err(EnvError::EnvFrom(container.name.clone()));
    }
    let mut out: Vec<(String, String)> = Vec::new();
    let mut known: HashMap<String, String> = HashMap::new();
    for var in container.env.iter().flatten() {
        let value = value_of(var, fields, &known)?;
        known.insert(var.name.clone(), value.clone());
        // A later entry of the same name wins, in the earlier one's place.
        match out.iter_mut().find(|(n, _)| *n == var.name) {
            Some(slot) => slot.1 = value,
            None => out.push((var.name.clone(), value)),
        }
    }
    Ok(out)
}

/// `command` and `args` with `$(VAR)` expanded against `env`.
pub fn expand_all(items: &[String], env: &[(String, String)]) -> Vec<String> {
    let known: HashMap<String, String> = env.iter().cloned().collect();
    items.iter().map(|s| expand(s, &known)).collect()
}

fn value_of(
    var: &EnvVar,
    fields: &PodFields<'_>,
    known: &HashMap<String, String>,
) -> Result<String, EnvError> {
    let Some(from) = &var.value_from else {
        return Ok(expand(var.value.as_deref().unwrap_or(""), known));
    };
    let unsupported = |from| EnvError::UnsupportedSource {
        name: var.name.clone(),
        from,
    };
    if from.secret_key_ref.is_some() {
        return Err(unsupported("secretKeyRef"));
    }
    if from.config_map_key_ref.is_some() {
        return Err(unsupported("configMapKeyRef"));
    }
    if from.resource_field_ref.is_some() {
        return Err(unsupported("resourceFieldRef"));
    }
    let Some(field) = &from.field_ref else {
        return Err(unsupported("(unknown source)"));
    };
    field_value(&field.field_path, fields).ok_or_else(|| EnvError::UnsupportedField {
        name: var.name.clone(),
        path: field.field_path.clone(),
    })
}

/// The value of a downward-API field path, or `None` if it is not one this
/// agent resolves. A missing optional field (no service account) is "".
pub fn field_value(path: &str, fields: &PodFields<'_>) -> Option<String> {
    let meta = &fields.pod.metadata;
    let spec = fields.pod.spec.as_ref();
    let s = |v: Option<&String>| v.cloned().unwrap_or_default();
    Some(match path {
        "metadata.name" => s(meta.name.as_ref()),
        "metadata.namespace" => s(meta.namespace.as_ref()),
        "metadata.uid" => s(meta.uid.as_ref()),
        "status.podIP" => fields.pod_ip.clone(),
        "status.podIPs" => fields.pod_ip.clone(),
        "status.hostIP" => fields.host_ip.clone(),
        "status.hostIPs" => fields.host_ip.clone(),
        "spec.nodeName" => s(spec.and_then(|s| s.node_name.as_ref())),
        "spec.serviceAccountName" => s(spec.and_then(|s| s.service_account_name.as_ref())),
        _ => {
            // metadata.labels['key'] and metadata.annotations['key'].
            let (map, key) = if let Some(rest) = path.strip_prefix("metadata.labels['") {
                (meta.labels.as_ref(), rest.strip_suffix("']")?)
            } else if let Some(rest) = path.strip_prefix("metadata.annotations['") {
                (meta.annotations.as_ref(), rest.strip_suffix("']")?)
            } else {
                return None;
            };
            map.and_then(|m| m.get(key)).cloned().unwrap_or_default()
        }
    })
}

/// Kubernetes' `$(VAR)` expansion (k8s.io/kubernetes third_party/forked/golang/expansion):
/// `$(NAME)` becomes NAME's value if known and stays `$(NAME)` if not; `$$`
/// is an escaped `$`; any other `$` (including an unclosed `$(`) is kept.
pub fn expand(input: &str, known: &HashMap<String, String>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    // Bytes before `checkpoint` are already in `out`; every split below is at
    // an ASCII byte, so the slices are valid UTF-8.
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            out.push_str(&input[checkpoint..cursor]);
            let rest = &input[cursor + 1..];
            let advance = match bytes[cursor + 1] {
                b'$' => {
                    out.push('$');
                    1
                }
                b'(' => match rest.find(')') {
                    Some(close) => {
                        let name = &rest[1..close];
                        match known.get(name) {
                            Some(value) => out.push_str(value),
                            None => {
                                out.push_str("$(");
                                out.push_str(name);
                                out.push(')');
                            }
                        }
                        close + 1
                    }
                    None => {
                        out.push_str("$(");
                        1
                    }
                },
                _ => {
                    // Keep the `$`; the next character is copied as ordinary text.
                    out.push('$');
                    0
                }
            };
            cursor += advance;
            checkpoint = cursor + 1;
        }
        cursor += 1;
    }
    out.push_str(&input[checkpoint.min(input.len())..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{EnvVarSource, ObjectFieldSelector, PodSpec, SecretKeySelector};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn known(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn expansion_follows_the_kubernetes_rules() {
        // The cases of k8s.io/kubernetes/third_party/forked/golang/expansion's tests.
        let m = known(&[("VAR_A", "A"), ("VAR_B", "B"), ("VAR_C", "C"), ("VAR_EMPTY", "")]);
        let cases = [
            ("$(VAR_A)", "A"),
            ("___$(VAR_B)___", "___B___"),
            ("$(VAR_A)-$(VAR_A)", "A-A"),
            ("$(VAR_A)$(VAR_B)$(VAR_C)", "ABC"),
            ("foo$(VAR_EMPTY)bar", "foobar"),
            // Unknown: left as written.
            ("$(VAR_DNE)", "$(VAR_DNE)"),
            ("foo$(VAR_DNE)bar", "foo$(VAR_DNE)bar"),
            // Escapes.
            ("$$(VAR_B)", "$(VAR_B)"),
            ("$$$$$$(BIG_MONEY)", "$$$(BIG_MONEY)"),
            ("$$$(VAR_A)", "$A"),
            ("f00__(VAR_A)__", "f00__(VAR_A)__"),
            // A lone or trailing `$`, an unclosed reference.
            ("$", "$"),
            ("foo$", "foo$"),
            ("$VAR_A", "$VAR_A"),
            ("$(VAR_A", "$(VAR_A"),
            ("$()", "$()"),
            ("$(VAR_A)$", "A$"),
            ("ä$(VAR_A)ö$ü", "äAö$ü"),
        ];
        for (input, want) in cases {
            assert_eq!(expand(input, &m), want, "input {input:?}");
        }
    }

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("executor-abc".into()),
                namespace: Some("runbox".into()),
                uid: Some("1234-5678".into()),
                labels: Some([("app".to_string(), "x".to_string())].into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("loopback-node".into()),
                service_account_name: Some("default".into()),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn field(name: &str, path: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: path.into(),
                    api_version: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn value(name: &str, value: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: Some(value.into()),
            ..Default::default()
        }
    }

    #[test]
    fn field_refs_and_expansion_against_earlier_entries() {
        let pod = pod();
        let fields = PodFields {
            pod: &pod,
            pod_ip: "127.0.1.2".into(),
            host_ip: "127.0.0.1".into(),
        };
        let container = Container {
            name: "executor".into(),
            env: Some(vec![
                value("EARLY", "$(POD_IP):1"),
                field("POD_IP", "status.podIP"),
                value("EXECUTOR_LISTEN", "$(POD_IP):8080"),
                field("NAME", "metadata.name"),
                field("NS", "metadata.namespace"),
                field("UID", "metadata.uid"),
                field("HOST", "status.hostIP"),
                field("NODE", "spec.nodeName"),
                field("SA", "spec.serviceAccountName"),
                field("APP", "metadata.labels['app']"),
                // A fieldRef value is never expanded; a literal is, once.
                value("LITERAL", "$$(POD_IP) $(NAME)"),
            ]),
            ..Default::default()
        };
        let env = resolve(&container, &fields).unwrap();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(
            get("EARLY"),
            Some("$(POD_IP):1"),
            "only earlier entries are known"
        );
        assert_eq!(get("POD_IP"), Some("127.0.1.2"));
        assert_eq!(get("EXECUTOR_LISTEN"), Some("127.0.1.2:8080"));
        assert_eq!(get("NAME"), Some("executor-abc"));
        assert_eq!(get("NS"), Some("runbox"));
        assert_eq!(get("UID"), Some("1234-5678"));
        assert_eq!(get("HOST"), Some("127.0.0.1"));
        assert_eq!(get("NODE"), Some("loopback-node"));
        assert_eq!(get("SA"), Some("default"));
        assert_eq!(get("APP"), Some("x"));
        assert_eq!(get("LITERAL"), Some("$(POD_IP) executor-abc"));
        assert_eq!(
            expand_all(&["--listen=$(EXECUTOR_LISTEN)".into(), "$(NOPE)".into()], &env),
            ["--listen=127.0.1.2:8080", "$(NOPE)"]
        );
    }

    #[test]
    fn unsupported_sources_are_refused_by_name() {
        let pod = pod();
        let fields = PodFields {
            pod: &pod,
            pod_ip: "127.0.1.2".into(),
            host_ip: "127.0.0.1".into(),
        };
        let secret = EnvVar {
            name: "TOKEN".into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    key: "k".into(),
                    name: "s".into(),
                    optional: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let c = Container {
            name: "c".into(),
            env: Some(vec![secret]),
            ..Default::default()
        };
        let err = resolve(&c, &fields).unwrap_err();
        assert_eq!(
            err,
            EnvError::UnsupportedSource {
                name: "TOKEN".into(),
                from: "secretKeyRef"
            }
        );
        assert_eq!(
            err.to_string(),
            "env TOKEN: valueFrom.secretKeyRef is not supported by runbox-node"
        );

        let c = Container {
            name: "c".into(),
            env: Some(vec![field("X", "spec.schedulerName")]),
            ..Default::default()
        };
        assert_eq!(
            resolve(&c, &fields).unwrap_err(),
            EnvError::UnsupportedField {
                name: "X".into(),
                path: "spec.schedulerName".into()
            }
        );
    }
}
