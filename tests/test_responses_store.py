"""The stored responses: the bound, and the pure shapes of input items, continued requests and pages."""

from __future__ import annotations

from addon.responses_store import ResponseStore, Stored
from transforms.ingress.responses import continued, input_items, item_page, not_found


def test_the_store_keeps_the_newest_up_to_its_size():
    store = ResponseStore(size=2)
    for n in range(3):
        store.put(f"resp_{n}", Stored({"id": f"resp_{n}"}, []))
    assert list(store.kept) == ["resp_1", "resp_2"]
    assert store.get("resp_0") is None


def test_input_items_get_ids_and_typed_content():
    items = input_items(
        {
            "input": [
                {"role": "user", "content": "Hi"},
                {"type": "function_call_output", "call_id": "c", "output": "x"},
            ]
        },
        "r1",
    )
    assert items == [
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "Hi"}],
            "status": "completed",
            "id": "msg_r1_in0",
        },
        {"type": "function_call_output", "call_id": "c", "output": "x", "id": "fco_r1_in1"},
    ]
    assert input_items({"input": "Hi"}, "r2")[0]["content"] == [{"type": "input_text", "text": "Hi"}]


def test_a_continued_request_puts_the_context_first():
    context = [
        {"type": "message", "id": "m", "role": "assistant", "content": [{"type": "output_text", "text": "2"}]}
    ]
    body = continued({"model": "m", "input": "And 3?", "previous_response_id": "resp_1"}, context)
    assert body == {"model": "m", "input": [*context, {"role": "user", "content": "And 3?"}]}


def test_pages_are_newest_first_unless_asked():
    items = [{"id": f"i{n}"} for n in range(5)]
    page = item_page(items, {"limit": "2"})
    assert ([i["id"] for i in page["data"]], page["has_more"], page["first_id"], page["last_id"]) == (
        ["i4", "i3"], True, "i4", "i3",
    )  # fmt: skip
    page = item_page(items, {"order": "asc", "after": "i2"})
    assert ([i["id"] for i in page["data"]], page["has_more"]) == (["i3", "i4"], False)


def test_unknown_ids_are_404s_in_openais_shape():
    error = not_found("resp_x", "previous_response_id")
    assert (error.status, error.code, error.param) == (
        404,
        "previous_response_not_found",
        "previous_response_id",
    )
    assert not_found("resp_x").code == "not_found"


def test_a_stored_response_is_seen_only_by_the_gateway_key_that_made_it():
    store = ResponseStore()
    store.put("resp_a", Stored({"id": "resp_a"}, [], owner="team-a"))
    assert store.get("resp_a", "team-a") is not None
    assert store.get("resp_a", "team-b") is None
    assert store.get("resp_a") is None  # a client with no gateway key
