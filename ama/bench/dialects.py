"""What a bench client says to each kind of server, and how it reads the vote counts back.

Two families:

* JSON (``ama`` and the ``node-ws`` peer), the AMA protocol: a client sends
  ``hello`` with a token and is ready at its ``snapshot``. Votes are
  ``vote`` intents. Watchers read each question's ``up`` count from
  ``snapshot`` and ``patch`` frames.
* Yjs (``pycrdt-websocket`` and ``hocuspocus``): the y-protocols sync
  messages (a message type, then sync step 1, step 2 or update, each a
  lib0 var-uint, then a var-length byte array). Hocuspocus puts the
  document name first, as a var-string, and wants an auth message before
  anything else. A vote is a Yjs update that sets key ``QUESTION/VOTER``
  to 1 in the root map ``votes``. Watchers count how many such keys of each
  question they have received.

NOTE: Yjs watchers find vote keys in the update bytes instead of applying
each update to a document, so they spend less CPU than a real Yjs client
would; the servers do the same work either way.

Every watcher keeps, per question, the monotonic time at which it first
showed a count of 1, 2, ... (``seen[question][n - 1]``).
"""

from __future__ import annotations

import json
import uuid
from array import array

import msgspec

from ama.bench.wsclient import OP_BINARY, OP_TEXT, WsClient


class QuestionCount(msgspec.Struct):
    id: str
    up: int = 0


class ViewFrame(msgspec.Struct):
    type: str
    questions: list[QuestionCount] = []


_decode_view = msgspec.json.Decoder(ViewFrame).decode


class ClientState:
    """Per-socket facts a dialect keeps: readiness and the first time each count was shown."""

    __slots__ = ("ready_at", "seen", "voter", "opened_at")

    def __init__(self):
        self.ready_at: float | None = None
        self.opened_at: float | None = None
        self.seen: dict[str, array] = {}
        self.voter: object = None


def note_count(state: ClientState, question: str, count: int, now: float) -> None:
    seen = state.seen.get(question)
    if seen is None:
        seen = state.seen[question] = array("d")
    while len(seen) < count:
        seen.append(now)


# -- JSON ------------------------------------------------------------------------------


class JsonDialect:
    """The AMA client protocol; the ``node-ws`` peer speaks the same subset."""

    name = "json"
    needs_questions_created = True

    def hello(self, client: WsClient, token: str) -> None:
        client.send_text(json.dumps({"type": "hello", "token": token}))

    def read(self, client: WsClient, opcode: int, payload: bytes, now: float, watch: bool) -> None:
        """Update the client's state from one frame; return nothing."""
        state = client.state
        if opcode != OP_TEXT:
            return
        if state.ready_at is None:
            if payload.startswith(b'{"type":"snapshot"') or b'"type":"snapshot"' in payload[:40]:
                state.ready_at = now
            else:
                return
        if not watch:
            return
        if not (payload.startswith(b'{"type":"patch"') or payload.startswith(b'{"type":"snapshot"')):
            return
        frame = _decode_view(payload)
        for view in frame.questions:
            if view.up:
                note_count(state, view.id, view.up, now)

    def vote_frame(self, client: WsClient, question: str, voter_index: int) -> bytes:
        return json.dumps({"type": "vote", "id": str(uuid.uuid4()), "question": question, "value": 1}).encode()

    def ask_frame(self, question: str, text: str) -> bytes:
        return json.dumps({"type": "ask", "id": question, "text": text}).encode()

    def send(self, client: WsClient, frame: bytes) -> None:
        client.send_text(frame)


# -- Yjs -------------------------------------------------------------------------------

MESSAGE_SYNC = 0
MESSAGE_AWARENESS = 1
MESSAGE_AUTH = 2
MESSAGE_SYNC_REPLY = 4  # Hocuspocus: a sync message that expects no step 1 in return.
SYNC_STEP1 = 0
SYNC_STEP2 = 1
SYNC_UPDATE = 2
AUTH_TOKEN = 0
EMPTY_STATE_VECTOR = b"\x00"
EMPTY_UPDATE = b"\x00\x00"
VOTES_MAP = "votes"


def write_var_uint(number: int) -> bytes:
    """Encode a lib0 var-uint: 7 bits per byte, low bits first, high bit set on all but the last."""
    out = bytearray()
    while number > 0x7F:
        out.append(0x80 | (number & 0x7F))
        number >>= 7
    out.append(number)
    return bytes(out)


