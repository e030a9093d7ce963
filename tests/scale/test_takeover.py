"""A call whose media socket goes away mid-conversation goes on: ACS's MediaStreamingFailed makes a live
replica restart the streaming (``start_media_streaming`` through the official SDK), the new socket opens
the call's media handler from the stored session, and the agent apologises and repeats what it was saying
instead of greeting again.

- one replica (no Redis): the app's own socket drops (closed under the handler) and comes back;
- two real ``callwright serve`` replicas behind HAProxy on one Redis: the replica holding the call's media
  is SIGKILLed while the agent answers; the other takes the call over within a few seconds, the caller
  hears the agent again and finishes its script, and the transcript keeps the earlier turns once.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from callwright.agents.runtime import RESUME_LINE, last_agent_words
from callwright.localstack import local_stack
from callwright.scale.takeover import STOP_CONTEXT
from support.cluster import cluster

pytestmark = pytest.mark.timeout(300)

CHEAP = {"stt_engine": "instant", "instant_stt_transcript": "what are your opening hours", "stt_pool_warm": 0,
         "tts_pool_warm": 1}  # fmt: skip

# The drop comes while the agent answers: the step waiting for the answer spans the gap, so it ends only
# once the agent has been heard again (after the apology) and gone quiet.
ASKS_TWICE = """
name: asks twice across a media drop
direction: inbound
from: "+15551230001"
to: "+15550001000"
timeout_s: 150
transcribe: false
steps:
  - wait: {agent_done: 700, timeout_s: 40}
  - say: "What are your opening hours?"
  - wait: {agent_done: 1500, timeout_s: 90}
  - say: "What are your opening hours?"
  - wait: {agent_done: 700, timeout_s: 40}
  - hangup
"""


async def _until(predicate: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(interval)


def _agent_answering(phone: Any) -> bool:
    """The caller has spoken and the agent's answer is playing at its ear."""
    said = [u.end_t for u in phone.utterances if u.end_t is not None]
    link = phone.link
    return bool(said) and link is not None and link.agent_playing and (link.last_agent_voiced_t or 0) > said[0]


def _assistant(transcript: list[dict[str, Any]]) -> list[str]:
    return [m["content"] for m in transcript if m["role"] == "assistant"]


def _check_transcript(transcript: list[dict[str, Any]]) -> None:
    replies = _assistant(transcript)
    greetings = [r for r in replies if r.startswith("Thank you for calling Contoso")]
    assert len(greetings) == 1, replies  # greeted once: the restart did not greet again
    resumed = [r for r in replies if r.startswith(RESUME_LINE)]
    assert len(resumed) == 1, replies
    asked = [m for m in transcript if m["role"] == "user" and "opening hours" in m["content"].lower()]
    assert len(asked) == 2, transcript  # the question before the drop once, and again after
    # The earlier turns come first, once each, in order: greeting, question, (the answer, cut off), apology.
    order = [i for i, m in enumerate(transcript) if m["role"] == "assistant" and m["content"] in greetings + resumed]
    first_question = next(i for i, m in enumerate(transcript) if m in asked)
    assert order[0] < first_question < order[1], transcript
    assert any("Monday to Friday" in r for r in replies[replies.index(resumed[0]) :]), replies


def test_the_resume_line_repeats_the_last_words_in_full_and_never_stacks() -> None:
    history = [
        {"role": "assistant", "content": "Hello. How can I help?", "agent": "front_desk"},
        {"role": "user", "content": "hours please"},
        {"role": "assistant", "content": "We're open Mon", "interrupted": True, "full_text": "We're open Monday."},
        {"role": "assistant", "content": "Sorry, the server is closing.", "agent": "system"},
    ]
    assert last_agent_words(history) == "We're open Monday."
    assert last_agent_words([{"role": "user", "content": "hi"}]) is None
    again = [*history, {"role": "assistant", "content": f"{RESUME_LINE} We're open Monday."}]
    assert last_agent_words(again) == "We're open Monday."  # a second drop does not apologise twice


