"""A2A tasks belong to the agent whose message created them: every method
naming a task (both spec spellings, every field name the a2a-sdk reads),
messages continuing or referencing a task or joining a context, ListTasks
answers and any answer showing a task. Owners live in the quota backend:
memory here, real Redis for two processors sharing one."""

from __future__ import annotations

import json
import textwrap

import pytest

from extproc.a2a.ownership import TaskParamsError, named_task, owner_of
from extproc.capabilities.a2a_access import A2aAccess, A2aAccessConfig
from extproc.context import Mode
from extproc.jsonrpc.wire import INTERNAL_ERROR, INVALID_PARAMS, POLICY_DENIED
from extproc.policy.loader import PolicyLoadError, load_policy_dir
from extproc.quota import MemoryBackend
from extproc.runtime import Runtime
from tests.redis_server import patient
from tests.unit.mcp.harness import context, deny_payload, request, respond, sse, user

EVERY_METHOD = [
    "SendMessage",
    "SendStreamingMessage",
    "GetTask",
    "ListTasks",
    "CancelTask",
    "SubscribeToTask",
    "CreateTaskPushNotificationConfig",
    "GetTaskPushNotificationConfig",
    "ListTaskPushNotificationConfigs",
    "DeleteTaskPushNotificationConfig",
]
RULES = [{"name": "planners", "who": {"agents": ["planner-*"]}, "methods": EVERY_METHOD, "skills": ["summarize"]}]
ALICE = user("planner-bot", agent_id="planner-1")
BOB = user("planner-bot", agent_id="planner-2")  # same subject, another agent: another owner


def make(runtime: Runtime | None = None, **config) -> A2aAccess:
    return A2aAccess(
        A2aAccessConfig.model_validate({"rules": RULES, **config}),
        Mode.ENFORCE,
        runtime or Runtime(quota_backend="memory"),
    )


def ctx_for(cap, identity, accept="application/json"):
    return context(cap, identity, headers={"accept": accept}, route_name="a2a")


def rpc(method, params, id="r1"):
    return {"jsonrpc": "2.0", "id": id, "method": method, "params": params}


def send(id="s1", **message_fields):
    message = {
        "messageId": "m1",
        "role": "ROLE_USER",
        "parts": [{"text": "hi"}],
        "metadata": {"skill": "summarize"},
        **message_fields,
    }
    return rpc("SendMessage", {"message": message}, id=id)


def answer(id, result) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": id, "result": result}).encode()


async def create(cap, identity, task_id, context_id=None):
    """``identity`` sends a message; the agent answers with a new task."""
    ctx = ctx_for(cap, identity)
    assert await request(cap, ctx, send()) is None
    task = {"id": task_id, "contextId": context_id or f"ctx-{task_id}", "status": {"state": "TASK_STATE_COMPLETED"}}
    out = json.loads(await respond(cap, ctx, [answer("s1", {"task": task})]))
    assert out["result"]["task"]["id"] == task_id


async def refused(cap, identity, body, code=POLICY_DENIED):
    deny = await request(cap, ctx_for(cap, identity), body)
    assert deny is not None, f"{body['method']} was let through"
    payload = deny_payload(deny)
    assert payload["error"]["code"] == code, payload
    return payload


# Every way a request names a task: (method spelling, params).
def naming(task):
    return [
        ("GetTask", {"id": task}),
        ("tasks/get", {"id": task}),
        ("tasks/result", {"id": task}),
        ("CancelTask", {"id": task}),
        ("tasks/cancel", {"id": task}),
        ("SubscribeToTask", {"id": task}),
        ("tasks/resubscribe", {"id": task}),
        ("CreateTaskPushNotificationConfig", {"taskId": task, "url": "https://hook.test/"}),
        ("CreateTaskPushNotificationConfig", {"task_id": task, "url": "https://hook.test/"}),
        ("tasks/pushNotificationConfig/set", {"taskId": task, "pushNotificationConfig": {"url": "https://h/"}}),
        ("tasks/pushNotificationConfig/create", {"taskId": task, "pushNotificationConfig": {"url": "https://h/"}}),
        ("GetTaskPushNotificationConfig", {"taskId": task, "id": "cfg"}),
        ("GetTaskPushNotificationConfig", {"name": f"tasks/{task}/pushNotificationConfigs/cfg"}),
        ("GetTask", {"name": f"tasks/{task}"}),
        ("tasks/cancel", {"name": f"tasks/{task}"}),
        ("tasks/pushNotificationConfig/get", {"id": task}),
        ("ListTaskPushNotificationConfigs", {"task_id": task}),
        ("tasks/pushNotificationConfig/list", {"id": task}),
        ("DeleteTaskPushNotificationConfig", {"taskId": task, "id": "cfg"}),
        ("tasks/pushNotificationConfig/delete", {"id": task, "pushNotificationConfigId": "cfg"}),
    ]


