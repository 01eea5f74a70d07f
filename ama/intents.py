"""Client frames: their schema, decoding and the text rules every intent obeys.

Every frame a client sends is one JSON object with a ``type``. Decoding is
strict (msgspec structs with unknown fields rejected) so that what reaches the
room model is already well typed; the room model then checks what depends on
the room's state (roles, settings, the question's status).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

import msgspec

# The largest frame an honest client ever needs: a question of the maximum
# settable length (2,000 code points, up to 4 bytes each in UTF-8, up to 12
# bytes each as JSON \u escapes) plus envelope. Edges reject bigger frames.
MAX_FRAME_BYTES = 64 * 1024

MIN_QUESTION_LENGTH = 1
MAX_TITLE_LENGTH = 200
MAX_NAME_LENGTH = 60
QUESTION_LENGTH_RANGE = (10, 2000)

MODERATION_ACTIONS = ("approve", "hide", "answer", "reopen", "pin", "unpin")
_USER_ID = re.compile(r"^[a-z]_[0-9a-f]{16}$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class FrameError(Exception):
    """A client frame that cannot be accepted, with a stable code for the client."""

    def __init__(self, code: str, message: str, intent_id: str | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.intent_id = intent_id


class Hello(msgspec.Struct, tag="hello", forbid_unknown_fields=True):
    token: str
    last_seq: int | None = None


class Ask(msgspec.Struct, tag="ask", forbid_unknown_fields=True):
    id: str
    text: str
    anonymous: bool = False


class Vote(msgspec.Struct, tag="vote", forbid_unknown_fields=True):
    id: str
    question: str
    value: Literal[1, 0, -1]


class Moderate(msgspec.Struct, tag="moderate", forbid_unknown_fields=True):
    id: str
    question: str
    action: Literal["approve", "hide", "answer", "reopen", "pin", "unpin"]


class Settings(msgspec.Struct, tag="settings", forbid_unknown_fields=True):
    id: str
    changes: dict[str, bool | int | str]


class Ban(msgspec.Struct, tag="ban", forbid_unknown_fields=True):
    id: str
    user: str = msgspec.field()
    banned: bool = True


Intent = Ask | Vote | Moderate | Settings | Ban
Frame = Hello | Ask | Vote | Moderate | Settings | Ban

_frame_decoder = msgspec.json.Decoder(Frame)


def decode_frame(data: str | bytes) -> Frame:
    """Decode one client frame, raising FrameError with a stable code."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    if len(data) > MAX_FRAME_BYTES:
        raise FrameError("frame_too_large", f"Frames are limited to {MAX_FRAME_BYTES} bytes.")
    try:
        frame = _frame_decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise FrameError("invalid_frame", f"The frame does not match its message type: {exc}.", _claimed_id(data)) from exc
    except msgspec.DecodeError as exc:
        raise FrameError("invalid_json", f"The frame is not valid JSON ({exc}); send one JSON object per text frame.") from exc
    except RecursionError:
        raise FrameError("invalid_frame", "The frame nests too deeply; frames are flat JSON objects.") from None
    if not isinstance(frame, Hello):
        check_id(frame.id, "id", _claimed_id(data))
        if isinstance(frame, Ban) and not _USER_ID.match(frame.user):
            raise FrameError("invalid_frame", "Field 'user' must be a user id as shown in staff question views.", frame.id)
        if isinstance(frame, (Vote, Moderate)):
            check_id(frame.question, "question", frame.id)
    return frame


def _claimed_id(data: bytes) -> str | None:
    """Return the frame's ``id`` when it is a UUID, so the client can drop that intent from its outbox."""
    try:
        claimed = msgspec.json.decode(data)
    except (msgspec.DecodeError, RecursionError):
        return None
    value = claimed.get("id") if isinstance(claimed, dict) else None
    return value if isinstance(value, str) and _UUID.match(value) else None


def check_id(value: str, field: str, intent_id: str | None = None) -> None:
    """Check that an id is a UUID in its 36-character form; raise FrameError naming the field.

    Ids are kept exactly as the client sent them, so acks and errors carry
    the same string the client keeps in its outbox.
    """
    if not _UUID.match(value):
        raise FrameError("invalid_id", f"Field {field!r} must be a UUID such as 1b4e28ba-2fa1-11d2-883f-b9a761bde3fb.", intent_id)


def normalize_text(text: str, field: str, max_length: int, intent_id: str | None = None) -> str:
    """Normalize user text to NFC and check it against the text rules.

    Lengths count Unicode code points after NFC normalization, the same unit
    for every client. Leading and trailing white space is dropped; control
    characters other than line feed and tab, and lone surrogates, are rejected.
    """
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in text):
        raise FrameError("invalid_text", f"Field {field!r} contains a lone surrogate; send valid UTF-16 or UTF-8 text.", intent_id)
    text = unicodedata.normalize("NFC", text).strip()
    for ch in text:
        if ch not in "\n\t" and unicodedata.category(ch) == "Cc":
            raise FrameError("invalid_text", f"Field {field!r} contains the control character U+{ord(ch):04X}; remove it.", intent_id)
    if len(text) < MIN_QUESTION_LENGTH:
        raise FrameError("empty_text", f"Field {field!r} is empty; write some text.", intent_id)
    if len(text) > max_length:
        raise FrameError("text_too_long", f"Field {field!r} has {len(text)} characters; the maximum here is {max_length}.", intent_id)
    return text
