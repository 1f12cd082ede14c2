"""Detection efficacy: the real guards over labelled corpora.

    .venv/bin/python -m bench.efficacy.run [--split tune|heldout|all] [--policy FILE] [--json OUT]

Every prompt goes through the ``prompt_guard`` capability exactly as a
request would: a chat-completions body through the pipeline's request-body
phase, with the capability configured as the policy's ``/v1`` route
configures it (``policies/demo.yaml`` by default, which is what ``extproc up``
serves). A refusal counts as detected. The table gives, per corpus and per
language, recall on attacks and the false-positive rate on benign prompts,
then the misses (truncated). When ``bench/efficacy/pii_eval.py`` exists, its
report follows.

Never tune on the held-out split: ``--split tune`` is the one to iterate on.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import math
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from extproc.capabilities.prompt_guard import PromptGuard
from extproc.context import HttpRequest, Mode, Phase, RequestContext
from extproc.pipeline import resolve_route, run_phase
from extproc.policy.model import CompiledRoute, PolicySet

CORPORA = Path(__file__).with_name("corpora")
DEMO_POLICY = Path(__file__).resolve().parents[2] / "policies" / "demo.yaml"


@dataclass
class Tally:
    attacks: int = 0
    caught: int = 0
    benign: int = 0
    refused: int = 0
    misses: list[str] = field(default_factory=list)
    false_positives: list[str] = field(default_factory=list)

    def add(self, label: int, blocked: bool, text: str) -> None:
        if label:
            self.attacks += 1
            self.caught += blocked
            if not blocked:
                self.misses.append(text)
        else:
            self.benign += 1
            self.refused += blocked
            if blocked:
                self.false_positives.append(text)

    @property
    def recall(self) -> float | None:
        return self.caught / self.attacks if self.attacks else None

    @property
    def fp_rate(self) -> float | None:
        return self.refused / self.benign if self.benign else None


def load(split: str) -> list[tuple[str, dict[str, Any]]]:
    """(corpus name, record) for the split."""
    out = []
    for path in sorted(CORPORA.glob("*.jsonl")):
        if path.stem.startswith("pii"):
            continue
        for line in path.read_text(encoding="utf-8").split("\n"):
            if not line:
                continue
            record = json.loads(line)
            if split == "all" or record["split"] == split:
                out.append((path.stem, record))
    return out


def guard_config(policy: Path) -> dict[str, Any]:
    """The prompt_guard config of the policy's first route that has one."""
    data = yaml.safe_load(policy.read_text())
    routes = data.get("routes") or []
    for route in routes.values() if isinstance(routes, dict) else routes:
        for cap in route.get("capabilities") or []:
            if cap.get("type") == "prompt_guard":
                config: dict[str, Any] = dict(cap.get("config") or {})
                return config
    raise SystemExit(f"{policy}: no route attaches prompt_guard")


class Gate:
    """One prompt_guard capability behind a one-route pipeline."""

    def __init__(self, config: dict[str, Any], policy_dir: Path) -> None:
        self.cap = PromptGuard(PromptGuard.Config.model_validate(_resolve_paths(config, policy_dir)), Mode.ENFORCE)
        self.route = CompiledRoute("llm", "efficacy:1", [self.cap], None)
        self.policies = PolicySet("efficacy", {"llm": self.route})

    async def blocked(self, text: str) -> tuple[bool, dict[str, Any]]:
        ctx = RequestContext(
            self.policies,
            HttpRequest("POST", "/v1/chat/completions", "gw", {"content-type": "application/json"}),
        )
        if resolve_route(ctx, "llm") is not None:
            raise RuntimeError("route did not resolve")
        ctx.request_body = json.dumps({"model": "demo", "messages": [{"role": "user", "content": text}]}).encode()
        deny = await run_phase(ctx, Phase.REQUEST_BODY)
        state: dict[str, Any] = ctx.state.get("prompt_guard") or {}
        return deny is not None, state


