"""The local model tier: a linear classifier over hashed text features.

No network and no numeric library: the weights (``injection.json`` beside
this module, produced by ``bench/efficacy/train.py`` from the tune corpora)
are 16-bit integers with one scale, and a prediction is a sum over the
buckets a text's features fall into (``features.indexes``), an L2 norm and a
logistic. A few milliseconds for a 4 KB prompt; the capability runs it off
the event loop under a time budget.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import sys
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from extproc.guard.model import features

WEIGHTS_PATH = Path(__file__).with_name("injection.json")
FORMAT = "extproc-guard-linear/1"


class ModelError(ValueError):
    """The weights file is missing, corrupt or built for other features."""


@dataclass(frozen=True, slots=True)
class Prediction:
    probability: float
    features: int


class LinearModel:
    """Immutable and thread-safe once loaded."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else WEIGHTS_PATH
        try:
            data: dict[str, Any] = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise ModelError(f"{self.path}: {exc}") from None
        if data.get("format") != FORMAT:
            raise ModelError(f"{self.path}: not a {FORMAT} file")
        if data.get("features") != features.FEATURES_VERSION:
            raise ModelError(
                f"{self.path}: built for features {data.get('features')!r}, not {features.FEATURES_VERSION!r}"
            )
        try:
            self.dim = int(data["dim"])
            self.bias = float(data["bias"])
            self.scale = float(data["scale"])
            self.threshold = float(data["threshold"])
            raw = base64.b64decode(data["weights"], validate=True)
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise ModelError(f"{self.path}: {exc}") from None
        weights = array("h")
        weights.frombytes(raw)
        if sys.byteorder != "little":  # pragma: no cover - stored little-endian
            weights.byteswap()
        if self.dim <= 0 or self.dim & (self.dim - 1) or len(weights) != self.dim:
            raise ModelError(f"{self.path}: {len(weights)} weights for dim {self.dim}")
        self._weights = weights
        self.version = str(data.get("version", "unknown"))
        self.size = len(raw)

    def predict(self, text: str) -> Prediction:
        idx = features.indexes(text, self.dim)
        if not idx:
            return Prediction(0.0, 0)
        w = self._weights
        z = self.bias + self.scale * sum(w[i] for i in idx) / math.sqrt(len(idx))
        return Prediction(1.0 / (1.0 + math.exp(-z)) if z > -60 else 0.0, len(idx))

    def __repr__(self) -> str:
        return f"<LinearModel {self.path.name} version={self.version} dim={self.dim}>"
