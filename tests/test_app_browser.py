"""The dashboard in a real browser: `streamlit run` on 127.0.0.1 driven by Playwright with the
system Chromium (never a downloaded browser, docs/engineering-notes.md). One interaction per page with an
assertion on what is displayed; element screenshots go to test-artifacts/ (gitignored)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip("browser tests need the system Chromium at /usr/bin/chromium "
                "(apt-get install -y chromium; scripts/test.sh does it as root)",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="browser tests need the playwright package")
expect = sync_api.expect

from app import fmt  # noqa: E402
from app.validation_data import RESULTS_ENV  # noqa: E402
from costmodel import Workload, estimate, get_hardware  # noqa: E402
from costmodel.capacity import plan_capacity  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
PREFILL = Workload(batch="max", prompt_tokens=2048, generated_tokens=128)
SLOW_MS = 180_000  # a cold server builds the formulas of each model structure once
STEP_MS = 90_000  # any other wait


# CI shares 2 cores with the server: assertions wait as long as any other step may.
expect.set_options(timeout=STEP_MS)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _validation_dataset(folder: Path) -> None:
    rows = [{"model": "vanilla_31", "phase": "prefill", "device": "cpu", "predicted_s": 0.5,
             "measured_s": 1.0, "flops": 1e9, "bytes": 1e8},
            {"model": "vanilla_31", "phase": "decode", "device": "cpu", "predicted_s": 0.9,
             "measured_s": 1.0, "flops": 1e8, "bytes": 1e8}]
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r) for r in rows] + ["{not json"]
    (folder / "e2e.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "ops").mkdir(exist_ok=True)
    (folder / "ops" / "v31.json").write_text(json.dumps(
        {"model": "vanilla_31", "phase": "decode_step", "batch": 8, "context": 128,
         "hardware": "cpu-e2e", "ops": [
             {"op": "lm_head", "measured_s": 0.010, "predicted_s": 0.012},
             {"op": "layers.mlp.up", "measured_s": 0.004, "predicted_s": 0.003},
             {"op": "layers.attn.core", "measured_s": 0.002, "predicted_s": 0.002}]}))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`streamlit run app/streamlit_app.py` on a free port; yields the base URL."""
    ARTIFACTS.mkdir(exist_ok=True)
    results = tmp_path_factory.mktemp("validation-results")
    _validation_dataset(results)
    port = _free_port()
    env = os.environ | {RESULTS_ENV: str(results), "PYTHONPATH": str(ROOT)}
    log = (ARTIFACTS / "streamlit-server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app/streamlit_app.py",
         "--server.headless=true", "--server.address=127.0.0.1", f"--server.port={port}",
         "--browser.gatherUsageStats=false"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as r:
                    if r.read().decode().strip() == "ok":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"streamlit did not start; see {ARTIFACTS / 'streamlit-server.log'}")
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def chromium_browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(chromium_browser, server):
    """A fresh browser context per test (named `page`, it shadows pytest-playwright's)."""
    ctx = chromium_browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = ctx.new_page()
    pg.set_default_timeout(STEP_MS)
    pg.base = server  # type: ignore[attr-defined]
    yield pg
    ctx.close()


# --- helpers ------------------------------------------------------------------------------------

def wait_idle(page) -> None:
    """Let a rerun start, then wait until the script has finished."""
    page.wait_for_timeout(300)
    page.wait_for_selector(IDLE, timeout=SLOW_MS)


def open_page(page, path: str, title: str) -> None:
    page.goto(f"{page.base}/{path}")
    expect(page.locator("h1").filter(has_text=title)).to_be_visible(timeout=SLOW_MS)
    wait_idle(page)
    assert page.locator("[data-testid='stException']").count() == 0


def select(page, label: str, option: str) -> None:
    page.get_by_role("combobox", name=label, exact=True).click()
    page.get_by_role("option", name=option, exact=True).click()
    wait_idle(page)


def radio(page, label: str, option: str) -> None:
    group = page.locator("[data-testid='stRadio']").filter(has_text=label).first
    group.get_by_text(option, exact=True).click()
    wait_idle(page)


def number(page, label: str, value: str) -> None:
    box = page.locator("[data-testid='stNumberInput']").filter(has_text=label).first
    field = box.locator("input")
    field.fill(value)
    field.press("Enter")
    wait_idle(page)


def metric_value(page, label: str):
    card = page.locator("[data-testid='stMetric']").filter(
        has=page.locator("[data-testid='stMetricLabel']", has_text=label)).first
    return card.locator("[data-testid='stMetricValue']")


