"""The HTML/Markdown uncertainty report: content, self-containment, CLI, a real browser."""

from __future__ import annotations

import base64
import re
import sys
import types
import warnings

import numpy as np
import pandas as pd
import pytest
from browser import find_chromium, inspect_page
from posterior_factory import map_like, synthetic_frame, synthetic_posterior

import bayescale
from bayescale.model import Priors
from bayescale.report import (
    Target,
    main,
    offset_table,
    parse_count,
    parse_target,
    prediction_table,
    priors_table,
    status,
    write_report,
)


@pytest.fixture(scope="module")
def post():
    return synthetic_posterior()


@pytest.fixture(scope="module")
def written(post, tmp_path_factory):
    """One report (HTML + Markdown) of the synthetic posterior, shared by several tests."""
    out = tmp_path_factory.mktemp("report")
    held = synthetic_frame(families=("fam-a",), sizes=(3e9,), n_ckpt=4, seed=7)
    target = ("fam-a", 3e9, float(held["tokens"].max()))
    with pytest.warns(bayescale.UnseenFamilyWarning, match="new-family"):
        stat = write_report(
            post,
            out / "report.html",
            markdown=out / "md" / "report.md",
            targets=[target, "new-family:1B:20B"],
            heldout=held,
            diagnostic_plots=True,
        )
    return {"dir": out, "stat": stat, "held": held, "target": target}


# -- parsing --------------------------------------------------------------------------


def test_parse_count_and_target():
    assert parse_count("7B") == 7e9
    assert parse_count("1.5T") == 1.5e12
    assert parse_count("125m") == 125e6
    assert parse_count("3e11") == 3e11
    assert parse_target("gpt3:175B:300B") == Target("gpt3", 175e9, 300e9)
    assert parse_target("gpt3:175B:300B:1.79") == Target("gpt3", 175e9, 300e9, 1.79)
    assert parse_target("odd:name:1B:20B") == Target("odd:name", 1e9, 20e9)
    assert parse_target(("f", 1e9, 2e10)) == Target("f", 1e9, 2e10)
    assert parse_target({"family": "f", "params": 1e9, "tokens": 2e10}).observed is None
    with pytest.raises(ValueError, match="FAMILY:N:D"):
        parse_target("gpt3:175B")
    with pytest.raises(ValueError, match="cannot read"):
        parse_target("gpt3:lots:300B")
    with pytest.raises(ValueError, match="> 0"):
        parse_count("0")


# -- status ---------------------------------------------------------------------------


def test_status_pass_on_clean_draws(post):
    stat = status(post)
    assert stat.status == "pass", stat.checks
    assert [c[0] for c in stat.checks] == ["R-hat", "ESS", "divergences", "LOO Pareto k"]
    assert all(c[1] == "pass" for c in stat.checks)


def test_status_shows_every_convergence_warning():
    bad = synthetic_posterior(divergences=3, chain_shift=0.2)
    with pytest.warns(bayescale.ConvergenceWarning) as rec:
        diag = bad.check(warn=True)
    stat = status(bad)
    assert stat.status == "warn"
    by_name = {name: (s, text) for name, s, text in stat.checks}
    assert by_name["divergences"] == ("warn", "3 divergent transitions of 1000 draws")
    assert by_name["R-hat"][0] == "warn" and "alpha" in by_name["R-hat"][1]
    # each problem of the ConvergenceWarning has a warn line in the status
    message = str(rec[0].message)
    assert "divergent" in message and "R-hat" in message
    sampling = [c for c in stat.checks if c[0] != "LOO Pareto k"]
    assert sum(s == "warn" for _, s, _ in sampling) == len(diag["problems"])
    assert by_name["ESS"][0] == ("warn" if any("ESS" in p for p in diag["problems"]) else "pass")


