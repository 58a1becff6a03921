"""Access tokens: the gateway's own (issued at `POST /auth/token`) and trusted issuers' JWTs.

A verified token becomes a `Principal`: the client named by the token must be in the registry,
its scopes are cut down to what the registry allows that client today, and its organisation,
channels and labels come from the registry (a token cannot widen them). Verified tokens are
remembered until they expire, so a partner's steady stream of requests costs one signature check.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict

import jwt

from gateway.security.clients import Client, Registry
from gateway.security.keys import ALGORITHM, SigningKey
from gateway.security.principal import Principal, parse_labels
from gateway.security.scopes import narrow, parse_scopes

# Asymmetric algorithms only: never `none`, never HMAC with a public key as the secret.
ASYMMETRIC = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"]
LEEWAY_S = 30
ASSERTION_MAX_LIFETIME_S = 300  # SMART Backend Services: exp no more than five minutes ahead


class AuthError(Exception):
    """A token or client assertion that cannot be accepted; `error` is the OAuth error code."""

    def __init__(self, description: str, error: str = "invalid_token") -> None:
        super().__init__(description)
        self.description = description
        self.error = error


def _unverified(token: str) -> tuple[dict, dict]:
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise AuthError("The token is not a JWT") from None
    if header.get("alg") not in ASYMMETRIC:
        raise AuthError(f"Signing algorithm {header.get('alg')!r} is not accepted")
    return header, claims


async def _verify_with(token: str, header: dict, keys_of, **checks) -> dict:
    """Try the key named by `kid` (else every key); re-fetch once for an unknown kid."""
    kid = header.get("kid")
    for refresh in (False, True):
        keys = await keys_of(refresh)
        candidates = [k for k in keys if kid is None or k.key_id == kid] or ([] if kid else keys)
        last: Exception | None = None
        for k in candidates:
            try:
                return jwt.decode(token, k.key, algorithms=[header["alg"]], leeway=LEEWAY_S, **checks)
            except jwt.InvalidSignatureError as exc:
                last = exc
            except jwt.ExpiredSignatureError:
                raise AuthError("The token has expired") from None
            except jwt.InvalidAudienceError:
                raise AuthError("The token is not meant for this server (aud)") from None
            except jwt.InvalidIssuerError:
                raise AuthError("The token's issuer is not the expected one (iss)") from None
            except jwt.MissingRequiredClaimError as exc:
                raise AuthError(f"The token lacks the {exc.claim!r} claim") from None
            except jwt.PyJWTError as exc:
                raise AuthError(f"The token cannot be accepted: {exc}") from None
        if candidates:
            raise AuthError("The token's signature does not verify") from last
    raise AuthError("No key of the issuer matches the token (kid)")


class Tokens:
    def __init__(self, registry: Registry, key: SigningKey, issuer: str, audience: str,
                 token_endpoint: str, ttl_s: int) -> None:
        self.registry = registry
        self.key = key
        self.issuer = issuer
        self.audience = audience
        self.token_endpoint = token_endpoint
        self.ttl_s = ttl_s
        self._cache: OrderedDict[str, tuple[Principal, int]] = OrderedDict()

    # -- issuing -------------------------------------------------------------------------------
    def issue(self, client: Client, scopes) -> tuple[str, int]:
        now = int(time.time())
        claims = {
            "iss": self.issuer, "sub": client.client_id, "client_id": client.client_id, "aud": self.audience,
            "iat": now, "nbf": now, "exp": now + self.ttl_s, "jti": uuid.uuid4().hex,
            "scope": " ".join(str(s) for s in scopes), "organization": client.organization,
            "labels": sorted(f"{s}|{c}" for s, c in client.labels),
        }
        token = jwt.encode(claims, self.key.private_key, algorithm=ALGORITHM, headers={"kid": self.key.kid})
        return token, self.ttl_s

    async def client_from_assertion(self, assertion: str) -> tuple[Client, dict]:
        """Check a private_key_jwt client assertion (SMART Backend Services); jti replay is the caller's."""
        header, unverified = _unverified(assertion)
        cid = unverified.get("iss")
        client = self.registry.client(cid) if isinstance(cid, str) else None
        if client is None:
            raise AuthError(f"Unknown client {cid!r}", "invalid_client")
        if not client.keys.configured():
            raise AuthError(f"Client {cid!r} has no registered public key", "invalid_client")
        try:
            claims = await _verify_with(
                assertion, header, client.keys.keys, audience=self.token_endpoint, issuer=cid,
                options={"require": ["iss", "sub", "aud", "exp", "jti"]},
            )
        except AuthError as exc:
            raise AuthError(f"Client assertion refused: {exc.description}", "invalid_client") from None
        if claims.get("sub") != cid:
            raise AuthError("Client assertion refused: sub must equal iss (the client_id)", "invalid_client")
        if claims["exp"] > time.time() + ASSERTION_MAX_LIFETIME_S + LEEWAY_S:
            raise AuthError("Client assertion refused: exp is more than five minutes ahead", "invalid_client")
        if not isinstance(claims.get("jti"), str) or not claims["jti"]:
            raise AuthError("Client assertion refused: jti is missing", "invalid_client")
        return client, claims

    # -- verifying -----------------------------------------------------------------------------
    async def verify(self, token: str) -> Principal:
        now = time.time()
        hit = self._cache.get(token)
        if hit is not None:
            principal, generation = hit
            if principal.expires_at > now - LEEWAY_S and generation == self.registry.generation:
                self.registry.refresh()
                if self.registry.generation == generation:
                    return principal
            self._cache.pop(token, None)
        principal = await self._verify(token)
        self._cache[token] = (principal, self.registry.generation)
        if len(self._cache) > 20_000:
            self._cache.popitem(last=False)
        return principal

    async def _verify(self, token: str) -> Principal:
        header, unverified = _unverified(token)
        iss = unverified.get("iss")
        require = {"require": ["iss", "aud", "exp"]}
        if iss == self.issuer:
            async def own(refresh: bool):
                return [jwt.PyJWK.from_dict(self.key.public_jwk)]
            claims = await _verify_with(token, header, own, audience=[self.audience, self.audience + "/"],
                                        issuer=self.issuer, options=require)
        else:
            trusted = self.registry.issuers.get(iss) if isinstance(iss, str) else None
            if trusted is None:
                raise AuthError(f"Tokens from issuer {iss!r} are not accepted")
            aud = trusted.audience or self.audience
            claims = await _verify_with(token, header, trusted.keys.keys, audience=[aud, aud + "/"],
                                        issuer=iss, options=require)
        cid = claims.get("client_id") or claims.get("azp") or claims.get("sub")
        client = self.registry.client(cid) if isinstance(cid, str) else None
        if client is None:
            raise AuthError(f"The token's client {cid!r} is not registered (or is disabled)")
        org = claims.get("organization")
        if org and client.organization and org != client.organization:
            raise AuthError("The token's organization is not the registered client's")
        scopes = narrow(parse_scopes(claims.get("scope") or ""), client.scopes)
        labels = client.labels
        if "labels" in claims:
            labels = labels & parse_labels(claims.get("labels") or [])
        return client.principal(scopes, labels, token_id=str(claims.get("jti", "")), expires_at=float(claims["exp"]))
