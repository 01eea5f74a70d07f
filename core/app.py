"""The core's HTTP API: rooms, joining, keys and exports."""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import time
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ama.addresses import parse_address
from ama.intents import MAX_NAME_LENGTH, MAX_TITLE_LENGTH, FrameError, normalize_text
from ama.ratelimit import TokenBucket
from ama.replication import Replica
from ama.routing import Routing
from ama.room import Room, digest
from ama.tokens import REFRESH_GRACE_S, Signer, TokenError, Verifier
from core.service import CoreReplicas, now_ms
from core.store import DuplicateRoomError, NewUpdate, RoomRecord

log = logging.getLogger("ama.core.http")

# Join codes: 8 characters from an alphabet without look-alikes (no 0/O, 1/I/L),
# 30**8 (about 6.6e11) codes, shown as XXXX-XXXX.
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ2345679"
CODE_LENGTH = 8
ROOM_ID_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"
ROOM_ID_LENGTH = 12
MAX_BODY_BYTES = 16 * 1024
# Joins per minute per client address, and the burst above that rate.
JOIN_RATE_PER_MIN = 20
JOIN_BURST = 20
MAX_TRACKED_ADDRESSES = 100_000


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_response(status: int, code: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def new_code() -> str:
    code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    return f"{code[:4]}-{code[4:]}"


def normalize_code(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch.isalnum())


@dataclass
class CoreState:
    signer: Signer
    verifier: Verifier
    admin_token: str
    replicas: CoreReplicas
    routing: Routing
    join_buckets: dict = field(default_factory=dict)

    @property
    def store(self):
        return self.replicas.store


def build_app(state: CoreState) -> Starlette:
    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "service": "core", "rooms": len(state.replicas.replicas)})

    async def jwks(request: Request) -> JSONResponse:
        return JSONResponse(state.signer.jwks(), headers={"Cache-Control": "max-age=60"})

    async def create_room(request: Request) -> JSONResponse:
        host_user = _authorize_creator(request, state)
        body = await _json_body(request)
        title = _text_field(body, "title", MAX_TITLE_LENGTH)
        room_id = "".join(secrets.choice(ROOM_ID_ALPHABET) for _ in range(ROOM_ID_LENGTH))
        code = new_code()
        replica = Replica(Room(room_id))
        created = now_ms()
        genesis = replica.room.create(title, created, host_user)
        message = replica.publishable(genesis)
        record = RoomRecord(room_id, title, normalize_code(code), host_user, created)
        try:
            await state.store.create_room(record, NewUpdate(room_id, message.producer, message.seq, genesis, "core"), created)
        except DuplicateRoomError:
            raise ApiError(503, "try_again", "A room id or code collided; send the request again.") from None
        host_token = state.signer.issue(host_user, room_id, "host", "Host")
        log.info("room=%s created by user=%s", room_id, host_user)
        return JSONResponse({"room": room_id, "code": code, "host_token": host_token, "title": title, "user": host_user}, status_code=201)

    async def room_info(request: Request) -> JSONResponse:
        record = await _room_or_404(request, state)
        return JSONResponse({"room": record.room, "title": await _title(state, record)})

    async def join(request: Request) -> JSONResponse:
        record = await _room_or_404(request, state)
        body = await _json_body(request)
        _limit_joins(request, state)
        code = body.get("code")
        if not isinstance(code, str) or not code.strip():
            raise ApiError(400, "missing_code", "Field 'code' is missing; enter the room's join code.")
        role = _role_of_code(normalize_code(code), record)
        name = _text_field(body, "name", MAX_NAME_LENGTH)
        returning = _returning_user(body, state, record.room)
        if returning is not None and (await state.replicas.get(record.room)).room.is_banned(returning):
            raise ApiError(403, "banned", "A moderator has banned you from this room.")
        user = returning or "u_" + secrets.token_hex(8)
        token = state.signer.issue(user, record.room, role, name)
        located = state.routing.locate_request(request)
        log.info("room=%s joined by user=%s role=%s client_ip=%s reason=%s", record.room, user, role, located["client_ip"], located["reason"])
        routing = {key: located[key] for key in ("client_ip", "location", "reason", "regions")}
        return JSONResponse({"token": token, "edges": located["edges"], "room": record.room, "user": user, "title": await _title(state, record), "role": role, "routing": routing})

    async def refresh(request: Request) -> JSONResponse:
        record = await _room_or_404(request, state)
        body = await _json_body(request)
        token = body.get("token")
        if not isinstance(token, str) or not token:
            raise ApiError(400, "missing_token", "Field 'token' is missing; send the token to refresh.")
        try:
            claims = state.verifier.verify(token, expired_grace_s=REFRESH_GRACE_S)
        except TokenError as exc:
            raise ApiError(401, exc.code, "The token cannot be refreshed; join the room again.") from None
        if claims.room != record.room:
            raise ApiError(403, "wrong_room", "The token belongs to another room; join this room with its code.")
        fresh = state.signer.issue(claims.user, claims.room, claims.role, claims.name)
        return JSONResponse({"token": fresh, "room": record.room, "user": claims.user, "role": claims.role})

    async def locate(request: Request) -> JSONResponse:
        return JSONResponse(state.routing.locate_request(request))

    async def export(request: Request) -> JSONResponse:
        record = await _room_or_404(request, state)
        _authorize_host(request, state, record.room)
        replica = await state.replicas.get(record.room)
        replica.room.check_vote_keys()
        body = replica.room.export()
        body["exported_at"] = now_ms()
        return JSONResponse(body)

    async def room_digest(request: Request) -> JSONResponse:
        record = await _room_or_404(request, state)
        replica = await state.replicas.get(record.room)
        return JSONResponse(digest(replica.room))

    async def moderator_code(request: Request) -> JSONResponse:
        record = await _room_or_404(request, state)
        _authorize_host(request, state, record.room)
        code = new_code()
        await state.store.set_moderator_code(record.room, normalize_code(code))
        log.info("room=%s moderator code replaced", record.room)
        return JSONResponse({"room": record.room, "code": code}, status_code=201)

    async def rotate_key(request: Request) -> JSONResponse:
        token = _bearer(request)
        if token is None:
            raise ApiError(401, "missing_token", "Send 'Authorization: Bearer TOKEN' with the admin token.")
        if not hmac.compare_digest(token.encode(), state.admin_token.encode()):
            raise ApiError(403, "forbidden", "Only the admin token can rotate the signing key.")
        key_id = state.signer.rotate()
        state.verifier.load(state.signer.jwks())
        log.info("signing key rotated kid=%s keys=%d", key_id, len(state.signer.keys))
        return JSONResponse({"kid": key_id, "keys": [key["kid"] for key in state.signer.jwks()["keys"]]})

    async def host_token(request: Request) -> JSONResponse:
        record = await _room_or_404(request, state)
        token = _bearer(request)
        if token is None:
            raise ApiError(401, "missing_token", "Send 'Authorization: Bearer TOKEN' with the admin token.")
        if not hmac.compare_digest(token.encode(), state.admin_token.encode()):
            raise ApiError(403, "forbidden", "Only the admin token can issue host tokens for an existing room.")
        return JSONResponse({"token": state.signer.issue(record.host_user, record.room, "host", "Host"), "room": record.room})

    async def handle_api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    routes = [
        Route("/healthz", healthz),
        Route("/.well-known/jwks.json", jwks),
        Route("/v1/locate", locate),
        Route("/v1/rooms", create_room, methods=["POST"]),
        Route("/v1/rooms/{room}", room_info),
        Route("/v1/rooms/{room}/join", join, methods=["POST"]),
        Route("/v1/rooms/{room}/refresh", refresh, methods=["POST"]),
        Route("/v1/rooms/{room}/export", export),
        Route("/v1/rooms/{room}/digest", room_digest),
        Route("/v1/rooms/{room}/host-token", host_token, methods=["POST"]),
        Route("/v1/rooms/{room}/moderator-code", moderator_code, methods=["POST"]),
        Route("/v1/admin/rotate-key", rotate_key, methods=["POST"]),
    ]
    # Browsers load the UI from an edge's origin and call the core from it;
    # requests carry tokens in headers, never cookies, so any origin may call.
    middleware = [Middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["GET", "POST"], allow_headers=["Authorization", "Content-Type"])]
    return Starlette(routes=routes, middleware=middleware, exception_handlers={ApiError: handle_api_error})


