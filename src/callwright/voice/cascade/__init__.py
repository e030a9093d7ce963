"""The speech cascade: recognition lane, turn lane, paced playback with barge-in."""
