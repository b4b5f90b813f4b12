"""The offline evaluation protocol: how interactions are split, how much is tuned, what is scored.

One :class:`EvaluationProtocol` with one set of defaults serves the command line
(``movierec evaluate``), the training flow and
:func:`recommender.modeling.evaluation.evaluate_models`; the settings take their defaults from
it. It imports nothing heavy, so the settings module can use it.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

SplitKind = Literal["random-per-user", "random-per-item", "temporal-per-user"]
SPLIT_KINDS: tuple[str, ...] = get_args(SplitKind)


class EvaluationProtocol(BaseModel):
    """How a model is evaluated offline.

    Attributes:
        split: The split kind (:func:`recommender.modeling.splits.split_interactions`), used
            for test and again, inside the train part, for validation.
        test_fraction: The share of each group held out, for test and for validation.
        seed: Seeds the splits, the search and the models' initialisation.
        k: The cut-off of the reported metrics.
        trials: ALS configurations tried on the validation split.
        min_rating: Only interactions rated at least this count (None: every rating counts).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    split: SplitKind = "random-per-user"
    test_fraction: float = Field(default=0.25, gt=0, lt=1)
    seed: int = 42
    k: int = Field(default=10, ge=1, le=100)
    trials: int = Field(default=16, ge=1, le=1000)
    min_rating: float | None = Field(default=None, ge=0.5, le=5.0)

    def with_options(self, **options: Any) -> EvaluationProtocol:
        """A validated copy with the ``options`` that are not None replacing this one's values."""
        return EvaluationProtocol(
            **{**self.model_dump(), **{k: v for k, v in options.items() if v is not None}}
        )

    def to_params(self) -> dict[str, Any]:
        """The protocol as flat run parameters (``tuning_trials`` for ``trials``)."""
        values = self.model_dump()
        values["tuning_trials"] = values.pop("trials")
        return values


DEFAULT_PROTOCOL = EvaluationProtocol()
