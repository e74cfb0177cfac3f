"""The demo declares no job type of its own: after any of the demo researcher's jobs succeeds
it queues the demo steps that job unblocked (`continue_demo` does nothing elsewhere)."""

from __future__ import annotations

AFTER_ANY_SUCCESS = ("app.demo.loader:continue_demo",)
