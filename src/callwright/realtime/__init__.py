"""A local realtime server speaking the Azure VoiceLive and OpenAI Realtime protocols, backed by
Callwright's embedded engines (server VAD, pocketsphinx/whisper, the scenario agent, espeak-ng/Piper).

Entry points: :func:`create_realtime_app` (ASGI), :func:`running_realtime_server` (in-process, for the
demo, the bench and tests) and ``callwright realtime`` on the command line.
"""

from callwright.realtime.server import RealtimeServer, create_realtime_app, running_realtime_server

__all__ = ["RealtimeServer", "create_realtime_app", "running_realtime_server"]
