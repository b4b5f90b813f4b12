"""prefect.yaml: parses as `prefect deploy` reads it, and agrees with the settings files.

Each environment has the four deployments (data daily, training weekly and on the monitoring
flow's retraining events, batch predictions daily after both, monitoring hourly); every
entrypoint imports and names the flow its deployment is named after; the schedules are valid
cron and equal to the `prefect:` section of k8s/overlays/<env>/<env>.yaml, which is validated
strictly here (a misspelt key fails). `prefect deploy --all` against a real server is in
docs/deploy.md; the Jobs the Kubernetes deployments become are checked in test_k8s.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ConfigDict

from recommender.settings import ENVIRONMENTS, environment_file

ROOT = Path(__file__).resolve().parents[2]

# flow name -> entrypoint; a deployment is named <flow name>-<environment>.
FLOWS = {
    "data-pipeline": "flows/data_pipeline.py:data_pipeline",
    "training": "flows/training.py:training_flow",
    "batch-prediction": "flows/batch_prediction.py:batch_prediction_flow",
    "monitoring": "flows/monitoring.py:monitoring_flow",
    "rollback": "flows/rollback.py:rollback_flow",
}
MANUAL = {"rollback"}  # run by hand, on no schedule
RETRAINING_EVENTS = {"movierec.drift.detected", "movierec.feedback.accumulated"}
# Fixed times: minute and hour are numbers, day of month and month are `*`; the day of week is
# `*` (daily) or one day (weekly).
SIMPLE_CRON = re.compile(r"(?P<minute>\d+) (?P<hour>\d+) \* \* (?P<weekday>\*|[0-6])")
HOURLY_CRON = re.compile(r"\d+ \* \* \* \*")


class Schedule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cron: str
    timezone: str
    active: bool


class PrefectSection(BaseModel):
    """The `prefect:` section of the environment's settings file; a misspelt key is an error."""

    model_config = ConfigDict(extra="forbid")

    work_pool: str
    schedules: dict[str, Schedule]


@pytest.fixture(scope="module")
def prefect_yaml() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "prefect.yaml").read_text())


def _section(env: str) -> PrefectSection:
    document = yaml.safe_load(environment_file(env).read_text())
    return PrefectSection.model_validate(document["prefect"])


def _deployment(prefect_yaml: dict[str, Any], name: str) -> dict[str, Any]:
    [deployment] = [d for d in prefect_yaml["deployments"] if d["name"] == name]
    return deployment


def test_parses_as_prefect_deploy_reads_it(prefect_yaml: dict[str, Any]) -> None:
    from prefect.cli.deploy._models import PrefectYamlModel

    model = PrefectYamlModel.model_validate(prefect_yaml)
    assert len(model.deployments) == len(FLOWS) * len(ENVIRONMENTS)
    # The anchors live under `definitions:`, which `prefect deploy` ignores.
    assert {"work_pools", "schedules", "job_variables"} <= set(prefect_yaml["definitions"])


def test_each_environment_has_a_deployment_of_each_flow(prefect_yaml: dict[str, Any]) -> None:
    names = sorted(d["name"] for d in prefect_yaml["deployments"])
    assert names == sorted(f"{flow}-{env}" for flow in FLOWS for env in ENVIRONMENTS)
    for env in ENVIRONMENTS:
        for flow, entrypoint in FLOWS.items():
            assert _deployment(prefect_yaml, f"{flow}-{env}")["entrypoint"] == entrypoint