def test_a_resumed_realtime_session_is_told_the_conversation_and_does_not_greet_again() -> None:
    from callwright.agents.base import CallInfo
    from callwright.agents.factory import build_orchestrator, load_scenario
    from callwright.config import load_settings
    from callwright.sessions.memo import MemoManager
    from callwright.sessions.store import InMemorySessionStore
    from callwright.voice.realtime.backends import backend_spec
    from callwright.voice.realtime.session import AgentView, session_update

    settings = load_settings(azure_voicelive_endpoint="https://vl.example.com", azure_voicelive_api_key="k")
    memo = MemoManager("call-1", InMemorySessionStore(ttl_seconds=60))
    memo.append_history("assistant", "Thank you for calling. How can I help?", agent="front_desk")
    memo.append_history("user", "what are your opening hours")
    memo.append_history("assistant", "We're open", agent="front_desk", interrupted=True,
                        full_text="We're open Monday to Friday.")  # fmt: skip
    call = CallInfo(call_connection_id="call-1", caller="+15551230001", callee="+15550001000", direction="inbound")
    orch = build_orchestrator(settings, load_scenario(settings), call, memo)
    spec = backend_spec(settings)
    agent = AgentView(orch, spec)
    assert agent.greeting() == f"{RESUME_LINE} We're open Monday to Friday."
    instructions = session_update(settings, spec, agent, first=True)["session"]["instructions"]
    assert "Caller: what are your opening hours" in instructions
    assert "You: We're open (cut off by the caller)" in instructions
    # A new call: no history, the scenario's greeting and no conversation in the instructions.
    fresh = AgentView(
        build_orchestrator(settings, load_scenario(settings), call, MemoManager("call-2", memo._store)), spec
    )
    assert fresh.greeting().startswith("Thank you for calling Contoso Insurance")
    assert "conversation so far" not in session_update(settings, spec, fresh, first=True)["session"]["instructions"]


async def test_one_survivor_takes_a_dead_replica_over_and_nobody_judges_before_the_heartbeats_flow(
    redis_server: Any,
) -> None:
    """Heartbeats and the take-over claim on a real Redis, with the monitors of three replicas (no ACS: the
    restart itself is covered by the call tests above)."""
    from types import SimpleNamespace

    from callwright.config import load_settings
    from callwright.events.processor import CallEventProcessor
    from callwright.metrics import Metrics
    from callwright.scale.takeover import ReplicaMonitor
    from callwright.sessions.directory import RedisDirectory
    from callwright.sessions.registry import CallRegistry

    # Generous for a loaded machine: a heartbeat would have to stall a whole second to be missed.
    settings = load_settings(replica_heartbeat_seconds=0.2, replica_dead_after_seconds=1.0)

    def replica(name: str) -> SimpleNamespace:
        directory = RedisDirectory(redis_server.url, replica_id=name, prefix="cw", ttl_seconds=600,
                                   dead_after_seconds=settings.replica_dead_after_seconds)  # fmt: skip
        st = SimpleNamespace(directory=directory, metrics=Metrics(), calls=CallRegistry(directory=directory),
                             processor=CallEventProcessor(), automation=None, draining=False)  # fmt: skip
        st.monitor = ReplicaMonitor(st, settings)
        return st

    a, b, c, d = replica("a"), replica("b"), replica("c"), replica("d")
    try:
        await b.directory.put("call-1", {"call_connection_id": "call-1", "state": "connected", "created_at": 1.0})
        await b.directory.claim("call-1")
        for _ in range(3):
            for x in (a, b, c):
                assert await x.monitor.beat_and_check() == []
            await asyncio.sleep(0.2)
        for _ in range(8):  # b stops beating (its key expires after 1 s); a and c go on
            await a.directory.beat()
            await c.directory.beat()
            await asyncio.sleep(0.2)
        # d just started: it judges nobody until its own heartbeats have flowed for a TTL and more.
        assert await d.monitor.beat_and_check() == []
        begun = [await a.monitor.beat_and_check(), await c.monitor.beat_and_check()]
        assert sorted(begun, key=len) == [[], ["b"]], begun  # exactly one survivor won the claim
        winner = a if begun[0] else c
        await _until(lambda: not winner.monitor._taking_over, 10, "the take-over to finish")
        assert "b" not in await a.directory.known()  # forgotten: nobody takes it over again
        assert winner.metrics.registry.get_sample_value("callwright_replica_takeovers_total", {"outcome": "done"}) == 1
        assert winner.monitor.takeover_seconds and winner.monitor.takeover_seconds[0] < 5
        assert await a.monitor.beat_and_check() == [] and await c.monitor.beat_and_check() == []
    finally:
        for x in (a, b, c, d):
            await x.monitor.close()
            await x.directory.close()


