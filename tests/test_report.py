"""The uncertainty report: answer first, self-contained, escaped, atomic; in a real browser."""

from __future__ import annotations

import base64
import re
import warnings

import numpy as np
import pandas as pd
import pytest
from browser import find_chromium, inspect_page

import bayescale
from bayescale import testing
from bayescale.cli import main
from bayescale.model import Priors
from bayescale.options import Target, parse_count
from bayescale.reporting import build_report, method, status, write_report
from bayescale.reporting import summaries as sm
from bayescale.testing import point_estimate, synthetic_frame


@pytest.fixture(scope="module")
def post():
    return testing.posterior(draws=400)


@pytest.fixture(scope="module")
def written(post, tmp_path_factory):
    """One report (HTML + Markdown) of the synthetic posterior, shared by several tests."""
    out = tmp_path_factory.mktemp("report")
    held = synthetic_frame(families=("fam-a",), sizes=(3e9,), n_ckpt=4, seed=7)
    target = ("fam-a", 3e9, float(held["tokens"].max()))
    stat = write_report(
        post,
        out / "report.html",
        markdown=out / "report.md",
        targets=[target, "new-family:1B:20B"],
        heldout=held,
        diagnostic_plots=True,
    )
    return {"dir": out, "stat": stat, "held": held, "target": target}


# -- targets ------------------------------------------------------------------------------
def test_one_target_grammar():
    assert parse_count("7B") == 7e9 and parse_count("125m") == 125e6
    assert Target.parse("gpt3:175B:300B") == Target("gpt3", 175e9, 300e9)
    assert Target.parse("gpt3:175B:300B:1.79") == Target("gpt3", 175e9, 300e9, 1.79)
    assert Target.parse("odd:name:1B:20B") == Target("odd:name", 1e9, 20e9)
    assert Target.parse(("f", "1B", 2e10)) == Target("f", 1e9, 2e10)
    assert Target.parse({"family": "f", "params": 1e9, "tokens": 2e10}).observed is None
    assert str(Target("gpt3", 175e9, 300e9)) == "gpt3:175B:300B"
    with pytest.raises(ValueError, match="FAMILY:N:D"):
        Target.parse("gpt3:175B")
    with pytest.raises(ValueError, match="not a count"):
        Target.parse("gpt3:lots:300B")
    with pytest.raises(ValueError, match="billions"):
        Target.parse("gpt3:175:300B")


# -- checks -------------------------------------------------------------------------------
def test_status_pass_on_clean_draws(post):
    stat = status(post)
    assert [c[0] for c in stat.checks] == ["R-hat", "ESS", "divergences", "LOO Pareto k"]
    assert all(s == "pass" for _, s, _ in stat.checks[:3]), stat.checks
    # the fixture's table has one influential checkpoint (k about 0.72): LOO must say so
    name, verdict, text = stat.checks[-1]
    n_bad = int(text.split(" of ")[0])
    assert verdict == ("warn" if n_bad else "pass")
    assert stat.status == verdict


def test_status_shows_every_convergence_warning():
    bad = testing.posterior(divergences=3, chain_shift=0.2, draws=100)
    with pytest.warns(bayescale.ConvergenceWarning) as rec:
        diag = bad.check(warn=True)
    stat = status(bad)
    assert stat.status == "warn"
    by_name = {name: (s, text) for name, s, text in stat.checks}
    assert by_name["divergences"] == ("warn", "3 divergent transitions of 400 draws")
    assert by_name["R-hat"][0] == "warn" and "alpha" in by_name["R-hat"][1]
    # the report says what to change, as the warning does
    assert "target_accept" in stat.advice and "num_samples" in stat.advice
    words = sm.headline(bad, pd.DataFrame(columns=["kind"]), stat, 0.9)
    assert stat.advice in words
    message = str(rec[0].message)
    assert "divergent" in message and "R-hat" in message
    sampling = [c for c in stat.checks if c[0] != "LOO Pareto k"]
    assert sum(s == "warn" for _, s, _ in sampling) == len(diag["problems"])


def test_status_of_point_estimate(post):
    stat = status(point_estimate(post))
    assert stat.status == "warn"
    assert stat.checks[0][0] == "method" and "MAP point estimate" in stat.checks[0][2]
    assert stat.checks[-1][:2] == ("LOO Pareto k", "n/a")


