"""Offline validation of k8s/: render every overlay, validate it, check the policies on the render.

Each overlay is rendered as users apply it, with plain ``kubectl kustomize`` (no flags), in a
copy of ``k8s/`` (with a throwaway ``secrets.env`` made from the overlay's
``secrets.env.example``: the real one is git-ignored and never read here). The flow-run Jobs
that the Prefect worker would create for prefect.yaml's Kubernetes deployments are rendered
too, by prefect-kubernetes itself from the work pool's base job template. Every object is
validated in strict mode against the Kubernetes API schemas of :data:`KUBERNETES_VERSION`
(kubernetes-validate), then the policies below are checked on what was rendered, and the
render is compared with the overlay's ``<env>.yaml`` (the environment's settings file, which
``recommender.settings`` reads too).

Locally the module skips when kubectl, kubernetes-validate or prefect-kubernetes is missing;
with ``CI=true`` it fails instead.
"""

from __future__ import annotations

import ast
import asyncio
import copy
import importlib.util
import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from recommender.settings import ENVIRONMENTS, Settings, environment_file
from tests.kustomize import copy_tree, render_overlay

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
JOB_TEMPLATE = K8S / "components" / "prefect-kubernetes-worker" / "base-job-template.json"

# The newest Kubernetes version kubernetes-validate 1.37.0 ships API schemas for.
KUBERNETES_VERSION = "1.37.0"

IN_CI = os.environ.get("CI") == "true"

# Our own images; every other image is third-party and pinned in k8s/base.
BENTO_IMAGE = "movie-recommender"
PROJECT_IMAGE = "movierec"

# Patches in the overlays are named by what they change.
PATCH_NAMES = {"replicas.yaml", "resources.yaml", "hpa.yaml", "ingress.yaml", "storage.yaml"}
DEPRECATED_KUSTOMIZE_FIELDS = {
    "bases",
    "commonLabels",
    "patchesJson6902",
    "patchesStrategicMerge",
    "vars",
}


def _need(available: bool, what: str) -> None:
    """Skip without ``what`` locally; in CI (``CI=true``) a missing tool is a failure."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{what} is required when CI=true")
    pytest.skip(f"{what} is not available")


# --- k8s/overlays/<env>/<env>.yaml: the `kubernetes:` section, strictly ---------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ResourceSpec(_Strict):
    requests: dict[str, str]
    limits: dict[str, str]


class Bounds(_Strict):
    min: int = Field(ge=1)
    max: int = Field(ge=1)


class MlflowArtifacts(_Strict):
    destination: str
    s3_endpoint_url: str | None = None


class KubernetesSection(_Strict):
    """What ``k8s/overlays/<env>`` must render; a misspelt key is an error."""

    namespace: str
    ingress_host: str
    images: dict[str, str]
    replicas: dict[str, int]
    autoscaling: dict[str, Bounds]
    resources: dict[str, ResourceSpec]
    mlflow_artifacts: MlflowArtifacts


# The top-level sections of an environment's settings file and the test that holds each reader
# to it: `settings` (recommender.settings.Settings, validated here), `kubernetes` (this module) and
# `prefect` (tests/unit/test_prefect_yaml.py, which validates it as strictly).
DEPLOYMENT_SECTIONS = {"settings", "prefect", "kubernetes"}


def _deployments(env: str) -> dict[str, Any]:
    return yaml.safe_load(environment_file(env).read_text())


def _kubernetes_section(env: str) -> KubernetesSection:
    return KubernetesSection.model_validate(_deployments(env)["kubernetes"])


# --- rendering ---------------------------------------------------------------------------------
@dataclass
class Render:
    """One environment: the objects kustomize renders and the flow-run Jobs of prefect.yaml."""

    env: str
    objects: list[dict[str, Any]]
    flow_jobs: dict[str, dict[str, Any]]

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [obj for obj in self.objects if obj["kind"] == kind]

    def find(self, kind: str, name: str) -> dict[str, Any] | None:
        return next((o for o in self.all(kind) if o["metadata"]["name"] == name), None)

    def get(self, kind: str, name: str) -> dict[str, Any]:
        obj = self.find(kind, name)
        assert obj is not None, f"{self.env}: no {kind} {name} in the render"
        return obj

    def workloads(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """(label, pod template) of every workload, the flow-run Jobs included."""
        for obj in self.objects:
            if obj["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
                yield f"{obj['kind']}/{obj['metadata']['name']}", obj["spec"]["template"]
        for name, job in self.flow_jobs.items():
            yield f"flow-run Job of {name}", job["spec"]["template"]

    def containers(self) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
        """(label, pod spec, container) of every container and init container."""
        for label, template in self.workloads():
            spec = template["spec"]
            for container in spec.get("initContainers", []) + spec["containers"]:
                yield f"{label} container {container['name']}", spec, container


class _NoPrefectApi:
    """Stands in for a Prefect client: the job template must render without the API."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the base job template needs the Prefect API ({name})")


