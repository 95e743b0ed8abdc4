"""An S3-compatible server (moto) on 127.0.0.1 once per session; each test gets its own bucket, reached through the
standard AWS variables exactly as a real deployment is configured."""

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import s3fs
from moto.server import ThreadedMotoServer


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@dataclass(frozen=True)
class S3Drops:
    url: str  # s3://<bucket>/drops
    fs: s3fs.S3FileSystem

    def put(self, name: str, content: str) -> None:
        self.fs.pipe(f"{self.url}/{name}", content.encode())


@pytest.fixture
def s3_drops(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> S3Drops:
    """A fresh bucket with a `drops/` prefix; AWS_* point botocore (s3fs) at the local server."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_endpoint,
    }.items():
        monkeypatch.setenv(name, value)
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    bucket = f"drops-{uuid.uuid4().hex[:12]}"
    fs.mkdir(bucket)
    return S3Drops(url=f"s3://{bucket}/drops", fs=fs)