def test_status_of_point_estimate(post):
    stat = status(map_like(post))
    assert stat.status == "warn"
    assert stat.checks[0][0] == "method" and "MAP point estimate" in stat.checks[0][2]
    assert stat.checks[-1][:2] == ("LOO Pareto k", "n/a")


def test_status_flags_high_pareto_k(post):
    """One observation whose log-likelihood is heavy-tailed across draws gets k > 0.7."""
    import xarray as xr

    tree = post.tree.copy()
    ll = tree["log_likelihood"]["innovation"].values.copy()
    rng = np.random.default_rng(0)
    heavy = -np.abs(rng.standard_cauchy(ll.shape[:2]))
    ll[..., 0] = 0.5 * heavy  # finite, very large k
    ll[..., 1] = 50 * heavy  # k not estimable (nan): must count as bad too
    tree["log_likelihood"] = xr.DataTree(xr.Dataset({"innovation": (("chain", "draw", "obs"), ll)}))
    from dataclasses import replace

    stat = status(replace(post, tree=tree))
    name, s, text = stat.checks[-1]
    assert (name, s) == ("LOO Pareto k", "warn")
    assert text.startswith("2 of 48 checkpoints have Pareto k >")
    assert "(2 above 1, 1 not estimable)" in text


# -- tables ---------------------------------------------------------------------------


def test_offset_table_in_published_units(post):
    table = offset_table(post, prob=0.9)
    f = post.families.index("fam-b")
    scale = post.data.family_scale[f]
    e = scale * np.exp(post.draws("log_E")[:, f])
    med, lo, hi = np.median(e), *np.quantile(e, [0.05, 0.95])
    assert table.loc[f, "E (nats)"] == f"{med:.4g} [{lo:.3g}, {hi:.3g}]"
    # the synthetic law has E = 1.7 × 1.1 for the second family
    assert med == pytest.approx(1.7 * 1.1, rel=0.05)


def test_prediction_table_matches_predict(post):
    targets = [parse_target("fam-a:3B:60B:2.3")]
    table = prediction_table(post, targets, prob=0.9, seed=3)
    for kind in ("mean", "new_run"):
        row = table[table["kind"] == kind].iloc[0]
        ref = post.predict("fam-a", 3e9, 6e10, kind=kind, prob=0.9, seed=3).iloc[0]
        assert row["median"] == pytest.approx(ref["median"])
        assert row["lower"] == pytest.approx(ref["lower"])
        assert row["upper"] == pytest.approx(ref["upper"])
        assert row["rel_error"] == pytest.approx((ref["median"] - 2.3) / 2.3)
        assert row["inside"] == (ref["lower"] <= 2.3 <= ref["upper"])


def test_priors_table_covers_every_setting():
    table = priors_table(Priors())
    named = {n.strip() for s in table["setting"] for n in s.split(",")}
    assert named == set(Priors().to_dict())
    row = table[table["setting"] == "seed_sd"].iloc[0]
    assert row["value"] == "0.03" and "seed scatter" in row["meaning"]


# -- the written report ---------------------------------------------------------------------


