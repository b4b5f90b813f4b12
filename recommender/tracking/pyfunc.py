"""The MLflow pyfunc flavour of the recommender, logged as "models from code".

MLflow executes this file when the model is loaded (``mlflow.pyfunc.load_model``); the
``recommender`` package travels with the model through ``code_paths`` and the trained model
directory through the ``model_dir`` artifact, so nothing is pickled.

``predict`` takes a frame with a ``user_id`` column and returns the top-k per user in long
format (``user_id``, ``rank``, ``movie_id``, ``score``, ``fallback``); ``params={"k": n}``
sets k (default 10). Unknown users get the popular movies with ``fallback`` True.
"""

from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

DEFAULT_K = 10


class MovieRecommenderPyfunc(PythonModel):
    """Top-k recommendations from an :class:`~recommender.modeling.als.ALSRecommender` directory."""

    def load_context(self, context: Any) -> None:
        from recommender.modeling.als import ALSRecommender

        self.model = ALSRecommender.load(context.artifacts["model_dir"])

    # No type hints on predict: MLflow derives a (conflicting) schema from them; the logged
    # signature (recommender.tracking.runs.PYFUNC_SIGNATURE) describes input and output instead.
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        frame = pd.DataFrame(model_input)
        if "user_id" not in frame.columns:
            raise ValueError("model_input needs a user_id column")
        k = int((params or {}).get("k", DEFAULT_K))
        batch = self.model.recommend_batch(frame["user_id"].astype("int64").to_numpy(), k=k)
        return batch.to_frame().to_pandas()


mlflow.models.set_model(MovieRecommenderPyfunc())
