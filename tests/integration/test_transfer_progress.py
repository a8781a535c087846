"""Transfers as a user watches them: ``on_progress`` on upload, write and download (sync and
async), ``read_file`` for small files, and verbose lines that name each part and time the
whole body."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest

from agentcube import CodeInterpreterClient, DataPlaneError, InvalidArgumentError, NotFoundError
from agentcube.aio import AsyncCodeInterpreterClient

MIB = 1024 * 1024


def _assert_counts_up_to(seen: list[tuple[int, int | None]], size: int) -> None:
    assert len(seen) > 1, seen
    dones = [done for done, _ in seen]
    assert dones == sorted(dones) and dones[-1] == size
    assert {total for _, total in seen} == {size}


def test_sync_progress_upload_write_download(urls: dict[str, str], tmp_path: Path) -> None:
    data = os.urandom(3 * MIB + 5)
    local = tmp_path / "in.bin"
    local.write_bytes(data)
    with CodeInterpreterClient(**urls) as ci:
        seen: list[tuple[int, int | None]] = []
        ci.upload_file(local, "up.bin", on_progress=lambda d, t: seen.append((d, t)))
        _assert_counts_up_to(seen, len(data))
        seen = []
        ci.write_file(data, "w.bin", part_size=MIB, on_progress=lambda d, t: seen.append((d, t)))
        _assert_counts_up_to(seen, len(data))  # across the 4 parts, one running total
        seen = []
        ci.download_file(
            "w.bin", tmp_path / "out.bin", on_progress=lambda d, t: seen.append((d, t))
        )
        _assert_counts_up_to(seen, len(data))
        assert (tmp_path / "out.bin").read_bytes() == data
        with pytest.raises(InvalidArgumentError):
            ci.write_file(b"x", "x.bin", on_progress="not callable")  # type: ignore[arg-type]


def test_async_progress_upload_write_download(urls: dict[str, str], tmp_path: Path) -> None:
    data = os.urandom(2 * MIB + 7)
    local = tmp_path / "in.bin"
    local.write_bytes(data)

    async def go() -> list[list[tuple[int, int | None]]]:
        seen: list[list[tuple[int, int | None]]] = [[], [], []]
        async with AsyncCodeInterpreterClient(**urls) as ci:
            await ci.upload_file(local, "up.bin", on_progress=lambda d, t: seen[0].append((d, t)))
            await ci.write_file(
                data, "w.bin", part_size=MIB, on_progress=lambda d, t: seen[1].append((d, t))
            )
            await ci.download_file(
                "w.bin", tmp_path / "out.bin", on_progress=lambda d, t: seen[2].append((d, t))
            )
            assert await ci.read_file("w.bin", max_bytes=len(data)) == data
        return seen

    for seen in asyncio.run(go()):
        _assert_counts_up_to(seen, len(data))
    assert (tmp_path / "out.bin").read_bytes() == data


def test_read_file_returns_bytes_or_text_and_refuses_past_its_limit(urls: dict[str, str]) -> None:
    with CodeInterpreterClient(**urls) as ci:
        ci.write_file("héllo\n", "t.txt")
        assert ci.read_file("t.txt") == "héllo\n".encode()
        assert ci.read_file("t.txt", text=True) == "héllo\n"
        ci.write_file(b"x" * 5000, "big.txt")
        with pytest.raises(DataPlaneError) as info:
            ci.read_file("big.txt", max_bytes=4096)
        assert "max_bytes=4096" in str(info.value) and "download_file" in str(info.value)
        assert ci.read_file("big.txt", max_bytes=5000) == b"x" * 5000
        with pytest.raises(NotFoundError):
            ci.read_file("missing.txt")
        with pytest.raises(InvalidArgumentError):
            ci.read_file("t.txt", max_bytes=0)


def test_verbose_names_each_part_and_times_the_whole_body(
    urls: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    data = os.urandom(3 * MIB)
    with CodeInterpreterClient(**urls, verbose=True) as ci:
        caplog.set_level(logging.DEBUG, logger="agentcube")
        ci.write_file(data, "p.bin", part_size=MIB)
        ci.read_file("p.bin", max_bytes=4 * MIB)
    lines = [r.getMessage() for r in caplog.records]
    assert any("part 2/3, 1.0 MiB" in line for line in lines), lines
    assert any("3.0 MiB in 3 parts" in line for line in lines), lines
    assert any("body of 'p.bin'" in line and f"{len(data)} bytes in" in line for line in lines)
