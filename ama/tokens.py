"""Room tokens: EdDSA-signed JWTs issued by the core and verified offline at edges.

Claims: ``sub`` (user id), ``room``, ``role`` (audience, moderator, host),
``name`` (display name), ``iat`` and ``exp`` (seconds since the epoch), and
``iss`` fixed to ``ama-core``. The key id (``kid``) in the header names the
JWKS key that verifies the token.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm

from ama.room import ROLES

ISSUER = "ama-core"
ALGORITHM = "EdDSA"
DEFAULT_TTL_S = 12 * 3600
# Tolerated difference between the core's clock and an edge's, in seconds.
CLOCK_SKEW_S = 30
# How long after expiry a token can still be exchanged for a new one.
REFRESH_GRACE_S = 30 * 24 * 3600
# How long a rotated-out key stays in the JWKS: a token's lifetime plus the refresh grace.
KEY_RETENTION_S = DEFAULT_TTL_S + REFRESH_GRACE_S


class TokenError(Exception):
    """A token that cannot be honoured; ``code`` is the stable client-facing code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Claims:
    user: str
    room: str
    role: str
    name: str
    expires_at: int


@dataclass
class SigningKey:
    key_id: str
    key: Ed25519PrivateKey
    created_at: int
    # When a newer key replaced this one for signing; None while it signs.
    retired_at: int | None = None


class Signer:
    """Holds the core's signing keys (in the data directory) and issues tokens with the newest.

    Rotation adds a key; older keys stay in the JWKS for ``KEY_RETENTION_S``,
    so tokens they signed verify until they expire and can still be
    refreshed. Edges fetch the JWKS again when they meet an unknown key id.
    """

    def __init__(self, keys: list[SigningKey], path: Path | None = None):
        self.keys = sorted(keys, key=lambda entry: entry.created_at)
        self.path = path

    @property
    def key(self) -> Ed25519PrivateKey:
        return self.keys[-1].key

    @property
    def key_id(self) -> str:
        return self.keys[-1].key_id

    @classmethod
    def load_or_create(cls, path: Path) -> "Signer":
        if not path.exists():
            signer = cls([_new_key()], path)
            signer._save(create=True)
            return signer
        stored = json.loads(path.read_text())
        entries = stored["keys"] if "keys" in stored else [{**stored, "created_at": 0}]
        keys = [
            SigningKey(
                entry["kid"], serialization.load_pem_private_key(entry["pem"].encode(), password=None),
                int(entry["created_at"]), entry.get("retired_at"),
            )
            for entry in entries
        ]
        return cls(keys, path)

    def rotate(self, now: float | None = None) -> str:
        """Add a new signing key, retire the current one, save, and return the new key id.

        A retired key stays for ``KEY_RETENTION_S`` after it stopped signing,
        so every token it signed can still be verified and refreshed.
        """
        now = time.time() if now is None else now
        self.keys[-1].retired_at = int(now)
        fresh = _new_key(now)
        kept = [entry for entry in self.keys if entry.retired_at is None or now - entry.retired_at < KEY_RETENTION_S]
        self.keys = kept + [fresh]
        self._save()
        return fresh.key_id

    def _save(self, create: bool = False) -> None:
        entries = [
            {
                "kid": entry.key_id,
                "created_at": entry.created_at,
                "retired_at": entry.retired_at,
                "pem": entry.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode(),
            }
            for entry in self.keys
        ]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        descriptor = os.open(temporary, flags, 0o600)
        with os.fdopen(descriptor, "w") as file:
            json.dump({"keys": entries}, file)
        os.replace(temporary, self.path)

    def issue(self, user: str, room: str, role: str, name: str, now: float | None = None, ttl_s: int = DEFAULT_TTL_S) -> str:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        issued = int(time.time() if now is None else now)
        claims = {"sub": user, "room": room, "role": role, "name": name, "iat": issued, "exp": issued + ttl_s, "iss": ISSUER}
        return jwt.encode(claims, self.key, algorithm=ALGORITHM, headers={"kid": self.key_id})

    def jwks(self) -> dict:
        keys = []
        for entry in self.keys:
            jwk = json.loads(OKPAlgorithm.to_jwk(entry.key.public_key()))
            jwk.update({"kid": entry.key_id, "use": "sig", "alg": ALGORITHM})
            keys.append(jwk)
        return {"keys": keys}


def _new_key(now: float | None = None) -> SigningKey:
    return SigningKey(secrets.token_hex(8), Ed25519PrivateKey.generate(), int(time.time() if now is None else now))


class Verifier:
    """Verifies tokens against a JWKS document; unknown key ids ask for a refresh."""

    def __init__(self, jwks: dict | None = None):
        self.keys: dict[str, object] = {}
        if jwks:
            self.load(jwks)

    def load(self, jwks: dict) -> None:
        keys = {}
        for entry in jwk_set(jwks):
            keys[entry.key_id] = entry.key
        self.keys = keys

    def key_id_of(self, token: str) -> str:
        try:
            return jwt.get_unverified_header(token).get("kid", "")
        except jwt.PyJWTError:
            raise TokenError("invalid_token", "The token is malformed; join the room again to get a new one.") from None

    def knows(self, token: str) -> bool:
        return self.key_id_of(token) in self.keys

    def verify(self, token: str, expired_grace_s: int = 0) -> Claims:
        """Verify a token; one that expired less than ``expired_grace_s`` ago still passes (for refreshes)."""
        key = self.keys.get(self.key_id_of(token))
        if key is None:
            raise TokenError("invalid_token", "The token was signed with an unknown key; join the room again.")
        try:
            claims = jwt.decode(
                token, key, algorithms=[ALGORITHM], issuer=ISSUER, leeway=CLOCK_SKEW_S + expired_grace_s,
                options={"require": ["exp", "iat", "sub", "iss"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("token_expired", "The token has expired; refresh it or join the room again.") from None
        except jwt.PyJWTError as exc:
            raise TokenError("invalid_token", f"The token is invalid ({exc}); join the room again.") from None
        if claims.get("role") not in ROLES or not isinstance(claims.get("room"), str):
            raise TokenError("invalid_token", "The token lacks a valid room or role; join the room again.")
        return Claims(claims["sub"], claims["room"], claims["role"], str(claims.get("name", "")), int(claims["exp"]))


def jwk_set(jwks: dict) -> list[jwt.PyJWK]:
    return list(jwt.PyJWKSet.from_dict(jwks).keys)
