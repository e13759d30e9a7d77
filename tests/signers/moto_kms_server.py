"""moto's server, with KMS `Sign` honouring MessageType=DIGEST as AWS does.

moto 5.2.5 accepts MessageType but ignores it (its KMS model says "The MessageType-parameter
DIGEST is not yet implemented"): it SHA-256es whatever bytes it gets, so a signature over a
keccak digest would be over sha256(base64 text) instead. AWS signs a DIGEST as given: ECDSA
over the 32 bytes. This runs moto's own server (`moto.server.main`) with only that case
replaced; key creation, GetPublicKey, key states, errors and every other operation are moto's.

Run as `python moto_kms_server.py -H 127.0.0.1 -p PORT` (moto_server's arguments).
"""

from __future__ import annotations

import base64
import binascii
import json

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils
from moto.kms.exceptions import ValidationException
from moto.kms.responses import KmsResponse
from moto.kms.utils import ECDSAPrivateKey
from moto.server import main

_moto_sign = KmsResponse.sign


def _sign(self: KmsResponse) -> str:
    if self._get_param("MessageType") != "DIGEST":
        return _moto_sign(self)
    key_id = self._get_param("KeyId")
    algorithm = self._get_param("SigningAlgorithm")
    self._validate_key_id(key_id)
    key = self.kms_backend.describe_key(key_id)
    if not isinstance(key.private_key, ECDSAPrivateKey) or algorithm != "ECDSA_SHA_256":
        return _moto_sign(self)  # only the case the keeper uses is replaced
    message = self._get_param("Message")  # bytes when moto decoded the blob, else its base64
    try:
        digest = message if isinstance(message, bytes) else base64.b64decode(message, validate=True)
    except (binascii.Error, TypeError):
        raise ValidationException("Message is not base64") from None
    if len(digest) != 32:
        raise ValidationException("Digest is invalid length for algorithm ECDSA_SHA_256.")
    signature = key.private_key.private_key.sign(digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    return json.dumps(
        {
            "KeyId": key.arn,
            "Signature": base64.b64encode(signature).decode(),
            "SigningAlgorithm": algorithm,
        }
    )


KmsResponse.sign = _sign  # type: ignore[method-assign]

if __name__ == "__main__":
    main()
