"""Benchmark target for bench/tasks.sh: an event loop with many named tasks in nested awaits.

Usage: asyncio_tasks.py READY_FIFO [GROUPS]

GROUPS (default 50) "group-N" tasks each gather three "leaf-N-M" tasks, which await five
coroutines deep before waiting on a future that never completes: 4 * GROUPS + 1 tasks. Writes
"ready" to READY_FIFO once every leaf is parked.
"""

import asyncio
import sys


async def level(n, forever, parked):
    if n > 1:
        return await level(n - 1, forever, parked)
    parked()
    await forever


async def group(i, forever, parked):
    leaves = [asyncio.create_task(level(5, forever, parked), name=f"leaf-{i}-{j}") for j in range(3)]
    await asyncio.gather(*leaves)


async def main(fifo, groups):
    loop = asyncio.get_running_loop()
    forever = loop.create_future()
    left = 3 * groups
    all_parked = loop.create_future()

    def parked():
        nonlocal left
        left -= 1
        if left == 0:
            all_parked.set_result(None)

    tasks = [asyncio.create_task(group(i, forever, parked), name=f"group-{i}") for i in range(groups)]
    await all_parked
    with open(fifo, "w") as out:
        out.write("ready\n")
    await asyncio.gather(*tasks)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 50))
