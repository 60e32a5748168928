"""genlib bench modes: statistics, tables, README splicing, and the --quick command end to end."""
import json
import math

import pytest

from genlib import bench


def test_mean_se():
    m, se = bench.mean_se([8, 8, 8])
    assert (m, se) == (8.0, 0.0)
    m, se = bench.mean_se([1.0, 2.0, 3.0, 4.0])
    assert m == 2.5 and se == pytest.approx(math.sqrt(5 / 3) / 2)
    assert bench.mean_se([5.0]) == (5.0, 0.0)


def _fake_result():
    runs = [{"dataset": ds, "method": m, "seed": s, "modes": 8 if m == "PacGAN2" else 5 + s,
             "high_quality": 0.95, "reverse_kl": 0.01 * (s + 1), "seconds": 1.0}
            for ds in ("ring",) for m in ("GAN", "PacGAN2") for s in range(3)]
    return {"command": "genlib bench modes --runs 3", "device": "test", "wall_seconds": 60.0,
            "steps": 100, "datasets": ["ring"], "methods": ["GAN", "PacGAN2"], "runs": runs}


def test_markdown_has_ours_and_published_rows():
    md = bench.markdown_modes(_fake_result())
    assert "| ring (8) | GAN | genlib | 3 | 6.0 ± 1.0 [5.0–7.0] |" in md
    assert "| ring (8) | PacGAN2 | genlib | 3 | 8.0 ± 0.0 [8.0–8.0] | 95.0 ± 0.0 [95.0–95.0] | 0.020 ± 0.010 [0.010–0.030] |" in md
    assert "standard deviation over the seeds" in md
    assert "| ring (8) | GAN | PacGAN T1 | 10 | 6.3 | 98.2 | 0.45 |" in md
    one = dict(_fake_result(), runs=_fake_result()["runs"][:1])
    assert "| ring (8) | GAN | genlib | 1 | 5.0 | 95.0 | 0.010 |" in bench.markdown_modes(one)
    assert "Lin et al." in md and "ln(K p_k)" in md and "genlib bench modes --runs 3" in md
    assert "steps per run: 100)" in md and "3×128" in md and "batch 256 (ring)" in md
    assert "steps per run: ring 5,000, grid 8,000)" in bench.markdown_modes(
        dict(_fake_result(), steps={"ring": 5000, "grid": 8000}))
    assert "grid" not in md.split("Published rows")[0]  # only the datasets that were run


def test_fmt_counts_infinite_runs_apart():
    assert bench._fmt([0.1, 0.3, float("inf")]) == "0.20 ± 0.14 [0.10–0.30] (1 run: inf)"
    assert bench._fmt([float("inf")] * 2) == "inf"
    assert bench._fmt([0.5]) == "0.50"


def test_summary_groups_by_dataset_and_method():
    s = bench.summarize(_fake_result()["runs"])
    row = next(r for r in s if r["method"] == "GAN")
    assert row["n"] == 3 and row["modes_all"] == [5, 6, 7] and row["modes"][0] == 6.0


def test_update_readme_replaces_only_between_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- bench-modes:start -->\nold\n<!-- bench-modes:end -->\noutro\n")
    assert bench.update_readme("new table\n", "bench-modes", readme)
    assert readme.read_text() == "intro\n<!-- bench-modes:start -->\nnew table\n<!-- bench-modes:end -->\noutro\n"
    assert not bench.update_readme("x\n", "bench-stacked", readme)  # no markers: untouched


def test_cli_quick_runs_and_saves(tmp_path, capsys):
    from genlib.cli import main

    assert main(["bench", "modes", "--quick", "--out", str(tmp_path), "--threads", "1"]) == 0
    res = json.loads((tmp_path / "bench_modes.json").read_text())
    assert res["methods"] == ["GAN", "PacGAN2"] and res["datasets"] == ["ring"] and res["steps"] == {"ring": 1000}
    assert len(res["runs"]) == 2 and all(0 <= r["modes"] <= 8 for r in res["runs"])
    md = (tmp_path / "bench_modes.md").read_text()
    assert "PacGAN T1" in md and "| ring (8) | PacGAN2 | genlib | 1 |" in md
    assert "PacGAN T1" in capsys.readouterr().out
    # re-render from the JSON without training
    assert main(["bench", "modes", "--render-only", "--out", str(tmp_path)]) == 0


def test_cli_rejects_unknown_method(tmp_path):
    from genlib.cli import main

    assert main(["bench", "modes", "--methods", "GAN,Nope", "--out", str(tmp_path)]) == 2


