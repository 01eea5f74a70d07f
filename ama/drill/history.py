"""The history of a drill and its checker (pure: no I/O, times passed in).

Every intent a synthetic client sends is recorded with its send time, and
every ack with its arrival time. After the drill, the final state of each
replica is checked against the history:

* every vote intent that was acked (``accepted``) is reflected: each user's
  final vote on a question equals the value of that user's last sent vote on
  it (votes set a value, so only the last one counts) and every replica's
  totals equal the number of users whose final vote is +1 or -1;
* every acked ``ask`` appears exactly once, in every replica;
* all replicas have the same digest.

``lost`` counts acked intents whose effect is missing; ``duplicated``
counts effects that appear more often than the history allows.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Sent:
    intent_id: str
    kind: str
    user: str
    question: str
    value: int
    sent_at: float
    phase: str
    accepted_at: float | None = None
    committed_at: float | None = None


@dataclass
class History:
    intents: dict[str, Sent] = field(default_factory=dict)

    def sent(self, entry: Sent) -> None:
        self.intents[entry.intent_id] = entry

    def acked(self, intent_id: str, status: str, now: float) -> None:
        entry = self.intents.get(intent_id)
        if entry is None:
            return
        if status == "accepted" and entry.accepted_at is None:
            entry.accepted_at = now
        if status == "committed" and entry.committed_at is None:
            entry.committed_at = now
            if entry.accepted_at is None:
                entry.accepted_at = now

    def expected_votes(self) -> dict[tuple[str, str], int]:
        """Return each (user, question)'s final vote: the value of its last sent vote intent."""
        final: dict[tuple[str, str], tuple[float, int]] = {}
        for entry in self.intents.values():
            if entry.kind != "vote":
                continue
            key = (entry.user, entry.question)
            if key not in final or entry.sent_at >= final[key][0]:
                final[key] = (entry.sent_at, entry.value)
        return {key: value for key, (_, value) in final.items()}

    def expected_totals(self) -> dict[str, tuple[int, int]]:
        totals: dict[str, list[int]] = {}
        for (user, question), value in self.expected_votes().items():
            counts = totals.setdefault(question, [0, 0])
            counts[0] += value == 1
            counts[1] += value == -1
        return {question: (up, down) for question, (up, down) in totals.items()}

    def latencies_ms(self, phase: str) -> list[float]:
        return sorted((entry.accepted_at - entry.sent_at) * 1000 for entry in self.intents.values() if entry.phase == phase and entry.accepted_at is not None)


@dataclass
class Verdict:
    lost: int
    duplicated: int
    unacknowledged: int
    problems: list[str]


def check(history: History, exports: dict[str, list[dict]], user_votes: dict[str, dict[str, int]]) -> Verdict:
    """Check replicas' exported questions and users' own votes against the history.

    ``exports`` maps a replica name to its export's question list;
    ``user_votes`` maps a user to the votes its client last saw as its own.
    """
    problems: list[str] = []
    lost = duplicated = 0
    asked = {entry.intent_id for entry in history.intents.values() if entry.kind == "ask" and entry.accepted_at is not None}
    expected = history.expected_totals()
    for replica, questions in exports.items():
        ids = [view["id"] for view in questions]
        for question in asked:
            count = ids.count(question)
            if count == 0:
                lost += 1
                problems.append(f"{replica}: acked question {question} is missing")
            elif count > 1:
                duplicated += count - 1
                problems.append(f"{replica}: question {question} appears {count} times")
        by_id = {view["id"]: view for view in questions}
        for question, (up, down) in expected.items():
            view = by_id.get(question)
            if view is None:
                continue
            if (view["up"], view["down"]) != (up, down):
                lost += max(0, up - view["up"]) + max(0, down - view["down"])
                duplicated += max(0, view["up"] - up) + max(0, view["down"] - down)
                problems.append(f"{replica}: question {question} has up={view['up']} down={view['down']}, expected up={up} down={down}")
    for (user, question), value in history.expected_votes().items():
        seen = user_votes.get(user, {}).get(question, 0)
        if seen != value:
            lost += 1
            problems.append(f"user {user}: vote on {question} is {seen}, expected {value}")
    unacknowledged = sum(1 for entry in history.intents.values() if entry.committed_at is None)
    return Verdict(lost, duplicated, unacknowledged, problems)


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]
