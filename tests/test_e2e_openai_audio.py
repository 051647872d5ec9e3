"""End to end: audio/v1/audio/speech, transcriptions and translations on openai and azure through a
real mitmdump, with the openai SDK, against a local fake OpenAI (tests/fake_openai.py)."""

from __future__ import annotations

import time

import openai
import pytest
from fake_openai import AUDIO, FakeOpenAI

KEY = "sk-audio-secret-4242"
WAV = b"RIFF\x00\x00\x00\x00WAVEfmt " + bytes(range(256)) * 8 + b"\r\n--boundary-lookalike\r\n"


@pytest.fixture
def fake(fake_openai: FakeOpenAI) -> FakeOpenAI:
    return fake_openai


def routes(fake: FakeOpenAI) -> list[dict]:
    out = []
    for provider in ("openai", "azure"):
        if provider == "openai":
            opts: dict = {"upstream_url": fake.url}
            auth = {"header_name": "Authorization", "header_value": f"Bearer {KEY}"}
        else:
            opts = {
                "azure_instance": "res",
                "azure_deployment_id": "stt-dep",
                "azure_api_version": "2024-10-21",
                "upstream_url": fake.url,
            }
            auth = {"header_name": "api-key", "header_value": KEY}
        for kind in ("speech", "transcriptions", "translations"):
            out.append(
                {
                    "name": f"{kind}-{provider}",
                    "match": {"path": f"/{provider}/v1/audio/{kind}"},
                    "route_type": f"audio/v1/audio/{kind}",
                    "auth": auth,
                    "model": {"provider": provider, "options": opts},
                    "logging": {"log_statistics": True, "log_payloads": True},
                }
            )
    out.append(
        {
            "name": "pinned",
            "match": {"path": "/pinned/v1/audio/transcriptions"},
            "route_type": "audio/v1/audio/transcriptions",
            "model": {"provider": "openai", "name": "whisper-1", "options": {"upstream_url": fake.url}},
            "max_request_body_size": 3000,
        }
    )
    return out


def client(gw, provider: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/{provider}/v1", api_key="client", max_retries=0)


UPSTREAM = {
    "openai": ("/v1/audio/{}", ""),
    "azure": ("/openai/deployments/stt-dep/audio/{}", "?api-version=2024-10-21"),
}


@pytest.mark.parametrize("provider", ["openai", "azure"])
def test_speech_streams_audio_bytes_as_they_arrive(gateway, fake: FakeOpenAI, provider: str) -> None:
    gw = gateway(routes(fake))
    arrivals: list[float] = []
    received = b""
    started = time.monotonic()
    with client(gw, provider).audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input="say hi"
    ) as answer:
        assert answer.headers["content-type"] == "audio/mpeg"
        for piece in answer.iter_bytes():
            arrivals.append(time.monotonic() - started)
            received += piece
    assert received == AUDIO  # every byte as the provider sent it
    # four pieces 0.1 s apart: held and sent whole, they would arrive together
    assert len(arrivals) >= 2 and arrivals[-1] - arrivals[0] > 0.15  # pieces came as they were sent
    path, version = UPSTREAM[provider]
    sent = fake.last()
    assert sent.path == path.format("speech") + version
    expected = "tts-1" if provider == "openai" else "stt-dep"
    assert sent.json() == {"model": expected, "voice": "alloy", "input": "say hi"}
    assert gw.records() == []  # audio bytes carry no usage: no statistics (seed 002)


def test_speech_events_carry_usage(gateway, fake: FakeOpenAI) -> None:
    gw = gateway(routes(fake))
    with client(gw, "openai").audio.speech.with_streaming_response.create(
        model="gpt-4o-mini-tts", voice="alloy", input="hi", stream_format="sse"
    ) as answer:
        text = answer.read()
    assert b"speech.audio.done" in text
    (record,) = gw.wait_records(1)
    meta, usage = record["ai"]["proxy"]["meta"], record["ai"]["proxy"]["usage"]
    assert (meta["route"], meta["request_model"]) == ("speech-openai", "gpt-4o-mini-tts")
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == (7, 50, 57)


