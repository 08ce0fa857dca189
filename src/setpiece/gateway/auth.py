"""OAuth2 bearer tokens: JWTs checked at the gateway, from day one.

::

    auth = JWTAuth(secret="dev-secret", issuer="me", audience="app")          # HS256, development
    auth = JWTAuth(jwks="https://idp.example/.well-known/jwks.json",         # RS256 / ES256
                   issuer="https://idp.example/", audience="app")

A token must be signed with an accepted algorithm by a key of the matching kind: HMAC algorithms
only ever use ``secret``, RSA and EC algorithms only ever use JWKS keys of that key type (and of
that ``alg``, when the JWK names one). So ``alg: none`` and algorithm confusion (an HS256 token
"signed" with the RSA public key) are refused. ``exp`` is required; ``exp``, ``nbf``, ``iat``,
``iss`` and ``aud`` are checked with ``leeway`` seconds of clock skew.

JWKS keys (a dict, a file path or an URL) are cached for ``jwks_cache_ttl`` seconds and fetched
again when a token names an unknown ``kid`` — at most once per ``jwks_min_refresh`` seconds, the
first fetch included, so a stream of forged key ids cannot hammer the identity provider, even one
that is down.

Failures are :class:`AuthError`: 401 with ``WWW-Authenticate: Bearer error="invalid_token",
error_description="..."`` (RFC 6750), 403 ``insufficient_scope`` naming the missing scopes, or
503 with ``Retry-After`` when the signing keys cannot be loaded. The description is fixed text
chosen by the gateway, never text from the token or from the identity provider (what went wrong
in a fetch, and the JWKS URL, go to the log).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from setpiece.errors import AuthError, ConfigError

__all__ = ["AuthError", "Identity", "JWTAuth", "mint_token"]

_HMAC = frozenset({"HS256", "HS384", "HS512"})
_KEY_TYPES = {
    "RS256": "RSA", "RS384": "RSA", "RS512": "RSA",
    "PS256": "RSA", "PS384": "RSA", "PS512": "RSA",
    "ES256": "EC", "ES384": "EC", "ES512": "EC", "ES256K": "EC",
    "EdDSA": "OKP",
}
_CACHE_LIMIT = 10_000
_CACHE_SECONDS = 60.0
_MIN_SECRET = 32  # bytes (RFC 7518 §3.2, for HS256)

log = logging.getLogger("setpiece.gateway.auth")


@contextlib.contextmanager
def _quiet_short_keys(short: bool) -> Iterator[None]:
    """PyJWT warns on every use of a short HMAC secret; we say it once, when it is configured."""
    if not short:
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", _jwt().InsecureKeyLengthWarning)
        yield


def _short(secret: Any) -> bool:
    return isinstance(secret, str | bytes) and len(
        secret.encode() if isinstance(secret, str) else secret
    ) < _MIN_SECRET


def _jwt() -> Any:
    try:
        import jwt
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise ConfigError("JWT auth needs PyJWT: pip install 'setpiece[http]'") from None
    return jwt


@dataclass(frozen=True, slots=True)
class Identity:
    """Who made a request: the token's subject, scopes and tenant (None: anonymous)."""

    subject: str | None = None
    scopes: frozenset[str] = frozenset()
    tenant: str | None = None
    claims: Mapping[str, Any] = field(default_factory=dict)
    token: str | None = field(default=None, repr=False)

    def has(self, scopes: Iterable[str]) -> bool:
        return all(s in self.scopes for s in scopes)


ANONYMOUS = Identity()


