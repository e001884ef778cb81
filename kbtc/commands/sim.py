"""`kbtc sim`: run the exchange simulator in the foreground and say how to point kbtc at it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from kbtc.commands.common import console, fail, settings_or_exit

if TYPE_CHECKING:
    from kbtc.sim.faults import FaultPlan


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """One `--fault`: what `FaultPlan.inject` takes."""

    target: str
    kind: str
    count: int = 1
    duration_s: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)

    def inject(self, plan: FaultPlan) -> None:
        """Queue this fault in `plan`."""
        plan.inject(self.target, self.kind, count=self.count, duration_s=self.duration_s, **self.params)


def _option_value(key: str, text: str) -> Any:
    """JSON when it parses (`502`, `true`, `{"x": 1}`), else a comma-separated list, else the text."""
    try:
        value = json.loads(text)
    except ValueError:
        value = text.split(",") if "," in text else text
    # `fields` is always a collection of names: one name must not become its letters.
    return [value] if key == "fields" and isinstance(value, str) else value


def _split_spec(spec: str) -> list[str]:
    """Split at the colons outside JSON brackets and strings (`fields={"a": 1}` stays one part)."""
    parts, current, depth, quoted = [], "", 0, False
    for char in spec:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in "{[":
            depth += 1
        elif not quoted and char in "}]":
            depth -= 1
        elif char == ":" and depth == 0 and not quoted:
            parts.append(current)
            current = ""
            continue
        current += char
    return [*parts, current]


def parse_fault(spec: str) -> FaultSpec:
    """`target:kind[:count[:duration_s]][:key=value…]` → a `FaultSpec`.

    E.g. `kalshi_ws:stall:1:20`, `kalshi_rest:http_5xx:3:status=502`,
    `coinbase_ws:missing_fields:fields=best_bid,best_ask:api=exchange:channel=ticker`; `count=` and
    `duration_s=` may be given as options too.
    """
    from kbtc.sim.faults import FAULT_PARAMS, FaultKind, FaultTarget

    parts = _split_spec(spec)
    positional = [p for p in parts if "=" not in p]
    options = [p for p in parts if "=" in p]
    if not 2 <= len(positional) <= 4 or parts[: len(positional)] != positional:
        raise ValueError(f"fault {spec!r} is not target:kind[:count[:duration_s]][:key=value...]")
    target, kind = positional[0], positional[1]
    if target not in {t.value for t in FaultTarget}:
        raise ValueError(f"unknown fault target {target!r} (one of {', '.join(t.value for t in FaultTarget)})")
    if kind not in {k.value for k in FaultKind}:
        raise ValueError(f"unknown fault kind {kind!r} (one of {', '.join(k.value for k in FaultKind)})")
    values: dict[str, Any] = {"count": positional[2] if len(positional) > 2 else 1,
                              "duration_s": positional[3] if len(positional) > 3 else 0.0}
    params: dict[str, Any] = {}
    for option in options:
        key, _, text = option.partition("=")
        if key in values:
            values[key] = text
        elif key in FAULT_PARAMS:
            params[key] = _option_value(key, text)
        else:
            raise ValueError(f"unknown fault option {key!r} in {spec!r} (one of count, duration_s, "
                             f"{', '.join(sorted(FAULT_PARAMS))})")
    try:
        count, duration_s = int(values["count"]), float(values["duration_s"])
    except ValueError:
        raise ValueError(f"fault {spec!r}: count must be an integer and duration_s a number") from None
    return FaultSpec(target, kind, count, duration_s, params)


def _write_key(directory: Path) -> tuple[str, Path, bytes]:
    """A fresh RSA key for the simulated account: (key id, private key file, private PEM)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "kalshi-sim.key"
    path.write_bytes(pem)
    os.chmod(path, 0o600)
    return str(uuid.uuid4()), path, pem


