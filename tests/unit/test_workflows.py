"""The CI/CD workflows in .github/workflows: actionlint accepts them, the delivery runs the
environments in order, and the images it builds are the ones the overlays deploy.

The image check follows a commit's images the way the pipeline does: ``make image`` (dry run)
names them, deliver.yml pushes them and hands them to deploy.yml, whose
``kustomize edit set image`` points each overlay at them. kustomize itself is not installable
here (kubectl has it built in, but without ``edit``), so the test writes the ``images:`` entry
that ``kustomize edit set image NAME=NEW_NAME:TAG`` writes and renders the overlay with
``kubectl kustomize``: every container of our two images must then run exactly what was pushed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from recommender.settings import ENVIRONMENTS
from tests.kustomize import copy_tree, render_overlay

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
REGISTRY = "registry.example.com/movierec"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _workflow(name: str) -> dict[str, Any]:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def _expand(text: str, variables: dict[str, str]) -> str:
    """Substitute ``$NAME`` / ``${NAME}`` shell variables."""
    return re.sub(r"\$\{?(\w+)\}?", lambda m: variables.get(m.group(1), m.group(0)), text)


def _script(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def test_actionlint_accepts_every_workflow() -> None:
    actionlint = Path(sys.executable).with_name("actionlint")  # a dev dependency
    workflows = sorted(WORKFLOWS.glob("*.yml"))
    assert {path.name for path in workflows} >= {"ci.yml", "deliver.yml", "deploy.yml"}
    run = subprocess.run(
        [str(actionlint), "-no-color", *map(str, workflows)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_ci_runs_lint_and_the_ci_entry_point() -> None:
    jobs = _workflow("ci.yml")["jobs"]
    assert "make lint" in _script(jobs["lint"])
    assert ".ci/run" in _script(jobs["test"])
    # .ci/run ends with README's test command, which runs the container tests too.
    assert (ROOT / ".ci" / "run").read_text().rstrip().splitlines()[-1] == "make test"


def test_delivery_deploys_dev_then_staging_then_prod_in_their_environments() -> None:
    jobs = _workflow("deliver.yml")["jobs"]
    order = {name: job.get("needs") for name, job in jobs.items() if name in ENVIRONMENTS}
    assert order == {"dev": "images", "staging": ["images", "dev"], "prod": ["images", "staging"]}
    for env in ENVIRONMENTS:
        assert jobs[env]["uses"] == "./.github/workflows/deploy.yml"
        assert jobs[env]["with"]["environment"] == env
    deploy = _workflow("deploy.yml")["jobs"]["deploy"]
    # The GitHub environment of the same name gates the job (prod: required reviewers).
    assert deploy["environment"] == "${{ inputs.environment }}"
    script = _script(deploy)
    assert 'kubectl apply -k "$OVERLAY"' in script
    assert 'prefect --no-prompt deploy --name "*-$ENVIRONMENT"' in script
    assert "/readyz" in script and "/recommend" in script


def _built_images() -> list[str]:
    """What ``make image`` builds for this registry and commit (from a dry run)."""
    run = subprocess.run(
        ["make", "--dry-run", "image-bento", "image-project"]
        + [f"REGISTRY={REGISTRY}", f"IMAGE_TAG={COMMIT}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return re.findall(r"--(?:image-)?tag (\S+)", run.stdout)


def _delivered_images() -> dict[str, str]:
    """deploy.yml's ``kustomize edit set image`` arguments for deliver.yml's images:
    image name in the overlays -> the reference it is set to."""
    deliver = _workflow("deliver.yml")["jobs"]
    images = deliver["images"]
    variables = {"REGISTRY": REGISTRY, "IMAGE_TAG": COMMIT}
    script = _script(images)
    assert 'make image REGISTRY="$REGISTRY" IMAGE_TAG="$IMAGE_TAG"' in script
    assert images["env"]["IMAGE_TAG"] == "${{ github.sha }}"
    pushed = [_expand(ref, variables) for ref in re.findall(r'docker push "([^"]+)"', script)]
    outputs = dict(re.findall(r'echo "(\w+)=([^"]+)" >> "\$GITHUB_OUTPUT"', script))
    outputs = {name: _expand(value, variables) for name, value in outputs.items()}
    assert sorted(pushed) == sorted(_built_images()) == sorted(outputs.values())

    deploy = _workflow("deploy.yml")["jobs"]["deploy"]
    edit = re.search(r"kustomize edit set image (.+)", _script(deploy))
    assert edit is not None
    result = {}
    for name, variable in re.findall(r'"([\w.-]+)=\$(\w+)"', edit.group(1)):
        # $VARIABLE is the job's env, set from an input that deliver.yml fills from an output
        source = re.fullmatch(r"\$\{\{ inputs\.(\w+) \}\}", deploy["env"][variable])
        assert source is not None, variable
        for env in ENVIRONMENTS:
            passed = deliver[env]["with"][source.group(1)]
            output = re.fullmatch(r"\$\{\{ needs\.images\.outputs\.(\w+) \}\}", passed)
            assert output is not None, passed
            result[name] = outputs[output.group(1)]
    return result


def test_the_overlays_deploy_the_images_the_pipeline_builds(tmp_path: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        if os.environ.get("CI") == "true":
            pytest.fail("kubectl is required when CI=true")
        pytest.skip("kubectl is not available")
    delivered = _delivered_images()
    assert set(delivered) == {"movie-recommender", "movierec"}
    tree = copy_tree(tmp_path)
    for env in ENVIRONMENTS:
        overlay = tree / "overlays" / env
        kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text())
        entries = {entry["name"]: entry for entry in kustomization.get("images", [])}
        for name, reference in delivered.items():  # what `kustomize edit set image` writes
            new_name, new_tag = reference.rsplit(":", 1)
            entries[name] = {"name": name, "newName": new_name, "newTag": new_tag}
        kustomization["images"] = list(entries.values())
        (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
        used = {
            container["image"]
            for obj in yaml.safe_load_all(render_overlay(kubectl, overlay))
            if obj and obj["kind"] in ("Deployment", "StatefulSet", "Job", "CronJob")
            for container in _containers(obj)
        }
        ours = {image for image in used if image.startswith(REGISTRY)}
        assert ours == set(delivered.values()), env
        assert not {image.split(":")[0] for image in used} & set(delivered), env


def _containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = obj["spec"]
    if obj["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    pod = spec["template"]["spec"]
    return pod.get("initContainers", []) + pod["containers"]