@pytest.mark.parametrize("method, params", naming("task-a"))
async def test_only_the_owner_may_name_a_task(method, params):
    cap = make()
    await create(cap, ALICE, "task-a")
    assert await request(cap, ctx_for(cap, ALICE), rpc(method, params)) is None
    payload = await refused(cap, BOB, rpc(method, params))
    assert payload["error"]["message"] == "task is not accessible to this agent"


@pytest.mark.parametrize("method, params", naming("never-seen"))
async def test_an_unknown_task_is_refused_like_another_agents(method, params):
    cap = make()
    payload = await refused(cap, ALICE, rpc(method, params))
    assert payload["error"]["message"] == "task is not accessible to this agent"  # no existence oracle


@pytest.mark.parametrize(
    "method, params",
    [
        ("GetTask", {}),  # names no task
        ("GetTask", {"id": 7}),  # not a string
        ("GetTask", {"id": ""}),
        ("CreateTaskPushNotificationConfig", {"taskId": "a", "task_id": "b"}),  # two spellings, two tasks
        ("GetTaskPushNotificationConfig", {"taskId": "a", "name": "tasks/b/pushNotificationConfigs/c"}),
        ("GetTaskPushNotificationConfig", {"name": "pushNotificationConfigs/c"}),
        ("GetTask", {"id": "task-a", "name": "tasks/other"}),  # two names for two tasks
        ("GetTask", {"name": 5}),
        ("CreateTaskPushNotificationConfig", {"id": "task-a"}),  # 1.0: `id` is the config's, not a task
    ],
)
async def test_ambiguous_or_missing_task_ids_are_invalid_params(method, params):
    cap = make()
    await create(cap, ALICE, "task-a")
    await refused(cap, ALICE, rpc(method, params), code=INVALID_PARAMS)


@pytest.mark.parametrize(
    "fields",
    [
        {"taskId": "task-a"},
        {"task_id": "task-a"},
        {"referenceTaskIds": ["mine", "task-a"]},
        {"reference_task_ids": ["task-a"]},
        {"contextId": "ctx-task-a"},
        {"context_id": "ctx-task-a"},
    ],
)
async def test_a_message_may_not_continue_reference_or_join_another_agents_task(fields):
    cap = make()
    await create(cap, ALICE, "task-a")
    await create(cap, BOB, "mine")
    await refused(cap, BOB, send(**fields))
    fields = {k: (["task-a"] if isinstance(v, list) else v) for k, v in fields.items()}
    assert await request(cap, ctx_for(cap, ALICE), send(**fields)) is None


async def test_a_new_context_is_claimed_by_the_first_message_naming_it():
    cap = make()
    assert await request(cap, ctx_for(cap, ALICE), send(contextId="fresh")) is None
    await refused(cap, BOB, send(contextId="fresh"))
    assert await request(cap, ctx_for(cap, ALICE), send(contextId="fresh")) is None


async def test_list_tasks_shows_the_callers_tasks_only():
    cap = make()
    await create(cap, ALICE, "a1")
    await create(cap, BOB, "b1")
    listing = {
        "tasks": [
            {"id": "a1", "status": {}},
            {"id": "b1", "status": {}},
            {"id": "stranger", "status": {}},
            {"status": {}},
            "junk",
        ],
        "totalSize": 5,
        "pageSize": 50,
    }
    for identity, shown in ((ALICE, ["a1"]), (BOB, ["b1"])):
        for method in ("ListTasks", "tasks/list"):
            ctx = ctx_for(cap, identity)
            assert await request(cap, ctx, rpc(method, {})) is None
            out = json.loads(await respond(cap, ctx, [answer("r1", listing)]))
            assert [t["id"] for t in out["result"]["tasks"]] == shown and out["result"]["totalSize"] == 1
            assert ctx.state["audit"]["a2a.listed"] == {"shown": 1, "hidden": 4}


