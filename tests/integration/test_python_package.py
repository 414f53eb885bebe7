"""The Python package as users install it: pip into a venv, then use it
from outside the source tree.

A `python3 -m venv --system-site-packages` (Debian's numpy, scikit-learn,
pyzmq and msgpack come from the system) gets `pip install
--no-build-isolation --no-index` of the repository root, which meson-python
builds (the engine and the extension isvd._engine compiled with -Werror
here); then, with the source tree off sys.path:
  * clients/python/tests/test_streaming_pca.py runs under the venv's python
    (StreamingPCA against IncrementalPCA and PCA, check_estimator, errors,
    save/load, pickle, the class without scikit-learn);
  * the installed isvd.Client talks to the real isvdd, and
    StreamingPCA.from_daemon builds a local estimator from its factors;
  * `python3 -m build --no-isolation --wheel` makes a wheel, which installs
    into a second venv and works there.
"""
import glob
import json
import os
import re
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from isvdd_harness import REPO, Daemon

PIP_TIMEOUT = 600
NO_SKIP = os.environ.get("ISVD_NO_SKIP") == "1"


def clean_env(**extra):
    """The environment without PYTHONPATH: nothing from the source tree."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(ISVD_SOURCE_ROOT=REPO, PYTHONDONTWRITEBYTECODE="1", **extra)
    return env


def run(args, cwd, timeout=PIP_TIMEOUT, **kw):
    r = subprocess.run(args, cwd=cwd, env=clean_env(), capture_output=True, text=True,
                       timeout=timeout, **kw)
    assert r.returncode == 0, f"{' '.join(map(str, args))}\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return r


def make_venv(path):
    # --without-pip: the system's pip (visible through --system-site-packages)
    # installs into the venv it is run from; no ensurepip copy needed
    run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(path)],
        cwd=str(path.parent))
    return str(path / "bin" / "python")


def meson_version():
    with open(os.path.join(REPO, "meson.build"), encoding="utf-8") as f:
        return re.search(r"version\s*:\s*'([^']+)'", f.read()).group(1)


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    base = tmp_path_factory.mktemp("pkg")
    py = make_venv(base / "venv")
    run([py, "-m", "pip", "install", "--no-build-isolation", "--no-index",
         "--config-settings=setup-args=-Dwerror=true", REPO], cwd=str(base))
    return py, base


def test_installed_outside_source_tree(venv):
    py, base = venv
    r = run([py, "-c", "import isvd, isvd._engine as e; print(isvd.__file__); "
                       "print(isvd.__version__, e.__version__)"], cwd=str(base))
    where, versions = r.stdout.split("\n")[:2]
    assert where.startswith(str(base / "venv")), where
    assert versions.split() == [meson_version()] * 2


def test_streaming_pca_suite(venv):
    py, base = venv
    tests = os.path.join(REPO, "clients", "python", "tests", "test_streaming_pca.py")
    r = subprocess.run([py, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", tests],
                       cwd=str(base), env=clean_env(OPENBLAS_NUM_THREADS="1"),
                       capture_output=True, text=True, timeout=PIP_TIMEOUT)
    print(r.stdout[-3000:])
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    summary = r.stdout.strip().splitlines()[-1]
    assert re.search(r"\d+ passed", summary), summary
    if NO_SKIP:
        assert not re.search(r"skipped|xfail|deselected", summary), summary


CLIENT_SCRIPT = r"""
import json, sys
import numpy as np
import isvd
ingest, query, publish = sys.argv[1:4]
X = np.load(sys.argv[4])
with isvd.Client(ingest=ingest, query=query, publish=publish, timeout=20) as c:
    acks = c.push_many(X, rows_per_push=100)
    assert sum(a.accepted for a in acks) == len(X)
    coords, residual = c.project(X[:7])
    recon = c.reconstruct(X[:7])
    remote = isvd.StreamingPCA.from_daemon(c)
    try:
        remote.partial_fit(X[:3])
        continued = True
    except RuntimeError:
        continued = False
local = isvd.StreamingPCA(n_components=remote.n_components_, mode="exact").fit(X)
out = {
    "k": remote.n_components_, "n": remote.n_samples_seen_, "continued": continued,
    "components": float(np.abs(np.abs(np.sum(remote.components_ * local.components_, axis=1)) - 1).max()),
    "variance": float(np.abs(remote.explained_variance_ / local.explained_variance_ - 1).max()),
    "ratio": float(np.abs(remote.explained_variance_ratio_ - local.explained_variance_ratio_).max()),
    "noise": float(abs(remote.noise_variance_ / local.noise_variance_ - 1)),
    "mean": float(np.abs(remote.mean_ - local.mean_).max()),
    "project": float(np.abs(remote.transform(X[:7]) - coords).max()),
    "inverse": float(np.abs(remote.inverse_transform(coords) - recon).max()),
    "file": isvd.__file__,
}
print(json.dumps(out))
"""


def test_client_and_from_daemon(venv, tmp_path):
    py, base = venv
    rng = np.random.default_rng(21)
    basis = np.linalg.qr(rng.standard_normal((24, 4)))[0].T
    X = (rng.standard_normal((900, 4)) * [9, 4, 2, 1]) @ basis + rng.standard_normal(24) * 3
    X += 0.01 * rng.standard_normal(X.shape)
    np.save(tmp_path / "x.npy", X)
    with Daemon(tmp_path, model={"rank": 4, "center": True, "mode": "exact"}) as d:
        r = run([py, "-c", CLIENT_SCRIPT, d.ingest, d.query, d.publish, str(tmp_path / "x.npy")],
                cwd=str(base), timeout=120)
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["file"].startswith(str(base / "venv"))
    assert out["k"] == 4 and out["n"] == 900 and out["continued"] is False
    assert out["components"] < 1e-9 and out["variance"] < 1e-9 and out["ratio"] < 1e-9
    assert out["noise"] < 1e-6 and out["mean"] < 1e-9
    assert out["project"] < 1e-9 and out["inverse"] < 1e-9


def test_wheel_builds_and_installs(tmp_path):
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "build", "--no-isolation", "--wheel", "--outdir", str(dist), REPO],
        cwd=str(tmp_path))
    wheels = glob.glob(str(dist / "*.whl"))
    assert len(wheels) == 1, wheels
    name = os.path.basename(wheels[0])
    assert name.startswith(f"isvd-{meson_version()}-cp3"), name
    with zipfile.ZipFile(wheels[0]) as z:
        names = z.namelist()
        meta = z.read(f"isvd-{meson_version()}.dist-info/METADATA").decode()
    for f in ("isvd/__init__.py", "isvd/client.py", "isvd/codec.py", "isvd/errors.py",
              "isvd/factors.py", "isvd/pca.py", "isvd/producer.py"):
        assert f in names, names
    assert any(re.fullmatch(r"isvd/_engine\.cpython-.*\.so", f) for f in names), names
    assert f"Version: {meson_version()}" in meta
    assert not any(f.endswith((".a", ".h")) or "bin/" in f for f in names), names
    py = make_venv(tmp_path / "venv2")
    run([py, "-m", "pip", "install", "--no-index", "--no-deps", wheels[0]], cwd=str(tmp_path))
    r = run([py, "-c", "import numpy as np, isvd; X = np.random.default_rng(0).random((50, 6)); "
                       "p = isvd.StreamingPCA(2).fit(X); print(p.transform(X).shape, isvd.__file__)"],
            cwd=str(tmp_path))
    shape, where = r.stdout.split()[0:2], r.stdout.split()[-1]
    assert " ".join(shape) == "(50, 2)" and where.startswith(str(tmp_path / "venv2")), r.stdout