def _resolve_paths(config: dict[str, Any], policy_dir: Path) -> dict[str, Any]:
    out = dict(config)
    model = out.get("model")
    if isinstance(model, dict) and isinstance(model.get("path"), str):
        path = Path(model["path"])
        out["model"] = {**model, "path": str(path if path.is_absolute() else policy_dir / path)}
    return out


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:5.1f} %"


def _ci(hits: int, n: int) -> str:
    """Wilson 95 % interval, for how much a rate can be trusted."""
    if not n:
        return ""
    p, z = hits / n, 1.96
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return f"[{100 * max(0.0, centre - half):.1f}, {100 * min(1.0, centre + half):.1f}]"


def render(groups: dict[str, dict[str, Tally]], misses: int) -> str:
    lines = []
    for title, tallies in groups.items():
        lines.append(f"\n== {title}")
        lines.append(f"{'':38} {'attacks':>8} {'recall':>8} {'95% CI':>14} {'benign':>7} {'FP rate':>8} {'95% CI':>12}")
        for name, t in sorted(tallies.items()):
            lines.append(
                f"{name:38} {t.attacks:8} {_pct(t.recall):>8} {_ci(t.caught, t.attacks):>14} "
                f"{t.benign:7} {_pct(t.fp_rate):>8} {_ci(t.refused, t.benign):>12}"
            )
    if misses:
        by_corpus = groups.get("per corpus", {})
        for name, t in sorted(by_corpus.items()):
            for label, texts in (("missed", t.misses), ("false positive", t.false_positives)):
                if texts:
                    lines.append(f"\n-- {name}: {label} ({len(texts)}, first {min(misses, len(texts))})")
                    for text in texts[:misses]:
                        lines.append("   " + " ".join(text.split())[:160])
    return "\n".join(lines)


async def evaluate(split: str, policy: Path, misses: int, model: str = "policy") -> tuple[str, dict[str, Any]]:
    config = guard_config(policy)
    if model != "policy":
        config["model"] = {**(config.get("model") or {}), "enabled": model == "on"}
    gate = Gate(config, policy.parent)
    groups: dict[str, dict[str, Tally]] = {
        "per corpus": defaultdict(Tally),
        "per language": defaultdict(Tally),
        "per split": defaultdict(Tally),
    }
    records = load(split)
    started = time.perf_counter()
    for corpus, record in records:
        blocked, _ = await gate.blocked(record["text"])
        for group, key in (
            ("per corpus", f"{corpus} [{record['split']}]"),
            ("per language", f"{record['lang']} [{record['split']}]"),
            ("per split", record["split"]),
        ):
            groups[group][key].add(record["label"], blocked, record["text"])
    elapsed = time.perf_counter() - started
    tier = "on" if gate.cap.config.model.enabled else "off"
    text = (
        render(groups, misses) + f"\n\n{len(records)} prompts in {elapsed:.1f} s (policy {policy}, model tier {tier})"
    )
    summary = {
        group: {
            key: {"attacks": t.attacks, "recall": t.recall, "benign": t.benign, "fp_rate": t.fp_rate}
            for key, t in tallies.items()
        }
        for group, tallies in groups.items()
    }
    return text, summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=("tune", "heldout", "reference", "all"), default="all")
    parser.add_argument("--policy", type=Path, default=DEMO_POLICY, help="policy whose prompt_guard config to use")
    parser.add_argument(
        "--model", choices=("policy", "on", "off"), default="policy", help="model tier as the policy says, or forced"
    )
    parser.add_argument("--misses", type=int, default=8, help="misses and false positives listed per corpus")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--no-pii", action="store_true", help="skip the PII report")
    args = parser.parse_args(argv)
    text, summary = asyncio.run(evaluate(args.split, args.policy, args.misses, args.model))
    print("# Prompt injection" + text)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    if not args.no_pii:
        try:
            pii_eval = importlib.import_module("bench.efficacy.pii_eval")
        except ModuleNotFoundError as exc:
            if exc.name != "bench.efficacy.pii_eval":
                raise
        else:
            print("\n# PII\n" + pii_eval.render(pii_eval.evaluate(args.split)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