async def _title(state: CoreState, record: RoomRecord) -> str:
    """Return the room's current title: the host may have changed it since the room was created."""
    replica = await state.replicas.get(record.room)
    return replica.room.room_view()["title"] or record.title


def _role_of_code(code: str, record: RoomRecord) -> str:
    """Return the role a join code grants: audience for the room's code, moderator for its moderator code."""
    if hmac.compare_digest(code.encode(), record.code.encode()):
        return "audience"
    if record.moderator_code and hmac.compare_digest(code.encode(), record.moderator_code.encode()):
        return "moderator"
    raise ApiError(403, "wrong_code", "The join code does not match this room; check the code and try again.")


def _limit_joins(request: Request, state: CoreState) -> None:
    """Allow each client address ``JOIN_RATE_PER_MIN`` joins a minute (loopback is not limited)."""
    address = state.routing.client_ip(request.client.host if request.client else None, request.headers.getlist("x-forwarded-for")) or "unknown"
    parsed = parse_address(address)
    if parsed is not None and parsed.is_loopback:
        return
    bucket = state.join_buckets.get(address)
    if bucket is None:
        if len(state.join_buckets) > MAX_TRACKED_ADDRESSES:
            state.join_buckets.clear()
        bucket = state.join_buckets[address] = TokenBucket(JOIN_RATE_PER_MIN / 60, JOIN_BURST)
    if not bucket.take(time.monotonic()):
        wait = max(1, int(bucket.seconds_until_token() + 0.999))
        raise ApiError(429, "too_many_joins", f"Too many joins from your address; wait {wait} s and try again.", {"Retry-After": str(wait)})