async def test_an_answer_showing_another_agents_task_is_withheld():
    cap = make()
    await create(cap, ALICE, "task-a")
    await create(cap, BOB, "task-b")
    # Bob asks for his task; a confused (or hostile) agent answers with Alice's.
    ctx = ctx_for(cap, BOB, accept="text/event-stream")
    assert await request(cap, ctx, rpc("SubscribeToTask", {"id": "task-b"})) is None
    events = [
        {"jsonrpc": "2.0", "id": "r1", "result": {"statusUpdate": {"taskId": "task-b", "status": {}}}},
        {"jsonrpc": "2.0", "id": "r1", "result": {"statusUpdate": {"taskId": "task-a", "status": {}}}},
        {"jsonrpc": "2.0", "id": "r1", "result": {"kind": "artifact-update", "taskId": "task-a"}},
    ]
    out = await respond(cap, ctx, [sse(*events)], content_type="text/event-stream")
    assert b"task-a" not in out and out.count(b"withheld by the gateway") == 2 and b"task-b" in out
    assert ctx.state["audit"]["a2a.calls"][0]["outcome"] == "withheld"
    # The answer to a new message cannot claim a task somebody already owns.
    ctx = ctx_for(cap, BOB)
    assert await request(cap, ctx, send()) is None
    out = json.loads(
        await respond(
            cap,
            ctx,
            [answer("s1", {"kind": "task", "id": "task-a", "contextId": "x", "status": {"state": "completed"}})],
        )
    )
    assert out["error"]["code"] == POLICY_DENIED and "task-a" not in json.dumps(out)


async def test_streamed_creation_records_the_owner_from_the_first_event():
    cap = make()
    ctx = ctx_for(cap, ALICE, accept="text/event-stream")
    assert await request(cap, ctx, rpc("message/stream", send()["params"], id="s")) is None
    events = [
        {
            "jsonrpc": "2.0",
            "id": "s",
            "result": {"kind": "task", "id": "t-s", "contextId": "c-s", "status": {"state": "submitted"}},
        },
        {"jsonrpc": "2.0", "id": "s", "result": {"kind": "status-update", "taskId": "t-s", "contextId": "c-s"}},
    ]
    raw = sse(*events)
    assert await respond(cap, ctx, [raw], content_type="text/event-stream") == raw
    assert await request(cap, ctx_for(cap, ALICE), rpc("tasks/get", {"id": "t-s"})) is None
    await refused(cap, BOB, rpc("tasks/get", {"id": "t-s"}))
    await refused(cap, BOB, send(contextId="c-s"))


async def test_an_owner_store_that_fails_refuses_never_guesses():
    class Down(MemoryBackend):
        async def owners_of(self, keys):
            raise ConnectionError("store down")

        async def claim_owner(self, key, owner, ttl):
            raise ConnectionError("store down")

    runtime = Runtime(quota_backend="memory")
    runtime.shared(("quota", "memory"), Down)
    cap = make(runtime)
    await refused(cap, ALICE, rpc("GetTask", {"id": "t"}), code=INTERNAL_ERROR)
    ctx = ctx_for(cap, ALICE)
    assert await request(cap, ctx, send()) is None
    out = json.loads(await respond(cap, ctx, [answer("s1", {"task": {"id": "t", "status": {}}})]))
    assert out["error"]["code"] == POLICY_DENIED  # a task nobody could be recorded for is not shown


def test_ambiguous_rules_are_load_errors_naming_file_line_and_field(tmp_path):
    (tmp_path / "a2a.yaml").write_text(
        textwrap.dedent("""\
        routes:
          - name: a2a
            match: { path_prefix: /a2a/ }
            capabilities:
              - type: a2a_access
                config:
                  rules:
                    - name: every-method-by-omission
                      skills: ["*"]
                    - name: empty-methods
                      methods: []
                    - name: deny-send-without-skills
                      effect: deny
                      methods: [message/send]
                    - name: skills-that-apply-to-nothing
                      methods: [GetTask]
                      skills: [summarize]
        """)
    )
    with pytest.raises(PolicyLoadError) as info:
        load_policy_dir(tmp_path, Runtime())
    text = str(info.value)
    for where in (
        "a2a.yaml:8: routes[0].capabilities[0].config.rules[0].methods: Field required",
        "a2a.yaml:11: routes[0].capabilities[0].config.rules[1].methods",
        "a2a.yaml:12: routes[0].capabilities[0].config.rules[2].skills: the rule lists SendMessage",
        "a2a.yaml:17: routes[0].capabilities[0].config.rules[3].skills: skills apply to",
    ):
        assert where in text, text


