"""Every documented limit is set from the TOML file, validated one way, and takes effect."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import polars as pl
import pytest

from analyzer.config import Limits, load_config
from analyzer.dicom.limits import DicomLimits
from analyzer.errors import ConfigError
from tests.helpers import CAPTURES, SAMPLE, analyze


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site.toml"
    path.write_text(text)
    return path


def test_every_limit_field_can_be_set(tmp_path: Path) -> None:
    flags = [f for f in dataclasses.fields(Limits) if isinstance(f.default, bool)]
    numbers = [f for f in dataclasses.fields(Limits) if f not in flags]
    assert [f.name for f in flags] == ["bulk_fast_path"]
    lines = ["[limits]"]
    lines += [f"{f.name} = {int(f.default) + 11}" for f in numbers]  # type: ignore[arg-type]
    lines += [f"{f.name} = {'false' if f.default else 'true'}" for f in flags]
    lines += ["[dicom]"]
    lines += [f"{f.name} = {int(f.default) + 2}" for f in dataclasses.fields(DicomLimits)]  # type: ignore[arg-type]
    cfg = load_config(_write(tmp_path, "\n".join(lines)))
    for f in numbers:
        assert getattr(cfg.limits, f.name) == type(f.default)(int(f.default) + 11), f.name  # type: ignore[arg-type]
    for f in flags:
        assert getattr(cfg.limits, f.name) is not f.default, f.name
    for f in dataclasses.fields(DicomLimits):
        assert getattr(cfg.dicom, f.name) == int(f.default) + 2, f.name  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text, message",
    [
        ("[dicom]\nmax_dataset_heap = 1", "site.toml: dicom: unknown setting 'max_dataset_heap'"),
        ("[dicom]\nmax_command = 1.5", "dicom.max_command: expected a whole number"),
        ("[limits]\nmax_endpoints = -1", "limits.max_endpoints: must not be negative"),
        ("[limits]\nidle_timeout = true", "limits.idle_timeout: expected a number"),
        ("[limits]\nsniff_bytes = 4", "limits.sniff_bytes must be at least 10"),
        ('[capture]\nchecksums = "off"', "capture.checksums must be one of auto, verify, ignore"),
        ("[capture]\nchecksum = 1", "unknown setting 'capture.checksum'"),
    ],
)
def test_bad_limits_name_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, text))
    assert message in str(err.value)


def test_dicom_and_inventory_limits_take_effect(tmp_path: Path) -> None:
    path = _write(tmp_path, "[dicom]\nmax_dataset_head = 256\n[limits]\nmax_endpoints = 1\n")
    cfg = load_config(path)
    analyze(SAMPLE, tmp_path / "default")
    analyze(SAMPLE, tmp_path / "small", cfg)
    head = {
        d: pl.read_parquet(tmp_path / d / "dicom_object.parquet")["n_elements"].sum()
        for d in ("default", "small")
    }
    assert 0 < head["small"] < head["default"]  # fewer elements decoded from a 256-byte head
    assert pl.read_parquet(tmp_path / "small" / "asset.parquet").height == 1
    assert pl.read_parquet(tmp_path / "default" / "asset.parquet").height > 1


def test_window_key_cap_reaches_cross_flow_rules(tmp_path: Path) -> None:
    """With one key per window, the nmap scan's per-source window still works (one source)."""
    cfg = load_config(_write(tmp_path, "[limits]\nmax_window_keys = 1\nmax_dedup_keys = 1\n"))
    analyze(CAPTURES / "nmap_scan.pcap", tmp_path / "o", cfg)
    rules = set(pl.read_parquet(tmp_path / "o" / "finding.parquet")["rule"])
    assert {"dicom_scan", "ae_title_bruteforce"} <= rules


def test_checksum_mode_from_toml(tmp_path: Path) -> None:
    from analyzer.net.checksum import Checksums

    assert load_config(None).checksums == Checksums.AUTO
    cfg = load_config(_write(tmp_path, '[capture]\nchecksums = "verify"'))
    assert cfg.checksums == Checksums.VERIFY
