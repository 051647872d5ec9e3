"""End to end: llm/v1/batches and llm/v1/assistants (with threads) on openai and azure through a real
mitmdump, with the openai SDK, against a local fake OpenAI (tests/fake_openai.py)."""

from __future__ import annotations

import openai
import orjson
import pytest
from fake_openai import FakeOpenAI

KEY = "sk-batch-secret-9876"


@pytest.fixture
def fake(fake_openai: FakeOpenAI) -> FakeOpenAI:
    return fake_openai


def options(fake: FakeOpenAI, provider: str) -> dict:
    if provider == "openai":
        return {"upstream_url": fake.url}
    return {
        "azure_instance": "res",
        "azure_deployment_id": "gpt4o-dep",
        "azure_api_version": "2024-10-21",
        "upstream_url": fake.url,
    }


def routes(fake: FakeOpenAI) -> list[dict]:
    out: list[dict] = [
        {
            "name": "claude",
            "match": {"path": "/claude/v1/chat/completions"},
            "route_type": "llm/v1/chat",
            "model": {
                "provider": "anthropic",
                "name": "claude-sonnet-4-5",
                "options": {"anthropic_version": "2023-06-01", "upstream_url": fake.url},
            },
        }
    ]
    for provider in ("openai", "azure"):
        auth = {"header_name": "Authorization", "header_value": f"Bearer {KEY}"}
        base = {"auth": auth, "model": {"provider": provider, "options": options(fake, provider)}}
        collections = [
            ("files", "/v1/files", "llm/v1/files"),
            ("batches", "/v1/batches", "llm/v1/batches"),
            ("assistants", "/v1/assistants", "llm/v1/assistants"),
            ("threads", "/x/v1/threads", "llm/v1/assistants"),
        ]
        out += [
            {
                "name": f"{name}-{provider}",
                "match": {"path": f"/{provider}{path}"},
                "route_type": kind,
                **base,
            }
            for name, path, kind in collections
        ]
    return out


def jsonl(*models: str) -> bytes:
    return b"".join(
        orjson.dumps(
            {
                "custom_id": f"r{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": model, "messages": [{"role": "user", "content": "hi"}]},
            }
        )
        + b"\n"
        for i, model in enumerate(models)
    )


PATHS = {"openai": ("/v1/batches", ""), "azure": ("/openai/batches", "?api-version=2024-10-21")}


@pytest.mark.parametrize("provider", ["openai", "azure"])
def test_batches_create_retrieve_list_cancel(gateway, fake: FakeOpenAI, provider: str) -> None:
    gw = gateway(routes(fake))
    client = openai.OpenAI(base_url=f"{gw.url}/{provider}/v1", api_key="client", max_retries=0)
    uploaded = client.files.create(file=("in.jsonl", jsonl("gpt-4o-mini", "gpt-4o")), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    collection, version = PATHS[provider]
    sent = fake.last()
    assert (sent.method, sent.path) == ("POST", collection + version)
    assert sent.json() == {
        "input_file_id": uploaded.id,
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
    }
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert (batch.id, batch.status, batch.input_file_id) == ("batch_1", "validating", uploaded.id)

    assert client.batches.retrieve("batch_9").status == "completed"
    assert fake.last().path == f"{collection}/batch_9{version}"
    assert [b.id for b in client.batches.list()] == ["batch_1", "batch_2"]
    cancelled = client.batches.cancel("batch_9")
    assert cancelled.status == "cancelling"
    assert (fake.last().method, fake.last().path) == ("POST", f"{collection}/batch_9/cancel{version}")
    assert gw.records() == []  # batches get no statistics (seed 002)


@pytest.mark.parametrize(
    ("provider", "model", "owner"),
    [
        ("openai", "claude-sonnet-4-5", "a anthropic model (served by route 'claude')"),
        ("azure", "gemini-2.5-flash", "a gemini model"),
    ],
)
def test_a_batch_naming_another_providers_model_is_refused(
    gateway, fake: FakeOpenAI, provider: str, model: str, owner: str
) -> None:
    gw = gateway(routes(fake))
    client = openai.OpenAI(base_url=f"{gw.url}/{provider}/v1", api_key="client", max_retries=0)
    uploaded = client.files.create(file=("in.jsonl", jsonl("gpt-4o", "gpt-4o", model)), purpose="batch")
    with pytest.raises(openai.BadRequestError) as refused:
        client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
    assert refused.value.body == {
        "message": f"batch input file {uploaded.id} names model '{model}' on line 3, {owner}: this route sends "
        f"batches to {provider}, which cannot run it",
        "type": "invalid_request_error",
        "param": "input_file_id",
        "code": "model_not_allowed",
    }
    assert [s.method for s in fake.seen] == ["POST"]  # the upload only: the batch never left
    # A file the gateway did not see uploaded cannot be judged: the provider decides.
    assert (
        client.batches.create(
            input_file_id="file-elsewhere", endpoint="/v1/chat/completions", completion_window="24h"
        ).input_file_id
        == "file-elsewhere"
    )


@pytest.mark.parametrize("provider", ["openai", "azure"])
def test_assistants_and_threads_with_the_beta_header(gateway, fake: FakeOpenAI, provider: str) -> None:
    gw = gateway(routes(fake))
    assistants = openai.OpenAI(base_url=f"{gw.url}/{provider}/v1", api_key="client", max_retries=0)
    threads = openai.OpenAI(base_url=f"{gw.url}/{provider}/x/v1", api_key="client", max_retries=0)
    # The SDK sends OpenAI-Beta itself; a client that does not still gets it upstream.
    raw = openai.OpenAI(
        base_url=f"{gw.url}/{provider}/v1",
        api_key="client",
        max_retries=0,
        default_headers={"OpenAI-Beta": "assistants=v1"},
    )
    created = assistants.beta.assistants.create(model="gpt-4o", name="helper", instructions="be brief")
    sent = fake.last()
    prefix = "/v1" if provider == "openai" else "/openai"
    version = "" if provider == "openai" else "?api-version=2024-10-21"
    assert (sent.path, sent.headers["openai-beta"]) == (f"{prefix}/assistants{version}", "assistants=v2")
    expected_model = "gpt-4o" if provider == "openai" else "gpt4o-dep"  # Azure names its deployment
    assert sent.json() == {"model": expected_model, "name": "helper", "instructions": "be brief"}
    assert created.id == "asst_1"
    raw.get("/assistants/asst_1", cast_to=object)
    assert fake.last().headers["openai-beta"] == "assistants=v2"
    assert fake.last().path == f"{prefix}/assistants/asst_1{version}"

    thread = threads.beta.threads.create()
    assert thread.id == "thread_1"
    assert fake.last().path == f"{prefix}/threads{version}"
    message = threads.beta.threads.messages.create(thread.id, role="user", content="hello")
    assert message.content[0].text.value == "hello"  # type: ignore[union-attr]
    assert fake.last().path == f"{prefix}/threads/thread_1/messages{version}"
    run = threads.beta.threads.runs.create(thread.id, assistant_id=created.id)
    assert (run.id, run.status) == ("run_1", "completed")
    events = list(threads.beta.threads.runs.create(thread.id, assistant_id=created.id, stream=True))
    assert [e.event for e in events] == ["thread.run.created", "thread.message.delta", "thread.run.completed"]
    listed = threads.beta.threads.messages.list(thread.id)
    assert [m.id for m in listed] == ["msg_2", "msg_1"]
    assert all(s.headers["openai-beta"] == "assistants=v2" for s in fake.seen)
    assert gw.records() == []  # assistants get no statistics (seed 002)
