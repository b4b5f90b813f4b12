"""A training run killed right after ``champion`` moved, and what the next run leaves.

On a fresh deployment (tiny ml-100k-layout data, SQLite MLflow, its own BentoML home, one
Prefect server for all commands):

1. ``movierec train --k 5`` makes v1 champion and packages it;
2. ``movierec train --k 10`` (the gate promotes it: v1 logged no ``val_ndcg_at_10``) is killed
   with ``kill -9`` the moment the registry's ``champion`` names v2;
3. ``movierec train --k 10`` runs to the end (its v3 ties v2, so the gate keeps v2).

It prints, after each step, the registry's champion and the version the BentoML store's latest
model and latest Bento carry, and whether they agree at the end (target: they do). Then it
times :func:`bentos.store.reconcile_serving` (what every training run now adds before it
trains) when the store already serves the champion, and when it must package it again.

    uv run python benchmarks/promotion_recovery.py
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from recommender.settings import configure_process

configure_process()

from support.promotion import NAME, Deployment, kill_when, taste_groups_zip  # noqa: E402

TRAIN = ("train", "--trials", "1")


def state(deployment: Deployment) -> str:
    model, bento = (deployment.served_version(store) for store in ("models", "bentos"))
    return f"champion v{deployment.champion()}, store latest model v{model}, latest Bento v{bento}"


def time_reconcile(deployment: Deployment) -> None:
    """Time the reconcile in this process, against the deployment's stores."""
    os.environ["BENTOML_HOME"] = str(deployment.bentoml_home)  # before bentoml is imported
    os.environ["BENTOML_DO_NOT_TRACK"] = "true"
    try:
        from bentos import store
    except ImportError:
        print("reconcile: not in this version of the code")
        return
    if not hasattr(store, "reconcile_serving"):
        print("reconcile: not in this version of the code")
        return
    from recommender.tracking import runs

    client = runs.connect(f"sqlite:///{deployment.mlflow_db}", experiment="movierec")
    catalog = deployment.data_dir / "processed" / "movies.parquet"
    model_tag = f"{NAME}:latest"
    noop = []
    for _ in range(5):
        start = time.perf_counter()
        runs.fail_stale_runs(client, "movierec", max_age_hours=24)
        removed, built = store.reconcile_serving(client, NAME, catalog=catalog, model_tag=model_tag)
        noop.append(time.perf_counter() - start)
        assert built is None, built
    print(f"reconcile when the champion is served: median {statistics.median(noop) * 1000:.0f} ms")
    # Make the store's latest model another version: what a killed promotion leaves.
    served = store.bentoml.models.get(model_tag)
    store.import_model(
        Path(served.path) / "model",
        Path(served.path) / "catalog.parquet",
        labels={**served.info.labels, "model_version": "0"},
        metadata={},
    )
    start = time.perf_counter()
    removed, built = store.reconcile_serving(client, NAME, catalog=catalog, model_tag=model_tag)
    print(
        f"reconcile that packages the champion again: {time.perf_counter() - start:.1f} s "
        f"(built {built}); now {state(deployment)}"
    )


def main() -> int:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with tempfile.TemporaryDirectory(prefix="movierec-promotion-") as root:
        with prefect_test_harness(server_startup_timeout=120):
            deployment = Deployment(Path(root), prefect_api_url=PREFECT_API_URL.value())
            zipped = taste_groups_zip(Path(root) / "ml-100k.zip")
            for args in (("data", "--no-crawl", "--ratings", str(zipped)), (*TRAIN, "--k", "5")):
                code, output = deployment.run(*args)
                if code:
                    print(output)
                    return 1
            print(f"after the first training run:          {state(deployment)}")
            killed = deployment.start(*TRAIN, "--k", "10")
            kill_when(killed, lambda: deployment.champion() == "2", interval=0.01)
            print(f"killed as champion moved to v2:        {state(deployment)}")
            start = time.perf_counter()
            code, output = deployment.run(*TRAIN, "--k", "10")
            seconds = time.perf_counter() - start
            print(f"after the next run ({seconds:.0f} s, exit {code}):  {state(deployment)}")
            served = {deployment.served_version(store) for store in ("models", "bentos")}
            agree = served == {deployment.champion()}
            print("PASS: champion and served model agree" if agree else "FAIL: they disagree")
            time_reconcile(deployment)
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
