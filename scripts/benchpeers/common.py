"""What the benchmark peers share: where they listen and how they report."""

from __future__ import annotations

import json
import struct
from typing import Any

__all__ = ["HEADER", "HOST", "listening", "percentiles", "result"]

HOST = "127.0.0.1"
HEADER = struct.Struct(">I")  # the frame header, for the raw baselines


def result(**values: Any) -> None:
    """Report a measurement: one ``result {json}`` line the driver waits for."""
    print("result " + json.dumps(values), flush=True)


def listening(port: int) -> None:
    print(f"listening on {HOST}:{port}", flush=True)


def percentiles(samples: list[float]) -> dict[str, float]:
    samples = sorted(samples)
    return {
        "p50_us": samples[len(samples) // 2] * 1e6,
        "p99_us": samples[int(len(samples) * 0.99)] * 1e6,
        "count": len(samples),
    }
