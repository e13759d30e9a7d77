"""Price files and synthetic scenarios: the CSV format, its errors, reproducible generators."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest

from keeper.backtest.generate import SCENARIOS, generate, scenario, scenario_set
from keeper.backtest.paths import PathError, read_csv, write_csv


def test_csv_round_trip_with_iso_and_unix_timestamps(tmp_path: Path) -> None:
    f = tmp_path / "p.csv"
    f.write_text(
        "timestamp,WETH,USDC,base_fee_gwei\n2024-01-01T00:00:00Z,3000,1,20\n1704067500,3010.5,0.999,25\n"
    )
    path = read_csv(f)
    assert path.symbols == ("WETH", "USDC")
    assert path.timestamps == (1_704_067_200, 1_704_067_500)
    assert path.column("WETH") == (3000.0, 3010.5)
    assert path.series["base_fee_gwei"] == (20.0, 25.0)
    out = tmp_path / "q.csv"
    write_csv(path, out)
    again = read_csv(out)
    assert (again.symbols, again.timestamps, again.prices, dict(again.series)) == (
        path.symbols,
        path.timestamps,
        path.prices,
        dict(path.series),
    )
    assert read_csv(f, ["USDC", "WETH"]).symbols == ("USDC", "WETH")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("time,WETH\n1,2\n2,3\n", "first column must be 'timestamp'"),
        ("timestamp,WETH\n1,2\n2,abc\n", r"WETH='abc' is not a number"),
        ("timestamp,WETH\n2,2\n1,3\n", "strictly increasing"),
        ("timestamp,WETH\n1,2\n2,0\n", "must be finite and > 0"),
        ("timestamp,WETH\nyesterday,2\n2,3\n", "neither unix seconds nor ISO 8601"),
        ("timestamp,WETH\n1,2,3\n", "3 fields, the header has 2"),
        ("", "is empty"),
    ],
)
def test_bad_price_files_say_what_to_fix(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "bad.csv"
    f.write_text(text)
    with pytest.raises(PathError, match=message):
        read_csv(f)


def test_selecting_a_missing_asset_names_the_columns(tmp_path: Path) -> None:
    f = tmp_path / "p.csv"
    f.write_text("timestamp,WETH\n1,2\n2,3\n")
    with pytest.raises(PathError, match=r"no price column for WBTC; it has \['WETH'\]"):
        read_csv(f, ["WBTC"])


def test_generators_are_seeded_and_reproducible() -> None:
    a = generate(scenario("jumps"), 5, 300, seed=3)
    b = generate(scenario("jumps"), 5, 300, seed=3)
    c = generate(scenario("jumps"), 5, 300, seed=4)
    assert a.prices == b.prices and a.series == b.series
    assert a.prices != c.prices
    assert a.steps == 5 * 288 + 1 and a.timestamps[1] - a.timestamps[0] == 300


def test_every_built_in_scenario_generates_a_valid_path() -> None:
    paths = scenario_set(10, 3600, seed=1)
    assert [p.name.split("-")[0] for p in paths] == list(SCENARIOS)
    for p in paths:
        assert len(p.symbols) == 8 and "base_fee_gwei" in p.series


def test_the_crash_and_the_depeg_happen() -> None:
    crash = generate(scenario("crash"), 20, 900, seed=1)
    weth = crash.column("WETH")
    start = int(0.3 * crash.steps)
    fall = weth[start + 72] / weth[start - 1]  # 18 h later
    assert fall < 0.8, f"WETH fell only to {fall:.2f} of its pre-crash price"
    gas = crash.series["base_fee_gwei"]
    assert max(gas[start : start + 72]) > 2 * sorted(gas)[len(gas) // 2]
    depeg = generate(scenario("depeg"), 20, 900, seed=1)
    dai = depeg.column("DAI")
    assert min(dai) == pytest.approx(0.92, abs=0.01)
    assert abs(dai[-1] - 1) < 0.01  # recovered
    assert all(abs(p - 1) < 0.01 for p in depeg.column("USDC"))


def test_gbm_volatility_matches_its_parameter() -> None:
    path = generate(scenario("calm"), 365, 3600, seed=2)
    col = path.column("WETH")
    rets = [math.log(b / a) for a, b in itertools.pairwise(col)]
    mean = sum(rets) / len(rets)
    vol = math.sqrt(sum((r - mean) ** 2 for r in rets) / len(rets) * 24 * 365)
    assert vol == pytest.approx(0.70, rel=0.05)


def test_unknown_scenario_lists_the_known_ones() -> None:
    with pytest.raises(PathError, match="built-in scenarios: calm, trend"):
        scenario("meltdown")
