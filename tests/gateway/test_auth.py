"""Authentication and authorization: every token fault gets its 401 or 403, RFC 6750 style."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from setpiece import ConfigError, JWTAuth, Service, Stack, mint_token
from setpiece.gateway import serving
from tests.gateway.conftest import (
    AUDIENCE,
    ISSUER,
    SECRET,
    bearer,
    client,
    notes_stack,
    token,
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "u1", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 600,
            "scope": "notes:read", "tenant": "t1", **extra}


def _hmac_token(header: dict[str, Any], claims: dict[str, Any], key: bytes) -> str:
    signing = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    sig = hmac.new(key, signing.encode(), hashlib.sha256).digest()
    return f"{signing}.{_b64(sig)}"


def _unsigned(claims: dict[str, Any]) -> str:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(claims).encode())}."


async def _status(stack: Stack, headers: dict[str, str], path: str = "/notes/a"
                  ) -> tuple[int, str, dict[str, Any]]:
    async with stack.start(engine="memory") as rt, client(rt.asgi()) as c:
        r = await c.get(path, headers=headers)
        return r.status_code, r.headers.get("www-authenticate", ""), r.json()


FAULTS = {
    "expired": lambda: token(expires_in=-120),
    "not yet valid": lambda: token(not_before=300),
    "wrong issuer": lambda: token(issuer="someone-else"),
    "wrong audience": lambda: token(audience="other-app"),
    "wrong secret": lambda: mint_token("another-secret-of-thirty-two-bytes!", subject="u1",
                                       scopes=["notes:read"], issuer=ISSUER, audience=AUDIENCE),
    "tampered payload": lambda: _tamper(token()),
    "malformed": lambda: "not.a.jwt",
    "garbage": lambda: "abc",
    "alg none": lambda: _unsigned(_claims()),
    "no exp": lambda: _hmac_token({"alg": "HS256", "typ": "JWT"},
                                  {k: v for k, v in _claims().items() if k != "exp"},
                                  SECRET.encode()),
    "iat in the future": lambda: _hmac_token({"alg": "HS256", "typ": "JWT"},
                                             _claims(iat=int(time.time()) + 3600),
                                             SECRET.encode()),
    "bad scope claim": lambda: _hmac_token({"alg": "HS256"}, _claims(scope=7), SECRET.encode()),
}


def _tamper(tok: str) -> str:
    head, payload, sig = tok.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["tenant"] = "t2"
    return f"{head}.{_b64(json.dumps(claims).encode())}.{sig}"


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_token_faults_are_401_invalid_token(run: Any, fault: str) -> None:
    status, challenge, body = run(_status(notes_stack(), bearer(FAULTS[fault]())))
    assert status == 401, body
    assert challenge.startswith("Bearer ")
    assert 'error="invalid_token"' in challenge
    assert "error_description=" in challenge
    assert body["error"] == "invalid_token"


@pytest.mark.parametrize("headers", [{}, {"authorization": "Basic dTE6cHc="},
                                     {"authorization": "Bearer"}])
def test_missing_credentials_are_401_with_a_challenge(run: Any, headers: dict[str, str]) -> None:
    status, challenge, _ = run(_status(notes_stack(), headers))
    assert status == 401
    assert challenge.startswith('Bearer realm="setpiece"')


def test_missing_scope_is_403_insufficient_scope(run: Any) -> None:
    status, challenge, body = run(_status(notes_stack(), bearer(token(["notes:write"]))))
    assert status == 403
    assert 'error="insufficient_scope"' in challenge and 'scope="notes:read"' in challenge
    assert body["error"] == "insufficient_scope"


def test_clock_skew_is_tolerated_within_leeway(run: Any) -> None:
    # expired 10 s ago, not-before 10 s ahead: both inside the default 30 s leeway
    ok = run(_status(notes_stack(), bearer(token(expires_in=-10))))
    assert ok[0] == 404  # authenticated; the note just does not exist
    ok = run(_status(notes_stack(), bearer(token(not_before=10))))
    assert ok[0] == 404


def test_scp_list_claim_is_accepted(run: Any) -> None:
    tok = _hmac_token({"alg": "HS256"}, _claims(scope=None, scp=["notes:read"]), SECRET.encode())
    assert run(_status(notes_stack(), bearer(tok)))[0] == 404


def test_alg_none_and_unknown_algorithms_cannot_be_configured() -> None:
    with pytest.raises(ConfigError, match="none"):
        JWTAuth(secret=SECRET, algorithms=["none"])
    with pytest.raises(ConfigError, match="needs a jwks"):
        JWTAuth(secret=SECRET, algorithms=["RS256"])
    with pytest.raises(ConfigError):
        JWTAuth()


# -- RS256 / ES256 with a JWKS --------------------------------------------------------------------


def _rsa() -> tuple[Any, dict[str, Any], bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return key, jwk, pem


RSA_KEY, RSA_JWK, RSA_PEM = _rsa()
EC_KEY = ec.generate_private_key(ec.SECP256R1())
EC_JWK = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(EC_KEY.public_key()))


def _jwks(*entries: tuple[dict[str, Any], str, str]) -> dict[str, Any]:
    return {"keys": [{**jwk, "kid": kid, "alg": alg, "use": "sig"} for jwk, kid, alg in entries]}


def _signed(key: Any, alg: str, kid: str | None, **kw: Any) -> str:
    return mint_token(key, subject="u1", scopes=["notes:read"], tenant="t1", issuer=ISSUER,
                      audience=AUDIENCE, algorithm=alg, key_id=kid, **kw)


def _jwks_stack(jwks: Any, **kw: Any) -> Stack:
    return notes_stack(auth=JWTAuth(jwks=jwks, issuer=ISSUER, audience=AUDIENCE, **kw))


def _stack_with(auth: JWTAuth) -> Stack:
    from tests.gateway.conftest import notes_service

    return Stack("app", services=[notes_service()], auth=auth)


def test_rs256_and_es256_with_a_jwks_dict(run: Any) -> None:
    jwks = _jwks((RSA_JWK, "r1", "RS256"), (EC_JWK, "e1", "ES256"))
    stack = _stack_with(JWTAuth(jwks=jwks, issuer=ISSUER, audience=AUDIENCE))
    assert run(_status(stack, bearer(_signed(RSA_KEY, "RS256", "r1"))))[0] == 404
    assert run(_status(stack, bearer(_signed(EC_KEY, "ES256", "e1"))))[0] == 404
    # a key used with another kid's algorithm, an unknown kid, a foreign key: all refused
    assert run(_status(stack, bearer(_signed(RSA_KEY, "RS256", "e1"))))[0] == 401
    assert run(_status(stack, bearer(_signed(RSA_KEY, "RS256", "nope"))))[0] == 401
    other, _, _ = _rsa()
    status, challenge, _ = run(_status(stack, bearer(_signed(other, "RS256", "r1"))))
    assert status == 401 and "bad signature" in challenge


def test_algorithm_confusion_is_refused(run: Any) -> None:
    """An HS256 token "signed" with the RSA public key must never verify."""
    forged = _hmac_token({"alg": "HS256", "typ": "JWT", "kid": "r1"}, _claims(), RSA_PEM)
    jwks = _jwks((RSA_JWK, "r1", "RS256"))
    only_rsa = _stack_with(JWTAuth(jwks=jwks, issuer=ISSUER, audience=AUDIENCE))
    status, challenge, _ = run(_status(only_rsa, bearer(forged)))
    assert status == 401 and "HS256 is not accepted" in challenge
    both = _stack_with(JWTAuth(secret=SECRET, jwks=jwks, issuer=ISSUER, audience=AUDIENCE))
    assert run(_status(both, bearer(forged)))[0] == 401
    # and RS256 claimed in the header with an HMAC signature
    forged_rs = _hmac_token({"alg": "RS256", "kid": "r1"}, _claims(), RSA_PEM)
    assert run(_status(both, bearer(forged_rs)))[0] == 401


def test_jwks_from_a_file(run: Any, tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(_jwks((RSA_JWK, "r1", "RS256"))))
    stack = _stack_with(JWTAuth(jwks=str(path), issuer=ISSUER, audience=AUDIENCE))
    assert run(_status(stack, bearer(_signed(RSA_KEY, "RS256", "r1"))))[0] == 404


def test_jwks_url_is_cached_refreshed_on_unknown_kid_and_rate_limited(run: Any) -> None:
    served: dict[str, Any] = {"doc": _jwks((RSA_JWK, "r1", "RS256")), "fetches": 0}

    async def idp(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        served["fetches"] += 1
        body = json.dumps(served["doc"]).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    async def main() -> None:
        async with serving(idp) as url:
            auth = JWTAuth(jwks=f"{url}/jwks.json", issuer=ISSUER, audience=AUDIENCE,
                           jwks_min_refresh=2.0)  # wide: a loaded machine is slow
            stack = _stack_with(auth)
            async with stack.start(engine="memory") as rt, client(rt.asgi()) as c:
                async def get(tok: str) -> int:
                    return (await c.get("/notes/a", headers=bearer(tok))).status_code

                assert await get(_signed(RSA_KEY, "RS256", "r1")) == 404
                assert await get(_signed(RSA_KEY, "RS256", "r1", expires_in=60)) == 404
                assert served["fetches"] == 1  # cached
                rotated, rotated_jwk, _ = _rsa()
                served["doc"] = _jwks((RSA_JWK, "r1", "RS256"), (rotated_jwk, "r2", "RS256"))
                # right after a fetch, an unknown kid does not fetch again (rate limit) ...
                for n in range(20):
                    assert await get(_signed(rotated, "RS256", f"forged-{n}")) == 401
                assert served["fetches"] == 1
                await asyncio.sleep(2.05)
                # ... but once the interval has passed, it does, and the rotated key works
                assert await get(_signed(rotated, "RS256", "r2")) == 404
                assert served["fetches"] == 2

    import asyncio

    run(main())


def test_mint_token_round_trips() -> None:
    tok = mint_token(SECRET, subject="u1", scopes=["a", "b"], tenant="t1", issuer=ISSUER,
                     audience=AUDIENCE, expires_in=60)
    claims = jwt.decode(tok, SECRET, algorithms=["HS256"], audience=AUDIENCE)
    assert claims["sub"] == "u1" and claims["scope"] == "a b" and claims["tenant"] == "t1"
    assert claims["exp"] - claims["iat"] == 60


def test_contract_example_with_a_short_dev_secret(run: Any) -> None:
    """The contract's own example: a 10-byte development secret works (with a log warning)."""
    svc = Service("notes")

    @svc.get("/notes/{name}", scopes=["notes:read"])
    async def read(name: str, ctx: Any) -> dict[str, Any]:
        return {"text": await ctx.store.get(name)}

    stack = Stack("app", services=[svc],
                  auth=JWTAuth(secret="dev-secret", issuer="me", audience="app"))
    tok = mint_token("dev-secret", subject="u1", scopes=["notes:read"], tenant="t1",
                     issuer="me", audience="app", expires_in=3600)

    async def main() -> None:
        async with stack.start(engine="memory") as rt, client(rt.asgi()) as c:
            r = await c.get("/notes/x", headers=bearer(tok))
            assert r.status_code == 200 and r.json() == {"text": None}

    run(main())
