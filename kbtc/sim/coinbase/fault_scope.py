"""Scoped fault consumption: a fault may name the API (and WS channel) it is meant for.

Both Coinbase WebSocket feeds share `FaultTarget.COINBASE_WS` and both candle APIs share
`FaultTarget.COINBASE_REST`. A fault injected with `api="advanced_trade"` (or `"exchange"`) and/or
`channel="ticker"` is applied only there; without those parameters, the first frame or request to reach
the fault point takes it. Faults of one kind are consumed oldest first, so a scoped fault at the head of
the queue waits for its API rather than letting a younger one jump ahead.
"""

from __future__ import annotations

from kbtc.sim.faults import Fault, FaultKind, FaultPlan, FaultTarget

API_ADVANCED_TRADE = "advanced_trade"
API_EXCHANGE = "exchange"


def take_scoped(
    faults: FaultPlan, target: FaultTarget, kind: FaultKind, *, api: str, channel: str | None = None
) -> Fault | None:
    """Consume one application of the oldest pending `kind` fault if its scope matches, else None."""
    for fault in faults.pending(target):
        if fault.kind is not kind:
            continue
        wanted_api = fault.params.get("api")
        wanted_channel = fault.params.get("channel")
        if wanted_api not in (None, api) or wanted_channel not in (None, channel):
            return None
        return faults.take(target, kind)
    return None