@pytest.mark.parametrize("mode", ["media", "voice_live"])
async def test_a_dropped_media_socket_comes_back_and_the_agent_resumes(tmp_path: Path, mode: str) -> None:
    values: dict[str, Any] = {**CHEAP, "session_spill_dir": tmp_path / "spill"}
    if mode == "voice_live":  # the in-process local realtime server, with its own speech engines
        values = {"session_spill_dir": tmp_path / "spill", "acs_streaming_mode": "voice_live", "stt_pool_warm": 1,
                  "tts_pool_warm": 1}  # fmt: skip
    async with local_stack(**values) as stack:
        from callwright.emulator.phone import build_phone_from_script

        phone = build_phone_from_script(ASKS_TWICE)
        call = await stack.emulator.place_inbound_call(phone, from_number="+15551230001", to_number="+15550001000")
        runner = asyncio.create_task(phone.run(call))
        await _until(lambda: _agent_answering(phone), 60, "the agent answering the question")
        await asyncio.sleep(0.5)
        record = stack.state.calls.get(call.call_connection_id)
        assert record is not None and record.media_handler is not None
        # The app's side of the socket goes away under the handler (as when a proxy or the network cuts it).
        await record.media_handler._transport.close(1011, "lost")
        report = await asyncio.wait_for(runner, 150)
        async with httpx.AsyncClient(timeout=10, headers=stack.operator_headers) as http:
            doc = (await http.get(f"{stack.url}/api/v1/calls/{call.call_connection_id}")).json()
            metrics = (await http.get(f"{stack.url}/metrics")).text

    assert report["ok"], report.get("error")
    assert report["media_session_count"] == 2, report["media_sessions"]
    (gap,) = report["media_gaps"]
    assert gap["cause"] == "dropped" and gap["resumed_at_ms"] is not None, gap
    assert gap["socket_down_ms"] < 10_000, gap
    assert "MediaStreamingFailed" in report["events"]
    if mode == "media":
        _check_transcript(doc["transcript"])
    else:  # the local realtime server's recogniser is rough: the agent's side is what is asserted
        replies = _assistant(doc["transcript"])
        assert sum(r.startswith("Thank you for calling Contoso") for r in replies) == 1, replies
        assert sum(r.startswith(RESUME_LINE) for r in replies) == 1, replies
    cut = [m for m in doc["transcript"] if m.get("interrupted")]
    assert cut, doc["transcript"]  # the answer the drop cut off is kept as heard
    restarts = [line for line in metrics.splitlines() if line.startswith("callwright_media_restarts_total{")]
    assert any('trigger="failed"' in x and 'outcome="restarted"' in x and x.endswith(" 1.0") for x in restarts), (
        restarts
    )


STAYS_ON = """
name: stays on the line
direction: inbound
from: "+15551230001"
to: "+15550001000"
timeout_s: 120
transcribe: false
steps:
  - wait: {agent_done: 700, timeout_s: 40}
  - wait: {disconnected: true, timeout_s: 90}
"""


