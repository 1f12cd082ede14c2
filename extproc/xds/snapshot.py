"""One consistent set of Envoy resources at one version."""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.message import Message  # type: ignore[import-untyped]

from extproc.xds.plan import RoutePlan


@dataclass(frozen=True, slots=True)
class Snapshot:
    version: str  # policy revision + digest of the resources: equal resources, equal version
    revision: str
    resources: dict[str, list[Message]]  # type URL -> resources
    plans: tuple[RoutePlan, ...]
