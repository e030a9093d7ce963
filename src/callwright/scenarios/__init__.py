"""Ready-made agent scenarios (YAML agents, Jinja prompts, JSON fixtures); see agents/scenario.py."""
