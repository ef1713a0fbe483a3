"""The cost model against the paper's measurements (docs/model.md 5.2, 5.3).

A roofline is an upper bound on throughput; what the paper's numbers can test is how the model
sits against them: a uniform efficiency gap (a band, the same for every model), the ranking of
the models, and the matched-pair speedups. Bands were set from the first run of these checks
(2026-12-01) with some margin; the comments give the observed ranges.
"""

import pytest

from costmodel.paper import PROFILES, TABLE1, mape, pair_ratios, paper_table, spearman


@pytest.fixture(scope="module")
def table():
    return paper_table()


def _spearman(a, b) -> float:
    return a.rank().corr(b.rank())


def test_every_preset_and_setting_is_compared(table):
    assert len(table) == 2 * len(TABLE1) == 20
    assert table.paper_throughput_tok_s.notna().all() and table.paper_memory_MB.notna().all()


def test_official_profile_sits_a_uniform_factor_above_measured(table):
    # hf-legacy predicted / measured throughput: observed 3.3-5.4 over all 20 cases
    over = table["hf-legacy_over_paper"]
    assert (over > 2.5).all() and (over < 7).all()
    # the same efficiency gap for every model: the model explains the relative speeds
    assert over.max() / over.min() < 2.0


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


def test_ideal_profile_is_a_higher_bound_than_the_official_one(table):
    assert (table.static_over_paper > table["hf-legacy_over_paper"]).all()
    assert (table.static_max_batch >= table["hf-legacy_max_batch"]).all()


@pytest.mark.parametrize("setting", ["prefill-heavy", "decode-heavy"])
def test_predicted_ranking_matches_measured(setting, table):
    t = table[table.setting == setting]
    assert _spearman(t["hf-legacy_throughput_tok_s"], t.paper_throughput_tok_s) >= 0.95
    assert _spearman(t["hf-legacy_memory_per_sample_MiB"], t.paper_memory_MB) >= 0.9


def test_predicted_memory_per_sample_is_below_measured(table):
    # the paper's memory per sample (formula unstated) is 1.5-4.8x the predicted KV + workspace
    ratio = table.paper_memory_MB / table["hf-legacy_memory_per_sample_MiB"]
    assert (ratio > 1.2).all() and (ratio < 6).all()


def test_matched_pair_speedups(table):
    pairs = pair_ratios(table)
    # every pair: the official profile's predicted speedup within 0.65-1.35x of the paper's
    # (observed 0.71-1.30); the ideal profile also predicts the Block Transformer faster
    rel = pairs["hf-legacy_ratio"] / pairs.paper_ratio
    assert (rel > 0.65).all() and (rel < 1.35).all(), rel.round(2).tolist()
    assert (pairs.static_ratio > 1).all()
