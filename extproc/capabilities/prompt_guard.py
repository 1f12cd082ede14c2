"""``prompt_guard``: refuse prompts that try to subvert the model.

Policy regex allow/deny lists plus the built-in injection detector (rules as
data in ``extproc/guard/rules/injection.yaml``) and, when ``model.enabled``,
a local classifier consulted for the texts the rules did not block
(``extproc/guard/model``). Which message roles are inspected is
configurable: user input and tool results by default, since those carry text
the application did not write.

Every signal that fired is named in the verdict (``guard.rules`` in the audit
record, in monitor mode too): rule ids, ``policy.deny[i]``,
``model.classifier``, ``model.unavailable`` or ``model.timeout``.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field

from extproc import audit
from extproc.capabilities.base import Capability, register
from extproc.capabilities.llm_common import parsed_or_deny
from extproc.context import Deny, Mode, RequestContext
from extproc.guard import facts, offload
from extproc.guard.injection import InjectionDetector, PromptGuardConfig
from extproc.guard.model import tier
from extproc.llm.errors import llm_error
from extproc.runtime import DEFAULT_RUNTIME, Runtime

BLOCKED_MESSAGE = "the request was blocked by the gateway's content policy"


class PromptGuardCapabilityConfig(PromptGuardConfig):
    max_body_bytes: int = Field(4 << 20, ge=1024)
    model: tier.ModelTierConfig = Field(
        default_factory=tier.ModelTierConfig, description="The local model tier (off unless enabled)."
    )


@dataclass(slots=True)
class Verdict:
    score: float
    rules: list[str]
    model: dict[str, Any] = field(default_factory=dict)


@register
class PromptGuard(Capability[PromptGuardCapabilityConfig]):
    name = "prompt_guard"
    priority = 600
    Config = PromptGuardCapabilityConfig

    def __init__(
        self, config: PromptGuardCapabilityConfig, mode: Mode = Mode.ENFORCE, runtime: Runtime = DEFAULT_RUNTIME
    ) -> None:
        super().__init__(config, mode, runtime)
        self._scan_key = "prompt_guard:" + hashlib.sha256(config.model_dump_json().encode()).hexdigest()
        self._detector = offload.cached(self._scan_key, lambda: _detector(config))
        self._roles = frozenset(config.roles)
        self._model: tier.Loaded | None = None
        self._model_thr = 0.5
        if config.model.enabled:
            # Loaded at policy load here (a bad file shows in the log at
            # once) and again, once, in each scan worker process.
            self._model = offload.cached(self._scan_key + ":model", lambda: tier.load(config.model))
            self._model_thr = tier.model_threshold(config.model, self._model)
            offload.warm_model(_model_probabilities, self._scan_key, config.model, ["warm up"])

    async def on_request_body(self, ctx: RequestContext) -> Deny | None:
        request = parsed_or_deny(ctx, self.config.max_body_bytes)
        if isinstance(request, Deny):
            return request
        slots = [(slot.text, slot.role) for slot in request.texts(self._roles)]
        verdict = await self.assess(slots)
        state: dict[str, Any] = {
            "score": round(verdict.score, 3),
            "rules": verdict.rules,
            "rules_version": self._detector.version,
        }
        if verdict.model:
            state["model"] = verdict.model
        ctx.state["prompt_guard"] = state
        audit.note(ctx, "guard.score", round(verdict.score, 3))
        audit.note(ctx, "guard.rules", verdict.rules)
        if verdict.score >= self.config.threshold:
            facts.note_action(ctx, "block")
            return llm_error(
                request.api,
                400,
                "invalid_request_error",
                BLOCKED_MESSAGE,
                reason=f"prompt injection score {verdict.score:.2f} rules {','.join(verdict.rules)}",
                code="content_policy",
            )
        facts.note_action(ctx, "allow")
        return None

    async def assess(self, slots: list[tuple[str, str]]) -> Verdict:
        """The request's verdict: the rule tier over every text, then the
        model tier over those the rules left below the threshold."""
        scored = await offload.scan(sum(len(text) for text, _ in slots), _scores, self._scan_key, self.config, slots)
        worst = max(scored, key=lambda item: item[0], default=(0.0, []))
        verdict = Verdict(worst[0], list(worst[1]))
        if self._model is None or verdict.score >= self.config.threshold:
            return verdict
        cfg = self.config.model
        texts = [
            text
            for (text, _), (score, _) in zip(slots, scored, strict=True)
            if score < self.config.threshold and len(text) >= cfg.min_chars and text.strip()
        ]
        if texts:
            await self._consult_model(verdict, texts)
        return verdict

    async def _consult_model(self, verdict: Verdict, texts: list[str]) -> None:
        cfg = self.config.model
        assert self._model is not None
        signal = None
        probability = 0.0
        if self._model.model is None:
            signal = tier.UNAVAILABLE_SIGNAL
        else:
            try:
                found = await asyncio.wait_for(
                    offload.model(_model_probabilities, self._scan_key, cfg, texts), cfg.timeout_ms / 1000
                )
                probability = max(found)
            except TimeoutError:
                signal = tier.TIMEOUT_SIGNAL
            except Exception:  # noqa: BLE001 - any model failure is the fail mode's to decide
                signal = tier.UNAVAILABLE_SIGNAL
        if signal is not None:
            verdict.model = {"error": signal}
            verdict.rules.append(signal)
            if cfg.fail_mode == "closed":
                verdict.score = max(verdict.score, 1.0)
            return
        verdict.model = {"probability": round(probability, 4), "version": self._model.version}
        if probability >= self._model_thr:
            verdict.rules.append(tier.MODEL_SIGNAL)
            mapped = tier.mapped_score(probability, self._model_thr, self.config.threshold)
            verdict.score = max(verdict.score, round(mapped, 4))


def _detector(config: PromptGuardCapabilityConfig) -> InjectionDetector:
    return InjectionDetector(extra_deny=config.deny, extra_allow=config.allow, builtin_rules=config.detector)


def _scores(
    key: str, config: PromptGuardCapabilityConfig, slots: list[tuple[str, str]]
) -> list[tuple[float, list[str]]]:
    """Each text's rule score and rules, runnable in a scan worker process
    (see offload)."""
    detector = offload.cached(key, lambda: _detector(config))
    out = []
    for text, role in slots:
        result = detector.scan(text, role)
        out.append((result.score, list(result.rule_ids)))
    return out


def _model_probabilities(key: str, config: tier.ModelTierConfig, texts: list[str]) -> list[float]:
    """The model tier's probabilities, runnable in a scan worker process."""
    loaded = offload.cached(key + ":model", lambda: tier.load(config))
    return tier.probabilities(loaded, texts)