def test_html_is_self_contained(written):
    text = (written["dir"] / "report.html").read_text()
    assert "<script" not in text and "<link" not in text and "@import" not in text
    assert not re.search(r"(src|href)=\"(?!data:|#)", text)
    assert "url(" not in text
    imgs = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([^"]+)"', text)
    assert len(imgs) == text.count("<img")
    # trajectories, exponents, offsets, seed effects, frontier, 2 targets, trace, rank
    assert len(imgs) == 9
    for b64 in imgs:
        assert base64.b64decode(b64)[:8] == b"\x89PNG\r\n\x1a\n"


def test_html_content(written, post):
    text = (written["dir"] / "report.html").read_text()
    assert written["stat"].status == "pass"
    assert 'data-status="pass"' in text.split("<nav>")[0]
    for title in ("Data", "Model and priors", "Estimates", "Predictions", "Figures"):
        assert f"<h2>{title}</h2>" in text
    assert "Downstream" not in text and "What to train next" not in text
    # held-out loss is matched to the target and its error shown
    observed = written["held"].sort_values("tokens")["loss"].iloc[-1]
    assert f"{observed:.4g}" in text
    assert "predicted from the population of families: new-family" in text
    for fam in post.families:
        assert f"<td>{fam}</td>" in text


def test_markdown_carries_the_same_tables(written):
    md_path = written["dir"] / "md" / "report.md"
    md = md_path.read_text()
    html_text = (written["dir"] / "report.html").read_text()
    captions = re.findall(r"<caption>(.*?)</caption>", html_text)
    assert captions
    for cap in captions:
        plain = re.sub(r"</?code>", "`", cap)
        assert f"**{plain}**" in md
    pngs = re.findall(r"!\[[^\]]*\]\((report_files/[^)]+\.png)\)", md)
    assert len(pngs) == 9
    for rel in pngs:
        assert (md_path.parent / rel).read_bytes()[:4] == b"\x89PNG"
    assert "> **Status: PASS**" in md


def test_report_of_warned_fit_says_so(tmp_path):
    bad = synthetic_posterior(divergences=5, chain_shift=0.2, seed=1)
    stat = write_report(bad, tmp_path / "r.html", diagnostic_plots=False)
    text = (tmp_path / "r.html").read_text()
    assert stat.status == "warn"
    banner = text.split("<nav>")[0]
    assert 'data-status="warn"' in banner
    assert "5 divergent transitions" in banner and "R-hat" in banner


def test_optional_sections_by_feature_detection(post, tmp_path, monkeypatch):
    calls = {"plan": [], "downstream": []}

    def fake_plan(p, **kwargs):
        calls["plan"].append((p, kwargs))
        return pd.DataFrame({"candidate": ["3 seeds at 1B"], "sd_reduction_per_flop": [1.5e-21]})

    def fake_predict_downstream(loss_post, down_post, *, family, params, tokens, kind, **kw):
        calls["downstream"].append((loss_post, down_post, family, params, tokens, kind, kw))
        return pd.DataFrame(
            {"family": [family], "params": [params], "tokens": [tokens], "task": ["avg17"],
             "kind": [kind], "median": [0.41]}
        )  # fmt: skip

    monkeypatch.setitem(sys.modules, "bayescale.design", types.SimpleNamespace(plan=fake_plan))
    monkeypatch.setitem(
        sys.modules,
        "bayescale.downstream",
        types.SimpleNamespace(predict_downstream=fake_predict_downstream),
    )
    down_fit = object()
    write_report(
        post,
        tmp_path / "r.html",
        targets=["fam-a:3B:60B"],
        plan={"target": "fam-a:3B:60B"},
        downstream={"posterior": down_fit, "tasks": "avg46"},
        diagnostic_plots=False,
    )
    text = (tmp_path / "r.html").read_text()
    assert calls["plan"] == [(post, {"target": "fam-a:3B:60B"})]
    assert "<h2>What to train next</h2>" in text and "3 seeds at 1B" in text
    assert "1.500e-21" in text
    assert [c[2:6] for c in calls["downstream"]] == [
        ("fam-a", 3e9, 6e10, "mean"),
        ("fam-a", 3e9, 6e10, "new_run"),
    ]
    assert all(c[0] is post and c[1] is down_fit for c in calls["downstream"])
    assert calls["downstream"][0][6] == {"tasks": "avg46"}
    section = text.split("<h2>Downstream predictions</h2>")[1].split("</section>")[0]
    assert section.count("<td>avg17</td>") == 2 and "<td>3B</td>" in section

    # versions without the features say so instead of failing
    monkeypatch.setitem(sys.modules, "bayescale.design", None)
    monkeypatch.setitem(sys.modules, "bayescale.downstream", None)
    write_report(
        post,
        tmp_path / "r2.html",
        targets=["fam-a:3B:60B"],
        plan={"target": "x"},
        downstream=down_fit,
        diagnostic_plots=False,
    )
    text = (tmp_path / "r2.html").read_text()
    assert "Downstream prediction (bayescale.downstream) is not available" in text
    assert "Experiment planning (bayescale.design.plan) is not available" in text
    # a ready table needs no module at all
    table = pd.DataFrame({"task": ["hellaswag"], "error": [0.41]})
    write_report(post, tmp_path / "r3.html", downstream=table, diagnostic_plots=False)
    assert "hellaswag" in (tmp_path / "r3.html").read_text()


@pytest.mark.skipif(
    find_chromium() is None,
    reason="chromium not found: install it (Debian: apt-get install -y chromium) to check "
    "the report in a real browser",
)
def test_report_renders_in_headless_chromium(written, tmp_path):
    shot = tmp_path / "report.png"
    page = inspect_page(written["dir"] / "report.html", screenshot=shot)
    assert page["errors"] == []
    assert len(page["images"]) == 9
    for img in page["images"]:
        assert img["complete"] and img["naturalWidth"] > 0, img
    assert all(u.startswith(("file:", "data:")) for u in page["requests"])
    assert page["status"] == written["stat"].status
    assert "PASS" in page["text"] and "Predicted loss" in page["text"]
    assert shot.read_bytes()[:4] == b"\x89PNG"


# -- end to end: a real (MAP) fit, saved, reported from the command line --------------------


@pytest.fixture(scope="module")
def fit_file(tmp_path_factory):
    frame = synthetic_frame(families=("fam-a", "fam-b"), sizes=(1e8, 1e9), n_ckpt=6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = bayescale.fit(frame, method="map", min_tokens=None, seed=0)
    path = tmp_path_factory.mktemp("fit") / "fit.nc"
    post.save(path)
    return path


@pytest.mark.slow
def test_cli_report_end_to_end(fit_file, tmp_path, capsys):
    out, md = tmp_path / "r.html", tmp_path / "r.md"
    args = [str(fit_file), "--out", str(out), "--markdown", str(md)]
    code = main(args + ["--target", "fam-a:3B:60B", "fam-b:1B:20B", "--target", "fam-a:1B:1T"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "status: WARN" in captured.out and "MAP point estimate" in captured.err
    text = out.read_text()
    assert "MAP point estimate" in text and "fam-a" in text
    predictions = text.split("<h2>Predictions</h2>")[1].split("</table>")[0]
    assert predictions.count("<tr>") == 1 + 3 * 2  # header + 3 targets × 2 kinds
    assert (tmp_path / "r_files" / "trajectories.png").exists()
    # the API gives the same verdict
    assert bayescale.report(bayescale.load(fit_file), tmp_path / "api.html").status == "warn"
    # and the `bayescale report` subcommand is this command
    from bayescale.cli import main as cli_main

    assert cli_main(["report", str(fit_file), "--out", str(tmp_path / "cli.html")]) == 0
    assert "MAP point estimate" in (tmp_path / "cli.html").read_text()
    assert cli_main(["report", str(fit_file), "--out", "x.html", "--target", "fam-a"]) == 2


@pytest.mark.slow
def test_cli_report_bad_input(fit_file, tmp_path, capsys):
    assert main([str(fit_file), "--out", str(tmp_path / "r.html"), "--target", "fam-a:3B"]) == 2
    assert "FAMILY:N:D" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.nc"), "--out", str(tmp_path / "r.html")]) == 2
    assert "missing.nc does not exist" in capsys.readouterr().err
    (tmp_path / "junk.nc").write_text("not a fit")
    assert main([str(tmp_path / "junk.nc"), "--out", str(tmp_path / "r.html")]) == 2
    assert "cannot read fit file" in capsys.readouterr().err
    assert main([str(fit_file), "--out", str(tmp_path / "r.html"), "--prob", "2"]) == 2
    assert not (tmp_path / "r.html").exists()