def sim(  # noqa: PLR0917 - a Typer command: every option is a parameter
    seed: Annotated[int, typer.Option(help="Seed of the price path, books and trades.")] = 0,
    window_minutes: Annotated[int, typer.Option(help="KXBTC15M window length (e.g. 2 for a demo).")] = 15,
    event_minutes: Annotated[int, typer.Option(help="KXBTCD/KXBTC event length.")] = 60,
    vol: Annotated[float, typer.Option(help="Annualised volatility of the index.")] = 0.5,
    jumps_per_day: Annotated[float, typer.Option(help="Poisson jump rate of the index.")] = 0.0,
    start_price: Annotated[float, typer.Option(help="Index level at start (USD).")] = 100_000.0,
    basis_sd: Annotated[float, typer.Option(help="Std dev of the Coinbase − index basis (USD).")] = 4.0,
    spot_tape: Annotated[Path | None, typer.Option(
        help="Replay the index from a CSV/Parquet tape (ts ms, price) or a kbtc frame tape (.jsonl.gz or dir).",
        exists=True)] = None,
    warmup_hours: Annotated[float, typer.Option(help="History before the start (with a tape: its first part).")] = 48,
    fault: Annotated[list[str] | None, typer.Option(
        help="target:kind[:count[:duration_s]][:key=value...], repeatable (docs/SIMULATOR.md).")] = None,
    auth: Annotated[bool, typer.Option(help="Require signed requests; writes a key and prints its env.")] = False,
    entitled: Annotated[bool, typer.Option(help="With --auth: the key may read cfbenchmarks_value.")] = True,
    legacy_cents: Annotated[bool, typer.Option(help="Also serve the integer-cent fields removed in 2026-03.")] = False,
    rate_limit: Annotated[float, typer.Option(help="REST requests/s per client (0 disables).")] = 20.0,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    rest_port: Annotated[int, typer.Option(help="Kalshi REST port (0: any free port).")] = 0,
    ws_port: Annotated[int, typer.Option(help="Kalshi WebSocket port (0: any free port).")] = 0,
    duration: Annotated[float, typer.Option(help="Stop after this many seconds (0: run until Ctrl-C).")] = 0.0,
) -> None:
    """Run the Kalshi/Coinbase exchange simulator on loopback and print the URLs and environment to use it."""
    from kbtc.sim.faults import FaultPlan
    from kbtc.sim.kalshi.auth import ApiKey
    from kbtc.sim.markets import CatalogConfig
    from kbtc.sim.price import PriceConfig
    from kbtc.sim.simulator import SimConfig, Simulator

    faults = FaultPlan()
    try:
        for spec in fault or []:
            parse_fault(spec).inject(faults)
        catalog = CatalogConfig(window_minutes=window_minutes, event_minutes=event_minutes)
    except ValueError as exc:
        raise fail(str(exc)) from None
    if window_minutes < 2 or event_minutes < 2:
        raise fail("--window-minutes and --event-minutes must be at least 2 (the 60-s averages need a minute)")
    env_extra: dict[str, str] = {}
    keys: tuple[ApiKey, ...] = ()
    if auth:
        key_id, key_path, pem = _write_key(settings_or_exit().data_dir / "sim")
        keys = (ApiKey.from_pem(key_id, pem, entitled=entitled),)
        env_extra = {"KALSHI_API_KEY_ID": key_id, "KALSHI_PRIVATE_KEY_PATH": str(key_path.resolve())}
    config = SimConfig(
        seed=seed, catalog=catalog, spot_tape=spot_tape, legacy_cents=legacy_cents, api_keys=keys,
        price=PriceConfig(vol_annual=vol, jumps_per_day=jumps_per_day, start_price_usd=start_price,
                          basis_sd_usd=basis_sd, warmup_s=round(warmup_hours * 3600)),
        rate_limit_per_s=rate_limit or None, host=host, kalshi_rest_port=rest_port, kalshi_ws_port=ws_port,
    )

    async def run() -> None:
        async with Simulator(config, faults=faults) as simulator:
            console.print(f"Kalshi REST   {simulator.kalshi_rest_url}")
            console.print(f"Kalshi WS     {simulator.kalshi_ws_url}")
            if simulator.coinbase is not None:
                console.print(f"Coinbase WS   {simulator.coinbase.ws_url}  (Advanced Trade)")
                console.print(f"Coinbase WS   {simulator.coinbase.exchange_ws_url}  (Exchange feed)")
                console.print(f"Coinbase REST {simulator.coinbase.rest_url}")
            console.print(f"control       {simulator.control_url}/faults")
            console.print("environment (paste into your shell or .env):")
            for name, value in {**simulator.env(), **env_extra}.items():
                console.print(f"export {name}={value}", highlight=False, soft_wrap=True)
            stop = asyncio.Event()
            # SIGTERM (e.g. from a process manager) stops as cleanly as Ctrl-C.
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=duration if duration > 0 else None)
        console.print(f"faults: {faults.summary()}")

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        console.print("simulator stopped")


def register(app: typer.Typer) -> None:
    """Add `kbtc sim` to the `kbtc` app."""
    app.command("sim")(sim)
