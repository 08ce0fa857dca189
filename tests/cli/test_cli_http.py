"""`setpiece token` mints tokens the gateway accepts; `setpiece gateway` is wired."""

from __future__ import annotations

import jwt
from typer.testing import CliRunner

from setpiece.cli.app import app


def test_token_mints_a_verifiable_token() -> None:
    result = CliRunner().invoke(app, [
        "token", "--sub", "u1", "--secret", "s" * 32, "--scope", "a:read", "--scope", "b:write",
        "--tenant", "t1", "--issuer", "me", "--audience", "app", "--expires-in", "60",
    ])
    assert result.exit_code == 0, result.output
    claims = jwt.decode(result.output.strip(), "s" * 32, algorithms=["HS256"], audience="app",
                        issuer="me")
    assert claims["sub"] == "u1" and claims["tenant"] == "t1"
    assert set(claims["scope"].split()) == {"a:read", "b:write"}
    assert claims["exp"] - claims["iat"] == 60


def test_token_needs_a_secret() -> None:
    result = CliRunner().invoke(app, ["token", "--sub", "u1"], env={"SETPIECE_JWT_SECRET": ""})
    assert result.exit_code == 2


def test_gateway_refuses_a_bad_target() -> None:
    result = CliRunner().invoke(app, ["gateway", "no_such_module:stack"])
    assert result.exit_code == 2
    assert "no_such_module" in result.output
