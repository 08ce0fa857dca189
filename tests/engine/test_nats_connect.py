"""Opening the NATS engine where no server answers: a quick, clear EngineError (issue 12.6).

No server is needed: the URL points at a local port where nothing listens.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from setpiece.engine import open_engine
from setpiece.errors import ConfigError, EngineError

pytest.importorskip("nats")
pytest.importorskip("asyncpg")

STORE = "postgresql://setpiece@127.0.0.1:1/setpiece"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_an_unreachable_nats_fails_within_the_connect_timeout_naming_the_url() -> None:
    server = f"nats://127.0.0.1:{free_port()}"
    with pytest.raises(EngineError) as caught:
        asyncio.run(open_engine(f"{server}?connect_timeout=0.5", store=STORE))
    message = str(caught.value)
    assert repr(server) in message and "unreachable" in message
    assert "within 0.5 s" in message  # the configured timeout is the one that ran out
    assert "?connect_timeout=SECONDS" in message  # and how to wait longer


def test_connect_timeout_has_a_short_default_and_is_checked() -> None:
    from setpiece.engine.nats.options import nats_options

    default = nats_options("nats://h:4222")
    assert default.connect_timeout == 5.0 and default.timeout == 30.0
    assert nats_options("nats://h:4222?connect_timeout=2.5&timeout=60").connect_timeout == 2.5
    assert nats_options("nats://h:4222?timeout=0.5").connect_timeout == 0.5  # the shorter
    assert nats_options("nats://h:4222?timeout=0.5&connect_timeout=3").connect_timeout == 3
    for bad, message in (("connect_timeout=soon", "connect_timeout must be a number"),
                         ("connect_timeout=0", "connect_timeout must be positive"),
                         ("replicas=1.5", "replicas must be a whole number"),
                         ("conect_timeout=3", "unknown options")):
        with pytest.raises(ConfigError, match=message):
            nats_options(f"nats://h:4222?{bad}")


def test_the_url_names_every_seed_and_checks_credentials_files(tmp_path: Path) -> None:
    from setpiece.engine.nats.options import nats_options, seed_urls

    options = nats_options("nats://127.0.0.1:4222,127.0.0.1:4223, 127.0.0.1:4224?replicas=3")
    assert options.replicas == 3
    assert seed_urls(options.server) == [
        "nats://127.0.0.1:4222", "nats://127.0.0.1:4223", "nats://127.0.0.1:4224"]
    assert seed_urls("tls://a:1,b:2") == ["tls://a:1", "tls://b:2"]
    with pytest.raises(ConfigError, match="an empty server in the seed list"):
        seed_urls("nats://a:1,,b:2")
    with pytest.raises(ConfigError, match="creds: no such file"):
        nats_options(f"nats://a:1?creds={tmp_path / 'missing.creds'}")
    creds = tmp_path / "user.creds"
    creds.write_text("not checked until connecting")
    assert nats_options(f"nats://a:1?creds={creds}").creds == str(creds)
