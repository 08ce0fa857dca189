"""What a refused token is told: a fixed RFC 6750 error code and description, never text taken
from the token or from the identity provider; and the JWKS fetch is rate-limited from the first.

These run over loopback HTTP (uvicorn, h11), where a header value that HTTP cannot carry drops
the connection instead of answering.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import re
import time
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from setpiece import JWTAuth, Stack
from setpiece.gateway import serving
from tests.gateway.conftest import AUDIENCE, ISSUER, SECRET, bearer, notes_service
from tests.gateway.test_auth import EC_JWK, RSA_JWK, RSA_KEY, _jwks, _signed

Run = Any

# RFC 6750 §3: the values of error, error_description and scope are printable ASCII without
# '"' and '\'; the realm is a quoted string
_VALUE = r'[\x20\x21\x23-\x5b\x5d-\x7e]*'
_CHALLENGE = re.compile(
    rf'^Bearer realm="{_VALUE}"(, error="(invalid_request|invalid_token|insufficient_scope)", '
    rf'error_description="{_VALUE}")?(, scope="{_VALUE}")?$'
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _token(header: dict[str, Any], claims: dict[str, Any] | None = None) -> str:
    """A JWT with any header, HMAC-signed with the test secret (so HS256 ones verify)."""
    now = int(time.time())
    body = claims if claims is not None else {
        "sub": "u1", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 600,
        "scope": "notes:read", "tenant": "t1",
    }
    signing = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(body).encode())}"
    sig = hmac.new(SECRET.encode(), signing.encode(), hashlib.sha256).digest()
    return f"{signing}.{_b64(sig)}"


def _stack(auth: JWTAuth) -> Stack:
    return Stack("app", services=[notes_service()], auth=auth)


def _both() -> JWTAuth:
    jwks = _jwks((RSA_JWK, "r1", "RS256"), (EC_JWK, "e1", "ES256"))
    return JWTAuth(secret=SECRET, jwks=jwks, issuer=ISSUER, audience=AUDIENCE,
                   algorithms=["HS256", "RS256", "ES256"])


def _check_reply(r: httpx.Response) -> None:
    assert r.status_code != 500, r.text
    assert r.status_code in (401, 403, 404, 503), r.text
    body = r.json()
    assert set(body) >= {"error", "detail"}
    challenge = r.headers.get("www-authenticate")
    if r.status_code in (401, 403):
        assert challenge is not None and _CHALLENGE.match(challenge), challenge
    assert "x-evil" not in r.headers


HOSTILE = ["中文", "\u2028", "HS256\r\nX-Evil: 1", "k\r\nX-Evil: 1", 'a"b\\c', "\x00", "é" * 300]


def test_token_text_never_reaches_the_challenge_raw(run: Run) -> None:
    """alg or kid with non-Latin-1 text gave a 500; with CRLF, a dropped connection."""

    async def main() -> None:
        app = _stack(_both()).asgi(engine="memory")
        async with serving(app) as url, httpx.AsyncClient(base_url=url) as c:
            for text in HOSTILE:
                for header in ({"alg": text}, {"alg": "RS256", "kid": text},
                               {"alg": "ES256", "kid": text}, {"alg": "HS256", "kid": text},
                               {"alg": "HS256", "typ": text, "crit": [text]}):
                    r = await c.get("/notes/a", headers=bearer(_token(header)))
                    _check_reply(r)
                    if header.get("alg") != "HS256":
                        assert r.status_code == 401, (header, r.text)
                    assert text not in r.headers.get("www-authenticate", "")
                # a valid RS256 token whose claims hold the same text: still a clean answer
                tok = _signed(RSA_KEY, "RS256", "r1", claims={"scope": text, "sub": text})
                _check_reply(await c.get("/notes/a", headers=bearer(tok)))

    run(main())


_TEXT = st.text(max_size=40)
_HEADER_VALUE = st.one_of(_TEXT, st.integers(), st.none(), st.lists(_TEXT, max_size=3),
                          st.dictionaries(_TEXT, _TEXT, max_size=2))


def test_fuzzed_token_headers_and_claims_never_give_a_500_or_a_dropped_connection(
    run: Run,
) -> None:
    async def main() -> None:
        async with serving(_stack(_both()).asgi(engine="memory")) as url:
            with httpx.Client(base_url=url, timeout=30) as c:

                @settings(max_examples=150, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
                @given(
                    alg=st.one_of(st.sampled_from(["HS256", "RS256", "ES256", "none", "HS512"]),
                                  _TEXT, _HEADER_VALUE),
                    kid=st.one_of(st.sampled_from(["r1", "e1"]), _HEADER_VALUE),
                    extra=st.dictionaries(st.sampled_from(["typ", "crit", "cty", "jku", "b64"]),
                                          _HEADER_VALUE, max_size=3),
                    claims=st.one_of(st.none(), st.dictionaries(
                        st.sampled_from(["sub", "scope", "tenant", "exp", "nbf", "iat", "aud",
                                         "iss", "scp"]), _HEADER_VALUE, max_size=5)),
                    raw=st.one_of(st.none(), st.text(
                        st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=60)),
                )
                def check(alg: Any, kid: Any, extra: dict[str, Any],
                          claims: dict[str, Any] | None, raw: str | None) -> None:
                    header = {**extra, "alg": alg, "kid": kid}
                    if claims is not None:
                        now = int(time.time())
                        claims = {"iss": ISSUER, "aud": AUDIENCE, "exp": now + 600, **claims}
                    tok = _token(header, claims) if raw is None else raw.strip()
                    sent = {"authorization": f"Bearer {tok}".strip().encode("latin-1")}
                    r = c.get("/notes/a", headers=sent)
                    _check_reply(r)

                await asyncio.to_thread(check)

    run(main())


# -- the JWKS endpoint ----------------------------------------------------------------------------


def _idp(state: dict[str, Any]) -> Any:
    """A JWKS endpoint that fails (500, as a broken identity provider does) until told not to."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        state["fetches"] += 1
        if state["fail"]:
            await send({"type": "http.response.start", "status": 500,
                        "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"the keys are on fire"})
            return
        body = json.dumps(_jwks((RSA_JWK, "r1", "RS256"))).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    return app


def test_a_failing_jwks_endpoint_is_a_503_fetched_at_most_once_per_interval(
    run: Run, caplog: pytest.LogCaptureFixture
) -> None:
    """Before the first successful load too: 50 forged-kid requests made 50 fetches, and the
    answer (with the JWKS URL in it, and a newline) dropped the connection."""
    state: dict[str, Any] = {"fetches": 0, "fail": True}
    caplog.set_level(logging.WARNING, logger="setpiece.gateway.auth")

    async def main() -> None:
        async with serving(_idp(state)) as idp_url:
            jwks_url = f"{idp_url}/internal/jwks.json"
            auth = JWTAuth(jwks=jwks_url, issuer=ISSUER, audience=AUDIENCE,
                           jwks_min_refresh=1.0)
            async with serving(_stack(auth).asgi(engine="memory")) as url, \
                    httpx.AsyncClient(base_url=url) as c:

                async def forged(n: int) -> httpx.Response:
                    tok = _signed(RSA_KEY, "RS256", f"forged-{n}")
                    return await c.get("/notes/a", headers=bearer(tok))

                replies = [await forged(n) for n in range(25)]
                replies += await asyncio.gather(*(forged(n) for n in range(25, 50)))
                assert state["fetches"] == 1
                for r in replies:
                    assert r.status_code == 503, r.text
                    assert r.json()["error"] == "unavailable"
                    assert "retry-after" in r.headers and "www-authenticate" not in r.headers
                    shown = r.text + "".join(r.headers.values())
                    assert idp_url.split("//")[1] not in shown and "internal" not in shown
                # the interval passes and the provider recovers: the next request loads the keys
                state["fail"] = False
                await asyncio.sleep(1.1)
                ok = _signed(RSA_KEY, "RS256", "r1")
                assert (await c.get("/notes/a", headers=bearer(ok))).status_code == 404
                assert state["fetches"] == 2
                # the reason is in the log, for the operator, with the URL
                assert any(jwks_url in rec.getMessage() for rec in caplog.records)

    run(main())


def test_an_unreadable_jwks_file_is_a_503_without_its_path(run: Run, tmp_path: Any) -> None:
    missing = tmp_path / "secret-dir" / "jwks.json"
    auth = JWTAuth(jwks=str(missing), issuer=ISSUER, audience=AUDIENCE)

    async def main() -> None:
        async with serving(_stack(auth).asgi(engine="memory")) as url, \
                httpx.AsyncClient(base_url=url) as c:
            for _ in range(5):
                r = await c.get("/notes/a",
                                headers=bearer(_signed(RSA_KEY, "RS256", "r1")))
                assert r.status_code == 503 and "secret-dir" not in r.text
            assert auth.jwks_fetches == 1

    run(main())
