"""AWS KMS holding a secp256k1 key (KeySpec ECC_SECG_P256K1, KeyUsage SIGN_VERIFY): the key never
leaves the HSM; the keeper asks it to sign each transaction's 32-byte hash.

KMS answers with a DER ECDSA signature (r, s) and nothing else, so three things are done here:
s is brought to the low half of the curve order (EIP-2: nodes reject a high s; KMS returns
either half); the recovery id (y parity) is found by recovering the address from both
candidates and keeping the one that gives the key's own address, never guessed; and the
address comes from `GetPublicKey`'s SubjectPublicKeyInfo, checked to be on secp256k1.
Credentials come from boto3's usual chain (environment, profile, instance or task role); no
AWS error text that could carry them is repeated, only its error code.
"""

from __future__ import annotations

import logging
from typing import Any

from eth_keys.datatypes import PublicKey, Signature
from eth_typing import ChecksumAddress

from keeper.signing import der, txcodec
from keeper.signing.types import SignedTx, SignerError

KMS_KEY_SPEC = "ECC_SECG_P256K1"
SIGNING_ALGORITHM = "ECDSA_SHA_256"  # with MessageType DIGEST, KMS signs our keccak hash as given


def low_s(s: int) -> int:
    return der.SECP256K1_N - s if s > der.SECP256K1_N // 2 else s


def recovery_id(msg_hash: bytes, r: int, s: int, address: str) -> int:
    """The y parity (0 or 1) whose recovered address is `address`; SignerError if neither is."""
    for parity in (0, 1):
        try:
            recovered = Signature(vrs=(parity, r, s)).recover_public_key_from_msg_hash(msg_hash)
        except Exception:  # noqa: S112 - no point for this parity: the other one is tried
            continue
        if recovered.to_checksum_address() == address:
            return parity
    raise SignerError("KMS signature does not recover to the key's address: refusing it")


def address_of_spki(spki: bytes) -> ChecksumAddress:
    return PublicKey(der.parse_secp256k1_public_key(spki)).to_checksum_address()


class KmsSigner:
    def __init__(self, client: Any, key_id: str) -> None:
        """`client`: a boto3 KMS client. Reads the key's public key once (the address)."""
        self._client = client
        self._key_id = key_id
        answer = self._call("GetPublicKey", KeyId=key_id)
        spec = answer.get("KeySpec") or answer.get("CustomerMasterKeySpec")
        if spec != KMS_KEY_SPEC or answer.get("KeyUsage") != "SIGN_VERIFY":
            raise SignerError(
                f"KEEPER_KMS_KEY_ID={key_id}: key is {spec}/{answer.get('KeyUsage')}; the keeper needs "
                f"an asymmetric {KMS_KEY_SPEC} key with KeyUsage SIGN_VERIFY"
            )
        try:
            self._address = address_of_spki(bytes(answer["PublicKey"]))
        except (der.DerError, KeyError, TypeError) as exc:
            raise SignerError(f"KEEPER_KMS_KEY_ID={key_id}: unusable public key ({exc})") from None

    @classmethod
    def connect(
        cls, key_id: str, region: str | None, endpoint_url: str | None, timeout_s: float
    ) -> KmsSigner:
        # Imported here: only a KMS keeper pays boto3's import time (about 0.9 s).
        import boto3  # noqa: PLC0415
        from botocore.config import Config  # noqa: PLC0415

        # botocore logs at INFO which credential source it found: noise on the keeper's stderr
        # (and in its one-line errors); its warnings still show.
        logging.getLogger("botocore").setLevel(logging.WARNING)
        config = Config(
            connect_timeout=timeout_s,
            read_timeout=timeout_s,
            retries={"max_attempts": 2, "mode": "standard"},
        )
        try:
            client = boto3.client("kms", region_name=region, endpoint_url=endpoint_url, config=config)
        except Exception as exc:
            raise SignerError(f"KMS client: {_describe(exc)}") from None
        return cls(client, key_id)

    @property
    def address(self) -> ChecksumAddress:
        return self._address

    def sign_transaction(self, tx: dict[str, Any]) -> SignedTx:
        msg_hash = txcodec.signing_hash(tx)
        answer = self._call(
            "Sign",
            KeyId=self._key_id,
            Message=msg_hash,
            MessageType="DIGEST",
            SigningAlgorithm=SIGNING_ALGORITHM,
        )
        try:
            r, s = der.parse_ecdsa_signature(bytes(answer["Signature"]))
        except (der.DerError, KeyError, TypeError) as exc:
            raise SignerError(f"KMS returned an unusable signature ({exc})") from None
        s = low_s(s)
        parity = recovery_id(msg_hash, r, s, self._address)
        return txcodec.assemble(tx, parity, r, s)

    def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        method = {"GetPublicKey": self._client.get_public_key, "Sign": self._client.sign}[operation]
        try:
            answer: dict[str, Any] = method(**params)
        except Exception as exc:
            raise SignerError(
                f"KMS {operation} on KEEPER_KMS_KEY_ID={self._key_id}: {_describe(exc)}"
            ) from None
        return answer

    def __repr__(self) -> str:
        return f"KmsSigner({self._address})"


def _describe(exc: Exception) -> str:
    """What went wrong, by botocore's error code or class, never its free text (which may
    quote request details)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code", "?")
        hints = {
            "AccessDeniedException": "denied; grant kms:Sign and kms:GetPublicKey on the key",
            "NotFoundException": "no such key in this account and region",
            "DisabledException": "the key is disabled; enable it",
            "KMSInvalidStateException": "the key is not usable now (pending deletion or import?)",
            "UnrecognizedClientException": "credentials rejected; check the AWS credentials",
            "InvalidClientTokenId": "credentials rejected; check the AWS credentials",
        }
        if code in hints:
            return f"{code}: {hints[code]}"
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status in (401, 403):
            return f"denied (HTTP {status}); check the AWS credentials and that the key grants kms:Sign"
        return f"{code}: refused"
    name = type(exc).__name__
    hints = {
        "NoCredentialsError": "no AWS credentials found (environment, profile or role)",
        "NoRegionError": "no region; set KEEPER_KMS_REGION",
        "EndpointConnectionError": "cannot reach the KMS endpoint",
        "ConnectTimeoutError": "KMS endpoint did not answer in time",
        "ReadTimeoutError": "KMS endpoint did not answer in time",
    }
    return hints.get(name, name)
