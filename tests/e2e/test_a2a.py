"""A2A end to end: the real a2a-sdk client through real Envoy and the real
processor to a real a2a-sdk agent (the demo agent), under the demo policy
(policies/demo.yaml: agents named planner-* may use summarize and
translate; admin agents every skill; JWT agent identity required)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from a2a.client import ClientConfig, create_client
from a2a.client.errors import A2AClientError
from a2a.helpers.proto_helpers import new_text_message
from a2a.types import (
    CancelTaskRequest,
    GetTaskRequest,
    ListTasksRequest,
    Role,
    SendMessageRequest,
    SubscribeToTaskRequest,
    TaskPushNotificationConfig,
)

from extproc.jsonrpc.wire import INVALID_REQUEST, PARSE_ERROR, POLICY_DENIED
from extproc.local.demo_a2a import DemoA2aServer
from extproc.local.demo_keys import load_demo_key, mint
from extproc.local.processor import free_port
from tests.e2e.agent_stack import AgentStack

KEY = load_demo_key()
PLANNER = mint(KEY, sub="planner-bot", extra={"agent_id": "planner-1"})
PLANNER_2 = mint(KEY, sub="planner-bot", extra={"agent_id": "planner-2"})  # same rules, another agent
OPS = mint(KEY, sub="ops-bot", roles=["admin"], extra={"agent_id": "ops-1"})
HUMAN = mint(KEY, sub="alice", roles=["reader"])  # a user, not an agent


@pytest.fixture(scope="module")
def stack(tmp_path_factory, demo_certs):
    port = free_port()  # the agent card must advertise the gateway's URL
    agent = DemoA2aServer(public_url=f"http://127.0.0.1:{port}/a2a/").start()
    try:
        stack = AgentStack(tmp_path_factory.mktemp("a2a-gw"), {"a2a": agent.port}, demo_certs, port=port)
    except BaseException:
        agent.stop()
        raise
    yield stack
    stack.close()
    agent.stop()


async def ask(stack, token: str | None, skill: str | None, text: str = "the quick brown fox", streaming=True):
    headers = {"authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(headers=headers, timeout=15) as http:
        client = await create_client(
            stack.url + "/a2a", client_config=ClientConfig(httpx_client=http, streaming=streaming)
        )
        try:
            message = new_text_message(text, role=Role.ROLE_USER)
            if skill:
                message.metadata.update({"skill": skill})
            return [event async for event in client.send_message(SendMessageRequest(message=message))]
        finally:
            await client.close()


def final_task(events):
    tasks = [e.task for e in events if e.HasField("task")]
    return tasks[-1] if tasks else None


def artifact_texts(events) -> list[str]:
    texts = []
    for event in events:
        artifacts = (
            event.task.artifacts
            if event.HasField("task")
            else [event.artifact_update.artifact]
            if event.HasField("artifact_update")
            else []
        )
        texts += [part.text for artifact in artifacts for part in artifact.parts if part.text]
    return texts


def post(stack, body, token: str = PLANNER, accept="application/json", version="1.0") -> httpx.Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with stack.client() as http:
        return http.post(
            "/a2a/",
            content=raw,
            headers={
                "authorization": f"Bearer {token}",
                "accept": accept,
                "content-type": "application/json",
                "a2a-version": version,
            },
        )


@pytest.mark.parametrize("streaming", [True, False])
def test_a_permitted_agent_completes_a_task(stack, streaming):
    events = asyncio.run(ask(stack, PLANNER, "summarize", streaming=streaming))
    assert "summary: the quick brown fox" in artifact_texts(events)
    states = [e.task.status.state for e in events if e.HasField("task")]
    states += [e.status_update.status.state for e in events if e.HasField("status_update")]
    assert states[-1] == 3  # TASK_STATE_COMPLETED


def test_an_agent_without_the_skill_is_refused(stack):
    with pytest.raises(A2AClientError, match=f"{POLICY_DENIED}.*skill 'purge_cache' is not available"):
        asyncio.run(ask(stack, PLANNER, "purge_cache"))
    with pytest.raises(A2AClientError, match="a skill must be designated"):
        asyncio.run(ask(stack, PLANNER, None))
    # an admin agent may
    assert artifact_texts(asyncio.run(ask(stack, OPS, "purge_cache"))) == ["cache purged"]


def test_an_unauthenticated_agent_is_refused(stack):
    with pytest.raises(A2AClientError, match="401"):
        asyncio.run(ask(stack, None, "summarize"))
    assert post(stack, {"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {}}, token="x").status_code == 401


def test_a_user_who_is_not_an_agent_is_refused(stack):
    with pytest.raises(A2AClientError, match="403"):
        asyncio.run(ask(stack, HUMAN, "summarize"))


def test_a_delegation_chain_deeper_than_the_policy_allows_is_refused(stack):
    chain = {"sub": "planner-1", "act": {"sub": "b", "act": {"sub": "c", "act": {"sub": "d"}}}}
    deep = mint(KEY, sub="alice", extra={"agent_id": "planner-1", "act": chain})
    with pytest.raises(A2AClientError, match="403"):
        asyncio.run(ask(stack, deep, "summarize"))
    ok = mint(KEY, sub="alice", extra={"agent_id": "planner-1", "act": {"sub": "planner-1"}})
    assert artifact_texts(asyncio.run(ask(stack, ok, "translate", text="a b c"))) == ["translation: c b a"]


def test_the_agent_card_shows_each_agent_its_skills(stack):
    with stack.client() as http:
        for token, skills in ((PLANNER, ["summarize", "translate"]), (OPS, ["summarize", "translate", "purge_cache"])):
            r = http.get("/a2a/.well-known/agent-card.json", headers={"authorization": f"Bearer {token}"})
            assert r.status_code == 200
            assert [s["id"] for s in r.json()["skills"]] == skills


def test_the_0_3_method_names_are_governed_the_same(stack):
    message = {
        "kind": "message",
        "messageId": "m-03",
        "role": "user",
        "parts": [{"kind": "text", "text": "hi there"}],
        "metadata": {"skill": "summarize"},
    }
    r = post(
        stack, {"jsonrpc": "2.0", "id": "v03", "method": "message/send", "params": {"message": message}}, version="0.3"
    )
    assert r.status_code == 200 and r.json()["result"]["status"]["state"] == "completed"
    message["metadata"]["skill"] = "purge_cache"
    r = post(
        stack, {"jsonrpc": "2.0", "id": "v03b", "method": "message/send", "params": {"message": message}}, version="0.3"
    )
    assert r.json()["id"] == "v03b" and r.json()["error"]["code"] == POLICY_DENIED


@pytest.mark.parametrize(
    "body, code",
    [
        (b"{oops", PARSE_ERROR),
        ({"jsonrpc": "1.0", "id": 1, "method": "SendMessage", "params": {}}, INVALID_REQUEST),
        ({"jsonrpc": "2.0", "method": "GetTask", "params": {"id": "t"}}, INVALID_REQUEST),
        ([{"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": "t"}}], INVALID_REQUEST),
    ],
)
def test_malformed_json_rpc_gets_clear_errors_and_the_processor_stays_healthy(stack, body, code):
    r = post(stack, body)
    assert r.status_code == 200 and r.json()["error"]["code"] == code
    stack.assert_healthy()
    assert artifact_texts(asyncio.run(ask(stack, PLANNER, "summarize", text="still here"))) == ["summary: still here"]


def test_a_workload_certificate_identifies_the_agent_on_the_mtls_listener(stack):
    # No token at all: the SPIFFE ID Envoy verified is the agent identity.
    def send(http, skill):
        message = {
            "messageId": f"m-{skill}",
            "role": "ROLE_USER",
            "parts": [{"text": "over mtls"}],
            "metadata": {"skill": skill},
        }
        r = http.post(
            "/a2a/",
            json={"jsonrpc": "2.0", "id": skill, "method": "SendMessage", "params": {"message": message}},
            headers={"a2a-version": "1.0"},
        )
        assert r.status_code == 200
        return r.json()

    with stack.mtls_client("client") as http:  # spiffe://example.org/ns/demo/sa/client
        task = send(http, "summarize")["result"]["task"]
        assert task["status"]["state"] == "TASK_STATE_COMPLETED"
        assert task["artifacts"][0]["parts"][0]["text"] == "summary: over mtls"
        assert send(http, "translate")["error"]["code"] == POLICY_DENIED
    with stack.mtls_client("client-1") as http:  # spiffe://example.org/ns/other/sa/intruder
        assert send(http, "summarize")["error"]["code"] == POLICY_DENIED


# -- task ownership --------------------------------------------------------------------


async def with_client(stack, token: str, act, streaming=False):
    async with httpx.AsyncClient(headers={"authorization": f"Bearer {token}"}, timeout=15) as http:
        client = await create_client(
            stack.url + "/a2a", client_config=ClientConfig(httpx_client=http, streaming=streaming)
        )
        try:
            return await act(client)
        finally:
            await client.close()


NOT_YOURS = f"{POLICY_DENIED}.*task is not accessible to this agent"


@pytest.mark.parametrize("streaming", [False, True])
def test_an_agent_cannot_read_cancel_resubscribe_or_list_another_agents_task(stack, streaming):
    task = final_task(asyncio.run(ask(stack, PLANNER, "summarize", text="private words", streaming=streaming)))
    assert task is not None and task.id

    async def owner(client):
        got = await client.get_task(GetTaskRequest(id=task.id))
        listed = await client.list_tasks(ListTasksRequest())
        return got, listed

    got, listed = asyncio.run(with_client(stack, PLANNER, owner))
    assert got.id == task.id and "summary: private words" in [p.text for a in got.artifacts for p in a.parts]
    assert task.id in [t.id for t in listed.tasks]

    async def intruder_get(client):
        return await client.get_task(GetTaskRequest(id=task.id))

    async def intruder_cancel(client):
        return await client.cancel_task(CancelTaskRequest(id=task.id))

    async def intruder_subscribe(client):
        return [event async for event in client.subscribe(SubscribeToTaskRequest(id=task.id))]

    async def intruder_push(client):
        return await client.create_task_push_notification_config(
            TaskPushNotificationConfig(task_id=task.id, url="https://attacker.test/hook")
        )

    for act in (intruder_get, intruder_cancel, intruder_subscribe):
        with pytest.raises(A2AClientError, match=NOT_YOURS):
            asyncio.run(with_client(stack, PLANNER_2, act, streaming=True))
    # The demo grants no push-notification methods at all (ownership of them: tests/unit/a2a).
    with pytest.raises(A2AClientError, match=f"{POLICY_DENIED}"):
        asyncio.run(with_client(stack, PLANNER_2, intruder_push, streaming=True))

    async def intruder_list(client):
        return await client.list_tasks(ListTasksRequest())

    listed = asyncio.run(with_client(stack, PLANNER_2, intruder_list))
    assert task.id not in [t.id for t in listed.tasks]
    assert "private words" not in str(listed)
    # The owner's cancel and resubscribe reach the agent (which answers for
    # itself: the demo's tasks are already complete).
    for act in (intruder_cancel, intruder_subscribe):
        try:
            asyncio.run(with_client(stack, PLANNER, act, streaming=True))
        except Exception as exc:
            assert str(POLICY_DENIED) not in str(exc) and "not accessible" not in str(exc), exc
    stack.assert_healthy()


def test_0_3_task_methods_and_message_references_are_owner_checked_too(stack):
    task = final_task(asyncio.run(ask(stack, PLANNER, "summarize", text="mine only", streaming=False)))
    for method, params in (
        ("tasks/get", {"id": task.id}),
        ("tasks/cancel", {"id": task.id}),
        ("tasks/pushNotificationConfig/get", {"id": task.id}),
        ("tasks/pushNotificationConfig/set", {"taskId": task.id, "pushNotificationConfig": {"url": "https://x/"}}),
    ):
        r = post(
            stack, {"jsonrpc": "2.0", "id": "x", "method": method, "params": params}, token=PLANNER_2, version="0.3"
        )
        assert r.status_code == 200 and r.json()["error"]["code"] == POLICY_DENIED, (method, r.text)
        assert "mine only" not in r.text
    r = post(stack, {"jsonrpc": "2.0", "id": "own", "method": "tasks/get", "params": {"id": task.id}}, version="0.3")
    assert r.json()["result"]["id"] == task.id
    # Joining the owner's context, or continuing its task, with a message of one's own.
    for field, value in (("contextId", task.context_id), ("taskId", task.id), ("referenceTaskIds", [task.id])):
        message = {
            "messageId": f"m-{field}",
            "role": "ROLE_USER",
            "parts": [{"text": "let me in"}],
            "metadata": {"skill": "summarize"},
            field: value,
        }
        r = post(
            stack,
            {"jsonrpc": "2.0", "id": field, "method": "SendMessage", "params": {"message": message}},
            token=PLANNER_2,
        )
        assert r.json()["error"]["code"] == POLICY_DENIED, (field, r.text)


def test_a_lone_surrogate_in_a2a_params_is_a_parse_error_not_a_500(stack):
    raw = (
        b'{"jsonrpc":"2.0","id":"s","method":"SendMessage","params":{"message":{"messageId":"m",'
        b'"role":"ROLE_USER","parts":[{"text":"\\ud800"}],"metadata":{"skill":"summarize","x":"\\udfff"}}}}'
    )
    r = post(stack, raw)  # \\ud800: the JSON escape of a lone surrogate
    assert r.status_code == 200 and r.json()["error"]["code"] == PARSE_ERROR
    stack.assert_healthy()
