#!/usr/bin/env python3
"""Checks the container and Kubernetes deployment files without building an image or
applying anything to a cluster (neither is possible in CI): parses every YAML manifest
under deploy/k8s/ and checks the facts that matter (probe paths and ports, the state
volume on a PersistentVolumeClaim, the credentials from a Secret, the configuration
from a ConfigMap, non-root security contexts, the sidecar listening where c42fwd sends),
checks the Dockerfile's (multi-stage, non-root USER, VOLUME, HEALTHCHECK on /health),
and runs `c42fwd validate` on the configuration the ConfigMap and the image ship.

Usage: scripts/check-deploy.py [PATH-TO-c42fwd-BINARY]   (default target/debug/c42fwd)
Needs PyYAML (Debian: python3-yaml); run by scripts/test.sh.
"""
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import tomllib

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
BINARY = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "target/debug/c42fwd"
failures = []


def check(ok, message):
    if not ok:
        failures.append(message)
    return ok


def validate(config_text, secret_files, label):
    """Runs `c42fwd validate` on config_text, with each secret file path in it
    (secret_files: path in the container -> content) pointing at a temporary copy."""
    with tempfile.TemporaryDirectory() as tmp:
        for i, (path, content) in enumerate(sorted(secret_files.items())):
            local = pathlib.Path(tmp, f"secret{i}")
            local.write_text(content)
            check(path in config_text, f"{label}: the config does not read {path}")
            config_text = config_text.replace(f'"{path}"', f'"{local}"')
        cfg = pathlib.Path(tmp, "c42fwd.toml")
        cfg.write_text(config_text)
        r = subprocess.run([str(BINARY), "validate", "--config", str(cfg)],
                           capture_output=True, text=True)
        check(r.returncode == 0,
              f"{label}: c42fwd validate exited {r.returncode}: {r.stdout}{r.stderr}")


def manifests():
    docs = []
    files = sorted((ROOT / "deploy/k8s").glob("*.yaml"))
    check(files, "no manifests in deploy/k8s/")
    for f in files:
        with open(f) as fh:
            try:
                for d in yaml.safe_load_all(fh):
                    if d is not None:
                        check("apiVersion" in d and "kind" in d, f"{f.name}: no apiVersion/kind")
                        docs.append((f.name, d))
            except yaml.YAMLError as e:
                check(False, f"{f.name}: not valid YAML: {e}")
    return docs


def one(docs, kind, name=None):
    found = [d for _, d in docs if d.get("kind") == kind
             and (name is None or d["metadata"]["name"] == name)]
    check(len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}")
    return found[0] if found else {}


