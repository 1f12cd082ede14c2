"""Who owns an A2A task, and which tasks a request or a response names.

A task belongs to the identity whose ``SendMessage`` / ``SendStreamingMessage``
created it: the gateway records the owner of the task id (and of its
context id) from the creating call's response, in the quota backend (memory
by default, Redis when shared, so every replica agrees), with a TTL. Every
other request that names a task — by any method, in either spec spelling,
under any field name the a2a-sdk accepts (protobuf JSON reads both the
camelCase and the snake_case name) — must name the caller's own tasks, and
every task a response shows must be the caller's: ListTasks results are
filtered, anything else showing another's task is withheld.

An unknown task id is treated as another's (fail closed): the gateway cannot
tell "expired" from "never yours", and answers both alike, so refusals are
no oracle of which ids exist.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from extproc.context import Identity
from extproc.quota.backend import QuotaBackend

# Methods that name one task, and where (1.0 names; see TASK_ID_FIELDS).
TASK_METHODS = frozenset(
    {
        "GetTask",
        "CancelTask",
        "SubscribeToTask",
        "CreateTaskPushNotificationConfig",
        "GetTaskPushNotificationConfig",
        "ListTaskPushNotificationConfigs",
        "DeleteTaskPushNotificationConfig",
    }
)
PUSH_METHODS = frozenset(m for m in TASK_METHODS if "PushNotification" in m)
# Where each spelling names its task. 1.0 push-config requests carry the
# config's own id in ``id`` and the task in ``taskId``; the 0.3 get/list/
# delete ones name the task in ``id``.
_V03_PUSH_ID_IS_TASK = frozenset(
    {
        "tasks/pushNotificationConfig/get",
        "tasks/pushNotificationConfig/list",
        "tasks/pushNotificationConfig/delete",
    }
)
_TASK_ID = ("taskId", "task_id")
_CONTEXT_ID = ("contextId", "context_id")
_REFERENCES = ("referenceTaskIds", "reference_task_ids")
_RESOURCE_NAME = re.compile(r"tasks/([^/]+)(?:/|$)")


class TaskParamsError(ValueError):
    """Task references the gateway cannot read unambiguously."""


def owner_of(identity: Identity) -> str | None:
    """The owner key of a caller: the agent (per issuer and tenant), else the
    workload principal, else the subject. None: nobody to own anything."""
    if identity.agent_id:
        who = ["agent", identity.agent_id]
    elif identity.principal:
        who = ["peer", identity.principal]
    elif identity.subject:
        who = ["sub", identity.subject]
    else:
        return None
    return json.dumps(
        [identity.tenant, identity.issuer if who[0] != "peer" else None, *who], separators=(",", ":"), ensure_ascii=True
    )


def _one(holder: dict[str, Any], names: tuple[str, ...], what: str) -> str | None:
    """The single string ``holder`` gives under any of ``names``."""
    found = set()
    for name in names:
        if name in holder:
            value = holder[name]
            if not isinstance(value, str) or not value:
                raise TaskParamsError(f"{what} must be a non-empty string")
            found.add(value)
    if len(found) > 1:
        raise TaskParamsError(f"{what} is given twice with different values")
    return next(iter(found), None)


def named_task(spelling: str, method: str, params: dict[str, Any]) -> str:
    """The task a TASK_METHODS request names. Raises TaskParamsError when it
    names none, or more than one."""
    names: tuple[str, ...] = ("id",) if method not in PUSH_METHODS or spelling in _V03_PUSH_ID_IS_TASK else ()
    if method in PUSH_METHODS:
        names += _TASK_ID
    task = _one(params, names, "the task id")
    # Resource names (``tasks/{id}``, ``tasks/{id}/pushNotificationConfigs/
    # {config}``) name the task too, in drafts and other servers: read them
    # wherever they appear, so no spelling carries a task past the check.
    name = params.get("name")
    if name is not None:
        match = _RESOURCE_NAME.match(name) if isinstance(name, str) else None
        if match is None:
            raise TaskParamsError("name must be a resource name: tasks/{task id}[/...]")
        if task is not None and match.group(1) != task:
            raise TaskParamsError("name and the task id name different tasks")
        task = match.group(1)
    if task is None:
        raise TaskParamsError(f"a task id is required ({' or '.join(names)})")
    return task


def message_references(params: dict[str, Any]) -> tuple[list[str], str | None]:
    """(task ids, context id) a SendMessage request's message refers to: the
    task it continues and the tasks it references, and its context."""
    message = params.get("message")
    if not isinstance(message, dict):
        raise TaskParamsError("params.message must be an object")
    tasks = []
    task = _one(message, _TASK_ID, "message.taskId")
    if task is not None:
        tasks.append(task)
    for name in _REFERENCES:
        if name in message:
            refs = message[name]
            if not isinstance(refs, list) or not all(isinstance(r, str) and r for r in refs):
                raise TaskParamsError("message.referenceTaskIds must be a list of task ids")
            tasks += refs
    return tasks, _one(message, _CONTEXT_ID, "message.contextId")


def tasks_shown(result: Any) -> list[tuple[str, str | None]]:
    """(task id, context id) of the task a response result shows: a task, a
    stream event of one, a message in one, a push-notification config of one
    (1.0 and 0.3 shapes). A task id that is not a string comes back as ""
    (nobody's), so what cannot be attributed is refused."""
    if not isinstance(result, dict):
        return []
    for key, id_field in (
        ("task", "id"),
        ("statusUpdate", "taskId"),
        ("artifactUpdate", "taskId"),
        ("message", "taskId"),
    ):
        inner = result.get(key)
        if isinstance(inner, dict):
            return [_ids(inner, id_field)] if id_field in inner else []
    if result.get("kind") == "task" or ("status" in result and "id" in result):
        return [_ids(result, "id")]
    for name in _TASK_ID:  # 0.3 events and messages, push-notification configs
        if name in result:
            return [_ids(result, name)]
    return []


def _ids(holder: dict[str, Any], id_field: str) -> tuple[str, str | None]:
    task = holder.get(id_field)
    context = next((holder[n] for n in _CONTEXT_ID if n in holder), None)
    return (task if isinstance(task, str) else "", context if isinstance(context, str) else None)


class OwnerStore:
    """Task and context owners of one A2A agent (namespace) in a backend."""

    def __init__(self, backend: QuotaBackend, namespace: str, ttl: float):
        self.backend, self.ttl = backend, ttl
        # One cluster hash tag per agent: a request's keys share one slot.
        tag = hashlib.sha256(namespace.encode()).hexdigest()[:16]
        self._prefix = f"a2a-owner:{{{tag}}}:"

    def key(self, kind: str, value: str) -> str:
        # Hashed: ids are caller-chosen (a context id), so bounded and inert.
        return self._prefix + kind + ":" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()

    async def claim(self, kind: str, value: str, owner: str) -> bool:
        """Record ``owner`` unless someone else already owns it; True when
        ``owner`` owns it now."""
        return await self.backend.claim_owner(self.key(kind, value), owner, self.ttl) == owner

    async def owned(self, kind: str, values: list[str], owner: str) -> list[bool]:
        found = await self.backend.owners_of([self.key(kind, v) for v in values])
        return [o == owner for o in found]

    async def owners(self, kind: str, values: list[str]) -> list[str | None]:
        return await self.backend.owners_of([self.key(kind, v) for v in values])
