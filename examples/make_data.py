"""Writes the small example data sets under examples/data (deterministic; rerun to regenerate).

The task is one a tiny model learns visibly on a CPU in minutes: answering simple questions about
arithmetic, word reversal and colours of things, in several record formats.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).parent / "data"
THINGS = {
    "grass": "green", "the sky": "blue", "snow": "white", "coal": "black", "a banana": "yellow",
    "a tomato": "red", "an orange": "orange", "a plum": "purple", "the sea": "blue", "milk": "white",
    "a lemon": "yellow", "a cherry": "red", "a leaf": "green", "ink": "black", "a pumpkin": "orange",
}
WORDS = ["apple", "river", "stone", "cloud", "tiger", "piano", "garden", "window", "candle", "rocket",
         "forest", "silver", "planet", "marble", "castle", "yellow", "summer", "winter", "bridge", "pencil"]
SYSTEM = "You are a helpful assistant. Answer briefly."


def question(rng: random.Random) -> tuple[str, str]:
    kind = rng.randrange(3)
    if kind == 0:
        a, b = rng.randrange(20), rng.randrange(20)
        return f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}."
    if kind == 1:
        word = rng.choice(WORDS)
        return f"Spell {word} backwards.", f"{word} backwards is {word[::-1]}."
    thing = rng.choice(sorted(THINGS))
    return f"What colour is {thing}?", f"{thing.capitalize()} is {THINGS[thing]}."


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")


def main() -> None:
    rng = random.Random(1234)
    HERE.mkdir(parents=True, exist_ok=True)
    pairs = [question(rng) for _ in range(1200)]
    train, val = pairs[:1000], pairs[1000:]
    write_jsonl(HERE / "train.jsonl", [{"input": q, "output": a} for q, a in train])
    write_jsonl(HERE / "val.jsonl", [{"input": q, "output": a} for q, a in val])
    chats = []
    for i in range(0, 600, 2):
        (q1, a1), (q2, a2) = pairs[i], pairs[i + 1]
        chats.append({
            "system": SYSTEM,
            "mask": "User",
            "type": None,
            "conversations": [
                {"from": "User", "value": q1}, {"from": "Assistant", "value": a1},
                {"from": "User", "value": q2}, {"from": "Assistant", "value": a2},
            ],
        })
    write_jsonl(HERE / "chat.jsonl", chats)
    write_jsonl(HERE / "messages.jsonl", [
        {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": q},
                      {"role": "assistant", "content": a}]}
        for q, a in pairs[:300]
    ])
    corpus = [SYSTEM] + [f"{q} {a}" for q, a in pairs] + [" ".join(WORDS), " ".join(w[::-1] for w in WORDS)]
    (HERE / "corpus.txt").write_text("\n".join(corpus) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