def test_status_flags_high_pareto_k(post):
    """Observations whose log-likelihood is heavy-tailed across draws get k > 0.7."""
    import xarray as xr

    tree = post.tree.copy()
    ll = tree["log_likelihood"]["y"].values.copy()
    heavy = -np.abs(np.random.default_rng(0).standard_cauchy(ll.shape[:2]))
    ll[..., 0] = 0.5 * heavy  # finite, very large k
    ll[..., 1] = 50 * heavy  # k not estimable (nan): must count as bad too
    tree["log_likelihood"] = xr.DataTree(xr.Dataset({"y": (("chain", "draw", "obs"), ll)}))
    from dataclasses import replace

    base = int(status(post).checks[-1][2].split(" of ")[0])
    name, verdict, text = status(replace(post, tree=tree)).checks[-1]
    assert (name, verdict) == ("LOO Pareto k", "warn")
    assert text.startswith(f"{base + 2} of ")


# -- tables -------------------------------------------------------------------------------
def test_prediction_table_matches_predict(post):
    t = Target("fam-a", 3e9, 6e10, observed=2.3)
    table = sm.prediction_table(post, [t], ci_prob=0.9, seed=2)
    for kind in ("mean", "new_run"):
        row = table[table["kind"] == kind].iloc[0]
        want = post.predict("fam-a", 3e9, 6e10, kind=kind, seed=2).iloc[0]
        assert row["median"] == pytest.approx(want["median"])
        assert row["lower"] == pytest.approx(want["lower"])
        assert row["extrapolation"] == pytest.approx(3.0)
        assert row["rel_error"] == pytest.approx((row["median"] - 2.3) / 2.3)


def test_headline_says_the_answer_in_words(post):
    pred = sm.prediction_table(post, [Target("fam-a", 3e9, 6e10, 2.3)], 0.9, 0)
    stat = status(post)
    passed = sm.Status("pass", [(n, "pass", t) for n, _, t in stat.checks])
    lines = sm.headline(post, pred, passed, 0.9)
    row = pred[pred["kind"] == "new_run"].iloc[0]
    assert f"{row['median']:.4g} nats" in lines[0]
    assert f"between {row['lower']:.4g} and {row['upper']:.4g}" in lines[0]
    assert "3× beyond the largest size" in lines[0]
    assert "measured loss, 2.3" in lines[0]
    assert lines[-1].startswith("Sampling diagnostics passed")
    # a check that warns is named in the headline instead
    warned = sm.Status("warn", [*passed.checks[:-1], ("LOO Pareto k", "warn", "1 of 48")])
    last = sm.headline(post, pred, warned, 0.9)[-1]
    assert last.startswith("Check before trusting the interval") and "LOO Pareto k" in last


def test_law_table_in_published_units(post):
    table = sm.family_law_table(post, 0.9)
    assert list(table["family"]) == ["fam-a", "fam-b"]
    # fam-a follows TRUE, fam-b 1.1 x TRUE: the median E is near 1.7 and 1.87
    e = [float(c.split()[0]) for c in table["E (nats)"]]
    assert e == pytest.approx([1.7, 1.87], rel=0.1)


def test_fit_quality_is_small_on_data_from_the_law(post):
    q = sm.fit_quality_table(post)
    assert list(q["family"]) == ["fam-a", "fam-b"]
    assert (q["median |error| %"] < 1).all()


def test_priors_table_covers_every_setting():
    table = method.priors_table(Priors())
    listed = {n.strip() for s in table["setting"] for n in s.split(",")}
    assert listed == set(Priors().to_dict())
    assert (table["meaning"] != "").all()


# -- the written report -----------------------------------------------------------------
def test_html_is_self_contained_and_answer_first(written):
    html = (written["dir"] / "report.html").read_text()
    assert "<script" not in html and "http://" not in html and "https://" not in html
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert images and all(base64.b64decode(i)[:4] == b"\x89PNG" for i in images)
    # headline, then the figure with the target, then the table, then the checks
    order = [html.index(k) for k in ('id="headline"', 'id="fig-curves"', "Predicted loss",
                                      'id="status"', 'id="quality"', 'id="data"')]  # fmt: skip
    assert order == sorted(order)
    head = html.split('id="headline"')[1].split("</section>")[0]
    assert "fam-a run trained on" in head and "nats" in head
    assert "new-family" in head and "from the population" in head
    # long evidence is collapsed
    assert '<details id="model">' in html and '<details id="data">' in html


