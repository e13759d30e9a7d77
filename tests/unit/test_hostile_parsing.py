"""The pure parts of hostile-input handling: bounded JSON/TOML, strict answer shapes, URL
redaction, unknown settings, and the journal adoption rule."""

from __future__ import annotations

import json
import sys
import time

import pytest

from keeper import safejson
from keeper.chain.answers import MalformedAnswerError, check_answer
from keeper.execution.adoption import Adoption, NonceView, adopt_problem, adoption_refusal
from keeper.redact import redact_text, redact_url
from keeper.settings import unknown_variable_problems

SENDER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"

# ------------------------------------------------------------------ bounded JSON and TOML


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("1", 0),
        ("[]", 1),
        ('{"a": [1, {"b": []}]}', 4),
        ('["[[[[", "]]"]', 1),  # brackets inside strings do not count
        ('["\\"[[[["]', 1),  # nor after an escaped quote
        ('["\\\\", [[]]]', 3),  # an escaped backslash ends before the quote
    ],
)
def test_bracket_depth_counts_structure_not_strings(text: str, depth: int) -> None:
    assert safejson.bracket_depth(text) == depth
    assert json.loads(text) is not None or depth == 0


def test_deep_json_is_refused_before_the_c_decoder_sees_it() -> None:
    assert sys.getrecursionlimit() >= 1000
    with pytest.raises(safejson.TooDeepError, match="nested 200000 deep"):
        safejson.loads("[" * 200_000 + "]" * 200_000)
    assert safejson.loads('{"a": [1, 2]}') == {"a": [1, 2]}


def test_unterminated_strings_scan_in_linear_time() -> None:
    hostile = '"' + '\\"' * 500_000  # every escaped quote could restart a naive scan
    started = time.monotonic()
    assert safejson.bracket_depth(hostile) == 0
    assert time.monotonic() - started < 2.0


def test_nan_and_infinity_are_not_json() -> None:
    with pytest.raises(ValueError, match="NaN"):
        safejson.loads("[NaN]")


def test_toml_depth_counts_brackets_outside_strings_and_comments_and_dotted_keys() -> None:
    assert safejson.loads_toml("a = [[1]]\n# [[[[[\nb = \"[[[[\"\nc = '[['\n") == {
        "a": [[1]],
        "b": "[[[[",
        "c": "[[",
    }
    with pytest.raises(safejson.TooDeepError):
        safejson.loads_toml("a = " + "[" * 10_000 + "]" * 10_000)
    with pytest.raises(safejson.TooDeepError, match="dotted"):
        safejson.loads_toml("a" + ".b" * 100 + " = 1")


# ------------------------------------------------------------------ strict answers


@pytest.mark.parametrize("chain_id", ["0xzz", 1, "0x" + "f" * 65, None, "", "0x", "7a69", True])
def test_a_chain_id_must_be_a_hex_quantity(chain_id: object) -> None:
    with pytest.raises(MalformedAnswerError, match="eth_chainId result"):
        check_answer("eth_chainId", {"jsonrpc": "2.0", "id": 1, "result": chain_id})


def test_well_formed_answers_pass_and_errors_are_answers() -> None:
    check_answer("eth_chainId", {"jsonrpc": "2.0", "id": 1, "result": "0x7a69"})
    check_answer("eth_getTransactionReceipt", {"jsonrpc": "2.0", "id": 1, "result": None})  # not mined
    check_answer(
        "eth_call", {"jsonrpc": "2.0", "id": 1, "error": {"code": 3, "message": "execution reverted"}}
    )
    with pytest.raises(MalformedAnswerError):
        check_answer("eth_call", {"jsonrpc": "2.0", "id": 1, "error": "reverted"})
    with pytest.raises(MalformedAnswerError, match="neither result nor error"):
        check_answer("eth_call", {"jsonrpc": "2.0", "id": 1})
    with pytest.raises(MalformedAnswerError):
        check_answer("eth_call", ["not", "an", "object"])


def test_a_receipt_needs_its_status_and_a_block_its_number() -> None:
    receipt = {
        "transactionHash": "0x" + "11" * 32,
        "blockNumber": "0x5",
        "blockHash": "0x" + "22" * 32,
        "status": "0x1",
        "gasUsed": "0x5208",
        "logs": [],
    }
    check_answer("eth_getTransactionReceipt", {"jsonrpc": "2.0", "id": 1, "result": receipt})
    with pytest.raises(MalformedAnswerError, match="status"):
        check_answer("eth_getTransactionReceipt", {"result": {**receipt, "status": None}})
    with pytest.raises(MalformedAnswerError, match="has no 'number'"):
        check_answer("eth_getBlockByNumber", {"result": {"hash": None, "timestamp": "0x1"}})


# ------------------------------------------------------------------ redaction


def test_redaction_keeps_scheme_host_and_port_only() -> None:
    url = "https://alice:s3cret@eth.example.com:8443/v3/tok123?apikey=k456"
    assert redact_url(url) == "https://eth.example.com:8443"
    assert redact_url("http://[::1]:8545/x") == "http://[::1]:8545"
    text = f"node at {url}: refused; also http://bob:pw@10.0.0.1/key, done."
    shown = redact_text(text)
    assert shown == "node at https://eth.example.com:8443: refused; also http://10.0.0.1, done."
    for secret in ("alice", "s3cret", "tok123", "k456", "bob", "pw@", "/key"):
        assert secret not in shown


# ------------------------------------------------------------------ unknown settings


def test_unknown_keeper_variables_are_named_with_the_nearest_setting() -> None:
    problems = unknown_variable_problems(
        {
            "KEEPER_PAUSE": "true",
            "KEEPER_PAUSED": "false",
            "KEEPER_TURBO": "1",
            "KEEPER_IMAGE": "x",
            "PATH": "/",
        }
    )
    assert problems == [
        "  KEEPER_PAUSE: not a keeper setting; did you mean KEEPER_PAUSED?",
        "  KEEPER_TURBO: not a keeper setting; remove it (see docs/configuration.md)",
    ]


# ------------------------------------------------------------------ adoption


def test_a_fresh_journal_sends_only_for_a_key_that_never_sent() -> None:
    assert adoption_refusal(NonceView(0, 0, None), None, SENDER) is None
    refusal = adoption_refusal(NonceView(0, 1, None), None, SENDER)  # one in the pool
    assert refusal is not None and refusal.code == "journal_not_adopted"
    refusal = adoption_refusal(NonceView(7, 7, None), None, SENDER)
    assert refusal is not None and "keeper journal adopt" in refusal.message


def test_a_journal_that_knew_the_key_refuses_activity_it_did_not_see() -> None:
    assert adoption_refusal(NonceView(3, 3, 3), None, SENDER) is None
    refusal = adoption_refusal(NonceView(4, 4, 3), None, SENDER)
    assert refusal is not None and refusal.code == "journal_behind_chain"
    adopted = Adoption(nonce=4, block=100, adopted_at=0.0, by="op")
    assert adoption_refusal(NonceView(4, 4, 3), adopted, SENDER) is None
    assert adoption_refusal(NonceView(4, 4, None), adopted, SENDER) is None
    assert adoption_refusal(NonceView(5, 5, None), adopted, SENDER) is not None


def test_adopt_is_refused_while_anything_may_be_in_flight() -> None:
    assert adopt_problem(NonceView(4, 4, None), unfinished=0) is None
    assert "in the node's pool" in (adopt_problem(NonceView(4, 5, None), unfinished=0) or "")
    assert "unfinished intent" in (adopt_problem(NonceView(4, 4, 4), unfinished=1) or "")
