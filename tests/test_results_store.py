"""The result store on its own: caps, paging, ownership, expiry and the disk budget."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pyarrow as pa
import pytest

from spark_mcp.config import ResultsConfig
from spark_mcp.errors import InvalidInput, ResultNotFound
from spark_mcp.results import ResultStore, scrub


def store(tmp_path: Path, **settings: int | float) -> ResultStore:
    return ResultStore(tmp_path / "results", ResultsConfig(**settings))


def write(store: ResultStore, principal: str, batches: list[pa.Table]) -> str:
    writer = store.writer(principal, "ses_x")
    writer.begin(batches[0].schema)
    for batch in batches:
        if not writer.write(batch):
            break
    return writer.finish().result_id


def numbers(start: int, stop: int) -> pa.Table:
    return pa.table({"n": pa.array(range(start, stop), pa.int64())})


def test_a_result_keeps_every_row_under_the_caps_and_pages_exactly(tmp_path: Path) -> None:
    results = store(tmp_path)
    result_id = write(results, "alice", [numbers(0, 700), numbers(700, 1000)])
    meta = results.meta("alice", result_id)
    assert (meta.row_count, meta.more_rows, meta.cap) == (1000, False, None)
    seen: list[int] = []
    offset = 0
    while offset < meta.row_count:
        page = results.page("alice", result_id, offset, 64)
        seen += page.column("n").to_pylist()
        offset += page.num_rows
    assert seen == list(range(1000))


def test_the_row_cap_stops_the_stream_and_is_reported(tmp_path: Path) -> None:
    results = store(tmp_path, max_rows=250)
    writer = results.writer("alice", None)
    writer.begin(numbers(0, 1).schema)
    assert writer.write(numbers(0, 200)) is True
    assert writer.write(numbers(200, 400)) is False  # the sink asks the stream to stop
    meta = writer.finish()
    assert meta.row_count == 250
    assert meta.more_rows is True
    assert meta.cap is not None and "max_rows" in meta.cap


def test_the_byte_cap_stops_the_stream_and_is_reported(tmp_path: Path) -> None:
    results = store(tmp_path, max_bytes=8 * 1024)
    result_id = write(results, "alice", [numbers(0, 10_000)])
    meta = results.meta("alice", result_id)
    assert 0 < meta.row_count < 10_000
    assert meta.more_rows is True and meta.cap is not None and "max_bytes" in meta.cap


def test_a_result_is_not_found_for_another_principal(tmp_path: Path) -> None:
    results = store(tmp_path)
    result_id = write(results, "alice", [numbers(0, 3)])
    with pytest.raises(ResultNotFound):
        results.meta("bob", result_id)
    with pytest.raises(ResultNotFound):
        results.page("bob", result_id, 0, 10)


@pytest.mark.parametrize("bad", ["../alice/res_1", "res_../../x", "res_", "job_123", "res_abc/def", ""])
def test_malformed_result_ids_are_refused_before_touching_the_disk(tmp_path: Path, bad: str) -> None:
    with pytest.raises(InvalidInput):
        store(tmp_path).meta("alice", bad)


def test_results_expire_after_their_time_to_live(tmp_path: Path) -> None:
    results = store(tmp_path, ttl_s=60)
    result_id = write(results, "alice", [numbers(0, 3)])
    assert results.sweep(now=time.time() + 30) == []
    assert results.sweep(now=time.time() + 120) == [result_id]
    with pytest.raises(ResultNotFound):
        results.meta("alice", result_id)


def test_the_disk_budget_drops_the_oldest_results_first(tmp_path: Path) -> None:
    one = numbers(0, 20_000)  # about 160 kB each on disk
    results = store(tmp_path, disk_budget_bytes=400_000)
    first = write(results, "alice", [one])
    second = write(results, "bob", [one])
    third = write(results, "alice", [one])  # the budget now holds two: the oldest goes
    with pytest.raises(ResultNotFound):
        results.meta("alice", first)
    assert results.meta("bob", second).row_count == 20_000
    assert results.meta("alice", third).row_count == 20_000


def test_result_files_are_private_to_the_server_user(tmp_path: Path) -> None:
    results = store(tmp_path)
    result_id = write(results, "alice", [numbers(0, 3)])
    folder = tmp_path / "results" / "alice"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / f"{result_id}.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((folder / f"{result_id}.arrow").stat().st_mode) == 0o600


def test_an_aborted_result_leaves_nothing_behind(tmp_path: Path) -> None:
    results = store(tmp_path)
    writer = results.writer("alice", None)
    writer.begin(numbers(0, 1).schema)
    writer.write(numbers(0, 10))
    writer.abort()
    assert list((tmp_path / "results" / "alice").iterdir()) == []


def test_registered_secrets_are_scrubbed_from_text_at_any_depth(tmp_path: Path) -> None:
    secret = "s3cr3t-token-value"
    results = ResultStore(tmp_path / "results", ResultsConfig(), secrets=lambda: (secret,))
    table = pa.table(
        {
            "plain": ["ok", f"TOKEN={secret}", None],
            "raw": pa.array([b"x", secret.encode(), None], pa.binary()),
            "nested": pa.array([[f"a{secret}"], [], None], pa.list_(pa.string())),
            "record": pa.array([{"k": secret}, {"k": "fine"}, None], pa.struct([("k", pa.string())])),
            "lookup": pa.array([[("key", secret)], [], None], pa.map_(pa.string(), pa.string())),
            "number": [1, 2, 3],
        }
    )
    result_id = write(results, "root", [table])
    stored = results.table("root", result_id)
    assert secret not in str(stored.to_pylist())
    assert stored.column("plain").to_pylist() == ["ok", "TOKEN=[REDACTED]", None]
    assert stored.column("nested").to_pylist() == [["a[REDACTED]"], [], None]
    assert stored.column("number").to_pylist() == [1, 2, 3]
    raw_file = (tmp_path / "results" / "root" / f"{result_id}.arrow").read_bytes()
    assert secret.encode() not in raw_file


def test_scrubbing_keeps_a_list_column_whose_elements_are_never_null() -> None:
    # Spark and Sail type array(1, 2) as a list of non-null elements; the scrubbed column
    # must keep that type, or its chunks no longer match (ArrowTypeError).
    element = pa.field("element", pa.int32(), nullable=False)
    table = pa.table({"a": pa.array([[1, 2], None], pa.list_(element))})
    scrubbed = scrub(table, ["secret"])
    assert scrubbed.schema == table.schema
    assert scrubbed.to_pylist() == [{"a": [1, 2]}, {"a": None}]
