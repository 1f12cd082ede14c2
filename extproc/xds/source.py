"""Each route's ``match`` as the policy files declare it.

The loaded ``PolicySet`` keeps a route's match only as a compiled closure;
Envoy needs the declaration. The files of the revision are read again (the
revision already validated them, so this cannot fail on content)."""

from __future__ import annotations

from pathlib import Path

import yaml

from extproc.policy.model import PolicySet
from extproc.policy.schema import PolicyFile, RouteMatch

# libyaml when present: the pure-Python parser was most of a compile.
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def route_matches(policy: PolicySet) -> dict[str, RouteMatch | None]:
    out: dict[str, RouteMatch | None] = {}
    for file in policy.files:
        data = yaml.load(Path(file).read_text(encoding="utf-8"), Loader=_LOADER) or {}
        for route in PolicyFile.model_validate(data).routes:
            out[route.name] = route.match
    return out
