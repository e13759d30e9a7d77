"""The two DER structures a KMS hands back, parsed by hand (a few dozen lines, no ASN.1 library):

- an ECDSA signature, `SEQUENCE { r INTEGER, s INTEGER }` (what `kms:Sign` returns);
- a SubjectPublicKeyInfo for an EC key, `SEQUENCE { SEQUENCE { OID ecPublicKey, OID curve },
  BIT STRING 00 04 || X || Y }` (what `kms:GetPublicKey` returns).

Strict on purpose: definite lengths only, minimal length encodings, no trailing bytes, positive
integers below 2**256, the curve secp256k1. A signer that answers anything else is refused
rather than half-understood. Pure: bytes in, integers out.
"""

from __future__ import annotations

SEQUENCE = 0x30
INTEGER = 0x02
BIT_STRING = 0x03
OBJECT_IDENTIFIER = 0x06

# 1.2.840.10045.2.1 (id-ecPublicKey) and 1.3.132.0.10 (secp256k1), DER-encoded contents.
OID_EC_PUBLIC_KEY = bytes.fromhex("2a8648ce3d0201")
OID_SECP256K1 = bytes.fromhex("2b8104000a")

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


class DerError(ValueError):
    """Bytes that are not the DER structure expected; the message says which part is wrong."""


def _read_tlv(data: bytes, offset: int, tag: int, what: str) -> tuple[bytes, int]:
    """The contents of the element of `tag` at `offset`, and the offset just past it."""
    if offset + 2 > len(data):
        raise DerError(f"{what}: truncated")
    if data[offset] != tag:
        raise DerError(f"{what}: tag 0x{data[offset]:02x}, expected 0x{tag:02x}")
    first = data[offset + 1]
    pos = offset + 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 2:  # 0x80 is BER's indefinite length; > 64 KiB is never a key
            raise DerError(f"{what}: unsupported length encoding")
        if pos + count > len(data):
            raise DerError(f"{what}: truncated length")
        length = int.from_bytes(data[pos : pos + count], "big")
        if length < 0x80 or data[pos] == 0:
            raise DerError(f"{what}: length not minimally encoded")
        pos += count
    end = pos + length
    if end > len(data):
        raise DerError(f"{what}: truncated contents")
    return data[pos:end], end


def _whole(data: bytes, tag: int, what: str) -> bytes:
    contents, end = _read_tlv(data, 0, tag, what)
    if end != len(data):
        raise DerError(f"{what}: {len(data) - end} trailing bytes")
    return contents


def _positive_integer(contents: bytes, what: str) -> int:
    if not contents:
        raise DerError(f"{what}: empty integer")
    if contents[0] & 0x80:
        raise DerError(f"{what}: negative integer")
    if len(contents) > 1 and contents[0] == 0 and not contents[1] & 0x80:
        raise DerError(f"{what}: integer not minimally encoded")
    value = int.from_bytes(contents, "big")
    if value == 0 or value >= SECP256K1_N:
        raise DerError(f"{what}: out of range for secp256k1")
    return value


def parse_ecdsa_signature(der: bytes) -> tuple[int, int]:
    """(r, s) of a DER ECDSA-Sig-Value."""
    body = _whole(der, SEQUENCE, "signature")
    r_bytes, pos = _read_tlv(body, 0, INTEGER, "signature r")
    s_bytes, pos = _read_tlv(body, pos, INTEGER, "signature s")
    if pos != len(body):
        raise DerError("signature: extra elements after s")
    return _positive_integer(r_bytes, "signature r"), _positive_integer(s_bytes, "signature s")


def parse_secp256k1_public_key(spki: bytes) -> bytes:
    """The 64 bytes X || Y of a secp256k1 SubjectPublicKeyInfo (uncompressed point)."""
    body = _whole(spki, SEQUENCE, "public key")
    algorithm, pos = _read_tlv(body, 0, SEQUENCE, "public key algorithm")
    bits, end = _read_tlv(body, pos, BIT_STRING, "public key bits")
    if end != len(body):
        raise DerError("public key: extra elements after the key")
    key_type, apos = _read_tlv(algorithm, 0, OBJECT_IDENTIFIER, "public key type")
    curve, aend = _read_tlv(algorithm, apos, OBJECT_IDENTIFIER, "public key curve")
    if aend != len(algorithm):
        raise DerError("public key algorithm: extra parameters")
    if key_type != OID_EC_PUBLIC_KEY:
        raise DerError("public key: not an elliptic-curve key")
    if curve != OID_SECP256K1:
        raise DerError("public key: not on secp256k1 (create the KMS key as ECC_SECG_P256K1)")
    if len(bits) != 66 or bits[0] != 0 or bits[1] != 0x04:
        raise DerError("public key: not an uncompressed 65-byte point")
    return bits[2:]


# ------------------------------------------------------------------ encoders (tests, fixtures)


def _tlv(tag: int, contents: bytes) -> bytes:
    n = len(contents)
    if n < 0x80:
        return bytes([tag, n]) + contents
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + contents


def _integer(value: int) -> bytes:
    raw = value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")
    if raw[0] & 0x80:
        raw = b"\x00" + raw
    return _tlv(INTEGER, raw)


def encode_ecdsa_signature(r: int, s: int) -> bytes:
    return _tlv(SEQUENCE, _integer(r) + _integer(s))


def encode_secp256k1_public_key(xy: bytes) -> bytes:
    algorithm = _tlv(
        SEQUENCE, _tlv(OBJECT_IDENTIFIER, OID_EC_PUBLIC_KEY) + _tlv(OBJECT_IDENTIFIER, OID_SECP256K1)
    )
    return _tlv(SEQUENCE, algorithm + _tlv(BIT_STRING, b"\x00\x04" + xy))