def check_k8s():
    docs = manifests()
    kust = one(docs, "Kustomization")
    files = {f for f, _ in docs if f != "kustomization.yaml"}
    check(set(kust.get("resources", [])) == files,
          f"kustomization.yaml resources {kust.get('resources')} != {sorted(files)}")

    dep = one(docs, "Deployment")
    spec = dep["spec"]
    check(spec.get("replicas") == 1, "Deployment: replicas must be 1 (one instance per state)")
    check(spec.get("strategy", {}).get("type") == "Recreate",
          "Deployment: strategy must be Recreate (no two pods on one state volume)")
    pod = spec["template"]["spec"]
    psc = pod.get("securityContext", {})
    check(psc.get("runAsNonRoot") is True, "pod securityContext: runAsNonRoot is not true")
    check(psc.get("runAsUser", 0) != 0, "pod securityContext: runAsUser is 0 or unset")
    volumes = {v["name"]: v for v in pod["volumes"]}
    containers = {c["name"]: c for c in pod["containers"]}
    check("c42fwd" in containers and len(containers) >= 2,
          f"expected c42fwd and a sidecar, found {sorted(containers)}")
    for name, c in containers.items():
        sc = c.get("securityContext", {})
        check(sc.get("allowPrivilegeEscalation") is False,
              f"{name}: allowPrivilegeEscalation is not false")
        check(sc.get("runAsUser", psc.get("runAsUser", 0)) != 0, f"{name}: runs as root")
    c = containers["c42fwd"]
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}

    def source_of(mount_path, key):
        m = mounts.get(mount_path)
        if not check(m, f"c42fwd: nothing mounted at {mount_path}"):
            return None
        return volumes.get(m["name"], {}).get(key)

    pvc = source_of("/var/lib/c42fwd", "persistentVolumeClaim")
    if check(pvc, "c42fwd: /var/lib/c42fwd is not a PersistentVolumeClaim"):
        one(docs, "PersistentVolumeClaim", pvc["claimName"])
    cm_ref = source_of("/etc/c42fwd/c42fwd.toml", "configMap")
    secret_ref = source_of("/etc/c42fwd/secrets", "secret")
    check(secret_ref, "c42fwd: /etc/c42fwd/secrets is not a Secret")

    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    for probe, path in (("livenessProbe", "/health"), ("readinessProbe", "/ready")):
        get = c.get(probe, {}).get("httpGet", {})
        check(get.get("path") == path, f"c42fwd: {probe} path is {get.get('path')}, not {path}")
        port = ports.get(get.get("port"), get.get("port"))
        check(port == 9842, f"c42fwd: {probe} port {get.get('port')} is not the metrics port 9842")

    if not (cm_ref and secret_ref):
        return
    cm = one(docs, "ConfigMap", cm_ref["name"])
    secret = one(docs, "Secret", secret_ref["secretName"])
    text = cm["data"][mounts["/etc/c42fwd/c42fwd.toml"]["subPath"]]
    cfg = tomllib.loads(text)
    check(cfg.get("state_dir") == "/var/lib/c42fwd", "ConfigMap: state_dir is not the PVC mount")
    listen = cfg.get("metrics", {}).get("listen", "")
    check(listen == "0.0.0.0:9842", f"ConfigMap: metrics.listen {listen!r} is not reachable by the kubelet")
    secrets = {f"/etc/c42fwd/secrets/{k}": v for k, v in secret.get("stringData", {}).items()}
    check(secrets, "Secret: no stringData")
    validate(text, secrets, "ConfigMap c42fwd.toml")

    # The sidecar listens on localhost where c42fwd's sink sends.
    sinks = [s for s in cfg.get("sinks", {}).values() if s.get("host") == "127.0.0.1"]
    check(sinks, "ConfigMap: no sink sends to the sidecar over 127.0.0.1")
    side = [n for n in containers if n != "c42fwd"][0]
    side_mounts = containers[side]["volumeMounts"]
    side_cfg = [cm["data"].get(m.get("subPath", "")) for m in side_mounts
                if volumes.get(m["name"], {}).get("configMap", {}).get("name") == cm_ref["name"]]
    if check(side_cfg and side_cfg[0], f"{side}: no configuration from the ConfigMap"):
        fb = yaml.safe_load(side_cfg[0])
        inputs = fb.get("pipeline", {}).get("inputs", [])
        listening = {(i.get("listen"), int(i.get("port", 0)), i.get("mode")) for i in inputs}
        for s in sinks:
            check(("127.0.0.1", s["port"], s["type"]) in listening,
                  f"{side}: nothing listens on 127.0.0.1:{s['port']}/{s['type']} ({listening})")


def check_dockerfile():
    text = (ROOT / "Dockerfile").read_text()
    lines = [l.strip() for l in re.sub(r"\\\n", " ", text).splitlines()
             if l.strip() and not l.strip().startswith("#")]
    froms = [l for l in lines if l.upper().startswith("FROM ")]
    check(len(froms) >= 2, "Dockerfile: not multi-stage")
    final = lines[lines.index(froms[-1]):]
    users = [l.split()[1] for l in final if l.upper().startswith("USER ")]
    check(users and users[-1].split(":")[0] not in ("root", "0"),
          f"Dockerfile: the runtime stage's USER is {users[-1] if users else 'unset (root)'}")
    check(any(l.upper().startswith("VOLUME") and "/var/lib/c42fwd" in l for l in final),
          "Dockerfile: /var/lib/c42fwd is not a VOLUME")
    hc = [l for l in final if l.upper().startswith("HEALTHCHECK")]
    check(hc and "/health" in hc[0] and "9842" in hc[0], "Dockerfile: no HEALTHCHECK on :9842/health")
    for l in lines:
        if l.upper().startswith("COPY ") and "--from=" not in l:
            for src in l.split()[1:-1]:
                check((ROOT / src).exists(), f"Dockerfile: COPY source {src} does not exist")
    image_cfg = (ROOT / "deploy/container/c42fwd.toml").read_text()
    validate(image_cfg, {"/etc/c42fwd/secrets/client_secret": "placeholder\n"},
             "deploy/container/c42fwd.toml")
    check(tomllib.loads(image_cfg)["metrics"]["listen"].endswith(":9842"),
          "deploy/container/c42fwd.toml: metrics not on port 9842")


if not BINARY.is_file():
    sys.exit(f"check-deploy: {BINARY} does not exist (build it first: cargo build)")
check_k8s()
check_dockerfile()
if failures:
    for f in failures:
        print(f"check-deploy: FAIL: {f}", file=sys.stderr)
    sys.exit(1)
print("check-deploy: ok (deploy/k8s/*.yaml, Dockerfile; image build and cluster apply not run)")