class JWTAuth:
    """Validates OAuth2 bearer JWTs. See the module docstring."""

    def __init__(
        self,
        *,
        secret: str | bytes | None = None,
        jwks: Mapping[str, Any] | str | Path | None = None,
        issuer: str | None = None,
        audience: str | Iterable[str] | None = None,
        algorithms: Iterable[str] | None = None,
        leeway: float = 30.0,
        scope_claim: str = "scope",
        tenant_claim: str = "tenant",
        require_tenant: bool = False,
        jwks_cache_ttl: float = 300.0,
        jwks_min_refresh: float = 30.0,
        jwks_timeout: float = 5.0,
        realm: str = "setpiece",
    ) -> None:
        if secret is None and jwks is None:
            raise ConfigError("JWTAuth: give a secret (HS256) or a jwks (dict, file or URL)")
        if isinstance(secret, str | bytes) and not secret:
            raise ConfigError("JWTAuth: the secret is empty")
        if algorithms is None:
            algs = (["HS256"] if secret is not None else []) + (
                ["RS256", "ES256"] if jwks is not None else []
            )
        else:
            algs = list(algorithms)
        for alg in algs:
            if alg.lower() == "none":
                raise ConfigError("JWTAuth: algorithm 'none' is never accepted")
            if alg in _HMAC:
                if secret is None:
                    raise ConfigError(f"JWTAuth: {alg} needs a secret")
            elif alg in _KEY_TYPES:
                if jwks is None:
                    raise ConfigError(f"JWTAuth: {alg} needs a jwks (dict, file or URL)")
            else:
                raise ConfigError(f"JWTAuth: unknown algorithm {alg!r}")
        if not algs:
            raise ConfigError("JWTAuth: no algorithms")
        _jwt()  # fail now, with the install hint, if PyJWT is missing
        self._short_secret = _short(secret)
        if self._short_secret:
            log.warning("JWTAuth: the secret is shorter than %d bytes: for development only",
                        _MIN_SECRET)
        self.secret = secret
        self.issuer = issuer
        self.audience: list[str] | None = (
            None if audience is None else [audience] if isinstance(audience, str)
            else list(audience)
        )
        self.algorithms = tuple(algs)
        self.leeway = float(leeway)
        self.scope_claim = scope_claim
        self.tenant_claim = tenant_claim
        self.require_tenant = require_tenant
        self.realm = realm
        self._jwks_source = jwks
        self._jwks_cache_ttl = jwks_cache_ttl
        self._jwks_min_refresh = jwks_min_refresh
        self._jwks_timeout = jwks_timeout
        self._keys: dict[str | None, list[Any]] | None = None
        self._keys_loaded = -1e18
        self._keys_attempted = -1e18
        self._keys_lock: asyncio.Lock | None = None
        self._cache: dict[str, tuple[Identity, float, float]] = {}
        self.jwks_fetches = 0

    def __repr__(self) -> str:
        return (f"JWTAuth(algorithms={list(self.algorithms)}, issuer={self.issuer!r}, "
                f"audience={self.audience!r})")

    # -- the request path -------------------------------------------------------------------

    async def authenticate(self, authorization: str | None) -> Identity:
        """The identity an ``Authorization`` header proves; raises AuthError (401/503)."""
        if not authorization:
            raise AuthError(401, "a bearer token is required", error=None)
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer":
            raise AuthError(401, "a bearer token is required", error=None)
        token = token.strip()
        if not token or " " in token:
            raise AuthError(401, "malformed bearer token")
        now = time.time()
        cached = self._cache.get(token)
        if cached is not None:
            identity, not_before, valid_until = cached
            if not_before <= now < valid_until:
                return identity
            del self._cache[token]
        identity, not_before, expires = await self._verify(token, now)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[token] = (identity, not_before, min(expires, now + _CACHE_SECONDS))
        return identity

    @staticmethod
    def authorize(identity: Identity, scopes: Iterable[str]) -> None:
        """Raise a 403 ``insufficient_scope`` unless the identity holds every scope."""
        missing = [s for s in scopes if s not in identity.scopes]
        if missing:
            raise AuthError(
                403, f"missing scope {' '.join(missing)}", error="insufficient_scope",
                scope=" ".join(missing),
            )

    async def _verify(self, token: str, now: float) -> tuple[Identity, float, float]:
        jwt = _jwt()
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError(401, "malformed token") from None
        alg = header.get("alg")
        if not isinstance(alg, str):
            raise AuthError(401, "the alg header must be a string")
        if alg.lower() == "none":
            raise AuthError(401, "unsigned tokens (alg none) are not accepted")
        if alg not in self.algorithms:
            if alg in _HMAC or alg in _KEY_TYPES:  # a name from our own list: safe to show
                raise AuthError(401, f"algorithm {alg} is not accepted")
            raise AuthError(401, "the token's algorithm is not accepted")
        key: Any
        if alg in _HMAC:
            key = self.secret
        else:
            key = await self._key_for(header.get("kid"), alg)
        options: dict[str, Any] = {
            "require": ["exp"],
            "verify_aud": self.audience is not None,
            "verify_iss": self.issuer is not None,
        }
        try:
            with _quiet_short_keys(self._short_secret and alg in _HMAC):
                claims: dict[str, Any] = jwt.decode(
                    token, key, algorithms=[alg], audience=self.audience, issuer=self.issuer,
                    leeway=self.leeway, options=options,
                )
        except jwt.ExpiredSignatureError:
            raise AuthError(401, "the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthError(401, "the token is not valid yet (nbf or iat in the future)") from None
        except jwt.InvalidAudienceError:
            raise AuthError(401, "the token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise AuthError(401, "the token is from another issuer") from None
        except jwt.MissingRequiredClaimError:
            raise AuthError(401, "the token lacks the exp claim") from None  # the one required
        except jwt.InvalidSignatureError:
            raise AuthError(401, "bad signature") from None
        except (jwt.InvalidKeyError, jwt.InvalidAlgorithmError):
            raise AuthError(401, f"the key cannot verify {alg}") from None
        except jwt.PyJWTError as exc:
            log.debug("token refused: %s", exc)
            raise AuthError(401, f"invalid token ({type(exc).__name__})") from None
        return self._identity(claims, token), self._not_before(claims), self._expires(claims)

    def _not_before(self, claims: Mapping[str, Any]) -> float:
        nbf = claims.get("nbf")
        return float(nbf) - self.leeway if isinstance(nbf, int | float) else -1e18

    def _expires(self, claims: Mapping[str, Any]) -> float:
        return float(claims["exp"]) + self.leeway

    def _identity(self, claims: Mapping[str, Any], token: str) -> Identity:
        raw = claims.get(self.scope_claim)
        if raw is None:
            raw = claims.get("scp")  # Azure AD and others: a list
        scopes: frozenset[str]
        if isinstance(raw, str):
            scopes = frozenset(raw.split())
        elif isinstance(raw, list) and all(isinstance(s, str) for s in raw):
            scopes = frozenset(raw)
        elif raw is None:
            scopes = frozenset()
        else:
            raise AuthError(401, f"the {self.scope_claim} claim must be a string or a list")
        tenant = claims.get(self.tenant_claim)
        if tenant is not None and (not isinstance(tenant, str) or not tenant):
            raise AuthError(401, f"the {self.tenant_claim} claim must be a non-empty string")
        if tenant is None and self.require_tenant:
            raise AuthError(401, f"the token lacks the {self.tenant_claim} claim")
        subject = claims.get("sub")
        return Identity(
            subject=subject if isinstance(subject, str) else None,
            scopes=scopes, tenant=tenant, claims=claims, token=token,
        )

    # -- keys -------------------------------------------------------------------------------

    async def _key_for(self, kid: Any, alg: str) -> Any:
        if kid is not None and not isinstance(kid, str):
            raise AuthError(401, "the kid header must be a string")
        keys = await self._jwks(force=False)
        if kid not in keys:
            # an unknown kid: the provider may have rotated its keys (refresh, rate-limited)
            keys = await self._jwks(force=True)
        candidates = keys.get(kid, [])
        if kid is None and not candidates:
            candidates = [k for found in keys.values() for k in found]
        wanted = _KEY_TYPES[alg]
        fitting = [k for k in candidates
                   if k.key_type == wanted and (k.algorithm_name in (None, alg))]
        if not fitting:
            if not candidates:
                raise AuthError(401, "the token's kid names no known signing key")
            raise AuthError(401, f"the signing key the token's kid names cannot verify {alg}")
        if len(fitting) > 1 and kid is None:
            raise AuthError(401, "the token names no kid and several keys fit")
        return fitting[0].key

    async def _jwks(self, *, force: bool) -> dict[str | None, list[Any]]:
        """The keys: cached, else fetched — at most once per ``jwks_min_refresh`` seconds,
        whatever the reason (expired cache, unknown kid, no keys yet) and whatever the outcome
        of the last fetch. With no keys at all, a 503."""
        now = time.monotonic()
        fresh = self._keys is not None and now - self._keys_loaded < self._jwks_cache_ttl
        if self._keys is not None and (fresh and not force):
            return self._keys
        if now - self._keys_attempted < self._jwks_min_refresh:
            return self._loaded_keys()
        if self._keys_lock is None:
            self._keys_lock = asyncio.Lock()
        async with self._keys_lock:
            if self._keys_attempted > now:  # another request fetched while we waited
                return self._loaded_keys()
            self._keys_attempted = time.monotonic()
            try:
                document = await self._load_jwks()
                self._keys = self._parse_jwks(document)
                self._keys_loaded = time.monotonic()
            except _KeysUnavailable as exc:
                log.warning("JWTAuth: cannot load the signing keys from %s (%s)%s",
                            self._jwks_source_name(), exc,
                            "" if self._keys is None else "; keeping the keys loaded before")
            return self._loaded_keys()

    def _loaded_keys(self) -> dict[str | None, list[Any]]:
        if self._keys is None:
            wait = self._jwks_min_refresh - (time.monotonic() - self._keys_attempted)
            raise AuthError(503, "the signing keys are unavailable; try again later",
                            error=None, retry_after=max(1.0, wait))
        return self._keys

    def _jwks_source_name(self) -> str:
        source = self._jwks_source
        return "the jwks dict" if isinstance(source, Mapping) else str(source)

    async def _load_jwks(self) -> Mapping[str, Any]:
        source = self._jwks_source
        self.jwks_fetches += 1
        if isinstance(source, Mapping):
            return source
        text = str(source)
        if text.startswith(("http://", "https://")):
            try:
                import httpx
            except ImportError:  # pragma: no cover - depends on the installed extras
                raise ConfigError("a JWKS URL needs httpx: pip install 'setpiece[http]'") from None
            try:
                async with httpx.AsyncClient(timeout=self._jwks_timeout) as client:
                    response = await client.get(text)
                    if response.status_code != 200:
                        raise _KeysUnavailable(f"HTTP {response.status_code}")
                    document: Mapping[str, Any] = response.json()
                    return document
            except httpx.HTTPError as exc:
                raise _KeysUnavailable(f"{type(exc).__name__}: {exc}") from None
            except ValueError as exc:
                raise _KeysUnavailable(f"not JSON: {exc}") from None
        import msgspec

        try:
            raw = await asyncio.to_thread(Path(text).read_bytes)
            loaded: Mapping[str, Any] = msgspec.json.decode(raw)
            return loaded
        except (OSError, msgspec.DecodeError) as exc:
            raise _KeysUnavailable(str(exc)) from None

    @staticmethod
    def _parse_jwks(document: Mapping[str, Any]) -> dict[str | None, list[Any]]:
        jwt = _jwt()
        out: dict[str | None, list[Any]] = {}
        entries = document.get("keys") if isinstance(document, Mapping) else None
        if not isinstance(entries, list):
            raise _KeysUnavailable("the JWKS has no 'keys' list")
        for entry in entries:
            if not isinstance(entry, Mapping) or entry.get("use", "sig") != "sig":
                continue
            try:
                key = jwt.PyJWK(dict(entry))
            except jwt.PyJWTError:
                continue  # a key type this PyJWT cannot use: skip it, as RFC 7517 §5 says
            out.setdefault(entry.get("kid"), []).append(key)
        return out


class _KeysUnavailable(Exception):
    """The JWKS could not be loaded (logged with the source; callers get a fixed 503)."""


def mint_token(
    secret: Any,
    *,
    subject: str,
    scopes: Iterable[str] = (),
    tenant: str | None = None,
    issuer: str | None = None,
    audience: str | None = None,
    expires_in: float = 3600,
    not_before: float | None = None,
    algorithm: str = "HS256",
    key_id: str | None = None,
    claims: Mapping[str, Any] | None = None,
) -> str:
    """Mint a signed JWT for development and tests (what ``setpiece token`` prints).

    ``secret`` is the HMAC secret for HS256, or a private key (PEM or a ``cryptography`` key)
    for RS256 / ES256 (``key_id`` becomes the ``kid`` header). ``scopes`` go in the ``scope``
    claim, space-separated; ``not_before`` is seconds from now.
    """
    jwt = _jwt()
    now = int(time.time())
    payload: dict[str, Any] = {"sub": subject, "iat": now, "exp": now + int(expires_in)}
    scope_list = list(scopes)
    if scope_list:
        payload["scope"] = " ".join(scope_list)
    if tenant is not None:
        payload["tenant"] = tenant
    if issuer is not None:
        payload["iss"] = issuer
    if audience is not None:
        payload["aud"] = audience
    if not_before is not None:
        payload["nbf"] = now + int(not_before)
    if claims:
        payload.update(claims)
    headers = {"kid": key_id} if key_id is not None else None
    with _quiet_short_keys(algorithm in _HMAC and _short(secret)):
        token: str = jwt.encode(payload, secret, algorithm=algorithm, headers=headers)
    return token
