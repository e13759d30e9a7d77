"""moto's server as a local AWS KMS for tests: `moto_server` on a free loopback port, a
secp256k1 key created in it through boto3, exactly as an operator would create one in AWS."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from keeper_process import free_port

# moto's server with Sign's MessageType=DIGEST done as AWS does (see that file).
MOTO_SERVER = Path(__file__).with_name("moto_kms_server.py")
START_WITHIN_S = 60.0  # moto imports every AWS service model at start: slow on a loaded machine
REGION = "eu-west-1"
# Fake but secret-looking credentials: the no-secrets test greps the keeper's output for them.
AWS_ACCESS_KEY_ID = "AKIAKEEPERTESTING01"
AWS_SECRET_ACCESS_KEY = "kEePeRsEcReT/0123456789abcdefghijKLMNOPQRS"


def aws_env() -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": AWS_ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET_ACCESS_KEY,
        "AWS_DEFAULT_REGION": REGION,
        # No shared config or instance metadata lookups: the environment is the whole chain.
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


@dataclass
class MotoKms:
    url: str
    process: subprocess.Popen[bytes]

    def client(self) -> Any:
        env = aws_env()
        return boto3.client(
            "kms",
            region_name=REGION,
            endpoint_url=self.url,
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        )

    def create_key(self) -> str:
        answer = self.client().create_key(KeySpec="ECC_SECG_P256K1", KeyUsage="SIGN_VERIFY")
        key_id: str = answer["KeyMetadata"]["KeyId"]
        return key_id


@contextmanager
def moto_server(log_path: Path, **extra_env: str) -> Iterator[MotoKms]:
    port = free_port()
    env = {**os.environ, **aws_env(), **extra_env}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_listening(url, process, log_path)
            yield MotoKms(url, process)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _wait_listening(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + START_WITHIN_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto_server exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(url + "/moto-api/", timeout=2):  # noqa: S310 - our http URL
                return
        except urllib.error.HTTPError:
            return  # it answers: listening
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"moto_server did not listen within {START_WITHIN_S:g} s:\n{log_path.read_text()}")
