"""Price paths: one USD price per asset per time step, from a CSV file or a generator.

A path is what the feeds answered at each keeper tick. Prices are floats here (they come
from statistics or from a file); the engine turns each into the integer feed answer the
daemon would have read, so everything downstream runs on the daemon's exact integers.

CSV format (documented in `keeper backtest --help` too)::

    timestamp,WETH,WBTC,USDC
    2024-01-01T00:00:00Z,2300.5,42000,1.0
    1704067500,2301.1,42010,0.9999

`timestamp` is unix seconds or ISO 8601 (a naive time is UTC); then one column per asset,
USD per whole token. Optional extra columns `base_fee_gwei` and `native_usd` carry a gas
price and a native-token price series. Rows must be in increasing time order.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

# Columns of a price CSV that are not assets.
BASE_FEE_COLUMN = "base_fee_gwei"
NATIVE_COLUMN = "native_usd"
SERIES_COLUMNS = (BASE_FEE_COLUMN, NATIVE_COLUMN)

SECONDS_PER_YEAR = 365 * 86_400


class PathError(ValueError):
    """A price path or price file that cannot be used; the message says what to fix."""


@dataclass(frozen=True, slots=True)
class PricePath:
    """`prices[i][k]`: USD price of `symbols[i]` at `timestamps[k]` (columns per asset).

    `series` holds optional per-step extras: `base_fee_gwei`, `native_usd`.
    """

    symbols: tuple[str, ...]
    timestamps: tuple[int, ...]
    prices: tuple[tuple[float, ...], ...]
    name: str = "path"
    series: Mapping[str, tuple[float, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(set(self.symbols)) != len(self.symbols):
            raise PathError(f"{self.name}: asset columns must be unique, got {list(self.symbols)}")
        if len(self.prices) != len(self.symbols):
            raise PathError(f"{self.name}: {len(self.symbols)} symbols but {len(self.prices)} price columns")
        n = len(self.timestamps)
        if n < 2:
            raise PathError(f"{self.name}: a path needs at least 2 time steps, got {n}")
        for sym, column in zip(self.symbols, self.prices, strict=True):
            if len(column) != n:
                raise PathError(f"{self.name}: {sym} has {len(column)} prices for {n} timestamps")
            bad = next((p for p in column if not (math.isfinite(p) and p > 0)), None)
            if bad is not None:
                raise PathError(f"{self.name}: {sym} has a price {bad!r}; every price must be finite and > 0")
        for name, values in self.series.items():
            if len(values) != n:
                raise PathError(f"{self.name}: series {name} has {len(values)} values for {n} timestamps")
        if any(b <= a for a, b in zip(self.timestamps, self.timestamps[1:], strict=False)):
            raise PathError(f"{self.name}: timestamps must be strictly increasing")

    @property
    def steps(self) -> int:
        return len(self.timestamps)

    @property
    def years(self) -> float:
        return (self.timestamps[-1] - self.timestamps[0]) / SECONDS_PER_YEAR

    def column(self, symbol: str) -> tuple[float, ...]:
        try:
            return self.prices[self.symbols.index(symbol)]
        except ValueError:
            raise PathError(
                f"{self.name}: no price column for {symbol}; it has {list(self.symbols)}"
            ) from None

    def select(self, symbols: Sequence[str]) -> PricePath:
        """The path restricted (and ordered) to `symbols`; every one must be a column."""
        return PricePath(
            tuple(symbols), self.timestamps, tuple(self.column(s) for s in symbols), self.name, self.series
        )

    def head(self, steps: int) -> PricePath:
        return PricePath(
            self.symbols,
            self.timestamps[:steps],
            tuple(c[:steps] for c in self.prices),
            self.name,
            {k: v[:steps] for k, v in self.series.items()},
        )


def _parse_timestamp(raw: str, row: int, source: str) -> int:
    text = raw.strip()
    try:
        return int(float(text)) if text.replace(".", "", 1).isdigit() else _iso_seconds(text)
    except ValueError:
        raise PathError(
            f"{source} row {row}: timestamp {raw!r} is neither unix seconds nor ISO 8601 "
            "(e.g. 2024-01-01T00:00:00Z)"
        ) from None


def _iso_seconds(text: str) -> int:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def read_csv(path: Path | str, symbols: Sequence[str] | None = None, name: str | None = None) -> PricePath:
    """Read a price CSV (format in the module docstring); `symbols` selects and orders columns."""
    source = str(path)
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except OSError as exc:
        raise PathError(f"cannot read price file {source}: {exc.strerror or exc}") from None
    rows = [r for r in rows if r and any(c.strip() for c in r)]
    if not rows:
        raise PathError(f"{source} is empty; expected a header 'timestamp,<ASSET>,...' and rows")
    header = [h.strip() for h in rows[0]]
    if not header or header[0].lower() != "timestamp":
        raise PathError(f"{source}: the first column must be 'timestamp', got {header[:1]}")
    columns = header[1:]
    if len(set(columns)) != len(columns):
        raise PathError(f"{source}: duplicate columns in the header {columns}")
    values: list[list[float]] = [[] for _ in columns]
    stamps: list[int] = []
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise PathError(f"{source} row {number}: {len(row)} fields, the header has {len(header)}")
        stamps.append(_parse_timestamp(row[0], number, source))
        for i, cell in enumerate(row[1:]):
            try:
                values[i].append(float(cell))
            except ValueError:
                raise PathError(f"{source} row {number}: {columns[i]}={cell!r} is not a number") from None
    assets = [c for c in columns if c not in SERIES_COLUMNS]
    series = {c: tuple(values[columns.index(c)]) for c in columns if c in SERIES_COLUMNS}
    path_all = PricePath(
        tuple(assets),
        tuple(stamps),
        tuple(tuple(values[columns.index(a)]) for a in assets),
        name or Path(source).stem,
        series,
    )
    return path_all.select(symbols) if symbols is not None else path_all


def write_csv(path_obj: PricePath, target: Path | str) -> None:
    """Write `path_obj` in the format `read_csv` reads (unix-second timestamps, repr floats)."""
    extra = list(path_obj.series)
    with open(target, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["timestamp", *path_obj.symbols, *extra])
        for k, ts in enumerate(path_obj.timestamps):
            writer.writerow(
                [ts, *(repr(c[k]) for c in path_obj.prices), *(repr(path_obj.series[e][k]) for e in extra)]
            )


def from_rows(
    symbols: Sequence[str], rows: Iterable[tuple[int, Sequence[float]]], name: str = "path"
) -> PricePath:
    """A path from (timestamp, prices in `symbols` order) rows; handy in tests and importers."""
    stamps: list[int] = []
    cols: list[list[float]] = [[] for _ in symbols]
    for ts, prices in rows:
        stamps.append(ts)
        for i, p in enumerate(prices):
            cols[i].append(float(p))
    return PricePath(tuple(symbols), tuple(stamps), tuple(tuple(c) for c in cols), name)
