"""Fit files: altered, truncated or corrupted files are refused with FitFileError; Ctrl-C
during a fit leaves no file behind."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bayescale as bs
from bayescale.simulate import simulate_frame


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    frame, _ = simulate_frame(n_families=2, sizes=(1e8, 1e9), n_checkpoints=5, seed=3)
    post = bs.fit(frame, method="map", min_tokens=None, seed=0)
    path = tmp_path_factory.mktemp("fit") / "fit.nc"
    post.save(path)
    return post, path, path.read_bytes()


def _rewrite(out, tree, saved_path):
    # write an altered copy with the stored attributes (checksum included), as a careless
    # tool would
    tree.attrs = dict(bs.load(saved_path).tree.attrs)
    tree.to_netcdf(out, engine="h5netcdf")


def test_scaled_draws_are_refused(saved, tmp_path):
    post, path, _ = saved
    tree = post.tree.copy()
    ds = tree["posterior"].to_dataset()
    tree["posterior"] = ds.assign(alpha_f=ds["alpha_f"] * 1.5)
    out = tmp_path / "scaled.nc"
    _rewrite(out, tree, path)
    with pytest.raises(bs.FitFileError, match="checksum|altered"):
        bs.load(out)


def test_a_missing_variable_is_refused(saved, tmp_path):
    post, path, _ = saved
    tree = post.tree.copy()
    tree["posterior"] = tree["posterior"].to_dataset().drop_vars("alpha")
    out = tmp_path / "dropped.nc"
    _rewrite(out, tree, path)
    with pytest.raises(bs.FitFileError, match=str(out.name)):
        bs.load(out)


@pytest.mark.parametrize("keep", [0, 331, 0.5])
def test_truncated_files_are_refused(saved, tmp_path, keep):
    _, _, raw = saved
    n = int(len(raw) * keep) if isinstance(keep, float) else keep
    out = tmp_path / "cut.nc"
    out.write_bytes(raw[:n])
    with pytest.raises(bs.FitFileError):
        bs.load(out)


# h5netcdf's finaliser complains about a file it could not open; that is not our error
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_random_corruption_is_refused_or_harmless(saved, tmp_path, data):
    """Flip bytes anywhere: either FitFileError, or the file still loads to the same fit."""
    post, _, raw = saved
    buf = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(buf) - 1))
        buf[i] ^= data.draw(st.integers(1, 255))
    out = tmp_path / "flipped.nc"
    out.write_bytes(bytes(buf))
    try:
        back = bs.load(out)
    except bs.FitFileError:
        return
    # a flip in unused bytes: the content must be exactly the saved one
    for name, var in post.tree["posterior"].to_dataset().data_vars.items():
        np.testing.assert_array_equal(back.tree["posterior"][name].values, var.values)
    assert back.config == post.config


def test_ctrl_c_during_a_fit_exits_130_and_writes_nothing(tmp_path):
    out = tmp_path / "fit.nc"
    entry = "from bayescale.cli import run; run()"  # the console entry point
    cmd = [sys.executable, "-c", entry, "--quiet", "fit", "hitchhiker", "--families", "gpt3,OPT",
           "--out", str(out), "--warmup", "2000", "--samples", "2000"]  # fmt: skip
    # a terminal gives the command Ctrl-C's default action; a test worker may ignore
    # SIGINT, and a child inherits that (Python then installs no KeyboardInterrupt)
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    # interrupt once the fit is under way (its data summary printed), well before the end
    seen = []
    while not any(line.startswith("data:") for line in seen) and proc.poll() is None:
        seen.append(proc.stderr.readline())
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail("the fit ignored Ctrl-C for 60 s; it wrote:\n" + "".join(seen) + err)
    err = "".join(seen) + err
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert not out.exists()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