def test_markdown_says_the_same_and_lists_its_figures(written):
    md = (written["dir"] / "report.md").read_text()
    files = written["dir"] / "report_files"
    pngs = sorted(p.name for p in files.iterdir())
    assert "curves.png" in pngs
    for name in pngs:
        assert f"report_files/{name}" in md
    assert "Predicted loss (nats)" in md and "| fam-a |" in md


def test_user_strings_are_escaped_everywhere(tmp_path):
    evil = "<script>alert(1)</script>|x\nnext <img src=x onerror=alert(2)>"
    long = "f" * 10_000  # bounded, distinct file names
    # one fit carries both kinds of hostile name (each fit costs a compile); the second
    # long name is a new family's
    frame = synthetic_frame(families=(evil, long), sizes=(1e8, 1e9), n_ckpt=5)
    p = testing.posterior(frame, draws=60)
    write_report(p, tmp_path / "e.html", markdown=tmp_path / "e.md", title=evil,
                 targets=[(evil, 3e9, 6e10)], diagnostic_plots=False)  # fmt: skip
    html = (tmp_path / "e.html").read_text()
    md = (tmp_path / "e.md").read_text()
    for text in (html, md):
        assert "<script>" not in text and "<img src=x" not in text
    assert "&lt;script&gt;" in html and "&lt;script&gt;" in md
    title_line = md.splitlines()[0]
    assert title_line.startswith("# ") and "next" in title_line  # the newline did not break it
    targets = [(long, 3e9, 6e10), (long + "x", 3e9, 6e10)]
    write_report(p, tmp_path / "l.html", markdown=tmp_path / "l.md", targets=targets,
                 diagnostic_plots=False)  # fmt: skip
    names = [f.name for f in (tmp_path / "l_files").iterdir()]
    assert max(len(n) for n in names) < 80 and len(set(names)) == len(names)


def test_outputs_are_not_overwritten_unasked(post, tmp_path):
    out = tmp_path / "r.html"
    out.write_text("keep me")
    with pytest.raises(FileExistsError, match="overwrite"):
        write_report(post, out, diagnostic_plots=False)
    assert out.read_text() == "keep me"
    write_report(post, out, overwrite=True, diagnostic_plots=False)
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_report_of_a_point_estimate_says_so(post):
    rep = build_report(point_estimate(post), targets=["fam-a:3B:60B"], diagnostic_plots=False)
    assert rep.status.status == "warn"
    assert "MAP point estimate" in rep.answer[0].note
    assert rep.headline[-1].startswith("Check before trusting the interval")


def test_plan_and_downstream_sections(post, tmp_path):
    from bayescale.design import Plan

    table = pd.DataFrame(
        {"rank": [1], "experiment": ["1 run x 3B params on 60B tokens"], "flops": [1.08e21],
         "budget_fraction": [0.5], "current_sd": [0.02], "expected_sd": [0.015],
         "expected_sd_mcse": [0.001], "reduction_pct": [25.0], "method": ["importance"],
         "params": [3e9], "tokens": [6e10], "n_runs": [1], "new_size": [True],
         "tied_with_best": [True], "recommended": [True], "reduction": [0.005]}
    )  # fmt: skip
    plan = Plan(table, Target("fam-a", 3e9, 6e10), "mean", 2e21, "reduction", 0.9, (), (), 100, 1)
    down = pd.DataFrame({"task": ["hellaswag"], "median": [0.4]})
    rep = build_report(post, targets=["fam-a:3B:60B"], plan=plan, downstream=down,
                       diagnostic_plots=False)  # fmt: skip
    titles = [s.title for s in rep.sections]
    assert titles[:2] == ["Downstream predictions", "What to train next"]
    plan_sec = rep.sections[1]
    assert plan_sec.items[0] == plan.recommendation()
    assert any(getattr(i, "name", "") == "plan" for i in plan_sec.items)


