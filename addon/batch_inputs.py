"""Batches whose input file names another provider's model are refused (``llm/v1/batches``).

A batch input file uploaded through the gateway was read as it streamed (addon/streamed_uploads.py,
``transforms.uploads.JsonlModels``): the models its lines name are kept here by file id, for the
newest ``MAX_KNOWN_FILES`` files. Listed before the gateway, this addon answers a batch create whose
``input_file_id`` is such a file naming a model of another provider with a 400 saying so
(``transforms.uploads.batch_refusal`` decides). Files uploaded elsewhere cannot be judged and pass.
"""

from __future__ import annotations

from collections import OrderedDict

import orjson
from mitmproxy import http

from addon.flows import answer_error
from addon.gateway import AIProxy
from addon.streamed_uploads import StreamedUploads
from transforms.api_route_types import BATCHES
from transforms.errors import GatewayError
from transforms.openai_apis import api_call
from transforms.uploads import KnownFile, UploadWatch, batch_refusal

MAX_KNOWN_FILES = 10_000


class BatchInputs:
    def __init__(self, gateway: AIProxy, uploads: StreamedUploads) -> None:
        self.gateway = gateway
        self.known: OrderedDict[str, KnownFile] = OrderedDict()
        uploads.listeners.append(self._uploaded)

    def _uploaded(self, flow: http.HTTPFlow, watch: UploadWatch) -> None:
        answer = flow.response
        if not watch.batch_file or watch.models is None or answer is None:
            return
        if not 200 <= answer.status_code < 300:
            return
        try:
            file_id = orjson.loads(answer.get_content(strict=False) or b"").get("id")
        except (orjson.JSONDecodeError, AttributeError):
            return
        if isinstance(file_id, str) and file_id:
            self.known[file_id] = KnownFile(dict(watch.models.models), watch.models.problem)
            self.known.move_to_end(file_id)
            while len(self.known) > MAX_KNOWN_FILES:
                self.known.popitem(last=False)

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live or flow.request.method != "POST" or not self.known:
            return
        route = self.gateway.route_for(flow)
        if route is None or route.route_type != BATCHES:
            return
        path = flow.request.path.partition("?")[0]
        try:
            if api_call(route, "POST", path, "").operation != "create":
                return
            body = orjson.loads(flow.request.get_content(strict=False) or b"")
        except (GatewayError, orjson.JSONDecodeError):
            return  # the gateway answers what is not a batch create
        file_id = body.get("input_file_id") if isinstance(body, dict) else None
        if not isinstance(file_id, str):
            return
        refusal = batch_refusal(file_id, self.known.get(file_id), route, self.gateway.config.routes)
        if refusal is not None:
            answer_error(flow, refusal, route)
