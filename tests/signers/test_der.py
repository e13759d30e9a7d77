"""The KMS signer's pure parts: the hand-written DER parser, low-s normalisation and the
recovery id found by recovery. No network: keys and signatures come from eth-keys."""

from __future__ import annotations

import pytest
from eth_keys.datatypes import PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from keeper.signing import SignerError, der
from keeper.signing.der import (
    SECP256K1_N,
    DerError,
    encode_ecdsa_signature,
    encode_secp256k1_public_key,
    parse_ecdsa_signature,
    parse_secp256k1_public_key,
)
from keeper.signing.kms import address_of_spki, low_s, recovery_id

scalars = st.integers(min_value=1, max_value=SECP256K1_N - 1)
keys = st.binary(min_size=32, max_size=32).filter(lambda b: 0 < int.from_bytes(b, "big") < SECP256K1_N)


@given(scalars, scalars)
def test_signature_round_trips(r: int, s: int) -> None:
    assert parse_ecdsa_signature(encode_ecdsa_signature(r, s)) == (r, s)


@given(keys, st.binary(min_size=32, max_size=32))
def test_either_half_of_s_recovers_the_signer_after_normalising(key: bytes, msg_hash: bytes) -> None:
    private = PrivateKey(key)
    address = private.public_key.to_checksum_address()
    v, r, s = private.sign_msg_hash(msg_hash).vrs  # eth-keys gives the low s
    high = SECP256K1_N - s
    for returned in (s, high):  # KMS may return either
        parsed_r, parsed_s = parse_ecdsa_signature(encode_ecdsa_signature(r, returned))
        normal = low_s(parsed_s)
        assert normal == s
        assert recovery_id(msg_hash, parsed_r, normal, address) == v


@given(keys)
def test_address_from_subject_public_key_info(key: bytes) -> None:
    public = PrivateKey(key).public_key
    assert address_of_spki(encode_secp256k1_public_key(public.to_bytes())) == public.to_checksum_address()
    assert parse_secp256k1_public_key(encode_secp256k1_public_key(public.to_bytes())) == public.to_bytes()


def test_recovery_id_refuses_a_signature_of_another_key() -> None:
    ours, theirs = PrivateKey(b"\x01" * 32), PrivateKey(b"\x02" * 32)
    msg_hash = b"\x07" * 32
    _, r, s = theirs.sign_msg_hash(msg_hash).vrs
    with pytest.raises(SignerError, match="does not recover to the key's address"):
        recovery_id(msg_hash, r, s, ours.public_key.to_checksum_address())


GOOD_SIG = encode_ecdsa_signature(5, 7)  # 30 06 02 01 05 02 01 07


@pytest.mark.parametrize(
    ("der", "problem"),
    [
        (b"", "truncated"),
        (GOOD_SIG + b"\x00", "trailing bytes"),
        (b"\x31" + GOOD_SIG[1:], "tag 0x31"),
        (bytes.fromhex("3080020105020107"), "unsupported length encoding"),  # BER indefinite
        (bytes.fromhex("30810602010502010700"[:-2]), "not minimally encoded"),  # long form for 6
        (bytes.fromhex("3006020185020107"), "negative"),
        (bytes.fromhex("300702020005020107"), "not minimally encoded"),  # 00 05
        (bytes.fromhex("3006020100020107"), "out of range"),  # r = 0
        (encode_ecdsa_signature(5, 7)[:-1], "truncated"),
        (bytes.fromhex("3009020105020107020101"), "extra elements"),
        (
            bytes.fromhex("3026020105022100") + SECP256K1_N.to_bytes(32, "big"),
            "out of range",
        ),
    ],
)
def test_malformed_signatures_are_refused(der: bytes, problem: str) -> None:
    with pytest.raises(DerError, match=problem):
        parse_ecdsa_signature(der)


def _spki(curve_oid: bytes, point: bytes) -> bytes:
    algorithm = der._tlv(
        der.SEQUENCE,
        der._tlv(der.OBJECT_IDENTIFIER, der.OID_EC_PUBLIC_KEY) + der._tlv(der.OBJECT_IDENTIFIER, curve_oid),
    )
    return der._tlv(der.SEQUENCE, algorithm + der._tlv(der.BIT_STRING, b"\x00" + point))


def test_public_keys_not_on_secp256k1_or_not_uncompressed_are_refused() -> None:
    xy = PrivateKey(b"\x03" * 32).public_key.to_bytes()
    assert parse_secp256k1_public_key(_spki(der.OID_SECP256K1, b"\x04" + xy)) == xy
    p256 = bytes.fromhex("2a8648ce3d030107")  # a KMS key created as ECC_NIST_P256
    with pytest.raises(DerError, match="not on secp256k1"):
        parse_secp256k1_public_key(_spki(p256, b"\x04" + xy))
    with pytest.raises(DerError, match="uncompressed"):
        parse_secp256k1_public_key(_spki(der.OID_SECP256K1, b"\x02" + xy[:32]))
    with pytest.raises(DerError, match="trailing"):
        parse_secp256k1_public_key(_spki(der.OID_SECP256K1, b"\x04" + xy) + b"\x00")
