"""read_members: zips read in memory, with every guard refusing its kind of bad archive."""

from __future__ import annotations

import io
import stat
import zipfile

import pytest

from service.errors import BadArchiveError
from service.imaging import archive as archive_module
from service.imaging.archive import MAX_RATIO, Member, read_members

LIMITS = {"max_bytes": 10 << 20, "max_files": 20}


def _zip(entries: list[tuple[str | zipfile.ZipInfo, bytes]], method=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buffer.getvalue()


def test_members_in_order_without_directories() -> None:
    data = _zip([("a/", b""), ("a/one.dcm", b"1" * 1000), ("two", b"22"), ("a/b/three", b"")])
    members = read_members(data, **LIMITS)
    assert [(m.name, m.data) for m in members] == [
        ("a/one.dcm", b"1" * 1000),
        ("two", b"22"),
        ("a/b/three", b""),
    ]
    assert repr(members[0]) == "Member(1000 bytes)" and "one" not in str(members[0])


@pytest.mark.parametrize(
    "name", ["../up.dcm", "a/../../up", "/etc/passwd", "C:/windows/x", "..\\..\\up", "c:\\x"]
)
def test_paths_escaping_the_archive(name: str) -> None:
    data = _zip([("fine", b"x"), (name, b"y")])
    with pytest.raises(BadArchiveError, match="zip entry 2 has a path that escapes") as caught:
        read_members(data, **LIMITS)
    assert "up" not in str(caught.value) and "passwd" not in str(caught.value)


def test_backslash_names_inside_the_archive_are_kept_relative() -> None:
    members = read_members(_zip([("dir\\file.dcm", b"x")]), **LIMITS)
    assert [m.name for m in members] == ["dir/file.dcm"]


def test_symbolic_link() -> None:
    link = zipfile.ZipInfo("link")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    with pytest.raises(BadArchiveError, match="zip entry 1 is a symbolic link"):
        read_members(_zip([(link, b"/etc/passwd")]), **LIMITS)


def test_encrypted_entry() -> None:
    data = bytearray(_zip([("secret", b"x" * 100)], zipfile.ZIP_STORED))
    central = data.rfind(b"PK\x01\x02")
    data[central + 8] |= 0x1  # general purpose flag bit 0 in the central directory
    with pytest.raises(BadArchiveError, match="encrypted"):
        read_members(bytes(data), **LIMITS)


def test_counts_and_sizes() -> None:
    many = _zip([(f"f{i}", b"x") for i in range(21)])
    with pytest.raises(BadArchiveError, match="21 entries, the limit is 20"):
        read_members(many, **LIMITS)
    big = _zip([("a", b"x" * 600), ("b", b"y" * 600)])
    with pytest.raises(BadArchiveError, match="expands beyond 1000 bytes"):
        read_members(big, max_bytes=1000, max_files=10)
    assert len(read_members(big, max_bytes=1200, max_files=10)) == 2


def test_bounded_read_never_exceeds_the_budget() -> None:
    data = _zip([("a", b"x" * 5000)])
    archive = zipfile.ZipFile(io.BytesIO(data))
    info = archive.infolist()[0]
    with pytest.raises(BadArchiveError, match="expands beyond the configured size limit"):
        archive_module._read_bounded(archive, info, 1, 4999)
    assert archive_module._read_bounded(archive, info, 1, 5000) == b"x" * 5000


def test_compression_ratio() -> None:
    bomb = _zip([("zeros", bytes(4 << 20))])  # 4 MiB of zeros: ~1000x
    with pytest.raises(BadArchiveError, match=f"expands more than {MAX_RATIO} times"):
        read_members(bomb, **LIMITS)
    small_blank = _zip([("blank slice", bytes(512 * 1024))])  # ratio > 250, but only 512 KiB
    assert len(read_members(small_blank, **LIMITS)[0].data) == 512 * 1024


def test_corrupt_archives() -> None:
    with pytest.raises(BadArchiveError, match="not a readable zip"):
        read_members(b"not a zip at all", **LIMITS)
    good = _zip([("a", b"some text " * 200)])
    with pytest.raises(BadArchiveError, match="not a readable zip"):
        read_members(good[: len(good) // 2], **LIMITS)
    damaged = bytearray(good)
    damaged[40] ^= 0xFF  # inside the deflated data of the entry
    with pytest.raises(BadArchiveError, match="zip entry 1 is corrupt"):
        read_members(bytes(damaged), **LIMITS)


def test_member_is_a_frozen_value() -> None:
    member = Member(name="x", data=b"y")
    with pytest.raises(AttributeError):
        member.name = "z"  # type: ignore[misc]