def test_committed_bench_meets_the_targets_and_is_what_the_readme_shows():
    """The README's mode-collapse table and its bullets rest on results/bench_modes.json: check both."""
    res = json.loads((bench.RESULTS / "bench_modes.json").read_text())
    assert "--runs 5" in res["command"] and res["wall_seconds"] < 3600, "the full bench must fit the hour"
    rows = {(r["dataset"], r["method"]): r for r in bench.summarize(res["runs"])}
    assert all(r["n"] == 5 for r in rows.values())

    def best(ds, ok):
        return [m for (d, m), r in rows.items() if d == ds and ok(r)]

    # issue 5's bar: beat PacGAN Table 1's best rows on modes and reverse KL at comparable precision
    assert best("ring", lambda r: min(r["modes_all"]) == 8 and r["reverse_kl"][0] < 0.07
                and r["high_quality"][0] >= 0.95), "no method reaches ring 8/8, rKL < 0.07, HQ ≥ 95 %"
    assert best("grid", lambda r: r["modes"][0] > 24.8 and r["reverse_kl"][0] < 0.04
                and r["high_quality"][0] >= 0.90), "no method reaches grid > 24.8 modes, rKL < 0.04, HQ ≥ 90 %"
    # statements in the README bullets and chapter 04's text
    assert min(rows["ring", "GAN"]["modes_all"]) >= 7, "text: the bench's vanilla GAN finds 7–8 ring modes"
    readme = (bench.ROOT / "README.md").read_text()
    gan = rows["grid", "GAN"]["modes_all"]
    assert f"vanilla GAN find {min(gan)}–{max(gan)} of the 25 grid modes" in readme
    mb = rows["grid", "MB-std"]
    assert min(mb["modes_all"]) == 25 and f"{100 * mb['high_quality'][0]:.1f}% high quality" in readme
    assert f"mean reverse KL of {mb['reverse_kl'][0]:.3f}" in readme
    for m in ("WGAN-GP", "SN"):  # "capture almost no mode" in this setting
        assert rows["ring", m]["modes"][0] <= 1 and rows["grid", m]["modes"][0] <= 2
    # the table in the README and in results/ is the command's own output, not typed in
    md = bench.markdown_modes(res)
    assert (bench.RESULTS / "bench_modes.md").read_text() == md
    assert f"<!-- bench-modes:start -->\n{md}<!-- bench-modes:end -->" in readme


def _args(*argv):
    import argparse

    p = argparse.ArgumentParser()
    bench._add_arguments(p)
    return p.parse_args(["modes", *argv])


def test_only_the_full_run_writes_to_results():
    assert bench.output_folder(_args()) == (bench.RESULTS, False)
    assert bench.output_folder(_args("--runs", "5", "--methods", ",".join(bench.DEFAULT_METHODS))) == (bench.RESULTS, False)
    for argv in (["--quick"], ["--budget", "quick"], ["--runs", "2"], ["--steps", "500"], ["--methods", "GAN"],
                 ["--datasets", "ring"], ["--stacked-steps", "100"]):
        assert bench.output_folder(_args(*argv)) == (bench.QUICK_RESULTS, True), argv
    assert bench.output_folder(_args("--quick", "--overwrite-results")) == (bench.RESULTS, True)
    assert bench.output_folder(_args("--quick", "--out", "elsewhere"))[0].name == "elsewhere"
    assert bench.output_folder(_args("--render-only"))[0] == bench.RESULTS


def test_quick_run_leaves_the_committed_results_alone(tmp_path, monkeypatch):
    """Issue 13: a newcomer's --quick run once replaced the committed 55-minute table."""
    from genlib.cli import main

    results = tmp_path / "results"
    results.mkdir()
    committed = '{"committed": true}\n'
    (results / "bench_modes.json").write_text(committed)
    monkeypatch.setattr(bench, "RESULTS", results)
    monkeypatch.setattr(bench, "QUICK_RESULTS", results / "quick")
    assert main(["bench", "modes", "--quick", "--steps", "20", "--threads", "1"]) == 0
    assert (results / "bench_modes.json").read_text() == committed
    assert json.loads((results / "quick" / "bench_modes.json").read_text())["steps"] == {"ring": 20}
    # the README's table is refused to a partial run, and nothing is written
    readme_before = (bench.ROOT / "README.md").read_text()
    assert main(["bench", "modes", "--quick", "--steps", "20", "--update-readme"]) == 2
    assert (bench.ROOT / "README.md").read_text() == readme_before
    assert main(["bench", "modes", "--render-only", "--out", str(results / "quick"), "--update-readme"]) == 2
    # told explicitly, it does overwrite
    assert main(["bench", "modes", "--quick", "--steps", "20", "--threads", "1", "--overwrite-results"]) == 0
    assert json.loads((results / "bench_modes.json").read_text())["steps"] == {"ring": 20}
