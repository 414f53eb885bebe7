"""The Debian packages: scripts/package builds isvd, libisvd0 and
libisvd-dev from this tree (dpkg-buildpackage -us -uc -b, about half a
minute); `dpkg -c` lists exactly the expected files in each, the control
data says what depends on what and that /etc/isvd/isvdd.yaml is a
conffile; `dpkg -x` of all three into a throw-away root, then the
extracted isvdd accepts the extracted default configuration (--check), and
the extracted isvdd and isvd (through the extracted libisvd) serve and
ping each other on ipc:// endpoints.
"""
import os
import re
import subprocess
import time

import pytest

from isvdd_harness import REPO, yaml_config

VERSION_RE = re.compile(r"^  version : '(.*)',$", re.M)

ISVD_FILES = {
    "./etc/isvd/isvdd.yaml",
    "./lib/systemd/system/isvdd.service",
    "./lib/systemd/system/isvdd@.service",
    "./usr/bin/isvd",
    "./usr/bin/isvdd",
    "./usr/lib/sysusers.d/isvd.conf",
    "./usr/share/doc/isvd/PROTOCOL.md.gz",
    "./usr/share/doc/isvd/README.md.gz",
    "./usr/share/doc/isvd/changelog.gz",
    "./usr/share/doc/isvd/copyright",
    "./usr/share/doc/isvd/examples/default.yaml",
    "./usr/share/doc/isvd/examples/embedding-1000.yaml",
    "./usr/share/doc/isvd/examples/kafka-merge.yaml",
    "./usr/share/doc/isvd/examples/kafka-shard.yaml",
    "./usr/share/doc/isvd/examples/sensor-64.yaml",
    "./usr/share/man/man1/isvd.1.gz",
    "./usr/share/man/man5/isvdd.yaml.5.gz",
    "./usr/share/man/man8/isvdd.8.gz",
}


