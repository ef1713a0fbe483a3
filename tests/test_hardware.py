"""Hardware database and roofline rates, against the figures of docs/hardware.md (sections 2-4)."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from costmodel import hardware as hwmod
from costmodel.hardware import (
    DATA_PATH,
    HARDWARE_DIR_ENV,
    Efficiency,
    Hardware,
    HardwareDataError,
    Measured,
    PeakFlops,
    UnknownHardwareError,
    get_hardware,
    hardware_ids,
    load_database,
    save_hardware,
)

REQUIRED_IDS = [
    "h100-sxm-80gb", "h100-pcie-80gb", "h200-sxm-141gb", "a100-sxm-40gb", "a100-sxm-80gb",
    "a100-pcie-40gb", "a100-pcie-80gb", "v100-sxm2-32gb", "b200", "gb200", "l40s", "l4", "a10g",
    "rtx-4090", "mi300x", "mi250x-gcd", "tpu-v5e", "tpu-v5p", "m4-max", "m2-ultra",
    "h100-sxm-80gb-measured", "h200-sxm-141gb-measured",
]


@pytest.fixture(autouse=True)
def _fresh_database(monkeypatch):
    monkeypatch.delenv(HARDWARE_DIR_ENV, raising=False)
    load_database.cache_clear()
    yield
    load_database.cache_clear()


def _record(**changes) -> dict:
    """A valid record (the H100 SXM entry as JSON) with some fields changed."""
    return get_hardware("h100-sxm-80gb").model_dump(mode="json") | changes


# ---- the database ----


def test_every_entry_loads_and_has_sources():
    db = load_database()
    assert set(REQUIRED_IDS) <= set(db)
    for hw_id, hw in db.items():
        assert isinstance(hw, Hardware)
        assert hw.id == hw_id
        assert hw.sources and all(s.strip() for s in hw.sources)
        assert hw.bandwidth_bytes_per_s() > 0 and hw.capacity_bytes() > 0
        # default entries are the pure roofline; only *-measured ones carry measurements
        assert hw.efficiency == Efficiency()
        assert (hw.measured is not None) == hw_id.endswith("-measured")


def test_raw_json_round_trips_through_the_model():
    # every key of every raw record survives validation unchanged (nothing coerced or dropped)
    data = json.loads(DATA_PATH.read_text())
    assert set(data) == {"about", "devices"}
    for record in data["devices"]:
        dumped = Hardware.model_validate(record).model_dump(mode="json")
        for key, value in record.items():
            assert dumped[key] == value, (record["id"], key)


@pytest.mark.parametrize(
    ("hw_id", "field", "expected"),
    [
        # docs/hardware.md 2a, 2b (dense)
        ("h100-sxm-80gb", "bf16_TFLOPs", 989.4),
        ("h100-sxm-80gb", "tf32_TFLOPs", 494.7),
        ("h100-sxm-80gb", "fp8_TFLOPs", 1978.9),
        ("h100-sxm-80gb", "fp32_TFLOPs", 66.9),
        ("h100-pcie-80gb", "bf16_TFLOPs", 756),
        ("h200-sxm-141gb", "bf16_TFLOPs", 989.4),
        ("a100-sxm-80gb", "bf16_TFLOPs", 312),
        ("a100-sxm-80gb", "int8_TOPs", 624),
        ("v100-sxm2-32gb", "fp16_TFLOPs", 125),
        ("b200", "bf16_TFLOPs", 2250),
        ("b200", "fp32_TFLOPs", 75),  # range 75-80: lower end
        ("gb200", "fp8_TFLOPs", 5000),
        ("l40s", "bf16_TFLOPs", 362),
        ("l4", "fp8_TFLOPs", 242.5),
        ("a10g", "bf16_TFLOPs", 70),
        ("rtx-4090", "bf16_TFLOPs", 165.2),  # FP32 accumulate
        ("mi300x", "bf16_TFLOPs", 1307.4),
        ("mi300x", "fp8_TFLOPs", 2614.9),
        ("mi250x-gcd", "bf16_TFLOPs", 191.5),  # half the 383 package figure
        ("tpu-v5e", "bf16_TFLOPs", 197),
        ("tpu-v5p", "int8_TOPs", 918),
    ],
)
def test_datasheet_peaks(hw_id, field, expected):
    assert getattr(get_hardware(hw_id).peak, field) == expected


def test_si_conversions_h100_sxm():
    h100 = get_hardware("h100-sxm-80gb")
    assert h100.peak_flops_per_s("bf16") == pytest.approx(989.4e12)
    assert h100.compute_flops_per_s("bf16") == pytest.approx(989.4e12)
    assert h100.bandwidth_bytes_per_s() == pytest.approx(3.35e12)
    assert h100.interconnect_GBps_per_direction == 450  # 900 bidirectional total, halved
    assert h100.capacity_bytes() == 80 * 2**30
    assert h100.sparsity_factor == 2.0


@pytest.mark.parametrize(
    ("hw_id", "bandwidth_GBps", "capacity", "interconnect"),
    [
        ("a100-sxm-80gb", 2039, 80, 300),
        ("a100-sxm-40gb", 1555, 40, 300),
        ("a100-pcie-80gb", 1935, 80, 300),
        ("h200-sxm-141gb", 4800, 141, 450),
        ("b200", 7700, 180, 900),  # 7700-8000: lower end; 180 usable of 192
        ("v100-sxm2-32gb", 900, 32, 150),
        ("mi300x", 5300, 192, 448),
        ("mi250x-gcd", 1638.5, 64, 200),
        ("tpu-v5e", 819, 16, 200),
        ("tpu-v5p", 2765, 95, 600),
        ("m4-max", 546, 128, None),
        ("m2-ultra", 800, 192, None),
    ],
)
def test_memory_and_interconnect(hw_id, bandwidth_GBps, capacity, interconnect):
    hw = get_hardware(hw_id)
    assert hw.memory_bandwidth_GBps == bandwidth_GBps
    assert hw.bandwidth_bytes_per_s() == pytest.approx(bandwidth_GBps * 1e9)
    assert hw.memory_capacity_GB == capacity
    assert hw.interconnect_GBps_per_direction == interconnect


@pytest.mark.parametrize(
    ("hw_id", "dtype", "ridge"),
    [
        # docs/hardware.md 4 (dense bf16 peak / bandwidth, FLOP/byte)
        ("h100-sxm-80gb", "bf16", 295),
        ("h100-pcie-80gb", "bf16", 378),
        ("h200-sxm-141gb", "bf16", 206),
        ("a100-sxm-40gb", "bf16", 201),
        ("a100-sxm-80gb", "bf16", 153),
        ("a100-pcie-80gb", "bf16", 161),
        ("l40s", "bf16", 419),
        ("l4", "bf16", 403),
        ("a10g", "bf16", 117),
        ("rtx-4090", "bf16", 164),
        ("v100-sxm2-32gb", "fp16", 139),
        ("gb200", "bf16", 312),
        ("mi300x", "bf16", 247),
        ("mi250x-gcd", "bf16", 117),
        ("tpu-v5e", "bf16", 241),
        ("tpu-v5p", "bf16", 166),
        # docs/hardware.md 4 gives 281 with 8 TB/s; the database keeps the conservative 7.7 TB/s
        ("b200", "bf16", 2250 / 7.7),
    ],
)
def test_ridge_points(hw_id, dtype, ridge):
    assert get_hardware(hw_id).ridge_point(dtype) == pytest.approx(ridge, rel=0.01)


# docs/hardware.md 2c: what the datasheets print with 2:4 sparsity, per field.
PRINTED_SPARSE = {
    "h100-sxm-80gb": {"tf32_TFLOPs": 989, "bf16_TFLOPs": 1979, "fp16_TFLOPs": 1979,
                      "fp8_TFLOPs": 3958, "int8_TOPs": 3958},
    "h100-pcie-80gb": {"tf32_TFLOPs": 756, "fp16_TFLOPs": 1513, "fp8_TFLOPs": 3026,
                       "int8_TOPs": 3026},
    "h200-sxm-141gb": {"tf32_TFLOPs": 989, "bf16_TFLOPs": 1979, "fp8_TFLOPs": 3958},
    "a100-sxm-80gb": {"tf32_TFLOPs": 312, "fp16_TFLOPs": 624, "int8_TOPs": 1248},
    "a100-pcie-40gb": {"tf32_TFLOPs": 312, "fp16_TFLOPs": 624, "int8_TOPs": 1248},
    "l40s": {"tf32_TFLOPs": 366, "fp16_TFLOPs": 733, "fp8_TFLOPs": 1466},
    "l4": {"tf32_TFLOPs": 120, "fp16_TFLOPs": 242, "fp8_TFLOPs": 485, "int8_TOPs": 485},
    "b200": {"fp8_TFLOPs": 9000, "fp16_TFLOPs": 4500},
    "gb200": {"fp8_TFLOPs": 10000, "fp16_TFLOPs": 5000},
    "mi300x": {"fp16_TFLOPs": 2614.9, "fp8_TFLOPs": 5229.8},
}


@pytest.mark.parametrize("hw_id", sorted(PRINTED_SPARSE))
def test_dense_fields_are_half_the_printed_sparse_numbers(hw_id):
    hw = get_hardware(hw_id)
    for field, sparse in PRINTED_SPARSE[hw_id].items():
        dense = getattr(hw.peak, field)
        assert dense != sparse, (hw_id, field)
        # 2% and not exact: NVIDIA prints L40S FP16 as 362 dense and 733 sparse
        assert dense * hw.sparsity_factor == pytest.approx(sparse, rel=0.02), (hw_id, field)


def test_unsupported_dtype_errors_name_dtype_and_device():
    with pytest.raises(ValueError, match=r"'v100-sxm2-32gb'.*bf16.*fp32, fp16"):
        get_hardware("v100-sxm2-32gb").peak_flops_per_s("bf16")
    with pytest.raises(ValueError, match=r"'m4-max'.*'bf16'"):
        get_hardware("m4-max").compute_flops_per_s("bf16")
    with pytest.raises(ValueError, match=r"unknown dtype 'fp64'"):
        get_hardware("h100-sxm-80gb").compute_flops_per_s("fp64")
    assert get_hardware("a100-sxm-80gb").peak.fp8_TFLOPs is None
    assert get_hardware("m2-ultra").supported_dtypes() == []


# ---- measured overrides and efficiencies ----


def test_measured_entries_match_their_datasheet_entries():
    for base_id, matmul, bandwidth in [("h100-sxm-80gb", 798, 3000), ("h200-sxm-141gb", 788, 4300)]:
        base, meas = get_hardware(base_id), get_hardware(f"{base_id}-measured")
        fields = set(Hardware.model_fields) - {"id", "name", "measured", "sources", "notes"}
        assert {f: getattr(meas, f) for f in fields} == {f: getattr(base, f) for f in fields}
        assert meas.compute_flops_per_s("bf16") == pytest.approx(matmul * 1e12)
        assert meas.bandwidth_bytes_per_s() == pytest.approx(bandwidth * 1e9)
        assert meas.peak_flops_per_s("bf16") == base.peak_flops_per_s("bf16")  # peak untouched
        assert meas.compute_flops_per_s("fp8") == base.compute_flops_per_s("fp8")  # fallback
        assert meas.compute_flops_per_s("bf16") / base.compute_flops_per_s("bf16") == (
            pytest.approx(0.8, abs=0.01)
        )


def test_measured_override_then_efficiency():
    hw = Hardware.model_validate(
        _record(measured={"matmul_TFLOPs": {"bf16": 700.0}, "device_name": "x", "date": "2026-01-01"})
    )
    assert hw.compute_flops_per_s("bf16") == pytest.approx(700e12)
    assert hw.bandwidth_bytes_per_s() == pytest.approx(3.35e12)  # no measured bandwidth
    half = hw.with_efficiency(matmul=0.5, bandwidth=0.9)
    assert half.compute_flops_per_s("bf16") == pytest.approx(350e12)
    assert half.bandwidth_bytes_per_s() == pytest.approx(0.9 * 3.35e12)
    # a measured value gives a rate even where the datasheet has none
    m4 = Hardware.model_validate(
        get_hardware("m4-max").model_dump()
        | {"measured": {"matmul_TFLOPs": {"fp16": 17.0}, "device_name": "M4", "date": "2026"}}
    )
    assert m4.compute_flops_per_s("fp16") == pytest.approx(17e12)
    assert m4.supported_dtypes() == ["fp16"]


@settings(max_examples=40, deadline=None)
@given(
    matmul=st.floats(min_value=0.01, max_value=1.0),
    bandwidth=st.floats(min_value=0.01, max_value=1.0),
)
def test_ridge_point_scales_with_efficiencies(matmul, bandwidth):
    base = get_hardware("a100-sxm-80gb")
    hw = base.with_efficiency(matmul=matmul, bandwidth=bandwidth)
    assert hw.ridge_point() == pytest.approx(base.ridge_point() * matmul / bandwidth, rel=1e-12)
    assert hw.peak_flops_per_s("bf16") == base.peak_flops_per_s("bf16")


def test_with_efficiency_revalidates_and_keeps_the_original():
    h100 = get_hardware("h100-sxm-80gb")
    for bad in ({"matmul": 0.0}, {"matmul": 1.5}, {"bandwidth": -0.1}, {"kernel_overhead_s": -1},
                {"overlap": -0.1}, {"overlap": 1.01}):
        with pytest.raises(ValidationError, match=f"efficiency.{next(iter(bad))}"):
            h100.with_efficiency(**bad)
    with pytest.raises(ValidationError, match="efficiency.typo"):
        h100.with_efficiency(typo=1.0)
    tuned = h100.with_efficiency(matmul=0.8, forward_overhead_s=1e-3, overlap=0.0, source="fit")
    assert tuned.efficiency.forward_overhead_s == 1e-3 and tuned.efficiency.source == "fit"
    assert tuned.efficiency.overlap == 0.0
    assert h100.efficiency == Efficiency()


# ---- validation of bad values ----


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"memory_bandwidth_GBps": -1.0}, "memory_bandwidth_GBps"),
        ({"memory_bandwidth_GBps": 0}, "memory_bandwidth_GBps"),
        ({"memory_capacity_GB": 0}, "memory_capacity_GB"),
        ({"memory_capacity_unit": "TB"}, "memory_capacity_unit"),
        ({"efficiency": {"matmul": 0.0}}, "efficiency.matmul"),
        ({"efficiency": {"matmul": 1.5}}, "efficiency.matmul"),
        ({"efficiency": {"bandwidth": 0.0}}, "efficiency.bandwidth"),
        ({"peak": {"bf16_TFLOPs": -989.4}}, "peak.bf16_TFLOPs"),
        ({"peak": {"bf16_sparse_TFLOPs": 1979}}, "peak.bf16_sparse_TFLOPs"),
        ({"hbm_bandwidth_GBps": 3350}, "hbm_bandwidth_GBps"),
        ({"sparsity_factor": 0.5}, "sparsity_factor"),
        ({"kind": "fpga"}, "kind"),
        ({"id": "H100"}, "id"),
        ({"sources": []}, "sources"),
        ({"interconnect_GBps_per_direction": -450}, "interconnect_GBps_per_direction"),
        ({"measured": {"matmul_TFLOPs": {"fp64": 1.0}, "device_name": "x", "date": "d"}},
         "measured.matmul_TFLOPs.fp64"),
        ({"measured": {"matmul_TFLOPs": {"bf16": 0}, "device_name": "x", "date": "d"}},
         "measured.matmul_TFLOPs.bf16"),
        ({"measured": {"device_name": "x", "date": "d"}}, "measured"),
    ],
)
def test_bad_values_name_the_field(changes, field):
    with pytest.raises(ValidationError) as info:
        Hardware.model_validate(_record(**changes))
    locs = [".".join(str(p) for p in e["loc"]) for e in info.value.errors()]
    assert any(loc.startswith(field) for loc in locs), locs
    assert field.split(".")[0] in str(info.value)


def test_models_are_frozen():
    h100 = get_hardware("h100-sxm-80gb")
    with pytest.raises(ValidationError):
        h100.memory_bandwidth_GBps = 1.0  # type: ignore[misc]
    with pytest.raises(ValidationError):
        PeakFlops(bf16_TFLOPs=1.0).bf16_TFLOPs = 2.0  # type: ignore[misc]
    # hashable (a cache key), consistent with equality
    copy = Hardware.model_validate(h100.model_dump())
    assert copy == h100 and hash(copy) == hash(h100)
    assert hash(h100.with_efficiency(matmul=0.8)) != hash(h100)
    measured = get_hardware("h100-sxm-80gb-measured")
    assert {measured: 1}[Hardware.model_validate(measured.model_dump())] == 1


def test_malformed_database_entry_names_id_and_field(tmp_path, monkeypatch):
    data = json.loads(DATA_PATH.read_text())
    data["devices"][1]["memory_bandwidth_GBps"] = -2000
    bad = tmp_path / "hardware.json"
    bad.write_text(json.dumps(data))
    monkeypatch.setattr(hwmod, "DATA_PATH", bad)
    load_database.cache_clear()
    with pytest.raises(HardwareDataError, match=r"entry 'h100-pcie-80gb'") as info:
        load_database()
    assert "memory_bandwidth_GBps" in str(info.value)
    assert info.value.errors[0]["loc"] == ("memory_bandwidth_GBps",)


def test_duplicate_id_is_an_error(tmp_path, monkeypatch):
    save_hardware(get_hardware("l4"), tmp_path)
    monkeypatch.setenv(HARDWARE_DIR_ENV, str(tmp_path))
    load_database.cache_clear()
    with pytest.raises(HardwareDataError, match="duplicate id 'l4'"):
        load_database()


# ---- lookup ----


def test_unknown_id_lists_close_matches_and_known_ids():
    with pytest.raises(UnknownHardwareError) as info:
        get_hardware("h100-sxm")
    message = str(info.value)
    assert message.startswith("hardware: unknown id 'h100-sxm'")
    assert info.value.suggestions[0] == "h100-sxm-80gb"
    assert "did you mean h100-sxm-80gb" in message
    assert "known ids:" in message and "mi300x" in message
    assert isinstance(info.value, ValueError)
    with pytest.raises(UnknownHardwareError, match="did you mean mi300x"):
        get_hardware("mi300")
    with pytest.raises(UnknownHardwareError) as info:
        get_hardware("zzzz")
    assert info.value.suggestions == []


def test_lookup_is_case_insensitive_and_accepts_hardware():
    h100 = get_hardware("h100-sxm-80gb")
    assert get_hardware("H100-SXM-80GB") is h100
    assert get_hardware(" Tpu-V5e ").id == "tpu-v5e"
    assert get_hardware(h100) is h100
    assert hardware_ids() == list(load_database())
    assert hardware_ids()[0] == "h100-sxm-80gb"


def test_load_from_json_path(tmp_path):
    record = _record(id="my-gpu", name="My GPU", memory_bandwidth_GBps=1234.0)
    path = tmp_path / "my-gpu.json"
    path.write_text(json.dumps(record))
    for ref in (path, str(path)):
        hw = get_hardware(ref)
        assert hw.id == "my-gpu" and hw.bandwidth_bytes_per_s() == pytest.approx(1.234e12)
    assert "my-gpu" not in hardware_ids()  # a file path does not join the database
    with pytest.raises(HardwareDataError, match="missing.json.*does not exist"):
        get_hardware(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(record | {"efficiency": {"matmul": 2.0}}))
    with pytest.raises(HardwareDataError, match=r"broken\.json, entry 'my-gpu'(.|\n)*efficiency\.matmul"):
        get_hardware(str(broken))


# ---- saving ----


def test_save_load_round_trip(tmp_path):
    hw = get_hardware("h200-sxm-141gb-measured").with_efficiency(matmul=0.9, source="test")
    path = save_hardware(hw, tmp_path / "sub" / "h200.json")
    assert path == tmp_path / "sub" / "h200.json"
    assert get_hardware(path) == hw
    assert save_hardware(hw, tmp_path) == tmp_path / f"{hw.id}.json"  # a directory: <id>.json
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files


def test_save_is_atomic(tmp_path, monkeypatch):
    path = save_hardware(get_hardware("l4"), tmp_path / "dev.json")
    before = path.read_text()

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(hwmod.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        save_hardware(get_hardware("l4").with_efficiency(matmul=0.5), path)
    assert path.read_text() == before  # old file intact
    assert os.listdir(tmp_path) == ["dev.json"]  # temp file removed


def test_hardware_dir_records_join_the_database(tmp_path, monkeypatch):
    measured = Hardware.model_validate(
        _record(
            id="h100-sxm-80gb-lab",
            name="H100 (lab run)",
            measured={"matmul_TFLOPs": {"bf16": 790.0}, "memory_bandwidth_GBps": 2950.0,
                      "device_name": "NVIDIA H100 80GB HBM3", "torch_version": "2.11",
                      "date": "2026-12-01"},
        )
    )
    assert "h100-sxm-80gb-lab" not in hardware_ids()  # caches the database without the dir
    save_hardware(measured, tmp_path)
    (tmp_path / "README.txt").write_text("not a record")
    monkeypatch.setenv(HARDWARE_DIR_ENV, str(tmp_path))
    load_database.cache_clear()
    assert hardware_ids()[-1] == "h100-sxm-80gb-lab"
    assert set(REQUIRED_IDS) <= set(hardware_ids())
    assert get_hardware("H100-SXM-80GB-LAB").compute_flops_per_s("bf16") == pytest.approx(790e12)
    # a missing directory counts as empty
    monkeypatch.setenv(HARDWARE_DIR_ENV, str(tmp_path / "nowhere"))
    load_database.cache_clear()
    assert "h100-sxm-80gb-lab" not in hardware_ids()


def test_measured_block_requires_something():
    with pytest.raises(ValidationError, match="at least one"):
        Measured(device_name="x", date="2026-01-01")
    assert Measured(memory_bandwidth_GBps=100.0, device_name="x", date="d").matmul_TFLOPs == {}
