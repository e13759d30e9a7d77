"""keeper/slots_init.py: the faster __init__ must build exactly what the dataclass's own did,
and refuse every class whose own __init__ does more than store its arguments."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from keeper.model import Quote, Step, Venue
from keeper.slots_init import slots_init


@dataclasses.dataclass(frozen=True, slots=True)
class Plain:
    a: int
    b: str
    c: tuple[int, ...] = ()
    d: int | None = None


@slots_init
@dataclasses.dataclass(frozen=True, slots=True)
class Fast:
    a: int
    b: str
    c: tuple[int, ...] = ()
    d: int | None = None


def fields_of(obj: object) -> tuple[object, ...]:
    return tuple(getattr(obj, f.name) for f in dataclasses.fields(obj))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((1, "x"), {}), ((1, "x", (2, 3)), {}), ((1,), {"b": "y", "d": 4}), ((), {"a": 5, "b": "z", "c": (1,)})],
)
def test_builds_what_the_dataclass_init_builds(args: tuple[object, ...], kwargs: dict[str, object]) -> None:
    fast, plain = Fast(*args, **kwargs), Plain(*args, **kwargs)  # type: ignore[arg-type]
    assert fields_of(fast) == fields_of(plain)
    assert fast == Fast(*args, **kwargs)  # type: ignore[arg-type]
    assert hash(fast) == hash(Fast(*args, **kwargs))  # type: ignore[arg-type]
    assert repr(fast).removeprefix("Fast") == repr(plain).removeprefix("Plain")


def test_argument_errors_are_the_dataclass_ones() -> None:
    with pytest.raises(TypeError):
        Fast(1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Fast(1, "x", (), None, 5)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Fast(1, "x", e=3)  # type: ignore[call-arg]


def test_still_frozen_replaceable_and_picklable() -> None:
    fast = Fast(1, "x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.a = 2  # type: ignore[misc]
    assert dataclasses.replace(fast, d=7) == Fast(1, "x", (), 7)
    assert pickle.loads(pickle.dumps(fast)) == fast  # noqa: S301 -- our own object (the sweep pickles results)


def test_keeper_classes_keep_their_fields_and_equality() -> None:
    q = Quote(Venue.V3, "0xr", 500, "0xa", "0xb", 10, 9)
    assert (q.venue, q.router, q.fee, q.token_in, q.token_out, q.amount_in, q.amount_out) == (
        Venue.V3,
        "0xr",
        500,
        "0xa",
        "0xb",
        10,
        9,
    )
    assert q == Quote(
        venue=Venue.V3, router="0xr", fee=500, token_in="0xa", token_out="0xb", amount_in=10, amount_out=9
    )
    step = Step(Venue.V2, "0xr", "0xa", "0xb", 0, 10, 9)
    assert dataclasses.replace(step, amount_in=11).amount_in == 11


def refused(**field_kwargs: object) -> type:
    @dataclasses.dataclass(frozen=True, slots=True)
    class C:
        a: int = dataclasses.field(**field_kwargs)  # type: ignore[call-overload]

    return C


@pytest.mark.parametrize(
    "make",
    [
        lambda: refused(default_factory=int),
        lambda: refused(kw_only=True),
        lambda: refused(init=False, default=0),
        lambda: dataclasses.dataclass(frozen=False, slots=True)(
            type("C", (), {"__annotations__": {"a": "int"}})
        ),
        lambda: dataclasses.dataclass(frozen=True)(type("C", (), {"__annotations__": {"a": "int"}})),
    ],
    ids=["default_factory", "kw_only", "init_false", "not_frozen", "no_slots"],
)
def test_refuses_classes_whose_init_does_more(make: object) -> None:
    cls = make()  # type: ignore[operator]
    with pytest.raises(TypeError):
        slots_init(cls)


def test_refuses_a_post_init() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Checked:
        a: int

        def __post_init__(self) -> None:
            if self.a < 0:
                raise ValueError("negative")

    with pytest.raises(TypeError, match="__post_init__"):
        slots_init(Checked)