def _flow_run_job(template: dict[str, Any], job_variables: dict[str, Any]) -> dict[str, Any]:
    """The Job manifest the Kubernetes worker submits for a flow run with these job variables."""
    from prefect.client.schemas.objects import FlowRun
    from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

    configuration = asyncio.run(
        KubernetesWorkerJobConfiguration.from_template_and_values(
            template,
            job_variables,
            client=_NoPrefectApi(),  # type: ignore[arg-type]
        )
    )
    configuration.prepare_for_flow_run(FlowRun(flow_id=uuid.uuid4(), name="test-run"))
    job = configuration.job_manifest
    # prefect-kubernetes insists on these two in the pod template (its own default template has
    # them there too), where a PodSpec has no such fields: the API server drops them with a
    # warning (field validation "Warn", the default for API clients). Strict validation here
    # would refuse them, so they go before it.
    for key, value in (("parallelism", 1), ("completions", 1)):
        assert job["spec"]["template"]["spec"].pop(key) == value
    return job


@pytest.fixture(scope="module")
def renders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Render]:
    kubectl = shutil.which("kubectl")
    _need(kubectl is not None, "kubectl (with kustomize built in)")
    for module, package in (
        ("kubernetes_validate", "kubernetes-validate"),
        ("prefect_kubernetes", "prefect-kubernetes"),
    ):
        found = importlib.util.find_spec(module) is not None
        _need(found, f"{package} (a dev dependency of the project)")
    assert kubectl is not None

    tree = copy_tree(tmp_path_factory.mktemp("tree"))
    template = json.loads(JOB_TEMPLATE.read_text())
    deployments = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]

    result = {}
    for env in ENVIRONMENTS:
        output = render_overlay(kubectl, tree / "overlays" / env)
        objects = [obj for obj in yaml.safe_load_all(output) if obj]
        pool = _deployments(env)["prefect"]["work_pool"]
        flow_jobs = {
            d["name"]: _flow_run_job(template, d["work_pool"].get("job_variables", {}))
            for d in deployments
            if d["work_pool"]["name"] == pool and env != "dev"
        }
        result[env] = Render(env, objects, flow_jobs)
    return result


@pytest.fixture(params=ENVIRONMENTS)
def render(request: pytest.FixtureRequest, renders: dict[str, Render]) -> Render:
    return renders[request.param]


# --- helpers over a render ---------------------------------------------------------------------
def _split_image(image: str) -> tuple[str, str | None]:
    """(name, tag) of an image reference; the tag is None when it has none."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        return name.rsplit(":", 1)[0], name.rsplit(":", 1)[1]
    return name, None


def _container_env(render: Render, container: dict[str, Any]) -> dict[str, str]:
    """The container's environment as far as the render knows it (secrets and fields left out)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env |= render.get("ConfigMap", source["configMapRef"]["name"]).get("data", {})
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        elif "configMapKeyRef" in var.get("valueFrom", {}):
            ref = var["valueFrom"]["configMapKeyRef"]
            env[var["name"]] = render.get("ConfigMap", ref["name"])["data"][ref["key"]]
    return env


