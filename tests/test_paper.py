"""Paper Table 1 (SPEC.md 5.2) beside predictions; matched-pair ratios (SPEC.md 5.3)."""

import pytest

from costmodel.paper import PROFILES, TABLE1, mape, pair_ratios, paper_table, spearman


@pytest.fixture(scope="module")
def table():
    return paper_table()


def test_measured_values_are_spec_5_2(table):
    row = table[(table.preset == "block_main_b4_1.2b") & (table.setting == "prefill-heavy")]
    assert row.paper_throughput_tok_s.item() == 12_400.0
    assert row.paper_memory_MB.item() == 194.2
    assert len(TABLE1) == 10 and len(table) == 20


def test_roofline_is_an_upper_bound_on_measured_throughput(table):
    for profile in PROFILES:  # every profile's pure roofline (not the calibrated columns)
        assert (table[f"{profile}_over_paper"] > 1).all(), profile


def test_calibrated_expectation_is_close_and_ranks_like_the_paper(table):
    err, rho = mape(table), spearman(table)
    # the calibration record fitted on Table 1 (docs/published.md 3); bounds are far above
    assert err["calibrated-official-eager"] < 15 < err["official-eager"]
    assert rho["calibrated-official-eager"] > 0.95
    # the official code's bounds are closer to the paper than our reference's static path
    assert err["official"] < err["hf-legacy"] < err["static"]


def test_static_profile_fits_more_sequences_than_hf_legacy(table):
    assert (table.static_max_batch >= table["hf-legacy_max_batch"]).all()


def test_pair_ratios_reproduce_spec_5_3(table):
    pairs = pair_ratios(table)
    got = pairs.set_index(["vanilla", "block", "setting"]).paper_ratio
    # SPEC.md 5.3: 12.4/0.8 = 15.5x and 25.7/2.1 = 12.2x
    assert got[("vanilla_410", "block_main_b4_1.2b", "prefill-heavy")] == pytest.approx(15.5)
    assert got[("vanilla_410", "block_main_b4_1.2b", "decode-heavy")] == pytest.approx(12.24, 0.01)
    # the Block Transformer is predicted faster in every matched pair
    ratios = [c for c in pairs.columns if c.endswith("_ratio")]
    assert len(ratios) == 7 and (pairs[ratios] > 1).all().all()
