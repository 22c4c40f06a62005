"""End-to-end fixtures: the real `headshard serve` binary on a free loopback port.

HEADSHARD_BIN names the binary (ctest passes it; default build/headshard). The default model is
models/SmolLM2-135M-Instruct.Q4_1.gguf (HEADSHARD_MODELS_DIR overrides the folder); the tests
skip when it is missing, unless HEADSHARD_REQUIRE_MODELS is set, when they fail instead.
"""
import os
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def binary_path() -> Path:
    return Path(os.environ.get("HEADSHARD_BIN", ROOT / "build" / "headshard"))


def model_path() -> Path:
    return Path(os.environ.get("HEADSHARD_MODELS_DIR", ROOT / "models")) / MODEL_FILE


def need(path: Path, what: str):
    if path.exists():
        return
    message = f"{what} missing: {path}"
    if os.environ.get("HEADSHARD_REQUIRE_MODELS") and what == "model":
        pytest.fail(message)
    pytest.skip(message)


class Server:
    """One `headshard serve` process; its log goes to a temporary file."""

    def __init__(self, *args: str, env: dict | None = None):
        need(binary_path(), "binary")
        need(model_path(), "model")
        self.log = tempfile.NamedTemporaryFile(prefix="headshard-serve-", suffix=".log", delete=False)
        cmd = [str(binary_path()), "serve", "--model", str(model_path()), "--port", "0", *args]
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=full_env)
        self.port = self._wait_for_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.first_health = None  # the status /health gave on the first try

    def _wait_for_port(self, timeout: float = 30.0) -> int:
        deadline = time.time() + timeout
        while time.time() < deadline:
            m = re.search(r"listening on http://[^:\s]+:(\d+)", Path(self.log.name).read_text(errors="replace"))
            if m:
                return int(m.group(1))
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_text()}")
            time.sleep(0.02)
        raise RuntimeError(f"server did not start listening:\n{self.log_text()}")

    def wait_ready(self, timeout: float = 120.0) -> "Server":
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                r = requests.get(self.url + "/health", timeout=5)
                if self.first_health is None:
                    self.first_health = (r.status_code, r.json())
                if r.status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_text()}")
            time.sleep(0.05)
        raise RuntimeError(f"server not ready after {timeout} s:\n{self.log_text()}")

    def log_text(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def metrics(self) -> dict:
        """The unlabelled samples and labelled ones as 'name{labels}' -> value."""
        text = requests.get(self.url + "/metrics", timeout=10).text
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    def terminate(self, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def close(self):
        self.terminate()
        self.log.close()
        os.unlink(self.log.name)


@pytest.fixture(scope="session")
def server():
    """The shared server: default settings but a roomier queue."""
    s = Server("--max-seqs", "16", "--max-queue", "64")
    try:
        yield s.wait_ready()
    finally:
        code = s.terminate()
        if code != 0:
            print(s.log_text())
        s.close()


@pytest.fixture
def make_server():
    """Starts extra servers with their own flags; all are stopped at the end of the test."""
    started = []

    def start(*args, env=None, ready=True):
        s = Server(*args, env=env)
        started.append(s)
        return s.wait_ready() if ready else s

    yield start
    for s in started:
        s.close()


@pytest.fixture(scope="session")
def model_name():
    """The id the server gives the default model."""
    return MODEL_FILE[: -len(".gguf")]