def _volume_sources(pod_spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {volume["name"]: volume for volume in pod_spec.get("volumes", [])}


def _mounts(pod_spec: dict[str, Any], container: dict[str, Any]) -> Iterator[tuple[dict, dict]]:
    """(volumeMount, volume) pairs of a container."""
    volumes = _volume_sources(pod_spec)
    for mount in container.get("volumeMounts", []):
        yield mount, volumes.get(mount["name"], {})


def _references(text: str) -> set[str]:
    return set(re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", text))


def _command_text(container: dict[str, Any]) -> str:
    parts = container.get("command", []) + container.get("args", [])
    parts += [var.get("value", "") for var in container.get("env", [])]
    return "\n".join(str(part) for part in parts)


def _settings_env_names() -> set[str]:
    """Every environment variable recommender.settings reads."""
    names = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {str(choice).upper() for choice in alias.choices}
        else:
            names.add(f"{Settings.model_config['env_prefix']}{name}".upper())
    source = (ROOT / "recommender" / "settings.py").read_text()
    return names | set(re.findall(r'os\.environ\.get\(\s*"([A-Z_]+)"', source))


def _mlflow_env_names() -> set[str]:
    """Every MLFLOW_* variable named in mlflow's environment variables and CLI options."""
    spec = importlib.util.find_spec("mlflow")
    assert spec is not None and spec.submodule_search_locations
    package = Path(spec.submodule_search_locations[0])
    sources = ["environment_variables.py", "utils/cli_args.py", "cli/__init__.py"]
    text = "\n".join((package / path).read_text() for path in sources)
    return set(re.findall(r'"(MLFLOW_[A-Z0-9_]+)"', text))


# Variables read by programs whose source is not installed here: the official postgres image's
# entrypoint, and boto3's credential chain (the MLflow server's S3 artifact store).
POSTGRES_IMAGE_ENV = {"POSTGRES_PASSWORD", "POSTGRES_USER", "POSTGRES_DB", "PGDATA"}
BOTO3_ENV = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


def _env_readers() -> dict[str, set[str]]:
    """The variables each program reads, by container name."""
    movierec = _settings_env_names()
    return {
        "bento": movierec,
        "prefect-job": movierec,
        "mlflow": _mlflow_env_names() | BOTO3_ENV,
        "postgres": POSTGRES_IMAGE_ENV,
    }


def _settings_files(render: Render, pod_spec: dict, container: dict) -> dict[str, str] | None:
    """The files of the ConfigMap mounted where the container's MOVIEREC_DEPLOYMENTS_DIR points."""
    directory = _container_env(render, container).get("MOVIEREC_DEPLOYMENTS_DIR")
    if directory is None:
        return None
    for mount, volume in _mounts(pod_spec, container):
        if mount["mountPath"] == directory and "configMap" in volume:
            return render.get("ConfigMap", volume["configMap"]["name"])["data"]
    raise AssertionError(f"nothing is mounted at MOVIEREC_DEPLOYMENTS_DIR={directory}")


def _file_key_reader(
    render: Render, container: dict[str, Any], mount_path: str, key: str
) -> str | None:
    """Who reads the file ``mount_path/key`` in this container, or None."""
    path = f"{mount_path.rstrip('/')}/{key}"
    env = _container_env(render, container)
    if path in _command_text(container):
        return "the container's command"
    if (
        mount_path == env.get("MOVIEREC_DEPLOYMENTS_DIR")
        and key == f"{env.get('MOVIEREC_ENV')}.yaml"
    ):
        return "recommender.settings"
    image, _ = _split_image(container["image"])
    if (
        image == "postgres"
        and mount_path == "/docker-entrypoint-initdb.d"
        and key.endswith((".sql", ".sh"))
    ):
        return "the postgres image's entrypoint"
    return None


def unread_keys(render: Render) -> list[str]:
    """Every ConfigMap or Secret key of the render that no container reads, with the reason.

    An environment variable is read when the program in the container reads it (the Settings
    fields for movierec's containers, mlflow's own variables for the MLflow server) or when the
    container's command, arguments or other variables refer to it as ``$(NAME)``. A file is read
    when the command names its path, when it is the ``<MOVIEREC_ENV>.yaml`` in
    MOVIEREC_DEPLOYMENTS_DIR, or when it is an init script the postgres image runs. Grafana
    dashboards are read by Grafana, outside the render.
    """
    readers = _env_readers()
    read: dict[tuple[str, str, str], list[str]] = {}
    problems: list[str] = []

    def consume(kind: str, name: str, key: str, reader: str | None, where: str) -> None:
        if reader is None:
            problems.append(f"{kind} {name} key {key}: {where} does not read it")
        read.setdefault((kind, name, key), []).append(where)

    for label, pod_spec, container in render.containers():
        known = readers.get(container["name"], set()) | _references(_command_text(container))
        for source in container.get("envFrom", []):
            for kind, ref in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                if ref in source:
                    obj = render.get(kind, source[ref]["name"])
                    for key in {**obj.get("data", {}), **obj.get("stringData", {})}:
                        consume(
                            kind, obj["metadata"]["name"], key, key if key in known else None, label
                        )
        for var in container.get("env", []):
            for kind, ref in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
                if ref in var.get("valueFrom", {}):
                    source = var["valueFrom"][ref]
                    reader = var["name"] if var["name"] in known else None
                    consume(kind, source["name"], source["key"], reader, label)
        for mount, volume in _mounts(pod_spec, container):
            if "configMap" in volume:
                obj = render.get("ConfigMap", volume["configMap"]["name"])
                for key in obj.get("data", {}):
                    reader = _file_key_reader(render, container, mount["mountPath"], key)
                    consume("ConfigMap", obj["metadata"]["name"], key, reader, label)

    for kind in ("ConfigMap", "Secret"):
        for obj in render.all(kind):
            if obj["metadata"].get("labels", {}).get("grafana_dashboard") == "1":
                continue  # read by Grafana's sidecar, outside this render
            for key in {**obj.get("data", {}), **obj.get("stringData", {})}:
                if (kind, obj["metadata"]["name"], key) not in read:
                    problems.append(f"{kind} {obj['metadata']['name']} key {key}: unused")
    return problems


# --- validation --------------------------------------------------------------------------------
def test_every_object_validates_strictly(render: Render) -> None:
    import kubernetes_validate

    documents = render.objects + list(render.flow_jobs.values())
    for obj in documents:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    assert len(render.objects) > 20


def test_strict_validation_refuses_unknown_fields(renders: dict[str, Render]) -> None:
    import kubernetes_validate

    deployment = copy.deepcopy(renders["prod"].get("Deployment", "bento"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="livenessProbes"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_the_stack_is_complete(render: Render) -> None:
    for kind, name in [
        ("Deployment", "bento"),
        ("Service", "bento"),
        ("HorizontalPodAutoscaler", "bento"),
        ("PodDisruptionBudget", "bento"),
        ("Ingress", "bento"),
        ("Deployment", "mlflow"),
        ("StatefulSet", "postgres"),
        ("Deployment", "prefect-server"),
        ("NetworkPolicy", "default-deny-ingress"),
    ]:
        render.get(kind, name)
    assert render.get("HorizontalPodAutoscaler", "bento")["apiVersion"] == "autoscaling/v2"
    assert render.get("StatefulSet", "postgres")["spec"]["volumeClaimTemplates"]
    if render.env == "dev":
        # dev flows run in a process work pool on the developer's machine
        assert render.find("Deployment", "prefect-worker") is None
        assert not render.flow_jobs
    else:
        render.get("Deployment", "prefect-worker")
        assert len(render.flow_jobs) == 5  # data, training, batch prediction, monitoring, rollback


# --- policies on every container ---------------------------------------------------------------
def test_every_container_has_requests_and_limits(render: Render) -> None:
    for label, _, container in render.containers():
        resources = container.get("resources", {})
        for part in ("requests", "limits"):
            assert set(resources.get(part, {})) >= {"cpu", "memory"}, f"{label}: no {part}"


def test_serving_containers_have_liveness_and_readiness_probes(render: Render) -> None:
    served = 0
    for service in render.all("Service"):
        selector = service["spec"]["selector"]
        for label, template in render.workloads():
            if selector.items() <= template["metadata"].get("labels", {}).items():
                for container in template["spec"]["containers"]:
                    assert "livenessProbe" in container, f"{label}: no liveness probe"
                    assert "readinessProbe" in container, f"{label}: no readiness probe"
                    served += 1
    assert served >= 4
    bento = render.get("Deployment", "bento")["spec"]["template"]["spec"]["containers"][0]
    assert bento["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert bento["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert {"name": "http", "containerPort": 3000} in bento["ports"]


def test_pods_run_as_non_root_with_a_restricted_profile(render: Render) -> None:
    for label, pod_spec, container in render.containers():
        pod = pod_spec.get("securityContext", {})
        own = container.get("securityContext", {})
        assert own.get("runAsNonRoot", pod.get("runAsNonRoot")) is True, label
        assert own.get("runAsUser", pod.get("runAsUser", 0)) > 0, label
        profile = own.get("seccompProfile", pod.get("seccompProfile", {}))
        assert profile.get("type") == "RuntimeDefault", label
        assert own.get("allowPrivilegeEscalation") is False, label
        assert own.get("capabilities", {}).get("drop") == ["ALL"], label
        assert own.get("readOnlyRootFilesystem") is True, label


def _bentoml_image_uid() -> int:
    """The uid of the user that `bentoml containerize` images run as, from bentoml's source."""
    spec = importlib.util.find_spec("bentoml")
    assert spec is not None and spec.submodule_search_locations
    source = (
        Path(spec.submodule_search_locations[0]) / "_internal" / "container" / "generate.py"
    ).read_text()
    uid = re.search(r"^BENTO_UID_GID = (\d+)$", source, re.MULTILINE)
    assert uid, "bentoml's container module no longer says which user images run as"
    return int(uid.group(1))


def test_the_bento_runs_as_the_image_user_with_writable_scratch(render: Render) -> None:
    uid = _bentoml_image_uid()
    bentoml_home = Path(os.environ.get("BENTOML_HOME", Path.home() / "bentoml"))
    for dockerfile in bentoml_home.glob("bentos/*/*/env/docker/Dockerfile"):
        built = re.search(r"^ARG BENTO_USER_UID=(\d+)$", dockerfile.read_text(), re.MULTILINE)
        assert built and int(built.group(1)) == uid, dockerfile
    spec = render.get("Deployment", "bento")["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsUser"] == uid
    assert spec["securityContext"]["runAsGroup"] == uid
    container = spec["containers"][0]
    writable = {
        Path(mount["mountPath"]): volume
        for mount, volume in _mounts(spec, container)
        if not mount.get("readOnly")
    }
    # BentoML creates its stores and metric files under BENTOML_HOME when it starts.
    home = Path(_container_env(render, container)["BENTOML_HOME"])
    assert any(home.is_relative_to(path) and "emptyDir" in v for path, v in writable.items())
    assert "emptyDir" in writable[Path("/tmp")]


# --- references inside a render ----------------------------------------------------------------
def test_services_select_pods_that_exist(render: Render) -> None:
    for service in render.all("Service"):
        name, selector = service["metadata"]["name"], service["spec"].get("selector")
        assert selector, f"Service {name} selects nothing"
        pods = [
            template
            for _, template in render.workloads()
            if selector.items() <= template["metadata"].get("labels", {}).items()
        ]
        assert pods, f"Service {name}: no pod template has the labels {selector}"
        ports = {
            port.get("name"): port["containerPort"]
            for template in pods
            for container in template["spec"]["containers"]
            for port in container.get("ports", [])
        }
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            assert target in ports or target in ports.values(), f"Service {name}: {target}"


def test_pods_refer_to_objects_in_the_render(render: Render) -> None:
    claims = {o["metadata"]["name"] for o in render.all("PersistentVolumeClaim")}
    for sts in render.all("StatefulSet"):
        claims |= {c["metadata"]["name"] for c in sts["spec"].get("volumeClaimTemplates", [])}
    for label, template in render.workloads():
        spec = template["spec"]
        account = spec.get("serviceAccountName")
        if account:
            render.get("ServiceAccount", account)
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                render.get("ConfigMap", volume["configMap"]["name"])
            if "secret" in volume:
                render.get("Secret", volume["secret"]["secretName"])
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                assert claim in claims, f"{label}: no PersistentVolumeClaim {claim}"
    for _, _, container in render.containers():
        _container_env(render, container)  # every ConfigMap it names exists
        for var in container.get("env", []):
            ref = var.get("valueFrom", {}).get("secretKeyRef")
            if ref and not ref.get("optional"):
                assert ref["key"] in render.get("Secret", ref["name"])["data"], ref


def test_every_configmap_and_secret_key_is_read(render: Render) -> None:
    assert unread_keys(render) == []


def test_the_key_check_catches_a_misspelt_key(renders: dict[str, Render]) -> None:
    render = copy.deepcopy(renders["prod"])
    env_map = next(c for c in render.all("ConfigMap") if "MOVIEREC_ENV" in c.get("data", {}))
    env_map["data"]["MOVIEREC_PROMOTION_MARGN"] = "0.1"
    assert unread_keys(render) == [
        f"ConfigMap {env_map['metadata']['name']} key MOVIEREC_PROMOTION_MARGN: "
        "Deployment/bento container bento does not read it"
    ]


# --- settings as the pods see them -------------------------------------------------------------
def _effective_settings(
    files: dict[str, str], env: dict[str, str], directory: Path, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    for name in _settings_env_names():
        monkeypatch.delenv(name, raising=False)
    for name, text in files.items():
        (directory / name).write_text(text)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MOVIEREC_DEPLOYMENTS_DIR", str(directory))
    return Settings()


def test_settings_files_hold_only_sections_with_a_reader(render: Render) -> None:
    document = _deployments(render.env)
    assert set(document) <= DEPLOYMENT_SECTIONS
    Settings.model_validate(document["settings"])  # extra="forbid": a misspelt key fails
    _kubernetes_section(render.env)


def test_pods_mount_the_settings_file_the_flows_read(render: Render) -> None:
    """One source of truth: the settings every pod mounts (the Bento's and the flow-run Jobs')
    are the environment's settings file byte for byte, as recommender.settings reads it."""
    source = environment_file(render.env).read_text()
    mounted = {}
    for label, pod_spec, container in render.containers():
        files = _settings_files(render, pod_spec, container)
        if files is not None:
            mounted[label] = files
    assert "Deployment/bento container bento" in mounted
    assert len(mounted) == 1 + len(render.flow_jobs)
    for label, files in mounted.items():
        assert files == {f"{render.env}.yaml": source}, label


def test_the_flows_read_the_settings_file_of_their_overlay(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Outside a pod (no MOVIEREC_DEPLOYMENTS_DIR), Settings reads k8s/overlays/<env>/<env>.yaml."""
    for name in _settings_env_names():
        monkeypatch.delenv(name, raising=False)
    for env in ENVIRONMENTS:
        monkeypatch.setenv("MOVIEREC_ENV", env)
        values = _deployments(env)["settings"]
        read = Settings()
        monkeypatch.setenv("MOVIEREC_DEPLOYMENTS_DIR", str(tmp_path))  # holds no settings file
        assert read == Settings(**values), env
        monkeypatch.delenv("MOVIEREC_DEPLOYMENTS_DIR")


def test_movierec_pods_read_their_environment_and_write_to_the_data_volume(
    render: Render, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = {
        (s["metadata"]["name"], p["port"])
        for s in render.all("Service")
        for p in s["spec"]["ports"]
    }
    claims = {"movierec-data"}
    checked = []
    for index, (label, pod_spec, container) in enumerate(render.containers()):
        files = _settings_files(render, pod_spec, container)
        if files is None:
            continue
        env = _container_env(render, container)
        directory = tmp_path / str(index)
        directory.mkdir()
        with monkeypatch.context() as patch:
            settings = _effective_settings(files, env, directory, patch)
        assert settings.env == render.env, label
        # Nothing the environment overrides is set in the settings file: it would be dead.
        yaml_settings = yaml.safe_load(files[f"{render.env}.yaml"])["settings"]
        # (MOVIEREC_ENV picks the file, whose `env` says the same, as checked above.)
        shadowed = {
            key
            for key in yaml_settings
            if key != "env" and ({f"MOVIEREC_{key}".upper(), key.upper()} & set(env))
        }
        assert not shadowed, f"{label}: the environment overrides {shadowed}"
        data = [
            mount
            for mount, volume in _mounts(pod_spec, container)
            if volume.get("persistentVolumeClaim", {}).get("claimName") in claims
        ]
        assert [Path(m["mountPath"]) for m in data] == [settings.data_dir], label
        assert not data[0].get("readOnly"), f"{label}: the data volume is read-only"
        assert settings.feedback_log.is_relative_to(settings.data_dir)
        if label.startswith("flow-run Job"):
            uri = settings.mlflow_tracking_uri or ""
            match = re.fullmatch(r"http://([a-z0-9-]+):(\d+)", uri)
            assert match and (match.group(1), int(match.group(2))) in services, uri
        checked.append(label)
    assert "Deployment/bento container bento" in checked
    assert len(checked) == 1 + len(render.flow_jobs)


# --- the render against the overlay's <env>.yaml -------------------------------------------------
def test_namespace(render: Render) -> None:
    namespace = _kubernetes_section(render.env).namespace
    assert [n["metadata"]["name"] for n in render.all("Namespace")] == [namespace]
    for obj in render.objects + list(render.flow_jobs.values()):
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == namespace, obj["metadata"]


def test_images(render: Render) -> None:
    tags = _kubernetes_section(render.env).images
    seen = set()
    for label, _, container in render.containers():
        name, tag = _split_image(container["image"])
        if name in tags:
            assert tag == tags[name], f"{label}: {container['image']}"
            seen.add(name)
        else:
            assert tag and tag != "latest", f"{label}: third-party images are pinned"
    assert seen == set(tags) == {BENTO_IMAGE, PROJECT_IMAGE}


def test_prod_pins_every_image(renders: dict[str, Render]) -> None:
    for label, _, container in renders["prod"].containers():
        _, tag = _split_image(container["image"])
        assert tag is not None or "@" in container["image"], f"{label}: untagged"
        assert tag != "latest", f"{label}: {container['image']}"


def test_replicas_autoscaling_and_resources(render: Render) -> None:
    section = _kubernetes_section(render.env)
    for name, replicas in section.replicas.items():
        workload = render.find("Deployment", name) or render.get("StatefulSet", name)
        assert workload["spec"]["replicas"] == replicas, name
    for name, bounds in section.autoscaling.items():
        hpa = render.get("HorizontalPodAutoscaler", name)["spec"]
        assert (hpa["minReplicas"], hpa["maxReplicas"]) == (bounds.min, bounds.max)
        target = render.get(hpa["scaleTargetRef"]["kind"], hpa["scaleTargetRef"]["name"])
        # the autoscaler owns the count: a replicas field would reset it on every apply
        assert "replicas" not in target["spec"], name
    for name, resources in section.resources.items():
        workload = render.find("Deployment", name) or render.get("StatefulSet", name)
        container = next(
            c for c in workload["spec"]["template"]["spec"]["containers"] if c["name"] == name
        )
        assert container["resources"] == resources.model_dump(), name


def test_mlflow_artifact_store(render: Render) -> None:
    artifacts = _kubernetes_section(render.env).mlflow_artifacts
    spec = render.get("Deployment", "mlflow")["spec"]["template"]["spec"]
    container = spec["containers"][0]
    env = _container_env(render, container)
    assert env["MLFLOW_ARTIFACTS_DESTINATION"] == artifacts.destination
    assert env.get("MLFLOW_S3_ENDPOINT_URL") == artifacts.s3_endpoint_url
    if artifacts.destination.startswith("s3://"):
        assert render.find("PersistentVolumeClaim", "mlflow-artifacts") is None
        names = {var["name"] for var in container["env"]}
        assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= names
    else:
        mounts = {
            mount["mountPath"]: volume.get("persistentVolumeClaim", {}).get("claimName")
            for mount, volume in _mounts(spec, container)
        }
        assert mounts[artifacts.destination] == "mlflow-artifacts"
    # Clients call it by its service name (the settings file's mlflow_tracking_uri).
    allowed = next(a for a in container["args"] if a.startswith("--allowed-hosts="))
    assert {"mlflow", "mlflow:*"} <= set(allowed.removeprefix("--allowed-hosts=").split(","))
    assert {"--workers=1"} <= set(container["args"])


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_flow_runs_use_this_environment(renders: dict[str, Render], env: str) -> None:
    render = renders[env]
    section = _kubernetes_section(render.env)
    pool = _deployments(render.env)["prefect"]["work_pool"]
    worker = render.get("Deployment", "prefect-worker")["spec"]["template"]["spec"]
    for container in worker["initContainers"] + worker["containers"]:
        env = _container_env(render, container)
        assert env["WORK_POOL_NAME"] == pool
        assert "$(WORK_POOL_NAME)" in _command_text(container)
    for name, job in render.flow_jobs.items():
        container = job["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == f"{PROJECT_IMAGE}:{section.images[PROJECT_IMAGE]}", name
        env = {var["name"]: var.get("value") for var in container["env"]}
        assert env["MOVIEREC_ENV"] == render.env, name


# --- exposure ----------------------------------------------------------------------------------
def _api_methods() -> set[str]:
    """The @bentoml.api methods of the @bentoml.service class in bentos/service.py."""
    tree = ast.parse((ROOT / "bentos" / "service.py").read_text())

    def is_bentoml(node: ast.expr, name: str) -> bool:
        node = node.func if isinstance(node, ast.Call) else node
        return (
            isinstance(node, ast.Attribute)
            and node.attr == name
            and isinstance(node.value, ast.Name)
            and node.value.id == "bentoml"
        )

    methods = set()
    for cls in ast.walk(tree):
        if isinstance(cls, ast.ClassDef) and any(
            is_bentoml(d, "service") for d in cls.decorator_list
        ):
            for item in cls.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and any(
                    is_bentoml(d, "api") for d in item.decorator_list
                ):
                    methods.add(item.name)
    assert methods, "bentos/service.py has no @bentoml.api method"
    return methods


def test_the_ingress_routes_the_page_and_the_api_only(render: Render) -> None:
    section = _kubernetes_section(render.env)
    ingress = render.get("Ingress", "bento")["spec"]
    [rule] = ingress["rules"]
    assert rule["host"] == section.ingress_host
    routes = {(p["path"], p["pathType"]) for p in rule["http"]["paths"]}
    expected = {("/", "Exact"), ("/assets", "Prefix")}
    expected |= {(f"/{f.name}", "Exact") for f in (ROOT / "frontend" / "public").iterdir()}
    expected |= {(f"/{method}", "Exact") for method in _api_methods()}
    assert routes == expected
    for path in rule["http"]["paths"]:
        assert path["backend"]["service"] == {"name": "bento", "port": {"name": "http"}}
    if render.env == "prod":
        assert ingress["tls"] == [{"hosts": [section.ingress_host], "secretName": "movierec-tls"}]


INGRESS_NAMESPACE = {"kubernetes.io/metadata.name": "ingress-nginx"}
PROMETHEUS = {"app.kubernetes.io/name": "prometheus"}


def test_network_policies_expose_only_the_bento(render: Render) -> None:
    policies = render.all("NetworkPolicy")
    assert any(
        p["spec"]["podSelector"] == {}
        and p["spec"]["policyTypes"] == ["Ingress"]
        and not p["spec"].get("ingress")
        for p in policies
    ), "no default-deny ingress policy"
    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            for peer in rule["from"]:
                assert "ipBlock" not in peer, policy["metadata"]["name"]
                if "namespaceSelector" in peer:
                    # only the Bento takes traffic from outside the namespace: from the
                    # ingress controller, and Prometheus pods scraping it
                    assert policy["spec"]["podSelector"] == {
                        "matchLabels": {"app.kubernetes.io/name": "bento"}
                    }
                    assert peer in (
                        {"namespaceSelector": {"matchLabels": INGRESS_NAMESPACE}},
                        {"namespaceSelector": {}, "podSelector": {"matchLabels": PROMETHEUS}},
                    ), policy["metadata"]["name"]
    # Every Service's target port is open to something, or the default deny would cut it off.
    for service in render.all("Service"):
        selector = service["spec"]["selector"]
        allowed = {
            port["port"]
            for policy in policies
            if policy["spec"]["podSelector"]
            and policy["spec"]["podSelector"]["matchLabels"].items() <= selector.items()
            for rule in policy["spec"].get("ingress", [])
            for port in rule.get("ports", [])
        }
        container_ports = {
            port.get("name"): port["containerPort"]
            for _, template in render.workloads()
            if selector.items() <= template["metadata"].get("labels", {}).items()
            for container in template["spec"]["containers"]
            for port in container.get("ports", [])
        }
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            number = container_ports.get(target, target)
            assert number in allowed, f"Service {service['metadata']['name']}: {number} closed"


# --- the sources -------------------------------------------------------------------------------
def _kustomizations() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(K8S.rglob("kustomization.yaml")):
        yield path, yaml.safe_load(path.read_text())


def test_kustomizations_use_current_fields_and_small_named_patches() -> None:
    found = list(_kustomizations())
    assert len(found) >= 6
    for path, kustomization in found:
        assert not DEPRECATED_KUSTOMIZE_FIELDS & set(kustomization), path
    for env in ENVIRONMENTS:
        overlay = yaml.safe_load((K8S / "overlays" / env / "kustomization.yaml").read_text())
        assert overlay["resources"] == ["../../base"]
        assert overlay["namespace"] == _kubernetes_section(env).namespace
        for patch in overlay.get("patches", []):
            assert patch["path"] in PATCH_NAMES, f"{env}: {patch['path']}"


def test_secret_env_files_are_git_ignored_and_only_examples_are_committed() -> None:
    git = shutil.which("git")
    _need(git is not None and (ROOT / ".git").exists(), "a git checkout")
    assert git is not None
    tracked = subprocess.run(
        [git, "ls-files", "k8s"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert not [path for path in tracked if path.endswith("secrets.env")]
    for env in ENVIRONMENTS:
        overlay = K8S / "overlays" / env
        ignored = subprocess.run(
            [git, "check-ignore", "--quiet", str(overlay / "secrets.env")], cwd=ROOT, check=False
        )
        assert ignored.returncode == 0, f"{env}: secrets.env is not git-ignored"
        example = (overlay / "secrets.env.example").read_text()
        values = re.findall(r"^[A-Z_]+=(.*)$", example, re.MULTILINE)
        assert values and set(values) == {"change-me"}, f"{env}: the example holds a real value"
        kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text())
        generators = {g["name"]: g for g in kustomization["secretGenerator"]}
        assert generators["movierec-secrets"]["envs"] == ["secrets.env"]


def test_the_grafana_dashboard_and_scraping(render: Render) -> None:
    dashboards = [
        c
        for c in render.all("ConfigMap")
        if c["metadata"].get("labels", {}).get("grafana_dashboard") == "1"
    ]
    [dashboard] = dashboards
    panels = json.loads(dashboard["data"]["movierec.json"])["panels"]
    assert len(panels) >= 6  # its queries: tests/integration/test_dashboard.py
    template = render.get("Deployment", "bento")["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    port = int(annotations["prometheus.io/port"])
    policy = render.get("NetworkPolicy", "bento-from-prometheus")
    assert [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]] == [port]


def test_the_servicemonitor_component_selects_the_bento_service() -> None:
    component = K8S / "components" / "prometheus-servicemonitor"
    [monitor] = yaml.safe_load_all((component / "servicemonitor.yaml").read_text())
    base = list(yaml.safe_load_all((K8S / "base" / "bento.yaml").read_text()))
    [service] = [d for d in base if d["kind"] == "Service" and d["metadata"]["name"] == "bento"]
    labels = monitor["spec"]["selector"]["matchLabels"]
    assert labels.items() <= service["metadata"]["labels"].items()
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
