"""bench/media_load.py against a local stack, small: realistic and odd sockets, then every caller is heard."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from callwright.localstack import local_stack

BENCH = Path(__file__).parents[2] / "bench" / "media_load.py"


def _load():
    spec = importlib.util.spec_from_file_location("media_load", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["media_load"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


async def test_media_load_small_run_has_no_errors_and_no_deaf_calls():
    media_load = _load()
    async with local_stack(stt_pool_warm=1, tts_pool_warm=1, stt_pool_size=4, tts_pool_size=4) as stack:
        result = await media_load.run_media_load(stack, calls=3, seconds=4)
        with pytest.raises(ValueError, match="loopback"):

            class Remote:
                url = "http://203.0.113.5:8080"

            await media_load.run_media_load(Remote(), calls=1, seconds=1)
    assert result["server_5xx"] == 0 and result["abnormal_closes"] == 0, result
    assert result["deaf_calls"] == 0, result["per_call"]
    assert result["hostile_frames_sent"] > 0 and result["frames_sent"] > 300
    assert {c["kind"] for c in result["per_call"]} == {"realistic", "odd"}
    assert {c["rate"] for c in result["per_call"]} == {16_000, 24_000}
