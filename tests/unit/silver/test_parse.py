"""Chunk planning: consecutive landed ranges of bounded size, one read per dialect."""

from __future__ import annotations

import numpy as np

from saleslake.silver.parse import DIALECT_KEYS, plan_chunks


def obj(seq: int, delimiter: str, size: int = 10) -> dict:
    o = {k: "" for k in DIALECT_KEYS}
    o.update(landed_seq=seq, size_bytes=size, delimiter=delimiter, columns="{}")
    return o


def test_interleaved_dialects_share_a_chunk_one_group_each():
    # exports landed day by day: the regions' dialects alternate
    objects = [obj(i, ";" if i % 2 else ",") for i in range(1, 9)]
    [chunk] = plan_chunks(objects, chunk_bytes=1_000)
    assert (chunk.first_seq, chunk.last_seq) == (1, 8)
    groups = chunk.dialect_groups()
    assert [[o["landed_seq"] for o in g.objects] for g in groups] == [[2, 4, 6, 8], [1, 3, 5, 7]]
    assert [g.first_fi for g in groups] == [0, 4]
    assert all(chunk.objects[g.first_fi + i] is o for g in groups for i, o in enumerate(g.objects))


def test_chunks_are_consecutive_landed_ranges_of_bounded_size():
    objects = [obj(i, ";" if i % 3 else ",", size=40) for i in range(1, 8)]
    chunks = plan_chunks(objects, chunk_bytes=100)
    assert [(c.first_seq, c.last_seq) for c in chunks] == [(1, 2), (3, 4), (5, 6), (7, 7)]
    assert sum(len(c.objects) for c in chunks) == 7


def test_positions_count_from_each_files_first_row():
    from saleslake.silver.process import _positions

    fi = np.array([3, 3, 3, 4, 7, 7], dtype=np.uint64)
    assert _positions(fi).tolist() == [1, 2, 3, 1, 1, 2]
    assert _positions(np.array([], dtype=np.uint64)).tolist() == []


def test_files_holding_a_long_record_are_scanned_sequentially_in_runs_of_their_own(tmp_path):
    from saleslake.lake import Lake
    from saleslake.silver.long_records import LongRecord
    from saleslake.silver.parse import Chunk, scan_groups

    lake = Lake(tmp_path)
    objects = []
    for seq, (delimiter, text) in enumerate(
        [
            (",", "h\na\n"),
            (",", "h\n" + "x" * 5000 + "\n"),
            (",", "h\n" + "y" * 5000 + "\n"),
            (",", "h\nb\n"),
            (";", "h\nc\n"),
        ]
    ):
        (tmp_path / f"{seq}.csv").write_text(text)
        o = obj(seq + 1, delimiter)
        o.update(bronze_uri=f"{seq}.csv", encoding="utf-8")
        objects.append(o)
    runs = scan_groups(lake, Chunk(objects), max_record_bytes=4096)
    assert [([o["landed_seq"] for o in r.objects], r.first_fi, r.sequential) for r in runs] == [
        ([1], 0, False),
        ([2, 3], 1, True),
        ([4], 3, False),
        ([5], 4, False),  # another dialect: another read_csv
    ]
    assert runs[1].long_records == ((1, LongRecord(2, 5000)), (2, LongRecord(2, 5000)))
