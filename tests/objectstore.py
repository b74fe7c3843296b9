"""An S3-compatible object store for tests: moto's server on 127.0.0.1, reached the standard AWS way.

`with S3Server() as s3:` starts `moto_server` on a free loopback port; `s3.env` holds the variables
any AWS client (pyarrow's S3FileSystem included) reads — AWS_ENDPOINT_URL and the usual
credentials — so CPRec runs against it exactly as against a user's own S3 endpoint.
`s3.bucket(name)` creates a bucket and returns its `s3://name` URI.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

MOTO_SERVER = str(Path(sys.executable).with_name("moto_server"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class S3Server:
    def __init__(self, start_timeout: float = 60.0):
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.env = {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "cprec-test",
            "AWS_SECRET_ACCESS_KEY": "cprec-test-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",  # no 1-second probe of an instance-metadata endpoint
        }
        self.start_timeout = start_timeout
        self.process: subprocess.Popen | None = None
        self.log = tempfile.NamedTemporaryFile(prefix="moto-", suffix=".log", delete=False)

    def __enter__(self) -> S3Server:
        self.process = subprocess.Popen(
            [MOTO_SERVER, "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto_server exited early; see {self.log.name}")
            try:
                urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=2)
                return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"moto_server did not answer on {self.endpoint}; see {self.log.name}")

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()

    def bucket(self, name: str) -> str:
        """Creates the bucket `name` (idempotent) and returns `s3://name`."""
        import pyarrow.fs as pafs

        fs = pafs.S3FileSystem(
            endpoint_override=self.endpoint,
            access_key=self.env["AWS_ACCESS_KEY_ID"],
            secret_key=self.env["AWS_SECRET_ACCESS_KEY"],
            region=self.env["AWS_DEFAULT_REGION"],
            allow_bucket_creation=True,
        )
        fs.create_dir(name)
        return f"s3://{name}"

    def environ(self) -> dict[str, str]:
        """os.environ with this server's AWS variables on top (for subprocesses)."""
        return {**os.environ, **self.env}
