"""A2A JSON-RPC methods, skills and tasks as the gateway reads them.

Method names: A2A 1.0 uses the gRPC-style names (``SendMessage``,
``GetTask``...); 0.3 used ``message/send``, ``tasks/get``... The a2a-sdk
serves both on one endpoint (``enable_v0_3_compat``), so the gateway maps
both spellings to the 1.0 name and policies may use either.

Skills: an A2A request does not name the skill that will serve it — skills
are advertised in the agent card, and the agent picks. To authorize per
skill, callers designate it in message metadata under a configured key
(default ``skill``): ``params.message.metadata.skill``, or the request-level
``params.metadata.skill``. Both present and different: invalid params.
Neither: the policy's ``default_skill``, or refused when it has none.
"""

from __future__ import annotations

from typing import Any

V03_ALIASES = {
    "message/send": "SendMessage",
    "message/stream": "SendStreamingMessage",
    "tasks/get": "GetTask",
    # Not served by the a2a-sdk's 0.3 adapter, but named by 0.x drafts and
    # other servers: governed as the method they read or act as.
    "tasks/result": "GetTask",
    "tasks/list": "ListTasks",
    "tasks/cancel": "CancelTask",
    "tasks/resubscribe": "SubscribeToTask",
    "tasks/pushNotificationConfig/set": "CreateTaskPushNotificationConfig",
    "tasks/pushNotificationConfig/create": "CreateTaskPushNotificationConfig",
    "tasks/pushNotificationConfig/get": "GetTaskPushNotificationConfig",
    "tasks/pushNotificationConfig/list": "ListTaskPushNotificationConfigs",
    "tasks/pushNotificationConfig/delete": "DeleteTaskPushNotificationConfig",
    "agent/getAuthenticatedExtendedCard": "GetExtendedAgentCard",
}
METHODS = frozenset(V03_ALIASES.values())
SKILL_METHODS = frozenset({"SendMessage", "SendStreamingMessage"})
CARD_METHODS = frozenset({"GetExtendedAgentCard"})


def canonical(method: str) -> str | None:
    """The 1.0 name of an A2A method in either spelling; None if unknown."""
    if method in METHODS:
        return method
    return V03_ALIASES.get(method)


class SkillError(ValueError):
    pass


def designated_skill(params: dict[str, Any], key: str) -> str | None:
    """The skill a SendMessage request designates, or None. Raises SkillError
    on a malformed or ambiguous designation."""
    message = params.get("message")
    if not isinstance(message, dict):
        raise SkillError("params.message must be an object")
    found = []
    for holder in (message.get("metadata"), params.get("metadata")):
        if holder is None:
            continue
        if not isinstance(holder, dict):
            raise SkillError("metadata must be an object")
        if key in holder:
            value = holder[key]
            if not isinstance(value, str) or not value:
                raise SkillError(f"metadata.{key} must be a non-empty string")
            found.append(value)
    if len(set(found)) > 1:
        raise SkillError(f"message and request metadata name different skills ({key})")
    return found[0] if found else None


def task_of(result: Any) -> tuple[str | None, str | None]:
    """(task id, state) from a SendMessage / GetTask / stream event result, 1.0 or 0.3 shape."""
    if not isinstance(result, dict):
        return None, None
    for key, id_field in (("task", "id"), ("statusUpdate", "taskId"), ("artifactUpdate", "taskId")):
        inner = result.get(key)
        if isinstance(inner, dict):
            return _text(inner.get(id_field)), _state(inner)
    kind = result.get("kind")
    if kind == "task" or ("status" in result and "id" in result and "contextId" in result):
        return _text(result.get("id")), _state(result)
    if kind in ("status-update", "artifact-update"):
        return _text(result.get("taskId")), _state(result)
    return None, None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _state(holder: dict[str, Any]) -> str | None:
    status = holder.get("status")
    return _text(status.get("state")) if isinstance(status, dict) else None
