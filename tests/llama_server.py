"""A real OpenAI-compatible server for tests: llama-cpp-python's, on loopback, over the embedded GGUF."""

from __future__ import annotations

import contextlib
import importlib.util
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aftertune.errors import ModelNotFoundError
from aftertune.models.embedded import EMBEDDED_NAME, gguf_path

#: The name the server lists the model under (its --model_alias).
MODEL = EMBEDDED_NAME
#: llama.cpp's server samples with top_k=40, min_p=0.05 and repeat_penalty=1.1 unless told otherwise;
#: these make temperature/top_p mean what they mean elsewhere (and temperature 0 a true argmax).
PLAIN_SAMPLING = {"top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0}
STARTUP_TIMEOUT_S = 60.0
#: llama-cpp-python's server, started without llama.cpp's extra buffer types (see that file).
SERVER_MAIN = Path(__file__).with_name("llama_server_main.py")
_SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context")


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running_llama_server(*extra_args: str) -> Iterator[str]:
    """Start llama-cpp-python's server over the embedded SmolLM2 GGUF; yield its base URL (ending /v1)."""
    if any(importlib.util.find_spec(m) is None for m in _SERVER_MODULES):
        pytest.skip(
            "llama-cpp-python[server] is not installed: pip install 'llama-cpp-python[server]' "
            "(it compiles for ~5 minutes)"
        )
    try:
        model_path = gguf_path()
    except ModelNotFoundError as e:
        pytest.skip(str(e))
    port = free_port()
    args = [
        sys.executable, str(SERVER_MAIN), "--model", str(model_path), "--model_alias", MODEL,
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--seed", "0",
        # logits for every position: needed for any logprobs (older versions default to false)
        "--logits_all", "true", "--verbose", "false", *extra_args,
    ]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "server.log"
        with log.open("wb") as out:
            process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        try:
            base_url = f"http://127.0.0.1:{port}/v1"
            _wait_until_up(process, base_url, log)
            _check_it_decodes(process, base_url, log)
            yield base_url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_up(process: subprocess.Popen[bytes], base_url: str, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"llama.cpp server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            # Any answer (a 401 from a server started with --api_key too) means it is serving.
            if httpx.get(f"{base_url}/models", timeout=2).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"llama.cpp server did not answer within {STARTUP_TIMEOUT_S:g} s:\n{log.read_text()[-3000:]}")


def _check_it_decodes(process: subprocess.Popen[bytes], base_url: str, log: Path) -> None:
    """One short completion of a multi-token prompt, so a server that crashes on real work fails here,
    once and clearly, instead of as 'connection refused' in every test that uses it."""
    try:
        httpx.post(
            f"{base_url}/completions",
            json={"model": MODEL, "prompt": "The capital of France is", "max_tokens": 2},
            timeout=60,
        )
    except httpx.TransportError:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
    if process.poll() is not None:
        pytest.fail(
            f"llama.cpp server died (exit code {process.returncode}) on its first completion; on a CPU "
            "with AMX, build llama-cpp-python without the machine's own instruction set (the README's "
            f"CMAKE_ARGS):\n{log.read_text()[-3000:]}"
        )


@pytest.fixture(scope="session")
def llama_server() -> Iterator[str]:
    """Base URL (http://127.0.0.1:PORT/v1) of a llama.cpp server serving the embedded model as MODEL."""
    with running_llama_server() as base_url:
        yield base_url