@pytest.mark.parametrize("provider", ["openai", "azure"])
def test_transcription_multipart_exact_and_usage_recorded(gateway, fake: FakeOpenAI, provider: str) -> None:
    gw = gateway(routes(fake))
    got = client(gw, provider).audio.transcriptions.create(model="gpt-4o-transcribe", file=("a.wav", WAV))
    assert got.text == "hello from the audio"
    sent = fake.last()
    path, version = UPSTREAM[provider]
    assert sent.path == path.format("transcriptions") + version
    assert sent.form() == {"model": "gpt-4o-transcribe", "file": ("a.wav", "audio/x-wav", WAV)}
    (record,) = gw.wait_records(1)
    proxy = record["ai"]["proxy"]
    assert proxy["meta"]["request_model"] == "gpt-4o-transcribe"
    assert (proxy["usage"]["prompt_tokens"], proxy["usage"]["completion_tokens"]) == (14, 5)
    assert proxy["payload"]["request"] is None  # a multipart body is never logged as text
    assert '"hello from the audio"' in proxy["payload"]["response"]


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("text", "hello from the audio\n"),
        ("srt", "1\n00:00:00,000 --> 00:00:01,000\nhello from the audio\n\n"),
        ("vtt", "WEBVTT\n\n00:00:00.000 --> 00:00:01.000\nhello from the audio\n\n"),
    ],
)
def test_transcription_text_formats(gateway, fake: FakeOpenAI, fmt: str, expected: str) -> None:
    gw = gateway(routes(fake))
    got = client(gw, "openai").audio.transcriptions.create(model="whisper-1", file=WAV, response_format=fmt)
    assert got == expected
    assert fake.last().form()["response_format"] == fmt
    time.sleep(0.1)
    assert gw.records() == []  # no usage in a text answer: no statistics


def test_verbose_json_and_translations(gateway, fake: FakeOpenAI) -> None:
    gw = gateway(routes(fake))
    audio = client(gw, "openai").audio
    verbose = audio.transcriptions.create(model="whisper-1", file=WAV, response_format="verbose_json")
    assert (verbose.text, verbose.language, verbose.duration) == ("hello from the audio", "english", 1.0)
    translated = audio.translations.create(model="whisper-1", file=("b.mp3", WAV))
    assert translated.text == "hello from the audio"
    assert fake.last().path == "/v1/audio/translations"
    assert fake.last().form()["file"] == ("b.mp3", "audio/mpeg", WAV)
    time.sleep(0.1)
    assert gw.records() == []  # whisper reports duration, not tokens: no statistics


def test_streamed_transcription_records_its_usage(gateway, fake: FakeOpenAI) -> None:
    gw = gateway(routes(fake))
    events = list(
        client(gw, "azure").audio.transcriptions.create(model="gpt-4o-transcribe", file=WAV, stream=True)
    )
    assert [e.type for e in events] == ["transcript.text.delta", "transcript.text.done"]
    (record,) = gw.wait_records(1)
    usage = record["ai"]["proxy"]["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == (14, 5, 19)


def test_model_enforced_and_size_limited(gateway, fake: FakeOpenAI) -> None:
    gw = gateway(routes(fake))
    pinned = client(gw, "pinned").audio.transcriptions
    with pytest.raises(openai.BadRequestError, match="cannot use own model - must be: whisper-1"):
        pinned.create(model="gpt-4o-transcribe", file=WAV)
    with pytest.raises(openai.APIStatusError) as refused:
        pinned.create(model="whisper-1", file=WAV * 2)
    assert refused.value.status_code == 413
    assert refused.value.body["code"] == "request_too_large"  # type: ignore[index]
    assert fake.seen == []
    assert pinned.create(model="whisper-1", file=WAV[:1000]).text == "hello from the audio"
