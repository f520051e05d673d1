"""Keep the interpreter's full garbage collections short in the long-running processes.

A full (generation 2) collection walks every tracked object with every thread stopped: in a warm `kb serve`
~296,000 objects (weaviate-client, gRPC, SQLAlchemy, Slack's SDK), 223 ms, and ~285,000 / 155 ms in a warm search
worker (measured with ``gc.callbacks``). One such pause in a burst of asks holds every ack queued behind it, as
the benchmark's own load generator showed when one hit it (a whole wave at ~230 ms, docs/benchmarks.md). What is
loaded by the time the process serves lives as long as the process, so it is frozen out of the collector's view
(``gc.freeze``): later full collections walk only what came after it.
"""

from __future__ import annotations

import gc


def freeze_loaded_objects() -> int:
    """Collect once, then move every object left into the permanent generation; returns how many are there."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
