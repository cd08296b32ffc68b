//! The Kubernetes manifests under deploy/kubernetes pass the offline
//! validator (kubernetes-validate, strict, plus our own checks), and a
//! broken copy fails it: a misspelt field, an enum value the schemas leave
//! open, a wrong type, an unsafe sysctl, an Indexed Job whose agents would
//! not all run at once. Skipped, saying why, when python3 or the
//! kubernetes-validate package is missing (`pip install kubernetes-validate`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn manifests() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes")
}

/// None (and the reason printed) when the validator cannot run here.
fn validator_missing() -> Option<String> {
    let probe = Command::new("python3").args(["-c", "import kubernetes_validate, yaml"]).output();
    match probe {
        Err(e) => Some(format!("python3 cannot run: {e}")),
        Ok(o) if !o.status.success() => Some(format!(
            "the kubernetes-validate package is missing ({}): pip install kubernetes-validate",
            String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or("").trim()
        )),
        Ok(_) => None,
    }
}

fn validate(dir: &Path) -> Output {
    Command::new("python3").arg(manifests().join("validate.py")).arg(dir).output().unwrap()
}

/// `(file, from, to)`: `from` replaced by `to` once in `file`.
type Edit<'a> = (&'a str, &'a str, &'a str);

/// A copy of the manifests with each edit made.
fn broken(name: &str, edits: &[Edit]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tcpmax-k8s-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(manifests()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
    }
    for (file, from, to) in edits {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        assert!(text.contains(from), "{file} has no {from:?} to break");
        std::fs::write(dir.join(file), text.replacen(from, to, 1)).unwrap();
    }
    dir
}

#[test]
fn manifests_are_valid_and_a_broken_one_fails() {
    if let Some(why) = validator_missing() {
        common::skip(&why);
        return;
    }
    let out = validate(&manifests());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.starts_with("ok: "), "{stdout}");

    let cases: [(&str, &[Edit], &str); 7] = [
        (
            "misspelt",
            &[("agents.yaml", "  completionMode: Indexed", "  completionsMode: Indexed")],
            "'completionsMode' was unexpected",
        ),
        (
            "enum",
            &[("agents.yaml", "completionMode: Indexed", "completionMode: Indexd")],
            "spec.completionMode is 'Indexd'",
        ),
        ("type", &[("serve.yaml", "replicas: 1", "replicas: one")], "spec.replicas: 'one' is not of type"),
        (
            "sysctl",
            &[("agents.yaml", "- name: net.ipv4.ip_local_port_range", "- name: net.core.somaxconn")],
            "not on Kubernetes' safe list",
        ),
        (
            "parallelism",
            &[
                ("kustomization.yaml", "          - spec.parallelism\n", ""),
                ("agents.yaml", "parallelism: 4", "parallelism: 2"),
            ],
            "parallelism 2 differs from completions 4",
        ),
        (
            "limits",
            &[("serve.yaml", "              memory: 4Gi", "              memory: 1Gi")],
            "the memory request is above the limit",
        ),
        ("quiet", &[("agents.yaml", "            - --quiet\n", "")], "args lack --quiet"),
    ];
    for (name, edits, want) in cases {
        let dir = broken(name, edits);
        let out = validate(&dir);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{name}: {stdout}");
        assert!(stdout.contains(want), "{name}: wanted {want:?} in\n{stdout}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
