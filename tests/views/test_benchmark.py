"""The views benchmark's own code, run small: each flow does the work it claims (no timing)."""

from __future__ import annotations

from pathlib import Path

from benchmarks import views as bench


def test_the_views_benchmark_flows_finish_their_work(tmp_path: Path) -> None:
    n = 400
    loaded = bench.load_a(n, str(tmp_path / "a.db"))
    assert loaded["results"] > 0
    # returns only once every closed window's result is in the output stream
    assert bench.setpiece_a(n, str(tmp_path / "a.db"), loaded["results"])["seconds"] > 0
    bench.load_b(n, str(tmp_path / "b.db"))
    assert bench.setpiece_b(n, str(tmp_path / "b.db"))["seconds"] > 0  # every order enriched
    assert bench.dict_loop_a(n)["events"] == n
    assert bench.sqlite_floor_a(n, str(tmp_path / "fa.db"))["events"] == n
    assert bench.dict_loop_b(n)["events"] == n
    assert bench.sqlite_floor_b(n, str(tmp_path / "fb.db"))["events"] == n
