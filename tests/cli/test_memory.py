"""A worker gives its heap's free pages back to the system (cli/_memory.py)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from setpiece.cli._memory import release_free_memory, trim_periodically

FRAGMENT = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[1])
    from setpiece.cli._memory import release_free_memory

    def rss():
        with open("/proc/self/status") as status:
            return next(int(l.split()[1]) for l in status if l.startswith("VmRSS")) * 1024

    # 100 MB of 2 kB blocks (malloc's heap, not Python's small-object arenas); keep one block
    # in 64 alive, so no stretch of the heap is free to its top: free() alone returns nothing
    blocks = [bytearray(2000) for _ in range(50_000)]
    kept = blocks[::64]
    del blocks
    before = rss()
    assert release_free_memory() is True
    after = rss()
    print(before, after)
""")


@pytest.mark.timeout(60)
def test_the_heap_s_free_pages_go_back_to_the_system() -> None:
    if release_free_memory() is None:
        pytest.skip("not glibc: there is no malloc_trim to call")
    src = Path(__file__).resolve().parents[2] / "src"
    out = subprocess.run([sys.executable, "-c", FRAGMENT, str(src)], capture_output=True,
                         text=True, check=True, timeout=50).stdout
    before, after = map(int, out.split())
    assert before - after > 50 * 2**20, f"RSS {before} -> {after}: the free pages stayed"


@pytest.mark.timeout(10)
def test_the_trimming_task_ends_when_the_worker_stops() -> None:
    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(trim_periodically(stop, every=0.01))
        await asyncio.sleep(0.05)  # a few trims
        assert not task.done()
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(main())