async def test_a_skill_grant_does_not_grant_task_methods():
    cap = make(
        rules=[
            {"name": "send-only", "who": {"agents": ["planner-*"]}, "methods": ["SendMessage"], "skills": ["summarize"]}
        ]
    )
    await create(cap, ALICE, "task-a")
    for method in ("GetTask", "tasks/list", "CancelTask", "GetTaskPushNotificationConfig"):
        payload = await refused(cap, ALICE, rpc(method, {"id": "task-a", "taskId": "task-a"}))
        assert "is not allowed for this agent" in payload["error"]["message"]


def test_owner_keys_tell_agents_workloads_and_issuers_apart():
    keys = {
        owner_of(user("s", agent_id="a")),
        owner_of(user("s", agent_id="b")),
        owner_of(user(None, principal="spiffe://x/a")),
        owner_of(user("s")),
    }
    assert len(keys) == 4 and owner_of(user(None, methods=())) is None
    with pytest.raises(TaskParamsError):
        named_task("GetTask", "GetTask", {"id": ["a"]})


async def test_two_processors_sharing_one_redis_agree_on_ownership(redis_server):
    url = patient(redis_server.url)
    first, second = make(Runtime(quota_backend=url)), make(Runtime(quota_backend=url))
    assert first._backend is not second._backend  # two processes' worth of state: only Redis is shared
    try:
        await create(first, ALICE, "shared-task")
        assert await request(second, ctx_for(second, ALICE), rpc("GetTask", {"id": "shared-task"})) is None
        await refused(second, BOB, rpc("CancelTask", {"id": "shared-task"}))
        await refused(second, BOB, send(contextId="ctx-shared-task"))
        # Concurrent claims of one new context: exactly one agent wins it.
        import asyncio

        results = await asyncio.gather(
            request(first, ctx_for(first, ALICE), send(contextId="race")),
            request(second, ctx_for(second, BOB), send(contextId="race")),
        )
        assert sum(r is None for r in results) == 1
        with redis_server.client() as client:
            keys = [k.decode() for k in client.keys("a2a-owner:*")]
            assert keys and all(0 < client.pttl(k) <= 7 * 86400 * 1000 for k in keys)
            assert not any("shared-task" in k or "planner" in k for k in keys)  # hashed ids
    finally:
        await first._backend.aclose()
        await second._backend.aclose()


async def test_ownership_works_on_a_redis_cluster(redis_cluster):
    # All of one agent's owner keys carry one hash tag: one slot, so the
    # multi-key lookup of a ListTasks answer is legal on a cluster.
    url = patient(redis_cluster.url)
    first, second = make(Runtime(quota_backend=url)), make(Runtime(quota_backend=url))
    try:
        await create(first, ALICE, "clustered")
        await create(first, BOB, "bobs")
        ctx = ctx_for(second, ALICE)
        assert await request(second, ctx, rpc("ListTasks", {})) is None
        listing = {"tasks": [{"id": "clustered"}, {"id": "bobs"}, {"id": "nobodys"}]}
        out = json.loads(await respond(second, ctx, [answer("r1", listing)]))
        assert [t["id"] for t in out["result"]["tasks"]] == ["clustered"]
        await refused(second, BOB, rpc("GetTask", {"id": "clustered"}))
    finally:
        await first._backend.aclose()
        await second._backend.aclose()


async def test_the_memory_owner_store_keeps_the_first_owner_until_the_ttl():
    now = [0]
    backend = MemoryBackend(clock=lambda: now[0])
    assert await backend.claim_owner("k", "alice", ttl=60) == "alice"
    assert await backend.claim_owner("k", "bob", ttl=60) == "alice"  # first claim wins
    assert await backend.owners_of(["k", "other"]) == ["alice", None]
    now[0] = 60 * 1_000_000  # expired: forgotten, so nobody owns it (refused), then claimable again
    assert await backend.owners_of(["k"]) == [None]
    assert await backend.claim_owner("k", "bob", ttl=60) == "bob"
