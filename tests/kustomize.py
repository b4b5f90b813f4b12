"""Render k8s/ as users do: plain ``kubectl kustomize`` of an overlay (no flags), in a copy of
the tree whose overlays get a throwaway ``secrets.env`` (the real one is git-ignored and never
read by the tests)."""

from __future__ import annotations

import secrets
import shutil
import subprocess
from pathlib import Path

K8S = Path(__file__).resolve().parents[1] / "k8s"


def _throwaway_secrets(example: Path) -> str:
    lines = []
    for line in example.read_text().splitlines():
        key, sep, _ = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            lines.append(f"{key}={secrets.token_hex(16)}")
    return "\n".join(lines) + "\n"


def copy_tree(target: Path) -> Path:
    """Copy k8s/ to ``target/k8s`` with a throwaway secrets.env in every overlay; return it."""
    tree = target / "k8s"
    shutil.copytree(K8S, tree, ignore=shutil.ignore_patterns("secrets.env"))
    for overlay in (tree / "overlays").iterdir():
        (overlay / "secrets.env").write_text(_throwaway_secrets(overlay / "secrets.env.example"))
    return tree


def render_overlay(kubectl: str, overlay: Path) -> str:
    """``kubectl kustomize overlay``, as users run it (and as ``kubectl apply -k``, Argo CD and
    Flux do): no flags, so every file an overlay reads must be inside its own directory."""
    run = subprocess.run(
        [kubectl, "kustomize", str(overlay)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, f"kubectl kustomize {overlay} failed:\n{run.stderr}"
    return run.stdout