def _returning_user(body: dict, state: CoreState, room: str) -> str | None:
    """Return the user id of a previous token for this room, so a rejoin keeps its votes and intents."""
    previous = body.get("previous_token")
    if not isinstance(previous, str) or not previous:
        return None
    try:
        claims = state.verifier.verify(previous, expired_grace_s=REFRESH_GRACE_S)
    except TokenError:
        return None
    return claims.user if claims.room == room and claims.role == "audience" else None


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _authorize_creator(request: Request, state: CoreState) -> str:
    """Return the user id who creates a room: the admin token makes a new host, a host token keeps its user."""
    token = _bearer(request)
    if token is None:
        raise ApiError(401, "missing_token", "Send 'Authorization: Bearer TOKEN' with the admin token or a host token.")
    if hmac.compare_digest(token.encode(), state.admin_token.encode()):
        return "h_" + secrets.token_hex(8)
    claims = _verify(token, state)
    if claims.role != "host":
        raise ApiError(403, "forbidden", "Only the admin token or a host token can create rooms.")
    return claims.user


def _authorize_host(request: Request, state: CoreState, room: str) -> None:
    token = _bearer(request)
    if token is None:
        raise ApiError(401, "missing_token", "Send 'Authorization: Bearer TOKEN' with the room's host token.")
    if hmac.compare_digest(token.encode(), state.admin_token.encode()):
        return
    claims = _verify(token, state)
    if claims.role != "host" or claims.room != room:
        raise ApiError(403, "forbidden", "Only this room's host (or the admin token) may do this.")


def _verify(token: str, state: CoreState):
    try:
        return state.verifier.verify(token)
    except TokenError as exc:
        raise ApiError(401, exc.code, exc.message) from None


async def _room_or_404(request: Request, state: CoreState) -> RoomRecord:
    room = request.path_params["room"]
    record = await state.store.room(room)
    if record is None:
        raise ApiError(404, "unknown_room", f"There is no room {room!r}; check the link.")
    return record


async def _json_body(request: Request) -> dict:
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, "body_too_large", f"Request bodies are limited to {MAX_BODY_BYTES} bytes.")
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise ApiError(400, "invalid_json", "The request body is not valid JSON; send a JSON object.") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "The request body must be a JSON object.")
    return body


def _text_field(body: dict, field: str, max_length: int) -> str:
    value = body.get(field)
    if not isinstance(value, str):
        raise ApiError(400, f"missing_{field}", f"Field {field!r} is missing or not a string.")
    try:
        return normalize_text(value, field, max_length)
    except FrameError as exc:
        raise ApiError(400, exc.code, exc.message) from None