async def test_a_stop_nobody_here_asked_for_is_undone_and_our_own_stop_is_not(tmp_path: Path) -> None:
    async with local_stack(**CHEAP, session_spill_dir=tmp_path / "spill") as stack:
        from callwright.emulator.phone import build_phone_from_script

        phone = build_phone_from_script(STAYS_ON)
        call = await stack.emulator.place_inbound_call(phone, from_number="+15551230001", to_number="+15550001000")
        runner = asyncio.create_task(phone.run(call))
        cid = call.call_connection_id
        automation = stack.state.automation
        await _until(lambda: phone._step_no >= 2, 60, "the greeting heard")
        # Someone else (another tool on the ACS resource) stops the streaming: it comes back.
        await automation.stop_media_streaming(cid)
        await _until(lambda: call.media_sessions == 2 and call.streaming, 30, "the streaming restarted")
        record = stack.state.calls.get(cid)
        await _until(
            lambda: any(m["content"].startswith(RESUME_LINE) for m in record.memo.history), 30, "the agent resuming"
        )
        # This server's own stop (STOP_CONTEXT) stays stopped.
        await automation.stop_media_streaming(cid, operation_context=STOP_CONTEXT)
        await _until(lambda: not call.streaming, 10, "the streaming stopped")
        await asyncio.sleep(3.0)  # a restart would come within STOPPED_SETTLE_SECONDS and a round trip
        assert call.media_sessions == 2 and not call.streaming
        await automation.actions(cid).hang_up()
        report = await asyncio.wait_for(runner, 60)

    assert report["ok"], report.get("error")
    assert report["media_session_count"] == 2, report["media_sessions"]
    replies = [m["content"] for m in record.memo.history if m["role"] == "assistant"]
    assert replies[0].startswith("Thank you for calling Contoso"), replies
    assert any(r.startswith(RESUME_LINE + " Thank you for calling Contoso") for r in replies[1:]), replies


# Two replica processes each: one such test at a time per worker (2 cores).
@pytest.mark.xdist_group("scale-cluster")
async def test_sigkill_of_the_replica_holding_a_call_mid_conversation(tmp_path: Path) -> None:
    async with cluster(tmp_path, replicas=2) as c:
        phone, call = await c.place(ASKS_TWICE, transcribe=False)
        runner = asyncio.create_task(phone.run(call))
        cid = call.call_connection_id
        import redis.asyncio as aioredis

        r = aioredis.from_url(c.redis_url)
        try:
            owner_key = f"callwright:owner:{cid}"
            owner = (await _until(lambda: r.get(owner_key), 30, "the media owner in the directory")).decode()
            await _until(lambda: _agent_answering(phone), 60, "the agent answering the question")
            await asyncio.sleep(0.5)
            killed_at = time.monotonic()
            c.kill(owner, signal.SIGKILL)
            await c.wait_exit(owner, 30)
            survivor = next(x.name for x in c.replicas if x.name != owner)
            new_owner = await _until(
                lambda: _owner_is(r, owner_key, survivor), 30, f"replica {survivor} holding the call's media"
            )
            reclaimed_s = time.monotonic() - killed_at
        finally:
            await r.aclose()
        report = await asyncio.wait_for(runner, 150)
        async with httpx.AsyncClient(timeout=10, headers=c.operator_headers) as http:
            doc = (await http.get(f"{c.replica(survivor).url}/api/v1/calls/{cid}")).json()
        survivor_log = c.replica(survivor).log_text()

    assert new_owner
    assert report["ok"], report.get("error")
    assert report["media_session_count"] == 2, report["media_sessions"]
    (gap,) = report["media_gaps"]
    assert gap["cause"] == "dropped" and gap["resumed_at_ms"] is not None, gap
    # "Within a few seconds": the caller's silence, last agent audio before to first agent audio after.
    assert gap["agent_silence_ms"] < 10_000, gap
    print(f"take-over: socket back after {reclaimed_s:.2f}s; caller heard silence for {gap['agent_silence_ms']} ms")
    print("\n".join(x for x in survivor_log.splitlines() if "callwright.scale" in x or "relay" in x))
    assert "media streaming restarted" in survivor_log, survivor_log[-3000:]
    replies = _assistant(doc["transcript"])
    assert sum(r.startswith("Thank you for calling Contoso") for r in replies) == 1, replies
    assert sum(r.startswith(RESUME_LINE) for r in replies) == 1, replies
    assert any("Monday to Friday" in r for r in replies), replies
    asked = [m for m in doc["transcript"] if m["role"] == "user" and "opening hours" in m["content"].lower()]
    assert 1 <= len(asked) <= 2, doc["transcript"]  # the kill may cost the first question's save, never a duplicate


async def _owner_is(r: Any, key: str, want: str) -> bool:
    raw = await r.get(key)
    return raw is not None and raw.decode() == want