def read_var_uint(data: bytes, offset: int) -> tuple[int, int]:
    number = shift = 0
    while True:
        byte = data[offset]
        offset += 1
        number |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return number, offset


def write_var_bytes(data: bytes) -> bytes:
    return write_var_uint(len(data)) + data


def read_var_bytes(data: bytes, offset: int) -> tuple[bytes, int]:
    length, offset = read_var_uint(data, offset)
    return data[offset : offset + length], offset + length


def sync_message(step: int, data: bytes, prefix: bytes = b"") -> bytes:
    return prefix + write_var_uint(MESSAGE_SYNC) + write_var_uint(step) + write_var_bytes(data)


class YjsDialect:
    """The y-websocket protocol, as pycrdt-websocket serves it (room name in the URL path)."""

    name = "yjs"
    needs_questions_created = False

    def __init__(self, questions: list[str] | None = None):
        self.prefix = b""
        self.set_questions(questions or [])

    def set_questions(self, questions: list[str]) -> None:
        # A vote key is "QUESTION/VOTER"; the marker finds it inside an update's bytes.
        self.markers = [(question, (question + "/").encode()) for question in questions]

    def hello(self, client: WsClient, token: str) -> None:
        client.send_binary(sync_message(SYNC_STEP1, EMPTY_STATE_VECTOR, self.prefix))

    def _strip_prefix(self, payload: bytes) -> int:
        return 0

    def read(self, client: WsClient, opcode: int, payload: bytes, now: float, watch: bool) -> None:
        if opcode != OP_BINARY or not payload:
            return
        offset = self._strip_prefix(payload)
        kind, offset = read_var_uint(payload, offset)
        if kind not in (MESSAGE_SYNC, MESSAGE_SYNC_REPLY):
            return
        step, offset = read_var_uint(payload, offset)
        data, _ = read_var_bytes(payload, offset)
        state = client.state
        if step == SYNC_STEP1:
            # Our document is empty (voters never read theirs back), so step 2 is the empty update.
            client.send_binary(sync_message(SYNC_STEP2, EMPTY_UPDATE, self.prefix))
            return
        if step == SYNC_STEP2 and state.ready_at is None:
            state.ready_at = now
        if watch and state.ready_at is not None:
            self._count_votes(state, data, now)

    def _count_votes(self, state: ClientState, data: bytes, now: float) -> None:
        for question, marker in self.markers:
            found = data.count(marker)
            if found:
                seen = state.seen.get(question)
                have = 0 if seen is None else len(seen)
                note_count(state, question, have + found, now)

    def vote_frame(self, client: WsClient, question: str, voter_index: int) -> bytes:
        """Return the sync update that sets this voter's vote on ``question``, from the voter's own document."""
        from pycrdt import Doc, Map

        voter = client.state.voter
        if voter is None:
            doc = Doc()
            voter = client.state.voter = (doc, doc.get(VOTES_MAP, type=Map))
        doc, votes = voter
        before = doc.get_state()
        votes[f"{question}/v{voter_index}"] = 1
        return sync_message(SYNC_UPDATE, doc.get_update(before), self.prefix)

    def send(self, client: WsClient, frame: bytes) -> None:
        client.send_binary(frame)


class HocuspocusDialect(YjsDialect):
    """The Hocuspocus protocol: y-protocols messages behind the document name, after an auth message."""

    name = "hocuspocus"

    def __init__(self, document: str, questions: list[str] | None = None):
        super().__init__(questions)
        self.document = document
        self.prefix = write_var_bytes(document.encode())

    def hello(self, client: WsClient, token: str) -> None:
        auth = self.prefix + write_var_uint(MESSAGE_AUTH) + write_var_uint(AUTH_TOKEN) + write_var_bytes(token.encode())
        client.send_binary(auth)
        super().hello(client, token)

    def _strip_prefix(self, payload: bytes) -> int:
        _, offset = read_var_bytes(payload, 0)
        return offset


def make_dialect(spec: dict):
    """Build a dialect from its JSON-able description (``{"kind": ..., ...}``), as sent to workers."""
    kind = spec["kind"]
    if kind == "json":
        return JsonDialect()
    if kind == "yjs":
        return YjsDialect(spec.get("questions"))
    if kind == "hocuspocus":
        return HocuspocusDialect(spec["document"], spec.get("questions"))
    raise ValueError(f"unknown dialect {kind!r}; expected json, yjs or hocuspocus")
