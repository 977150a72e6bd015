"""The metric: comparisons sortlib.sort makes on seeded data (fewer is better).

Prints ``metric: <comparisons>`` plus ``seconds:`` and ``n:``. Knobs (environment):
BENCH_N (items, default 600), BENCH_NOISE (relative noise added to the metric, default 0),
BENCH_NOISE_STATE (a file counting runs: seeds the noise, so runs differ yet a whole session
replays exactly), BENCH_SLEEP (seconds to sleep: a slow metric). Pure Python, no download.
"""

import os
import random
import sys
import time

import sortlib

N = int(os.environ.get("BENCH_N", "600"))


def noise_rng():
    state = os.environ.get("BENCH_NOISE_STATE")
    if not state:
        return random.Random()
    try:
        with open(state) as fh:
            count = int(fh.read() or 0)
    except FileNotFoundError:
        count = 0
    with open(state, "w") as fh:
        fh.write(str(count + 1))
    return random.Random(f"noise-{count}")


def main():
    data = random.Random(42).sample(range(N * 10), N)
    count = 0

    def less(a, b):
        nonlocal count
        count += 1
        return a < b

    start = time.perf_counter()
    result = sortlib.sort(data, less)
    seconds = time.perf_counter() - start
    if result != sorted(data):
        print("error: sortlib.sort returned an unsorted list", file=sys.stderr)
        return 1
    metric = float(count)
    noise = float(os.environ.get("BENCH_NOISE", "0"))
    if noise:
        metric *= 1 + noise_rng().gauss(0, noise)
    time.sleep(float(os.environ.get("BENCH_SLEEP", "0")))
    print(f"n: {N}")
    print(f"seconds: {seconds:.6f}")
    print(f"metric: {metric:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
