"""The small least-recently-used memory behind the accuracy and Newton-step caches (memo.py)."""
from __future__ import annotations

import threading

from autoft_core.memo import Remembered


def test_the_least_recently_used_value_is_forgotten_first():
    memo: Remembered[int] = Remembered(2)
    memo.put("a", 1)
    memo.put("b", 2)
    assert memo.get("a") == 1  # "a" is now the most recent
    memo.put("c", 3)
    assert (memo.get("a"), memo.get("b"), memo.get("c")) == (1, None, 3)
    memo.put("a", 4)  # replacing a value makes it the most recent too
    memo.put("d", 5)
    assert (memo.get("a"), memo.get("c"), memo.get("d")) == (4, None, 5)
    memo.clear()
    assert memo.get("a") is None and memo.get("d") is None


def test_puts_from_many_threads_keep_the_bound_and_the_latest_values():
    memo: Remembered[int] = Remembered(8)

    def writer(offset: int) -> None:
        for i in range(2000):
            memo.put((offset, i % 16), i)
            memo.get((offset, (i + 5) % 16))

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    kept = {(t, k): memo.get((t, k)) for t in range(4) for k in range(16)}
    values = {key: v for key, v in kept.items() if v is not None}
    assert 0 < len(values) <= 8
    assert all(v % 16 == key[1] for key, v in values.items())  # each key holds a value written under it