def test_every_entrypoint_imports_and_names_its_flow(prefect_yaml: dict[str, Any]) -> None:
    from prefect import Flow
    from prefect.flows import load_flow_from_entrypoint

    for entrypoint in sorted({d["entrypoint"] for d in prefect_yaml["deployments"]}):
        path, function = entrypoint.split(":")
        flow = load_flow_from_entrypoint(f"{ROOT / path}:{function}")
        assert isinstance(flow, Flow), entrypoint
        assert FLOWS[flow.name] == entrypoint


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_schedules_are_valid_cron_and_equal_deployments_yaml(
    prefect_yaml: dict[str, Any], env: str
) -> None:
    from prefect.client.schemas.schedules import CronSchedule

    section = _section(env)
    assert set(section.schedules) == set(FLOWS) - MANUAL
    for flow in MANUAL:
        assert "schedules" not in _deployment(prefect_yaml, f"{flow}-{env}")
    for flow, expected in section.schedules.items():
        [schedule] = _deployment(prefect_yaml, f"{flow}-{env}")["schedules"]
        CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])  # valid cron and zone
        assert Schedule.model_validate(schedule) == expected, f"{flow}-{env}"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_data_daily_training_weekly_predictions_daily_after_both(env: str) -> None:
    times = {}
    schedules = dict(_section(env).schedules)
    assert HOURLY_CRON.fullmatch(schedules.pop("monitoring").cron)
    for flow, schedule in schedules.items():
        match = SIMPLE_CRON.fullmatch(schedule.cron)
        assert match, f"{env} {flow}: {schedule.cron!r} is not a fixed daily or weekly time"
        times[flow] = (int(match["hour"]), int(match["minute"]), match["weekday"])
    assert times["data-pipeline"][2] == "*"
    assert times["batch-prediction"][2] == "*"
    assert times["training"][2] != "*"
    assert times["data-pipeline"][:2] < times["training"][:2] < times["batch-prediction"][:2]
    assert len({s.timezone for s in _section(env).schedules.values()}) == 1


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_work_pools_and_job_variables(prefect_yaml: dict[str, Any], env: str) -> None:
    pool = _section(env).work_pool
    for flow in FLOWS:
        deployment = _deployment(prefect_yaml, f"{flow}-{env}")
        work_pool = deployment["work_pool"]
        variables = work_pool["job_variables"]
        assert work_pool["name"] == pool
        assert variables["env"]["MOVIEREC_ENV"] == env
        [(step, options)] = deployment["pull"][0].items()
        assert step == "prefect.deployments.steps.set_working_directory"
        if env == "dev":
            # a process pool on the developer's machine: the checkout `prefect deploy` ran in
            assert "image" not in variables and "namespace" not in variables
            assert options["directory"] == "{{ checkout.stdout }}"
            [(build, script)] = deployment["build"][0].items()
            assert build == "prefect.deployments.steps.run_shell_script"
            assert script == {"id": "checkout", "script": "pwd", "stream_output": False}
        else:
            # a Kubernetes pool: the image holds the code (k8s/images/Dockerfile's WORKDIR)
            assert options["directory"] == "/opt/movierec"
            assert "build" not in deployment
            for key in ("image", "namespace", "cpu_request", "cpu_limit"):
                assert key in variables, f"{flow}-{env}: no {key}"
            assert {"memory_request", "memory_limit"} <= set(variables)
        assert deployment["concurrency_limit"] == 1


def test_the_image_workdir_is_where_flow_runs_start() -> None:
    dockerfile = (ROOT / "k8s" / "images" / "Dockerfile").read_text()
    assert re.search(r"^WORKDIR /opt/movierec$", dockerfile, re.MULTILINE)


def test_training_runs_on_the_monitoring_flows_events(prefect_yaml: dict[str, Any]) -> None:
    from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger

    from recommender.monitoring.report import DRIFT_EVENT, FEEDBACK_EVENT, event_resource
    from recommender.settings import REGISTERED_MODEL_NAME

    assert {DRIFT_EVENT, FEEDBACK_EVENT} == RETRAINING_EVENTS
    for deployment in prefect_yaml["deployments"]:
        triggers = deployment.get("triggers", [])
        if not deployment["name"].startswith("training-"):
            assert triggers == [], deployment["name"]
            continue
        [trigger] = [DeploymentEventTrigger.model_validate(t) for t in triggers]
        assert set(trigger.expect) == RETRAINING_EVENTS
        assert trigger.enabled and trigger.threshold == 1
        # the resource the monitoring flow's events name (recommender/monitoring/report.py)
        assert trigger.match.model_dump() == event_resource(REGISTERED_MODEL_NAME)
