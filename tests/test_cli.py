"""Command line: exit codes, JSON output, bad input, one target grammar, a fast start."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from bayescale.cli import build_parser, main
from bayescale.options import parse_count
from bayescale.simulate import simulate_frame


@pytest.fixture(scope="module")
def csv(tmp_path_factory):
    frame, _ = simulate_frame(n_families=2, sizes=(1e8, 1e9, 1e10), n_checkpoints=6, seed=3)
    path = tmp_path_factory.mktemp("data") / "runs.csv"
    frame.to_csv(path, index=False)
    return path, frame


@pytest.fixture(scope="module")
def fit_file(csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("fit") / "fit.nc"
    code = main(["fit", str(csv[0]), "--out", str(out), "--method", "map", "--min-tokens", "1e4"])
    assert code == 0 and out.exists()
    return out


def run_json(capsys, argv):
    code = main(argv)
    out = capsys.readouterr()
    assert code == 0, out.err
    return json.loads(out.out)


def test_parse_count_suffixes():
    assert parse_count("6.9B") == pytest.approx(6.9e9)
    assert parse_count("1.4T") == pytest.approx(1.4e12)
    assert parse_count("7e9") == 7e9
    assert parse_count(3) == 3.0
    with pytest.raises(ValueError, match="not a count"):
        parse_count("seven")
    with pytest.raises(ValueError, match="positive"):
        parse_count(0)


def test_datasets_json(capsys):
    rows = run_json(capsys, ["datasets", "--json"])
    assert {"hitchhiker", "gadre"} <= {r["name"] for r in rows}


def test_entry_point_answers_help_without_jax():
    exe = shutil.which("bayescale") or shutil.which("bayescale", path=str(sys.prefix) + "/bin")
    assert exe, "the bayescale console script is not installed"
    for cmd in ([exe], [sys.executable, "-m", "bayescale"]):
        done = subprocess.run([*cmd, "--version"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and "bayescale" in done.stdout, cmd
    code = (
        "import contextlib, io, sys\n"
        "from bayescale.cli import build_parser\n"
        "for argv in (['--help'], ['fit', '--help'], ['predict', 'x.nc']):\n"
        "    out, err = io.StringIO(), io.StringIO()\n"
        "    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):\n"
        "        try:\n"
        "            build_parser().parse_args(argv)\n"
        "        except SystemExit:\n"
        "            pass\n"
        "print(sorted(m for m in ('jax', 'numpy', 'pandas') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_flag_has_help_and_its_default():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        text = p.format_help()
        for action in p._actions:
            if action.dest in ("help",) or not action.option_strings:
                continue
            assert action.help, (name, action.option_strings)
            if action.default not in (None, False):
                assert f"(default: {action.default})" in " ".join(text.split()), (name, action.dest)


@pytest.mark.parametrize(
    "change,pattern",
    [
        (lambda f: f.assign(loss=np.where(np.arange(len(f)) == 5, np.nan, f["loss"])),
         r"column 'loss' has NaN or infinite values at rows \[5\]"),
        (lambda f: f.assign(tokens=f["tokens"] / 1e9),
         r"column 'tokens' has values below 1e4 .*billions"),
    ],
)  # fmt: skip
def test_fit_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, csv, change, pattern):
    bad = tmp_path / "bad.csv"
    change(csv[1]).to_csv(bad, index=False)
    out = tmp_path / "fit.nc"
    code = main(["fit", str(bad), "--out", str(out), "--method", "map"])
    err = capsys.readouterr().err
    assert code == 2
    assert pytest.importorskip("re").search(pattern, err), err
    assert not out.exists()


@pytest.mark.parametrize(
    "flags,pattern",
    [(["--seed-centring", "2"], r"seed_centring must be in \[0, 1\]"),
     (["--exponent-centring", "-1"], r"exponent_centring must be in \[0, 1\]"),
     (["--target-accept", "1.5"], r"target_accept must be in \(0, 1\)")],
)  # fmt: skip
def test_fit_bad_sampler_settings_exit_2(tmp_path, capsys, csv, flags, pattern):
    out = tmp_path / "fit.nc"
    code = main(["fit", str(csv[0]), "--out", str(out), "--method", "map", *flags])
    err = capsys.readouterr().err
    assert code == 2 and pytest.importorskip("re").search(pattern, err), err
    assert not out.exists()


def test_fit_stores_the_sampler_settings(tmp_path, capsys, csv):
    from bayescale.posterior import load

    out = tmp_path / "w.nc"
    argv = ["fit", str(csv[0]), "--out", str(out), "--method", "map", "--seed-centring", "0.5",
            "--start", "prior", "--extend", "0", "--exponent-centring", "0.25",
            "--retry", "0"]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    config = load(out).config
    assert config.seed_centring == 0.5 and config.start == "prior" and config.extend == 0
    assert config.retry == 0
    assert config.exponent_centring == 0.25


def test_fit_groups_families_by_a_column(tmp_path, capsys):
    from bayescale.posterior import load

    frame, _ = simulate_frame(n_families=3, sizes=(1e8, 1e9), n_checkpoints=4, seed=1)
    first = frame["family"] == frame["family"].iloc[0]
    table = tmp_path / "labelled.csv"
    frame.assign(lab=np.where(first, "x", "y")).to_csv(table, index=False)
    out = tmp_path / "g.nc"
    argv = ["fit", str(table), "--out", str(out), "--method", "map", "--min-tokens", "1e4"]
    assert main([*argv, "--group-by", "lab"]) == 0, capsys.readouterr().err
    assert load(out).data.groups == ("x", "y")
    argv[3] = str(tmp_path / "h.nc")
    code = main([*argv, "--group-by", "labs"])
    err = capsys.readouterr().err
    assert code == 2 and "'labs' is not a column" in err and "lab" in err
    assert not (tmp_path / "h.nc").exists()


def test_fit_unknown_source_exits_2(tmp_path, capsys):
    code = main(["fit", "no-such-thing", "--out", str(tmp_path / "f.nc")])
    assert code == 2 and "neither a file nor a bundled dataset" in capsys.readouterr().err


def test_predict_json(capsys, fit_file):
    rows = run_json(
        capsys, ["predict", str(fit_file), "--target", "fam0:30B:6e11", "--kind", "new_run",
                 "--json"],
    )  # fmt: skip
    assert len(rows) == 1
    r = rows[0]
    assert r["params"] == 3e10 and r["kind"] == "new_run"
    assert r["lower"] < r["median"] < r["upper"]
    assert r["extrapolation"] == pytest.approx(3.0) and r["point_estimate"] is True


def test_predict_prints_counts_for_people_and_flags_far_extrapolation(capsys, fit_file):
    assert (
        main(["predict", str(fit_file), "--target", "fam0:1T:20T", "--target", "fam1:1B:20B"]) == 0
    )
    out = capsys.readouterr().out
    assert "1T" in out and "20T" in out and "e+" not in out
    assert "beyond the fitted sizes" in out and "inside" in out
    assert "MAP point estimate" in out


def test_predict_suggests_the_family_name(capsys, fit_file):
    assert main(["predict", str(fit_file), "--target", "FAM0:1B:20B"]) == 0
    assert "did you mean 'fam0'" in capsys.readouterr().err


def test_predict_missing_fit_exits_2(tmp_path, capsys):
    code = main(["predict", str(tmp_path / "nope.nc"), "--target", "x:1e9:1e11"])
    assert code == 2 and "does not exist" in capsys.readouterr().err


def test_predict_billions_exits_2(capsys, fit_file):
    with pytest.raises(SystemExit) as exc:
        main(["predict", str(fit_file), "--target", "fam0:7:1e11"])
    assert exc.value.code == 2 and "billions" in capsys.readouterr().err


def test_fit_refuses_to_overwrite(capsys, csv, fit_file):
    code = main(["fit", str(csv[0]), "--out", str(fit_file), "--method", "map"])
    assert code == 2 and "--overwrite" in capsys.readouterr().err


def test_report_refuses_to_overwrite_its_fit(capsys, fit_file):
    before = fit_file.read_bytes()
    code = main(["report", str(fit_file), "--out", str(fit_file), "--overwrite"])
    assert code == 2 and "its own fit file" in capsys.readouterr().err
    assert fit_file.read_bytes() == before


@pytest.mark.heavy
def test_demo_quick_json(capsys, monkeypatch):
    from bayescale import demo

    # the wiring, not the statistics (benchmarks/demo.py measures those): few draws
    tiny = {"num_chains": 2, "num_warmup": 30, "num_samples": 30, "max_points_per_run": 5}
    monkeypatch.setitem(demo.SETTINGS, "quick", tiny)
    code = main(["demo", "--quick", "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    rows = json.loads(out.out)
    # 30 draws cannot mix: the problem is said once, and no option the demo lacks is named
    assert out.err.count("sampling problems") == 1
    assert "num_warmup" not in out.err and "--warmup" not in out.err
    assert [r["family"] for r in rows] == [
        "pythia-deduped", "OPT", "gpt3", "t5-pile", "overtrain-RedPajama"
    ]  # fmt: skip
    keys = {"family", "params", "tokens", "median", "lower", "upper", "actual", "are", "inside"}
    for r in rows:
        assert set(r) == keys
        assert r["lower"] <= r["median"] <= r["upper"]
        assert 0 <= r["are"] < 0.5 and isinstance(r["inside"], bool)


def test_compile_cache_is_one_documented_call(tmp_path):
    from bayescale import enable_compile_cache

    assert enable_compile_cache(environ={"BAYESCALE_XLA_CACHE": "off"}) is None
    assert enable_compile_cache(environ={"JAX_COMPILATION_CACHE_DIR": str(tmp_path)}) is None
    # a fresh process, because JAX fixes its cache directory at the first compile
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    env.update(XDG_CACHE_HOME=str(tmp_path), BAYESCALE_XLA_CACHE="")
    code = (
        "import bayescale; import jax.numpy as jnp; "
        "print(bayescale.enable_compile_cache()); (jnp.arange(3.0) * 2).block_until_ready()"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    cache = tmp_path / "bayescale" / "xla"
    assert out.stdout.strip() == str(cache)
    assert any(cache.iterdir())


def test_fit_json_of_a_point_estimate_has_null_diagnostics(tmp_path, capsys, csv):
    out = tmp_path / "map.nc"
    info = run_json(capsys, ["fit", str(csv[0]), "--out", str(out), "--method", "map", "--json"])
    assert info["diagnostics"]["rhat_max"] is None and info["checkpoints"] > 0


def test_demo_hides_the_near_twin_of_a_target():
    import pandas as pd

    from bayescale.demo import split_largest

    df = pd.DataFrame(
        {
            "family": ["pythia-deduped"] * 2 + ["pythia"] * 2,
            "run": ["d1", "d2", "p1", "p2"],
            "params": [1e9, 12e9, 1e9, 12e9],
            "tokens": 3e11,
            "loss": 2.0,
        }
    )
    train, hidden = split_largest(df, families=("pythia-deduped",))
    assert list(hidden["run"]) == ["d2"]
    # pythia's 12B run is near-twin data: gone from training, not a target
    assert list(train["run"]) == ["d1", "p1"]


@pytest.mark.heavy
def test_fit_with_the_discrepancy_saves_it_and_describes_it(tmp_path, capsys, csv):
    from bayescale.posterior import load
    from bayescale.reporting.method import model_description
    from bayescale.reporting.summaries import noise_table

    out = tmp_path / "disc.nc"
    argv = ["fit", str(csv[0]), "--out", str(out), "--method", "map", "--discrepancy"]
    assert main(argv) == 0, capsys.readouterr().err
    post = load(out)
    assert post.config.discrepancy
    assert {"z_delta", "sigma_delta", "delta"} <= set(post.tree["posterior"].data_vars)
    assert "size-level discrepancy" in " ".join(model_description(post))
    assert "sigma_delta" in set(noise_table(post)["parameter"])


def test_diagnostics_line_counts_the_draws_kept():
    from bayescale.cli.commands import diag_line, json_diag

    diag = {"method": "nuts", "status": "warn", "rhat_max": 1.013, "ess_bulk_min": 380.0,
            "ess_tail_min": 500.0, "divergences": 0, "draws": 1500,
            "problems": ["R-hat 1.013 > 1.01 (worst: beta_f[olmo] 1.013)"]}  # fmt: skip
    line = diag_line(diag)
    assert line.startswith("diagnostics: WARN  max R-hat 1.013") and "1500 draws per chain" in line
    assert "\n  R-hat 1.013 > 1.01" in line
    assert json_diag(diag)["draws"] == 1500
