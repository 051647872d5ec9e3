"""End to end: the real openai SDK's Responses API -> mitmdump + addon (route_type llm/v1/responses)
-> the local emulator: forwarded to openai and azure, translated to the chat call of every other
provider."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import openai
import orjson
import pytest
from conftest import npm_cli, route
from openai.types.responses import Response
from test_e2e_ingress_anthropic import ANSWERS, AUTH, MODELS, OPTIONS

ADAPTED_MODELS = {
    **{p: m for p, m in MODELS.items() if p not in ("openai", "azure")},
    "anthropic": "claude-sonnet-4-5-20250929",
}
ADAPTED_AUTH = {
    **AUTH,
    "anthropic": {"header_name": "x-api-key", "header_value": "sk-ant-configured-0123456789"},
}
ADAPTED_OPTIONS = {**OPTIONS, "anthropic": {"anthropic_version": "2023-06-01"}}
ADAPTED_ANSWERS = {**ANSWERS, "anthropic": ("The capital of Australia is Canberra — not Sydney.", 27, 13)}
STREAMING = ["anthropic", "gemini", "bedrock", "ollama", "cohere", "huggingface"]
CLIENT_KEY = "sk-client-key-not-for-upstream"
OPENAI_MODEL = "gpt-5-mini"
AZURE = {"azure_instance": "inst", "azure_deployment_id": "gpt5-deployment", "azure_api_version": "preview"}
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "strict": False,
}


# Providers of the OpenAI chat format, and Vertex AI (Gemini with a header credential: the service
# account flow is tested in test_e2e_gemini): (route, provider, auth, options).
VERTEX = {
    "api_endpoint": "us-central1-aiplatform.googleapis.com",
    "project_id": "p1",
    "location_id": "us-central1",
}
MORE_ROUTES = [
    (
        "mistral",
        "mistral",
        {"header_name": "Authorization", "header_value": "Bearer mistral-secret-0123"},
        {"mistral_format": "openai"},
    ),
    ("llama2", "llama2", None, {"llama2_format": "openai"}),
    (
        "vertex",
        "gemini",
        {"header_name": "Authorization", "header_value": "Bearer ya29.vertex-token-0123"},
        {"gemini": VERTEX},
    ),
]
MORE_MODELS = {"mistral": "mistral-large-latest", "llama2": "llama-2-13b-chat", "vertex": "gemini-2.5-pro"}
# (text, input tokens, output tokens, the upstream path) of the emulator's answers.
MORE_ANSWERS = {
    "mistral": ("1 + 1 = 2.", 25, 12, "/v1/chat/completions"),
    "llama2": ("1 + 1 = 2.", 25, 12, "/v1/chat/completions"),
    "vertex": (
        "1 + 1 equals 2.",
        13,
        108,  # 8 answer tokens and 100 thought tokens
        "/v1/projects/p1/locations/us-central1/publishers/google/models/gemini-2.5-pro:generateContent",
    ),
}


@pytest.fixture
def gw(gateway, emulator):
    routes = [
        route(
            f"responses-on-{provider}",
            f"/{provider}/v1/responses",
            "llm/v1/responses",
            provider,
            emulator.url,
            model=model,
            auth=ADAPTED_AUTH[provider],
            options=ADAPTED_OPTIONS.get(provider),
        )
        for provider, model in ADAPTED_MODELS.items()
    ]
    routes += [
        route(
            f"responses-on-{name}",
            f"/{name}/v1/responses",
            "llm/v1/responses",
            provider,
            emulator.url,
            model=MORE_MODELS[name],
            auth=auth,
            options=options,
        )
        for name, provider, auth, options in MORE_ROUTES
    ]
    routes += [
        route(
            "responses-on-openai",
            "/openai/v1/responses",
            "llm/v1/responses",
            "openai",
            emulator.url,
            model=OPENAI_MODEL,
            auth=AUTH["openai"],
        ),
        route(
            "responses-on-azure",
            "/azure/v1/responses",
            "llm/v1/responses",
            "azure",
            emulator.url,
            model=OPENAI_MODEL,
            auth=AUTH["azure"],
            options=AZURE,
        ),
    ]
    return gateway(routes)


def client(gw, provider: str, **headers: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{gw.url}/{provider}/v1", api_key=CLIENT_KEY, default_headers=headers, max_retries=0
    )


def usage_of(record: dict[str, Any]) -> tuple[int, int]:
    usage = record["ai"]["proxy"]["usage"]
    return usage["prompt_tokens"], usage["completion_tokens"]


@pytest.mark.parametrize("provider", list(ADAPTED_MODELS))
def test_create_on_every_chat_provider(gw, emulator, provider):
    text, input_tokens, output_tokens = ADAPTED_ANSWERS[provider]
    response = client(gw, provider).responses.create(
        model=ADAPTED_MODELS[provider],
        instructions="Be brief.",
        input="What is 1 + 1?",
        max_output_tokens=100,
        metadata={"run": "e2e"},
        store=False,
        include=["reasoning.encrypted_content"],
    )
    assert isinstance(response, Response)
    assert (response.object, response.status, response.output_text) == ("response", "completed", text)
    assert (response.instructions, response.metadata) == ("Be brief.", {"run": "e2e"})
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (input_tokens, output_tokens)
    assert response.id.startswith("resp_")
    if ADAPTED_AUTH[provider] is not None:  # the route's credential replaced the client's
        assert CLIENT_KEY not in orjson.dumps(emulator.last.headers).decode()
    [record] = gw.wait_records(1)
    meta = record["ai"]["proxy"]["meta"]
    assert (meta["route"], meta["provider_name"], meta["request_model"]) == (
        f"responses-on-{provider}",
        provider,
        ADAPTED_MODELS[provider],
    )
    assert usage_of(record) == (input_tokens, output_tokens)


@pytest.mark.parametrize("provider", STREAMING)
def test_stream_on_every_chat_provider(gw, provider):
    stream = client(gw, provider).responses.create(
        model=ADAPTED_MODELS[provider], input="What is 1 + 1?", stream=True
    )
    events = list(stream)
    kinds = [e.type for e in events]
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert kinds[-1] == "response.completed"
    assert {"response.content_part.added", "response.output_text.delta", "response.output_text.done"} <= set(
        kinds
    )
    assert [e.sequence_number for e in events] == list(range(len(events)))
    final = events[-1].response  # type: ignore[union-attr]
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")  # type: ignore[union-attr]
    assert final.output_text == text and text
    [record] = gw.wait_records(1)
    assert usage_of(record) == (final.usage.input_tokens, final.usage.output_tokens)
    assert final.usage.output_tokens > 0


@pytest.mark.parametrize("name", [r[0] for r in MORE_ROUTES])
def test_create_and_stream_on_mistral_llama2_and_vertex(gw, emulator, name):
    text, input_tokens, output_tokens, path = MORE_ANSWERS[name]
    c = client(gw, name)
    response = c.responses.create(model=MORE_MODELS[name], instructions="Be brief.", input="What is 1 + 1?")
    assert isinstance(response, Response)
    assert (response.status, response.output_text, response.instructions) == ("completed", text, "Be brief.")
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (input_tokens, output_tokens)
    sent = emulator.last
    assert sent.path == path
    if name != "llama2":  # the route's credential replaced the client's (llama2's route has none)
        assert CLIENT_KEY not in orjson.dumps(sent.headers).decode()
    if name == "vertex":
        assert sent.json()["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    else:
        assert sent.json()["messages"][0] == {"role": "system", "content": "Be brief."}
    with c.responses.stream(model=MORE_MODELS[name], input="What is 1 + 1?") as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert [e.type for e in events][:3] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
    ]
    assert events[-1].type == "response.completed"
    assert (
        final.output_text
        == "".join(e.delta for e in events if e.type == "response.output_text.delta")
        == text
    )
    records = gw.wait_records(2)
    assert [r["ai"]["proxy"]["meta"]["route"] for r in records] == [f"responses-on-{name}"] * 2
    assert [r["ai"]["proxy"]["meta"]["request_mode"] for r in records] == ["oneshot", "stream"]
    assert usage_of(records[0]) == (input_tokens, output_tokens)


# --- built-in tools: the provider's own web search ----------------------------------------------------

LOCATED_SEARCH = {
    "type": "web_search",
    "search_context_size": "low",
    "user_location": {"type": "approximate", "city": "Berlin", "country": "DE"},
}


def test_web_search_on_anthropic_is_its_server_search(gw, emulator):
    c = client(gw, "anthropic", **{"x-emulator-fixture": "anthropic/web_search/response.json"})
    response = c.responses.create(
        model=ADAPTED_MODELS["anthropic"], input="Latest Python?", tools=[WEATHER, LOCATED_SEARCH]
    )
    sent = emulator.last.json()
    assert sent["tools"][1] == {
        "type": "web_search_20250305",
        "name": "web_search",
        "user_location": {"type": "approximate", "city": "Berlin", "country": "DE"},
    }
    search, message = response.output
    assert search.type == "web_search_call" and search.status == "completed"
    assert search.action.model_dump(exclude_unset=True) == {  # type: ignore[union-attr]
        "type": "search",
        "query": "latest Python release",
        "sources": [
            {"type": "url", "url": "https://www.python.org/downloads/"},
            {"type": "url", "url": "https://docs.python.org/3/whatsnew/3.14.html"},
        ],
    }
    [cited] = message.content[0].annotations  # type: ignore[union-attr]
    assert (cited.type, cited.url, cited.title) == (
        "url_citation",
        "https://www.python.org/downloads/",
        "Download Python | Python.org",
    )  # type: ignore[union-attr]
    assert (
        response.output_text[cited.start_index : cited.end_index]
        == "Python 3.14.0, released on 7 October 2025"
    )  # type: ignore[union-attr]
    # A required search is Anthropic's forced tool choice.
    c.responses.create(
        model=ADAPTED_MODELS["anthropic"],
        input="x",
        tools=[LOCATED_SEARCH],
        tool_choice={"type": "web_search_preview"},
    )
    assert emulator.last.json()["tool_choice"] == {"type": "tool", "name": "web_search"}
    gw.wait_records(2)
    assert "web_search left out" not in gw.log


def test_web_search_on_anthropic_streams_its_search_and_citation(gw):
    c = client(gw, "anthropic", **{"x-emulator-fixture": "anthropic/web_search/stream.sse"})
    with c.responses.stream(
        model=ADAPTED_MODELS["anthropic"], input="Weather?", tools=[LOCATED_SEARCH]
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert [item.type for item in final.output] == ["message", "web_search_call", "message"]
    assert "response.web_search_call.completed" in kinds and "response.output_text.annotation.added" in kinds
    [cited] = final.output[2].content[0].annotations  # type: ignore[union-attr]
    text = final.output[2].content[0].text  # type: ignore[union-attr]
    assert text[cited.start_index : cited.end_index] == "mostly sunny, with a high of 24 \u00b0C"  # type: ignore[union-attr]
    assert final.output[1].action.query == "weather NYC today"  # type: ignore[union-attr]


def test_web_search_on_gemini_is_google_search_grounding(gw, emulator):
    c = client(gw, "gemini", **{"x-emulator-fixture": "gemini/grounding/response.json"})
    response = c.responses.create(model=MODELS["gemini"], input="Who won Euro 2024?", tools=[LOCATED_SEARCH])
    assert emulator.last.json()["tools"] == [{"googleSearch": {}}]
    search, message = response.output
    assert search.action.model_dump(exclude_unset=True)["queries"] == [
        "Euro 2024 winner",
        "Euro 2024 final score",
    ]  # type: ignore[union-attr]
    spans = [(a.start_index, a.end_index, a.title) for a in message.content[0].annotations]  # type: ignore[union-attr]
    assert spans == [(0, 64, "uefa.com"), (0, 64, "aljazeera.com"), (65, 99, "aljazeera.com")]
    assert response.output_text[65:99] == "Mikel Oyarzabal scored the winner."
    with client(gw, "gemini", **{"x-emulator-fixture": "gemini/grounding/stream.sse"}).responses.stream(
        model=MODELS["gemini"], input="Who won Euro 2024?", tools=[LOCATED_SEARCH]
    ) as stream:
        final = stream.get_final_response()
    assert [item.type for item in final.output] == ["message", "web_search_call"]
    assert len(final.output[0].content[0].annotations) == 3  # type: ignore[union-attr]
    gw.wait_records(2)


def test_codex_s_search_next_to_functions_on_gemini_is_left_out_and_said_once(gw, emulator):
    codex_search = {"type": "web_search", "external_web_access": False}
    for _ in range(2):
        client(gw, "gemini").responses.create(
            model=MODELS["gemini"], input="x", tools=[WEATHER, codex_search]
        )
        assert [list(t) for t in emulator.last.json()["tools"]] == [["functionDeclarations"]]
    gw.wait_records(2)
    line = "route=responses-on-gemini: web_search_options left out where function tools are offered"
    assert gw.log.count(line) == 1


def test_the_stream_helper_and_its_final_response(gw):
    with client(gw, "gemini").responses.stream(model=MODELS["gemini"], input="What is 1 + 1?") as stream:
        numbers = [event.sequence_number for event in stream]
        final = stream.get_final_response()
    assert numbers == list(range(len(numbers))) and len(numbers) >= 9
    assert final.status == "completed" and final.output_text == ANSWERS["gemini"][0]


def test_reasoning_cached_tokens_and_their_statistics(gw):
    c = client(gw, "gemini", **{"x-emulator-fixture": "gemini/thinking/response.json"})
    response = c.responses.create(model=MODELS["gemini"], input="Is 221 prime?")
    assert [item.type for item in response.output] == ["reasoning", "message"]
    assert response.output[0].summary[0].text.startswith("**Checking small factors**")  # type: ignore[union-attr]
    assert response.output_text == "No. 221 = 13 \u00d7 17."
    usage = response.usage
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (2060, 255, 2315)
    assert (usage.input_tokens_details.cached_tokens, usage.output_tokens_details.reasoning_tokens) == (
        2048,
        244,
    )
    [record] = gw.wait_records(1)
    assert record["ai"]["proxy"]["usage"]["prompt_tokens_details"] == {"cached_tokens": 2048}
    assert record["ai"]["proxy"]["usage"]["completion_tokens_details"] == {"reasoning_tokens": 244}


def test_a_truncated_answer_is_incomplete(gw):
    c = client(gw, "gemini", **{"x-emulator-fixture": "gemini/max_tokens/response.json"})
    response = c.responses.create(model=MODELS["gemini"], input="Count to 100.", max_output_tokens=5)
    assert response.status == "incomplete"
    assert (
        response.incomplete_details is not None and response.incomplete_details.reason == "max_output_tokens"
    )


@pytest.mark.parametrize(
    ("provider", "fixture", "arguments", "sent_back"),
    [
        (
            "gemini",
            "gemini/tools/response.json",
            {"city": "Paris", "unit": "celsius", "days": 1},
            "functionResponse",
        ),
        (
            "bedrock",
            "bedrock/tools/response.json",
            {"location": "Paris, France", "unit": "celsius"},
            "toolResult",
        ),
        ("ollama", "ollama/chat_tools/response.json", {"city": "Tokyo", "unit": "celsius"}, '"role":"tool"'),
    ],
)
def test_tools_round_trip(gw, emulator, provider, fixture, arguments, sent_back):
    model = ADAPTED_MODELS[provider]
    first = client(gw, provider, **{"x-emulator-fixture": fixture}).responses.create(
        model=model, input="Weather in Paris?", tools=[WEATHER], tool_choice="auto"
    )
    calls = [item for item in first.output if item.type == "function_call"]
    assert calls and calls[0].name == "get_weather"
    assert orjson.loads(calls[0].arguments) == arguments
    sent_tools = orjson.dumps(emulator.last.json()).decode()
    assert "get_weather" in sent_tools and "The weather in a city" in sent_tools
    second = client(gw, provider).responses.create(
        model=model,
        input=[
            {"role": "user", "content": "Weather in Paris?"},
            *(
                {"type": "function_call", "call_id": c.call_id, "name": c.name, "arguments": c.arguments}
                for c in calls
            ),
            *(
                {"type": "function_call_output", "call_id": c.call_id, "output": "18 C and sunny"}
                for c in calls
            ),
        ],
        tools=[WEATHER],
    )
    assert second.output_text == ADAPTED_ANSWERS[provider][0]
    sent = orjson.dumps(emulator.last.json()).decode()
    assert sent_back in sent and "18 C and sunny" in sent
    gw.wait_records(2)


def test_streamed_tool_calls(gw):
    c = client(gw, "gemini", **{"x-emulator-fixture": "gemini/stream_tools/stream.sse"})
    with c.responses.stream(model=MODELS["gemini"], input="Weather?", tools=[WEATHER]) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert (
        "response.function_call_arguments.delta" in kinds and "response.function_call_arguments.done" in kinds
    )
    names = [item.name for item in final.output if item.type == "function_call"]
    assert names[-1] == "get_time" and "get_weather" in names


def test_built_in_tools_are_left_out_and_said_once(gw, emulator):
    c = client(gw, "ollama")
    for _ in range(2):
        response = c.responses.create(
            model=ADAPTED_MODELS["ollama"], input="What is 1 + 1?", tools=[WEATHER, {"type": "web_search"}]
        )
        assert response.output_text == ANSWERS["ollama"][0]
        assert [t["function"]["name"] for t in emulator.last.json()["tools"]] == ["get_weather"]
    gw.wait_records(2)
    line = "route=responses-on-ollama: responses clients' built-in tools web_search left out of the offer"
    assert gw.log.count(line) == 1


def test_json_schema_output(gw, emulator):
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    c = client(gw, "gemini", **{"x-emulator-fixture": "gemini/json_schema/response.json"})
    response = c.responses.create(
        model=MODELS["gemini"],
        input="Who was Ada Lovelace?",
        text={"format": {"type": "json_schema", "name": "person", "schema": schema}},
    )
    assert orjson.loads(response.output_text)["name"] == "Ada Lovelace"
    config = emulator.last.json()["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert response.text is not None and response.text.format.type == "json_schema"


# --- refusals -------------------------------------------------------------------------------------


def test_what_needs_stored_responses_is_refused_in_openais_shape(gw, emulator):
    c = client(gw, "gemini")
    with pytest.raises(openai.NotFoundError) as err:
        c.responses.create(model=MODELS["gemini"], input="And then?", previous_response_id="resp_unknown")
    assert err.value.body["param"] == "previous_response_id"  # type: ignore[index]
    assert err.value.body["code"] == "previous_response_not_found"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as err:  # ollama has no search of its own
        client(gw, "ollama").responses.create(
            model=ADAPTED_MODELS["ollama"],
            input="x",
            tools=[{"type": "web_search"}],
            tool_choice={"type": "web_search_preview"},
        )
    assert err.value.body["param"] == "tool_choice"  # type: ignore[index]
    assert "'web_search_preview' is required but not available on the ollama provider" in err.value.message
    with pytest.raises(openai.BadRequestError) as err:
        c.responses.create(
            model=MODELS["gemini"],
            input="x",
            tools=[{"type": "file_search", "vector_store_ids": ["vs_1"]}],
        )
    assert err.value.body["param"] == "tools"  # type: ignore[index]
    assert "file_search searches OpenAI vector stores" in err.value.message
    assert "the gemini provider does not have" in err.value.message
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve("resp_1")
    with pytest.raises(openai.BadRequestError) as err:
        c.responses.create(model="gpt-4o", input="x")
    assert "cannot use own model" in err.value.message
    assert emulator.requests == []
    assert gw.records() == []


def test_stored_responses_chain_retrieve_list_and_delete(gw, emulator):
    c = client(gw, "gemini")
    first = c.responses.create(model=MODELS["gemini"], input="What is 1 + 1?")
    again = c.responses.retrieve(first.id)
    assert again.model_dump(exclude_unset=True) == first.model_dump(exclude_unset=True)
    [item] = c.responses.input_items.list(first.id).data
    assert (item.type, item.role, item.content[0].text) == ("message", "user", "What is 1 + 1?")  # type: ignore[union-attr]
    second = c.responses.create(model=MODELS["gemini"], input="And 2 + 2?", previous_response_id=first.id)
    assert second.id != first.id
    contents = emulator.last.json()["contents"]
    assert [(m["role"], m["parts"][0]["text"]) for m in contents] == [
        ("user", "What is 1 + 1?"),
        ("model", ANSWERS["gemini"][0]),
        ("user", "And 2 + 2?"),
    ]
    listed = c.responses.input_items.list(second.id, order="asc").data
    assert [(i.type, i.role) for i in listed] == [
        ("message", "user"),
        ("message", "assistant"),
        ("message", "user"),
    ]  # type: ignore[union-attr]
    assert [i.role for i in c.responses.input_items.list(second.id).data] == ["user", "assistant", "user"][
        ::-1
    ]  # type: ignore[union-attr]
    with pytest.raises(openai.BadRequestError):
        c.responses.cancel(first.id)
    c.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(first.id)
    sent = len(emulator.requests)
    with pytest.raises(openai.NotFoundError) as err:
        c.responses.create(model=MODELS["gemini"], input="x", previous_response_id=first.id)
    assert err.value.body["code"] == "previous_response_not_found"  # type: ignore[index]
    assert len(emulator.requests) == sent  # nothing sent
    assert len(gw.wait_records(2)) == 2  # the two calls; the store's own answers are not accounted


def test_streamed_responses_are_stored_and_store_false_keeps_nothing(gw):
    c = client(gw, "ollama")
    with c.responses.stream(model=ADAPTED_MODELS["ollama"], input="What is 1 + 1?") as stream:
        final = stream.get_final_response()
    assert c.responses.retrieve(final.id).output_text == final.output_text == ANSWERS["ollama"][0]
    unkept = c.responses.create(model=ADAPTED_MODELS["ollama"], input="What is 1 + 1?", store=False)
    assert unkept.store is False
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(unkept.id)


def test_upstream_errors_keep_their_status(gw):
    c = client(gw, "gemini", **{"x-emulator-fixture": "gemini/errors/429.json", "x-emulator-status": "429"})
    with pytest.raises(openai.RateLimitError) as err:
        c.responses.create(model=MODELS["gemini"], input="x")
    assert err.value.body["type"] == "rate_limit_error"  # type: ignore[index]


# --- forwarded: openai and azure ----------------------------------------------------------------------


def test_openai_create_is_forwarded_with_the_routes_auth(gw, emulator):
    response = client(gw, "openai").responses.create(model=OPENAI_MODEL, input="What is 1 + 1?")
    assert (response.id, response.output_text) == ("resp_1", "1 + 1 = 2.")
    sent = emulator.last
    assert (sent.method, sent.path) == ("POST", "/v1/responses")
    assert sent.headers["authorization"] == AUTH["openai"]["header_value"]
    assert sent.json() == {"model": OPENAI_MODEL, "input": "What is 1 + 1?"}
    [record] = gw.wait_records(1)
    usage = record["ai"]["proxy"]["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == (36, 87, 123)
    assert usage["prompt_tokens_details"] == {"cached_tokens": 12}
    assert usage["completion_tokens_details"] == {"reasoning_tokens": 64}
    assert record["ai"]["proxy"]["meta"]["response_model"] == "gpt-5-mini-2025-08-07"


def test_openai_stream_is_passed_through_and_accounted(gw, emulator):
    raw = (emulator.root / "openai/responses/stream.sse").read_bytes()
    with client(gw, "openai").responses.stream(model=OPENAI_MODEL, input="What is 1 + 1?") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds == [line[7:] for line in raw.decode().splitlines() if line.startswith("event: ")]
    assert final.output_text == "1 + 1 = 2."
    assert emulator.last.json()["stream"] is True
    [record] = gw.wait_records(1)
    assert usage_of(record) == (36, 87)
    assert record["ai"]["proxy"]["meta"]["request_mode"] == "stream"


def test_openai_retrieve_delete_input_items_and_cancel_are_forwarded_unaccounted(gw, emulator):
    c = client(gw, "openai")
    assert c.responses.retrieve("resp_1").id == "resp_1"
    assert [item.id for item in c.responses.input_items.list("resp_1")] == ["msg_0"]
    assert c.responses.cancel("resp_1").status == "cancelled"
    c.responses.delete("resp_1")
    assert [(r.method, r.path.split("?")[0]) for r in emulator.requests] == [
        ("GET", "/v1/responses/resp_1"),
        ("GET", "/v1/responses/resp_1/input_items"),
        ("POST", "/v1/responses/resp_1/cancel"),
        ("DELETE", "/v1/responses/resp_1"),
    ]
    assert all(r.headers["authorization"] == AUTH["openai"]["header_value"] for r in emulator.requests)
    assert gw.wait_records(1, timeout=0.5) == []


def test_azure_preview_uses_the_v1_path_with_the_deployment_as_model(gw, emulator):
    response = client(gw, "azure").responses.create(model=OPENAI_MODEL, input="What is 1 + 1?")
    assert response.output_text == "1 + 1 = 2."
    sent = emulator.last
    assert sent.path == "/openai/v1/responses?api-version=preview"
    assert sent.json()["model"] == "gpt5-deployment"
    assert sent.headers["api-key"] == AUTH["azure"]["header_value"]
    client(gw, "azure").responses.retrieve("resp_1")
    assert emulator.last.path == "/openai/v1/responses/resp_1?api-version=preview"
    [record] = gw.wait_records(1)
    assert usage_of(record) == (36, 87)


# --- the Codex CLI (npm @openai/codex), when installed ------------------------------------------------

# `make codex` installs the CLI into tests/.node (git-ignored); CI has no npm and skips these tests.
CODEX = npm_cli("codex", "AI_PROXY_CODEX_BIN")


@pytest.mark.skipif(
    CODEX is None, reason="the Codex CLI is not installed: `make codex` (npm), or set AI_PROXY_CODEX_BIN"
)
@pytest.mark.parametrize("provider", ["gemini", "ollama"])
def test_codex_exec_runs_on_other_providers(gw, emulator, tmp_path, provider):
    """``codex exec`` (non-interactive) with a model provider whose base_url is a Responses route:
    its streamed Responses calls are translated and accounted."""
    model = ADAPTED_MODELS[provider]
    provider_config = f'{{name="ai-proxy", base_url="{gw.url}/{provider}/v1", env_key="AI_PROXY_KEY", wire_api="responses"}}'
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "CODEX_HOME": str(tmp_path / ".codex"),
        "AI_PROXY_KEY": CLIENT_KEY,
    }
    (tmp_path / ".codex").mkdir()
    done = subprocess.run(
        [
            CODEX,  # type: ignore[list-item]
            "exec",
            "--skip-git-repo-check",
            "-m",
            model,
            "-c",
            "model_provider=aiproxy",
            "-c",
            f"model_providers.aiproxy={provider_config}",
            "What is 1 + 1?",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-2000:]
    assert ADAPTED_ANSWERS[provider][0] in done.stdout
    records = gw.wait_records(1)
    assert {r["ai"]["proxy"]["meta"]["route"] for r in records} == {f"responses-on-{provider}"}