def run(cmd, timeout=120, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    assert r.returncode == 0, f"{cmd} exited {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


def multiarch():
    return run(["dpkg-architecture", "-qDEB_HOST_MULTIARCH"]).strip()


@pytest.fixture(scope="module")
def debs(tmp_path_factory):
    out = tmp_path_factory.mktemp("debs")
    listed = run([os.path.join(REPO, "scripts", "package"), str(out)], timeout=1200).split()
    version = VERSION_RE.search(open(os.path.join(REPO, "meson.build")).read())[1]
    arch = run(["dpkg", "--print-architecture"]).strip()
    found = {}
    for name in ("isvd", "libisvd0", "libisvd-dev"):
        path = str(out / f"{name}_{version}_{arch}.deb")
        assert path in listed, (path, listed)
        found[name] = path
    return found


def contents(deb):
    """{path: type letter} of the files and links in deb (directories left out)."""
    files = {}
    for line in run(["dpkg-deb", "-c", deb]).splitlines():
        perms, path = line.split()[0], line.split()[5]
        if perms[0] != "d":
            files[path] = perms[0]
    return files


def field(deb, name):
    return run(["dpkg-deb", "-f", deb, name]).strip()


def test_each_package_holds_exactly_its_files(debs):
    ma = multiarch()
    assert set(contents(debs["isvd"])) == ISVD_FILES
    lib = contents(debs["libisvd0"])
    assert lib == {f"./usr/lib/{ma}/libisvd.so.0.1.0": "-", f"./usr/lib/{ma}/libisvd.so.0": "l",
                   "./usr/share/doc/libisvd0/changelog.gz": "-",
                   "./usr/share/doc/libisvd0/copyright": "-"}, lib
    dev = contents(debs["libisvd-dev"])
    assert dev == {"./usr/include/isvd/client.h": "-", "./usr/include/isvd/producer.h": "-",
                   f"./usr/lib/{ma}/libisvd.so": "l",
                   f"./usr/lib/{ma}/libisvd.a": "-", f"./usr/lib/{ma}/pkgconfig/libisvd.pc": "-",
                   "./usr/share/doc/libisvd-dev/changelog.gz": "-",
                   "./usr/share/doc/libisvd-dev/copyright": "-"}, dev


def test_control_data(debs):
    version = field(debs["isvd"], "Version")
    assert re.search(r"\blibisvd0 \(>= ", field(debs["isvd"], "Depends"))
    assert f"libisvd0 (= {version})" in field(debs["libisvd-dev"], "Depends")
    assert field(debs["libisvd0"], "Multi-Arch") == "same"
    # the symbols file (debian/libisvd0.symbols) covers every exported function
    sym = run(["dpkg-deb", "-I", debs["libisvd0"], "symbols"])
    assert sym.startswith("libisvd.so.0 libisvd0 #MINVER#"), sym
    for name in ("client", "producer"):
        header = open(os.path.join(REPO, "clients", "c", "include", "isvd", name + ".h")).read()
        exported = set(re.findall(r"\b(isvd_(?:client|producer)_\w+)\(", header))
        listed = set(re.findall(r"^ (isvd_(?:client|producer)_\w+)@Base", sym, re.M))
        assert exported and exported <= listed, (name, sorted(exported - listed))
    ctl = subprocess.run(["dpkg-deb", "-I", debs["isvd"], "conffiles"], capture_output=True, text=True)
    assert ctl.returncode == 0 and ctl.stdout.split() == ["/etc/isvd/isvdd.yaml"], ctl
    post = subprocess.run(["dpkg-deb", "-I", debs["isvd"], "postinst"], capture_output=True, text=True)
    assert "systemd-sysusers" in post.stdout and "isvd.conf" in post.stdout, post.stdout
    # installed, not enabled (dh_installsystemd --no-enable: only a unit an
    # earlier version had enabled is enabled again); the README's
    # `systemctl enable --now isvdd` does that
    assert "deb-systemd-helper debian-installed 'isvdd.service'" in post.stdout, post.stdout
    assert "was-enabled defaults to true" not in post.stdout


@pytest.fixture(scope="module")
def root(debs, tmp_path_factory):
    r = tmp_path_factory.mktemp("root")
    for deb in debs.values():
        run(["dpkg-deb", "-x", deb, str(r)])
    return r


def test_extracted_isvdd_accepts_the_packaged_config(root):
    out = run([str(root / "usr/bin/isvdd"), "--check", "--config", str(root / "etc/isvd/isvdd.yaml")])
    assert out.strip().endswith(": ok"), out
    unit = (root / "lib/systemd/system/isvdd.service").read_text()
    assert re.search(r"^ExecStart=/usr/bin/isvdd --config /etc/isvd/isvdd\.yaml$", unit, re.M), unit


def test_extracted_daemon_and_client_talk(root, tmp_path):
    env = dict(os.environ, LD_LIBRARY_PATH=str(root / "usr/lib" / multiarch()))
    cli = str(root / "usr/bin/isvd")
    # the client resolves libisvd from the extracted package, not from a build
    ldd = run(["ldd", cli], env=env)
    assert re.search(r"libisvd\.so\.0 => " + re.escape(str(root)), ldd), ldd
    q, i, p = (f"ipc://{tmp_path}/{n}.sock" for n in ("q", "i", "pub"))
    conf = tmp_path / "c.yaml"
    conf.write_text(yaml_config({"endpoints": {"ingest": i, "query": q, "publish": p},
                                 "storage": {"dir": str(tmp_path / "data")}}))
    d = subprocess.Popen([str(root / "usr/bin/isvdd"), "--config", str(conf)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            r = subprocess.run([cli, "ping", "--query", q, "--timeout", "1", "--retries", "0"],
                               capture_output=True, text=True, env=env, timeout=30)
            if r.returncode == 0 or time.monotonic() > deadline:
                break
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("isvdd "), r.stdout
        (tmp_path / "rows.csv").write_text("1,2,3\n2,4,7\n0,1,1\n")
        run([cli, "push", "--ingest", i, str(tmp_path / "rows.csv")], env=env)
        info = run([cli, "info", "--json", "--query", q], env=env)
        assert '"rows_seen":3' in info.replace(" ", ""), info
    finally:
        d.terminate()
        rc = d.wait(30)
        err = d.stderr.read().decode()
        d.stderr.close()
    assert rc == 0, err
