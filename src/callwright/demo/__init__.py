"""``callwright demo``: the whole system on this machine and one call through it."""

from callwright.demo.run import run_demo

__all__ = ["run_demo"]
