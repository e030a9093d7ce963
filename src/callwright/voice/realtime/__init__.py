"""Mode ``voice_live``: the call's audio through a speech-to-speech realtime service (handler.py)."""
