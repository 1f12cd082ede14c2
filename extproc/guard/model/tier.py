"""How the prompt guard consults its model tier: config and verdict.

The rule tier decides alone when it is sure (its score already reaches the
block threshold). Otherwise, when the tier is enabled, the model scores the
texts the rules did not block; a probability at or above the model's
threshold fires the signal ``model.classifier`` with a score mapped so that
the model threshold lands on the guard threshold (the model alone can block,
and the reported score keeps one meaning). The tier has a time budget and a
fail mode: a model that could not be loaded, that failed or that ran out of
time fires ``model.unavailable`` / ``model.timeout``, which block when
``fail_mode`` is ``closed`` and are only recorded when it is ``open``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from extproc.guard.model.classifier import LinearModel, ModelError

log = logging.getLogger(__name__)

MODEL_SIGNAL = "model.classifier"
UNAVAILABLE_SIGNAL = "model.unavailable"
TIMEOUT_SIGNAL = "model.timeout"


class ModelTierConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="Consult the local classifier when the rules are not sure.")
    path: str | None = Field(
        None, description="Weights file (default: the built-in extproc/guard/model/injection.json)."
    )
    threshold: float | None = Field(
        None,
        gt=0.0,
        lt=1.0,
        description="Probability from which the model blocks (default: the one in the weights file).",
    )
    min_chars: int = Field(0, ge=0, description="Texts shorter than this skip the model (the rules alone decide).")
    # Envoy gives the processor 250 ms per message (envoy/gateway.yaml): the
    # model's budget must leave room for the rest of the request's work.
    timeout_ms: int = Field(150, ge=1, le=60_000, description="Time budget for one request's model scoring.")
    fail_mode: Literal["closed", "open"] = Field(
        "closed", description="When the model is unavailable or over budget: block (closed) or keep the rules' verdict."
    )


@dataclass(frozen=True, slots=True)
class Loaded:
    """A tier ready to run in this process: the model, or why there is none."""

    model: LinearModel | None
    error: str | None

    @property
    def version(self) -> str | None:
        return self.model.version if self.model is not None else None


def load(config: ModelTierConfig) -> Loaded:
    """The model for ``config``; a load failure is kept, not raised, so the
    fail mode decides what it means for requests."""
    try:
        return Loaded(LinearModel(config.path), None)
    except ModelError as exc:
        log.warning("prompt guard model unavailable: %s", exc)
        return Loaded(None, str(exc))


def probabilities(loaded: Loaded, texts: list[str]) -> list[float]:
    """The model's probability for each text (runnable in a scan worker)."""
    if loaded.model is None:
        raise ModelError(loaded.error or "no model")
    return [loaded.model.predict(text).probability for text in texts]


def model_threshold(config: ModelTierConfig, loaded: Loaded) -> float:
    if config.threshold is not None:
        return config.threshold
    return loaded.model.threshold if loaded.model is not None else 0.5


def mapped_score(probability: float, model_thr: float, guard_thr: float) -> float:
    """The model's probability on the guard's scale: ``model_thr`` maps to
    ``guard_thr``, 1 to 1, linearly in between."""
    if probability < model_thr:
        return guard_thr * probability / model_thr
    return guard_thr + (1.0 - guard_thr) * (probability - model_thr) / (1.0 - model_thr)