def shot(locator, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    locator.scroll_into_view_if_needed()
    box = locator.bounding_box()
    locator.screenshot(path=str(path))
    from PIL import Image

    with Image.open(path) as img:
        # the picture is of this element (its size) and shows something: a rendered widget or
        # chart has text and lines, so many colours; a blank or still-loading one has one or two
        assert abs(img.width - box["width"]) <= 2 and abs(img.height - box["height"]) <= 2
        assert len(img.convert("RGB").getcolors(maxcolors=1 << 16) or range(1 << 16)) > 16
    return path


def chart(page, index: int = 0):
    return page.locator("[data-testid='stPlotlyChart']").nth(index)


# --- one test per page --------------------------------------------------------------------------

def test_compare_hardware_change_updates_metrics(page):
    open_page(page, "", "Compare")
    v = estimate("vanilla_410", "h100-sxm-80gb", PREFILL)
    expect(metric_value(page, "Vanilla Throughput")).to_have_text(
        fmt.tokens_per_s(v.throughput_tokens_per_s))
    select(page, "Hardware", "NVIDIA A100 SXM4 80GB (a100-sxm-80gb)")
    v = estimate("vanilla_410", "a100-sxm-80gb", PREFILL)
    b = estimate("block_main_b4_1.2b", "a100-sxm-80gb", PREFILL)
    expect(metric_value(page, "Vanilla Throughput")).to_have_text(
        fmt.tokens_per_s(v.throughput_tokens_per_s))
    expect(metric_value(page, "Block TPOT")).to_have_text(fmt.seconds(b.tpot_s))
    assert "hw=a100-sxm-80gb" in page.url  # the what-if is in the URL
    shot(page.locator("[data-testid='stHorizontalBlock']").first, "compare_metrics")
    shot(chart(page, 2), "compare_block_ops")
    shot(page.locator("[data-testid='stSidebar']"), "sidebar")


def test_compare_direct_url_explains_the_comparison(page):
    """`/compare` opened directly is the page itself (no "Page not found"), and it says what
    the two architectures are, why this pair, and which ratio is better or worse."""
    open_page(page, "compare", "Compare")
    page.wait_for_timeout(1000)
    assert page.get_by_text("Page not found").count() == 0
    assert page.url.rstrip("/").endswith("/compare") or "/compare?" in page.url
    main = page.locator("[data-testid='stMainBlockContainer']")
    expect(main).to_contain_text("block decoder")
    expect(main).to_contain_text("token decoder")
    expect(main).to_contain_text("similar training loss")
    expect(main).to_contain_text("Vanilla 410M (loss 2.224) and Block 1.4B (loss 2.188)")
    v = estimate("vanilla_410", "h100-sxm-80gb", PREFILL)
    b = estimate("block_main_b4_1.2b", "h100-sxm-80gb", PREFILL)
    ttft = page.locator("[data-testid='stMetric']").filter(
        has=page.locator("[data-testid='stMetricLabel']", has_text="TTFT ratio")).first
    expect(ttft.locator("[data-testid='stMetricValue']")).to_have_text(
        fmt.ratio(b.ttft_s / v.ttft_s))
    r_ttft, r_tpot = b.ttft_s / v.ttft_s, b.tpot_s / v.tpot_s
    assert r_ttft > 1 > r_tpot
    expect(ttft.locator("[data-testid='stMetricDelta']")).to_have_text(
        f"worse: {(r_ttft - 1) * 100:.0f}% higher")
    tpot = page.locator("[data-testid='stMetric']").filter(
        has=page.locator("[data-testid='stMetricLabel']", has_text="TPOT ratio")).first
    expect(tpot.locator("[data-testid='stMetricDelta']")).to_have_text(
        f"better: {(1 - r_tpot) * 100:.0f}% lower")
    expect(metric_value(page, "Block Decode time per token")).to_have_text(
        fmt.seconds(b.decode_time_per_token_s))
    shot(main.locator("[data-testid='stExpander']").first, "compare_explanation")
    # the root URL lands on /compare and keeps the what-if in the query
    page.goto(f"{page.base}/?hw=a100-sxm-80gb")
    wait_idle(page)
    expect(page.locator("h1").filter(has_text="Compare")).to_be_visible()
    assert "/compare" in page.url and "hw=a100-sxm-80gb" in page.url


PAGE_PATHS = {"compare": "Compare", "design-space": "Design space", "roofline": "Roofline",
              "serving": "Serving",
              "formulas": "Formulas", "capacity": "Capacity planner",
              "validation": "Validation", "paper": "Paper"}


def test_every_page_screenshot(chromium_browser, server):
    """Each page by its own URL, whole (a viewport tall enough that nothing scrolls), saved to
    test-artifacts/pages/ for a person to look at."""
    folder = ARTIFACTS / "pages"
    folder.mkdir(parents=True, exist_ok=True)
    ctx = chromium_browser.new_context(viewport={"width": 1400, "height": 3400})
    pg = ctx.new_page()
    pg.set_default_timeout(STEP_MS)
    try:
        for path, title in PAGE_PATHS.items():
            pg.goto(f"{server}/{path}")
            expect(pg.locator("h1").filter(has_text=title)).to_be_visible(timeout=SLOW_MS)
            wait_idle(pg)
            pg.wait_for_timeout(3000)  # plotly draws after the script finishes
            expect(pg.locator("[data-testid='stSkeleton']")).to_have_count(0)
            wait_idle(pg)
            assert pg.get_by_text("Page not found").count() == 0, path
            assert pg.locator("[data-testid='stException']").count() == 0, path
            out = folder / f"{path}.png"
            pg.screenshot(path=str(out))
            assert out.stat().st_size > 20_000, path
    finally:
        ctx.close()


def test_compare_efficiency_override(page):
    open_page(page, "", "Compare")
    page.locator("[data-testid='stSidebar']").get_by_text("Efficiencies (the record's)").click()
    number(page, "Overlap", "0")
    hw = get_hardware("h100-sxm-80gb").with_efficiency(overlap=0.0)
    v = estimate("vanilla_410", hw, PREFILL)
    expect(metric_value(page, "Vanilla TTFT")).to_have_text(fmt.seconds(v.ttft_s))
    assert "eff_ov=0" in page.url
    shot(page.locator("[data-testid='stSidebar'] [data-testid='stExpander']").first,
         "sidebar_efficiencies")


def test_compare_bad_input_shows_error(page):
    open_page(page, "?prompt=0", "Compare")
    alert = page.locator("[data-testid='stAlert']").filter(has_text="prompt_tokens")
    expect(alert).to_contain_text("Input should be greater than 0")
    assert page.locator("[data-testid='stException']").count() == 0
    shot(alert.first, "compare_bad_input")


def test_design_space_axis(page):
    open_page(page, "design-space", "Design space")
    select(page, "Sweep over", "Prompt tokens")
    expect(chart(page, 0)).to_contain_text("Throughput vs Prompt tokens")
    shot(chart(page, 0), "design_space_sweep")
    shot(chart(page, 2), "design_space_pareto")


def test_roofline_phase(page):
    open_page(page, "roofline", "Roofline")
    select(page, "Phase", "prefill")
    expect(chart(page)).to_contain_text("ops of one request (prefill)")
    expect(chart(page)).to_contain_text("ridge 295 FLOP/byte")
    shot(chart(page), "roofline_chart")


def test_formulas_metric(page):
    open_page(page, "formulas", "Formulas")
    select(page, "Metric", "weights_bytes")
    v = estimate("vanilla_410", "h100-sxm-80gb", PREFILL)
    expect(metric_value(page, "Value of weights_bytes")).to_have_text(fmt.bytes_(v.weights_bytes))
    tables = page.locator("[data-testid='stMarkdown']").filter(has_text="Linear projections")
    expect(tables).to_have_count(2)  # block decoder, token decoder
    expect(tables.first).to_contain_text("Attention scores")
    shot(page.locator(".katex-display").first, "formulas_latex")
    shot(tables.first, "formulas_relative_costs")


def test_capacity_latency_bound(page):
    open_page(page, "capacity", "Capacity planner")
    radio(page, "Target", "Both")
    number(page, "TPOT bound", "5")
    plan = plan_capacity("vanilla_410", "h100-sxm-80gb", PREFILL, target_tokens_per_s=1e6,
                         tpot_bound_s=5e-3)
    expect(metric_value(page, "Batch per replica")).to_have_text(fmt.count(plan.batch))
    expect(metric_value(page, "GPUs (replicas)")).to_have_text(fmt.count(plan.gpus))
    shot(page.locator("[data-testid='stHorizontalBlock']").filter(
        has_text="Batch per replica").first, "capacity_plan")
    shot(chart(page), "capacity_chart")


def test_validation_dataset(page):
    open_page(page, "validation", "Validation")
    expect(metric_value(page, "MAPE (all selected points)")).to_have_text("30.0 %")
    page.get_by_text("1 line(s) skipped").click()
    main = page.locator("[data-testid='stMainBlockContainer']")
    expect(main.locator("[data-testid='stExpander']")).to_contain_text("e2e.jsonl:3: not JSON")
    shot(chart(page, 0), "validation_scatter")
    # the dataset's device "cpu" has no hardware record, so no roofline is drawn for it (the
    # page says so); the op profile is found by its title, not by its position
    expect(main).to_contain_text("cpu: no hardware record")
    op_chart = page.locator("[data-testid='stPlotlyChart']").filter(
        has_text="vanilla_31 decode_step B=8")
    expect(op_chart).to_have_count(1)
    shot(op_chart.first, "validation_op_profile")


def test_paper_setting(page):
    open_page(page, "paper", "Paper")
    radio(page, "Setting", "decode-heavy (prompt 128, generated 2048)")
    expect(chart(page)).to_contain_text("Paper Table 1 vs predictions (decode-heavy)")
    shot(chart(page), "paper_chart")


def teardown_module() -> None:
    """Keep test-artifacts/ for CI upload; drop Playwright's stray downloads, if any."""
    shutil.rmtree(ARTIFACTS / "downloads", ignore_errors=True)
