"""`read_bounded`: the one bounded reader of local files (web config, keyrings, attestation
records, signed reports), tested on real files, FIFOs and directories."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from exporter.probes.attestation.keyring import KeyringError, load_keyring
from exporter.probes.attestation.record import RecordError, load_record
from exporter.transport.files import read_bounded


def test_reads_a_file_up_to_the_limit_and_refuses_one_byte_more(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 10)
    assert read_bounded(path, 10) == b"x" * 10
    path.write_bytes(b"x" * 11)
    with pytest.raises(ValueError, match="is larger than 10 bytes"):
        read_bounded(path, 10)


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    """A reader that opened the path plainly would block here until something wrote."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="is not a regular file"):
        read_bounded(fifo, 10)


def test_a_missing_file_or_a_directory_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_bounded(tmp_path / "missing", 10)
    with pytest.raises(IsADirectoryError):
        read_bounded(tmp_path, 10)


@pytest.mark.parametrize(("load", "error"), [(load_keyring, KeyringError),
                                             (load_record, RecordError)])
def test_keyring_and_record_loaders_refuse_a_fifo_and_an_oversized_file(
        tmp_path: Path, load: object, error: type[Exception]) -> None:
    assert callable(load)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(error, match="is not a regular file"):
        load(fifo)
    big = tmp_path / "big"
    big.write_bytes(b" " * (2 << 20))  # above both limits (64 KiB records, 1 MiB keyrings)
    with pytest.raises(error, match="is larger than"):
        load(big)
