"""`kbtc sim`: run the exchange simulator in the foreground and say how to point kbtc at it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import uuid
from pathlib import Path
from typing import Annotated

import typer

from kbtc.commands.common import console, fail, settings_or_exit


def parse_fault(spec: str) -> tuple[str, str, int, float]:
    """`target:kind[:count[:duration_s]]` → its parts (e.g. `kalshi_ws:stall:1:20`)."""
    from kbtc.sim.faults import FaultKind, FaultTarget

    parts = spec.split(":")
    if not 2 <= len(parts) <= 4:
        raise ValueError(f"fault {spec!r} is not target:kind[:count[:duration_s]]")
    target, kind = parts[0], parts[1]
    if target not in {t.value for t in FaultTarget}:
        raise ValueError(f"unknown fault target {target!r} (one of {', '.join(t.value for t in FaultTarget)})")
    if kind not in {k.value for k in FaultKind}:
        raise ValueError(f"unknown fault kind {kind!r} (one of {', '.join(k.value for k in FaultKind)})")
    count = int(parts[2]) if len(parts) > 2 else 1
    duration_s = float(parts[3]) if len(parts) > 3 else 0.0
    return target, kind, count, duration_s


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
    fault: Annotated[list[str] | None, typer.Option(help="target:kind[:count[:duration_s]], repeatable.")] = None,
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
            target, kind, count, duration_s = parse_fault(spec)
            faults.inject(target, kind, count=count, duration_s=duration_s)
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