@pytest.mark.skipif(
    find_chromium() is None,
    reason="chromium not found: install it (Debian: apt-get install -y chromium) to check "
    "the report in a real browser",
)
def test_report_renders_in_headless_chromium_answer_above_the_fold(written, tmp_path):
    shot, first = tmp_path / "report.png", tmp_path / "first_screen.png"
    page = inspect_page(written["dir"] / "report.html", screenshot=shot, first_screen=first,
                        boxes=("headline", "fig-curves"))  # fmt: skip
    assert page["errors"] == []
    for img in page["images"]:
        assert img["complete"] and img["naturalWidth"] > 0, img
    assert all(u.startswith(("file:", "data:")) for u in page["requests"])
    assert page["status"] == written["stat"].status
    # the headline (prediction and interval) is on the first 900-pixel screen
    head = page["boxes"]["headline"]
    assert head is not None and head["bottom"] < 900, head
    assert page["boxes"]["fig-curves"]["top"] < 900
    assert "is predicted to reach a loss of" in page["text"]
    assert shot.read_bytes()[:4] == b"\x89PNG" and first.read_bytes()[:4] == b"\x89PNG"


# -- from the command line ---------------------------------------------------------------
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
    args = ["report", str(fit_file), "--out", str(out), "--markdown", str(md)]
    code = main(args + ["--target", "fam-a:3B:60B", "--target", "fam-b:1B:20B"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "checks: WARN" in captured.out and "MAP point estimate" in captured.err
    text = out.read_text()
    assert "MAP point estimate" in text and "fam-a" in text
    table = text.split("Predicted loss (nats)")[1].split("</table>")[0]
    assert table.count("<tr>") == 1 + 2 * 2  # header + 2 targets x 2 kinds
    assert (tmp_path / "r_files" / "curves.png").exists()
    assert main(args + ["--target", "fam-a:3B:60B"]) == 2  # exists now
    assert "--overwrite" in capsys.readouterr().err


def test_cli_report_bad_input(fit_file, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["report", str(fit_file), "--out", str(tmp_path / "r.html"), "--target", "fam-a:3B"])
    assert "FAMILY:N:D" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing.nc"), "--out", str(tmp_path / "r.html")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "junk.nc").write_text("not a fit")
    assert main(["report", str(tmp_path / "junk.nc"), "--out", str(tmp_path / "r.html")]) == 2
    assert "cannot read fit file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["report", str(fit_file), "--out", str(tmp_path / "r.html"), "--ci-prob", "2"])
    assert not (tmp_path / "r.html").exists()


def test_the_model_description_says_whether_seeds_were_replicated():
    from bayescale.data import ScalingData

    frame = synthetic_frame()
    single = ScalingData.from_frame(frame, min_tokens=None)
    assert method.replicate_note(single).startswith("No family has two runs of one size")
    assert "prior's" in method.replicate_note(single, discrepancy=True)
    twice = pd.concat([frame, frame.assign(run=frame["run"] + "-seed2", loss=frame["loss"] * 1.01)])
    note = method.replicate_note(ScalingData.from_frame(twice, min_tokens=None))
    assert note.startswith("6 (family, size) pair(s) have replicate runs")


def test_the_model_description_names_the_families_whose_exponents_were_centred():
    from bayescale.data import ScalingData

    wide = synthetic_frame(families=("wide",), sizes=(1e8, 3e8, 1e9), n_ckpt=8)
    few = synthetic_frame(families=("few",), sizes=(1e8, 1e9), n_ckpt=2)
    both = ScalingData.from_frame(pd.concat([wide, few]), min_tokens=None)
    note = method.exponent_form_note(both, "chinchilla")
    assert note.endswith("Sampled as itself: α_f: wide; β_f: wide.")
    assert "20 or more checkpoints, and 3 or more sizes" in note
    assert method.exponent_form_note(both, "overtrain").endswith("Sampled as itself: α_f: wide.")
    alone = ScalingData.from_frame(few, min_tokens=None)
    note = method.exponent_form_note(alone, "chinchilla")
    assert note.endswith("α_f: no family; β_f: no family.")
    assert "partly centred (weight 0.5" in method.exponent_form_note(alone, "chinchilla", 0.5)


def test_method_paragraph_counts_the_draws_kept(post):
    from dataclasses import replace

    from bayescale.reporting.method import model_description

    chains = post.config.num_chains
    assert f"{chains} chains × 400 draws after" in " ".join(model_description(post))
    # a fit that drew on past num_samples (R-hat unsettled) says so
    drew_on = replace(post, config=replace(post.config, num_samples=200))
    text = " ".join(model_description(drew_on))
    assert f"{chains} chains × 400 draws (200 draws, then more while R-hat" in text
