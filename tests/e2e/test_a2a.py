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
from a2a.types import Role, SendMessageRequest

from extproc.local.demo_a2a import DemoA2aServer
from extproc.local.demo_keys import load_demo_key, mint
from extproc.local.processor import free_port
from extproc.jsonrpc.wire import INVALID_REQUEST, PARSE_ERROR, POLICY_DENIED
from tests.e2e.agent_stack import AgentStack

KEY = load_demo_key()
PLANNER = mint(KEY, sub="planner-bot", extra={"agent_id": "planner-1"})
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
        client = await create_client(stack.url + "/a2a", client_config=ClientConfig(httpx_client=http,
                                                                                    streaming=streaming))
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
        artifacts = (event.task.artifacts if event.HasField("task")
                     else [event.artifact_update.artifact] if event.HasField("artifact_update") else [])
        texts += [part.text for artifact in artifacts for part in artifact.parts if part.text]
    return texts


def post(stack, body, token: str = PLANNER, accept="application/json", version="1.0") -> httpx.Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with stack.client() as http:
        return http.post("/a2a/", content=raw, headers={"authorization": f"Bearer {token}", "accept": accept,
                                                        "content-type": "application/json", "a2a-version": version})


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
    message = {"kind": "message", "messageId": "m-03", "role": "user", "parts": [{"kind": "text", "text": "hi there"}],
               "metadata": {"skill": "summarize"}}
    r = post(stack, {"jsonrpc": "2.0", "id": "v03", "method": "message/send", "params": {"message": message}},
             version="0.3")
    assert r.status_code == 200 and r.json()["result"]["status"]["state"] == "completed"
    message["metadata"]["skill"] = "purge_cache"
    r = post(stack, {"jsonrpc": "2.0", "id": "v03b", "method": "message/send", "params": {"message": message}},
             version="0.3")
    assert r.json()["id"] == "v03b" and r.json()["error"]["code"] == POLICY_DENIED


@pytest.mark.parametrize("body, code", [
    (b"{oops", PARSE_ERROR),
    ({"jsonrpc": "1.0", "id": 1, "method": "SendMessage", "params": {}}, INVALID_REQUEST),
    ({"jsonrpc": "2.0", "method": "GetTask", "params": {"id": "t"}}, INVALID_REQUEST),
    ([{"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": "t"}}], INVALID_REQUEST),
])
def test_malformed_json_rpc_gets_clear_errors_and_the_processor_stays_healthy(stack, body, code):
    r = post(stack, body)
    assert r.status_code == 200 and r.json()["error"]["code"] == code
    stack.assert_healthy()
    assert artifact_texts(asyncio.run(ask(stack, PLANNER, "summarize", text="still here"))) == ["summary: still here"]


def test_a_workload_certificate_identifies_the_agent_on_the_mtls_listener(stack):
    # No token at all: the SPIFFE ID Envoy verified is the agent identity.
    def send(http, skill):
        message = {"messageId": f"m-{skill}", "role": "ROLE_USER", "parts": [{"text": "over mtls"}],
                   "metadata": {"skill": skill}}
        r = http.post("/a2a/", json={"jsonrpc": "2.0", "id": skill, "method": "SendMessage",
                                     "params": {"message": message}}, headers={"a2a-version": "1.0"})
        assert r.status_code == 200
        return r.json()

    with stack.mtls_client("client") as http:  # spiffe://example.org/ns/demo/sa/client
        task = send(http, "summarize")["result"]["task"]
        assert task["status"]["state"] == "TASK_STATE_COMPLETED"
        assert task["artifacts"][0]["parts"][0]["text"] == "summary: over mtls"
        assert send(http, "translate")["error"]["code"] == POLICY_DENIED
    with stack.mtls_client("client-1") as http:  # spiffe://example.org/ns/other/sa/intruder
        assert send(http, "summarize")["error"]["code"] == POLICY_DENIED
