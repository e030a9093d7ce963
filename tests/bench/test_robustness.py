"""The robustness harness (``callwright bench --robustness``) at its smallest: it runs against a real
local stack and counts correctly — garbage on every surface yields answers, not 5xx; the counters move;
the detectors can fail (a silent caller is reported deaf, a 5xx-only server is counted as such) and
genuine tokens pass where forgeries must not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from callwright.bench.report import robustness_markdown, stamp
from callwright.bench.robustness import RobustnessPlan, post_bodies, run_robustness
from callwright.bench.robustness_inputs import webhook_inputs
from callwright.localstack import free_port, serve_asgi


@pytest.mark.timeout(150)
async def test_tiny_run_counts_every_surface(tmp_path: Path) -> None:
    notes: list[str] = []
    r = await run_robustness(RobustnessPlan.tiny(), notes.append, log_dir=tmp_path)
    media, web, tok = r["surfaces"]["media"], r["surfaces"]["webhook"], r["surfaces"]["tokens"]

    # Media: frames went out over several sockets, every surviving socket got a speech check, and the
    # detector is not vacuous: the control socket that only sends silence is reported deaf.
    assert media["inputs"] >= 500 and media["sockets"] >= 3
    assert media["inputs_by_kind"].get("valid", 0) > 0 and len(media["inputs_by_kind"]) > 5
    assert media["speech_checks"] >= 1 and media["heard_calls"] >= 1
    assert media["deaf_detector_control"] == "deaf"
    assert set(media["triggers"]) == {"size_642", "sample_rate_1e999"}
    assert media["http_5xx"] == 0

    # Webhook: every body got an answer (or was counted as dropped), none of them a 5xx; unauthenticated
    # bodies were refused and the server still serves a whole call afterwards.
    assert web["inputs"] == 150
    assert sum(web["statuses"].values()) + web["dropped"] == web["inputs"]
    assert web["statuses"].get("401", 0) > 0 and web["statuses"].get("200", 0) > 0
    assert web["http_5xx"] == 0 and web["accepted_without_secret"] == 0
    assert web["after"]["health"]["status"] == 200 and web["after"]["whole_call"]["ok"] is True

    # Tokens: each forgery tried on both surfaces, none accepted, while genuine tokens are.
    assert tok["inputs"] == 40 and tok["requests"] == 80 - tok["webhook_outcomes"].get("unsendable", 0)
    assert sum(tok["webhook_outcomes"].values()) == sum(tok["media_outcomes"].values()) == 40
    assert tok["forgeries_accepted"] == 0 and tok["http_5xx"] == 0
    assert tok["genuine_controls_accepted"] == {"webhook": 3, "media": 3, "tried": 3}

    assert r["lost_transcripts"]["calls_with_turns"] >= 1 and r["lost_transcripts"]["lost"] == 0
    assert [f["name"] for f in r["faults"]] and all("outcome" in f for f in r["faults"])
    assert set(r["summary"]["zero_targets"]) >= {"media_deaf_calls", "forgeries_accepted", "lost_transcripts"}

    text = robustness_markdown(stamp({"size": "tiny", "robustness": r}))
    assert "## Robustness" in text and "| must be 0 | measured | met |" in text and "sample_rate_1e999" in text


async def test_webhook_counter_sees_every_5xx() -> None:
    # A server that fails every request: the counter must report each one as a 5xx, by kind.
    app = FastAPI()

    @app.api_route("/api/v1/call-events", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def broken(request: Request) -> Any:
        await request.body()
        return JSONResponse({"error": "boom"}, status_code=500)

    inputs = list(webhook_inputs(40, seed=3, big_batches=False))
    async with serve_asgi(app, free_port()) as url:
        out = await post_bodies(f"{url}/api/v1/call-events", inputs, "s3cret", workers=4)
    assert out["inputs"] == 40
    assert out["http_5xx"] == 40 and out["dropped"] == 0
    assert sum(out["5xx_by_kind"].values()) == 40
