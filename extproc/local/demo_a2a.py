"""The demo A2A agent that `extproc up` puts behind Envoy's ``/a2a/`` (when
the optional ``a2a-sdk`` package is installed: ``pip install 'extproc[a2a]'``).

An a2a-sdk agent (JSON-RPC binding, A2A 1.0 with 0.3 compatibility,
streaming) with three skills of different risk:

* ``summarize`` and ``translate`` — harmless text skills;
* ``purge_cache`` — an operational action that only admins may trigger.

Callers designate the skill in message metadata (``{"skill": "summarize"}``)
— A2A requests name no skill themselves; this is the convention the
``a2a_access`` capability keys on. The agent card advertises the gateway's
URL, so clients that resolve the card keep talking through the gateway.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from extproc.local.demo_mcp import UvicornThread

if TYPE_CHECKING:
    from a2a.server.agent_execution import RequestContext as A2aRequestContext
    from a2a.server.events import EventQueue
    from starlette.applications import Starlette

SKILLS = {
    "summarize": ("Summarize", "Summarizes the text of the message."),
    "translate": ("Translate", "Translates the message (the demo reverses the words)."),
    "purge_cache": ("Purge cache", "Purges the shared cache. Operational; admins only."),
}


def _answer(skill: str, text: str) -> str:
    if skill == "summarize":
        return "summary: " + (text[:60] + ("…" if len(text) > 60 else ""))
    if skill == "translate":
        return "translation: " + " ".join(reversed(text.split()))
    if skill == "purge_cache":
        return "cache purged"
    return f"no such skill: {skill}"


def build_app(public_url: str, skill_key: str = "skill") -> Starlette:
    """The agent's Starlette app. ``public_url`` is where clients reach the
    JSON-RPC endpoint (the gateway), e.g. http://127.0.0.1:10000/a2a/."""
    from a2a.helpers.proto_helpers import get_message_text, new_task_from_user_message
    from a2a.server.agent_execution import AgentExecutor
    from a2a.server.request_handlers import DefaultRequestHandler
    from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
    from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
    from a2a.types import AgentCapabilities, AgentCard, AgentInterface, AgentSkill, Part
    from starlette.applications import Starlette

    class DemoAgent(AgentExecutor):
        async def execute(self, context: A2aRequestContext, event_queue: EventQueue) -> None:
            message = context.message
            if message is None:
                raise ValueError("the demo agent answers messages only")
            task = context.current_task or new_task_from_user_message(message)
            await event_queue.enqueue_event(task)
            updater = TaskUpdater(event_queue, task.id, task.context_id)
            # metadata is a protobuf Struct: membership and item access, no .get
            skill = message.metadata[skill_key] if skill_key in message.metadata else "summarize"  # noqa: SIM401
            await updater.add_artifact([Part(text=_answer(str(skill), get_message_text(message)))])
            await updater.complete()

        async def cancel(self, context: A2aRequestContext, event_queue: EventQueue) -> None:
            task = context.current_task
            if task is not None:
                await TaskUpdater(event_queue, task.id, task.context_id).cancel()

    prefix = "/" + urlsplit(public_url).path.strip("/")
    card = AgentCard(
        name="extproc demo agent",
        description="A demo A2A agent behind the extproc governance gateway.",
        version="1.0.0",
        supported_interfaces=[AgentInterface(protocol_binding="JSONRPC", url=public_url, protocol_version="1.0")],
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[AgentSkill(id=sid, name=name, description=desc, tags=["demo"]) for sid, (name, desc) in SKILLS.items()],
    )
    handler = DefaultRequestHandler(agent_executor=DemoAgent(), task_store=InMemoryTaskStore(), agent_card=card)
    routes = [
        *create_agent_card_routes(card, card_url=prefix.rstrip("/") + "/.well-known/agent-card.json"),
        *create_jsonrpc_routes(handler, rpc_url=prefix.rstrip("/") + "/", enable_v0_3_compat=True),
    ]
    return Starlette(routes=routes)


class DemoA2aServer(UvicornThread):
    """The demo agent; ``public_url`` is its JSON-RPC URL as clients see it."""

    def __init__(self, public_url: str, host: str = "127.0.0.1", port: int = 0):
        super().__init__(build_app(public_url), host, port, name="demo-a2a")
