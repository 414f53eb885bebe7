"""What `meson install` puts on a system, and the documents that must stay
true to the programs:

- `meson install --destdir` of this build installs exactly the expected
  files (the programs, libisvd with its header and pkg-config file, the
  configuration, the example configs, the systemd units and sysusers.d
  entry, the man pages); the installed isvdd validates the installed
  configuration; a C program compiled with the installed header and
  `pkg-config libisvd` pings a real daemon through the installed library
  and pushes a row through its producer;
- the installed units pass `systemd-analyze verify` (their ExecStart
  pointed at the installed isvdd, their man pages found in the destdir) and
  `systemd-analyze security` rates them no worse than 2.0 ("OK"); they hold
  what the README promises (Type=notify, the watchdog, the user, the
  sandbox); isvdd under strace through a workload makes only the system
  calls their SystemCallFilter= allows, opens only the socket families
  they allow, and maps nothing writable and executable; `systemd-sysusers` creates the user isvd from the installed
  entry in a throw-away root;
- the man pages: every key of `isvdd --help` (config.c's option table) is in
  isvdd.yaml(5) with its type, default and range, and no other key is;
  every option and exit code of `isvdd --help` is in isvdd(8); every
  command of `isvd --help`, and every option and default of each
  `isvd COMMAND --help`, is in isvd(1) in that command's section.
"""
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import time

import numpy as np
import pytest

from isvdd_harness import REPO, Daemon, isvdd_path

BUILD = os.environ.get("ISVD_BUILD_ROOT", "")
ISVD_CLI = os.environ.get("ISVD_CLI", "")
MAN = os.path.join(REPO, "contrib", "man")


def run(cmd, timeout=120, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    assert r.returncode == 0, f"{cmd} exited {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


def build_options():
    opts = json.loads(run(["meson", "introspect", "--buildoptions", BUILD]))
    return {o["name"]: o["value"] for o in opts}


def under(prefix, d):
    return d if os.path.isabs(d) else os.path.join(prefix, d)


def pc_var(var, fallback):
    r = subprocess.run(["pkg-config", f"--variable={var}", "systemd"], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 and r.stdout.strip() else fallback


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(destdir, {name: absolute path inside destdir}) of a meson install."""
    assert BUILD and os.path.isdir(BUILD), "set ISVD_BUILD_ROOT to the build directory (meson test does)"
    dest = tmp_path_factory.mktemp("destdir")
    run(["meson", "install", "-C", BUILD, "--no-rebuild", "--quiet", "--destdir", str(dest)], timeout=300)
    o = build_options()
    prefix = o["prefix"]
    unitdir = o["systemdsystemunitdir"] or pc_var("systemdsystemunitdir",
                                                  os.path.join(prefix, "lib/systemd/system"))
    sysusersdir = o["sysusersdir"] or pc_var("sysusersdir", os.path.join(prefix, "lib/sysusers.d"))
    bindir, libdir = under(prefix, o["bindir"]), under(prefix, o["libdir"])
    datadir, mandir = under(prefix, o["datadir"]), under(prefix, o["mandir"])
    sysconfdir = under(prefix, o["sysconfdir"])
    p = {
        "isvdd": f"{bindir}/isvdd",
        "isvd": f"{bindir}/isvd",
        "header": f"{under(prefix, o['includedir'])}/isvd/client.h",
        "header-producer": f"{under(prefix, o['includedir'])}/isvd/producer.h",
        "so": f"{libdir}/libisvd.so",
        "so.0": f"{libdir}/libisvd.so.0",
        "so.0.1.0": f"{libdir}/libisvd.so.0.1.0",
        "a": f"{libdir}/libisvd.a",
        "pc": f"{libdir}/pkgconfig/libisvd.pc",
        "config": f"{sysconfdir}/isvd/isvdd.yaml",
        "ex-default": f"{datadir}/doc/isvd/examples/default.yaml",
        "ex-sensor": f"{datadir}/doc/isvd/examples/sensor-64.yaml",
        "ex-embedding": f"{datadir}/doc/isvd/examples/embedding-1000.yaml",
        "ex-kafka-shard": f"{datadir}/doc/isvd/examples/kafka-shard.yaml",
        "ex-kafka-merge": f"{datadir}/doc/isvd/examples/kafka-merge.yaml",
        "unit": f"{unitdir}/isvdd.service",
        "unit@": f"{unitdir}/isvdd@.service",
        "sysusers": f"{sysusersdir}/isvd.conf",
        "man8": f"{mandir}/man8/isvdd.8",
        "man1": f"{mandir}/man1/isvd.1",
        "man5": f"{mandir}/man5/isvdd.yaml.5",
    }
    return dest, {k: str(dest) + v for k, v in p.items()}, {k: v for k, v in p.items()}, mandir


def test_destdir_holds_exactly_the_expected_files(installed):
    dest, paths, _, _ = installed
    found = set()
    for root, dirs, files in os.walk(dest):
        for f in files:
            found.add(os.path.join(root, f))
    assert found == set(paths.values()), (f"missing {sorted(set(paths.values()) - found)}, "
                                          f"unexpected {sorted(found - set(paths.values()))}")
    assert os.readlink(paths["so"]) == "libisvd.so.0"
    assert os.readlink(paths["so.0"]) == "libisvd.so.0.1.0"
    for exe in ("isvdd", "isvd"):
        assert os.access(paths[exe], os.X_OK)


def test_installed_isvdd_accepts_the_installed_config(installed):
    _, paths, _, _ = installed
    out = run([paths["isvdd"], "--check", "--config", paths["config"]])
    assert out.strip().endswith(": ok")
    assert run([paths["isvdd"], "--version"]).startswith("isvdd ")
    text = open(paths["config"]).read()
    # loopback only, its state under the unit's StateDirectory=
    assert re.search(r"^  dir: /var/lib/isvd/data\b", text, re.M), text
    for ep in re.findall(r"^  (?:ingest|query|publish): (\S+)", text, re.M):
        assert ep.startswith("tcp://127.0.0.1:"), ep
    # every line but the header and storage.dir as in configs/default.yaml
    src = open(os.path.join(REPO, "configs", "default.yaml")).read()
    body = lambda t: [ln for ln in t[t.index("\nmodel:"):].splitlines() if not ln.startswith("  dir: ")]
    assert body(text) == body(src)


def test_installed_library_header_and_pkg_config(installed, tmp_path):
    dest, paths, rel, _ = installed
    prog = tmp_path / "ping.c"
    prog.write_text(r'''
#include <stdio.h>
#include <isvd/client.h>
#include <isvd/producer.h>
int main(int argc, char **argv)
{
	struct isvd_client_options o;
	struct isvd_client *c;
	char version[64];
	uint64_t proto = 0;
	int rc;

	isvd_client_options_init(&o);
	o.query = argv[1];
	o.ingest = argv[2];
	if ((rc = isvd_client_create(&c, &o)) != 0) {
		fprintf(stderr, "create: %s\n", isvd_client_strerror(rc));
		return 1;
	}
	rc = isvd_client_ping(c, version, sizeof version, &proto);
	if (rc == 0)
		printf("%s %llu\n", version, (unsigned long long)proto);
	else
		fprintf(stderr, "ping: %s\n", isvd_client_errmsg(c));
	/* and one row through the producer (isvd/producer.h) */
	struct isvd_producer *p;
	struct isvd_producer_stats st;
	const double row[3] = { 1, 2, 3 };
	if (rc == 0 && (rc = isvd_producer_create(&p, c, NULL)) == 0) {
		rc = isvd_producer_push_row(p, row, 3);
		if (rc == 0)
			rc = isvd_producer_flush(p, -1);
		isvd_producer_get_stats(p, &st);
		printf("%llu\n", (unsigned long long)st.rows_accepted);
		isvd_producer_destroy(p);
	}
	isvd_client_destroy(c);
	return rc != 0;
}
''')
    pcdir = os.path.dirname(paths["pc"])
    prefix = rel["pc"][:rel["pc"].index("/lib")]
    env = dict(os.environ, PKG_CONFIG_PATH=pcdir)
    flags = run(["pkg-config", "--define-variable=prefix=" + str(dest) + prefix, "--cflags", "--libs",
                 "libisvd"], env=env).split()
    assert any(f.startswith("-I" + str(dest)) for f in flags), flags
    assert "-lisvd" in flags
    exe = tmp_path / "ping"
    # a sanitizer build's libisvd needs the program to bring the runtime
    sanitize = build_options()["b_sanitize"]   # "address,undefined" (a list in newer meson)
    sanitize = ",".join(sanitize) if isinstance(sanitize, list) else sanitize
    san = [] if sanitize in ("none", "") else [f"-fsanitize={sanitize}"]
    run(["cc", "-std=c11", "-Wall", "-Werror", *san, str(prog), "-o", str(exe), *flags])
    with Daemon(tmp_path) as d:
        out = run([str(exe), d.query, d.ingest],
                  env=dict(os.environ, LD_LIBRARY_PATH=os.path.dirname(paths["so"])))
        version = run([isvdd_path(), "--version"]).split()[1]
        assert out.split() == [version, "1", "1"], out


def test_units_verify_and_rate_ok(installed, tmp_path):
    dest, paths, rel, mandir = installed
    for name in ("unit", "unit@"):
        text = open(paths[name]).read()
        # ExecStart at the installed binary inside destdir, nothing else changed
        fixed = re.sub(r"^ExecStart=" + re.escape(rel["isvdd"]), "ExecStart=" + paths["isvdd"], text,
                       flags=re.M)
        assert fixed != text
        (tmp_path / os.path.basename(paths[name])).write_text(fixed)
        for line in ("Type=notify", "NotifyAccess=main", "User=isvd", "ProtectSystem=strict",
                     "NoNewPrivileges=yes", "PrivateTmp=yes", "WatchdogSec=30",
                     "ExecReload=/bin/kill -HUP $MAINPID", "WantedBy=multi-user.target"):
            assert re.search("^" + re.escape(line) + "$", text, re.M), (name, line)
    unit, inst = open(paths["unit"]).read(), open(paths["unit@"]).read()
    assert re.search(r"^StateDirectory=isvd$", unit, re.M)
    assert re.search(r"^StateDirectory=isvd/%i$", inst, re.M)
    assert re.search(r"^ExecStart=\S+/isvdd --config \S+/isvd/isvdd\.yaml$", unit, re.M)
    assert re.search(r"^ExecStart=\S+/isvdd --config \S+/isvd/%i\.yaml$", inst, re.M)
    env = dict(os.environ, MANPATH=str(dest) + mandir)
    run(["systemd-analyze", "verify", "./isvdd.service", "./isvdd@example.service"], cwd=tmp_path,
        env=env)
    for u in ("./isvdd.service", "./isvdd@example.service"):
        # --threshold: exit non-zero when the exposure is over 2.0 (20 on its 0..100 scale)
        out = run(["systemd-analyze", "security", "--offline=yes", "--threshold=20", u], cwd=tmp_path,
                  env=dict(env, SYSTEMD_COLORS="0"))
        assert re.search(r"Overall exposure level for \S+: \d\.\d OK", out), out[-500:]


def expand_syscalls(name, seen=None):
    """The system calls of a systemd syscall group (@name, recursively) or
    the one call name."""
    if not name.startswith("@"):
        return {name}
    seen = set() if seen is None else seen
    calls = set()
    for line in run(["systemd-analyze", "syscall-filter", name]).splitlines()[1:]:
        line = line.strip()
        if line.startswith("@") and line not in seen:
            seen.add(line)
            calls |= expand_syscalls(line, seen)
        elif line and not line.startswith("#") and not line.startswith("@"):
            calls.add(line)
    return calls


def unit_syscalls(text):
    """The calls a unit's SystemCallFilter= lines allow: the union of the
    allow lines minus the union of the ~deny lines (systemd.exec(5))."""
    allow, deny = set(), set()
    for neg, names in re.findall(r"^SystemCallFilter=(~?)(.*)$", text, re.M):
        for n in names.split():
            (deny if neg else allow).update(expand_syscalls(n))
    assert allow, "no SystemCallFilter= allow list"
    return allow - deny


def http_port(d, starts, seconds=20):
    """The port the daemon's HTTP endpoint took (http.listen port 0) at its
    starts-th start (1-based; a restart appends to the same log)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ports = re.findall(r"http: serving .* \(port (\d+)\)", d.log())
        if len(ports) >= starts:
            return int(ports[starts - 1])
        time.sleep(0.05)
    raise TimeoutError("no HTTP port in the log")


def test_the_sandbox_allows_what_isvdd_does(installed, tmp_path):
    """isvdd under strace through a workload — start-up and recovery, the
    notify socket with a watchdog, pushes, queries, a snapshot, a
    checkpoint, the HTTP endpoint (libmicrohttpd's thread: /metrics and
    /status), monitoring, SIGHUP, SIGTERM and its final checkpoint — makes only
    system calls the units' SystemCallFilter= allows (a denied one fails
    with EPERM: libzmq would abort), opens only sockets of the families
    RestrictAddressFamilies= allows, and maps no memory both writable and
    executable (MemoryDenyWriteExecute=yes)."""
    _, paths, _, _ = installed
    unit = open(paths["unit"]).read()
    assert unit_syscalls(unit) == unit_syscalls(open(paths["unit@"]).read())
    allowed = unit_syscalls(unit)
    families = set(re.search(r"^RestrictAddressFamilies=(.*)$", unit, re.M)[1].split())
    trace = tmp_path / "strace"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    env = {"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "200000",
           # LeakSanitizer's exit-time check ptrace()s the process: a sanitizer's call, not isvdd's
           "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0"}
    try:
        for run_no in range(2):   # the second start recovers from the first's storage
            d = Daemon(tmp_path, model={"dim": 4, "rank": 2}, env=env,
                       extra_sections={"publish": {"spectrum_every_ms": 50},
                                       "http": {"listen": "127.0.0.1:0"},
                                       "monitor": {"enabled": True, "warmup_rows": 2}},
                       prefix=("strace", "-f", "-qq", "-o", f"{trace}.{run_no}"))
            with d:
                pid = int(open(f"/proc/{d.proc.pid}/task/{d.proc.pid}/children").read().split()[0])
                sub = d.sub((b"spectrum",))
                assert d.push(np.arange(40.0).reshape(10, 4) ** 1.5, client="c", batch=run_no + 1)["ok"]
                d.info()
                d.factors()
                assert d.call(d.q, {"op": "project", "rows": [[1, 2, 3, 4]]})["ok"]
                assert d.call(d.q, {"op": "checkpoint"})["ok"]
                sub.recv_multipart()   # a snapshot was published (bounded by RCVTIMEO)
                port = http_port(d, run_no + 1)
                for path in ("/metrics", "/status"):   # http.client: no proxy settings apply
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
                    conn.request("GET", path)
                    assert conn.getresponse().status == 200
                    conn.close()
                os.kill(pid, signal.SIGHUP)
                time.sleep(0.2)        # the reload happens; the ping below is served after it
                assert d.call(d.q, {"op": "ping"})["ok"]
                os.kill(pid, signal.SIGTERM)
                assert d.proc.wait(30) == 0
    finally:
        notify.close()
    text = "".join(open(f"{trace}.{i}").read() for i in range(2))
    made = set(re.findall(r"^\d+ +([a-z_0-9]+)\(", text, re.M))
    assert {"socket", "bind", "sendto", "fsync", "renameat"} & made, sorted(made)   # the trace is real
    assert made <= allowed, f"calls the units' SystemCallFilter= denies: {sorted(made - allowed)}"
    opened = set(re.findall(r"\bsocket\((AF_[A-Z0-9]+)", text))
    assert opened and opened <= families, (opened, families)
    wx = [ln for ln in text.splitlines() if re.search(r"\b(mmap|mprotect)\(", ln)
          and "PROT_WRITE" in ln and "PROT_EXEC" in ln]
    assert not wx, wx[:3]


def test_sysusers_entry_creates_the_user(installed, tmp_path):
    _, paths, _, _ = installed
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    run(["systemd-sysusers", f"--root={root}", paths["sysusers"]])
    users = [ln.split(":") for ln in (root / "etc" / "passwd").read_text().splitlines()]
    isvd = [u for u in users if u[0] == "isvd"]
    assert len(isvd) == 1, users
    assert 0 < int(isvd[0][2]) < 1000 and isvd[0][5] == "/var/lib/isvd", isvd  # a system user
    assert isvd[0][6].endswith("nologin"), isvd


# ------------------------------------------------------------ man pages

def man_text(name):
    """The page's source with roff escapes for - and fonts undone."""
    t = open(os.path.join(MAN, name)).read()
    return re.sub(r"\\f[BIRP]", "", t.replace("\\-", "-").replace("\\(em", "-"))


def isvdd_keys():
    """[(key, type, default, range)] from `isvdd --help`, i.e. config.c's table."""
    out = run([isvdd_path(), "--help"])
    rows = re.findall(r"^  ([a-z_]+\.[a-z_]+) +(\w+) \[(.*?)\](?:, (.*))?$", out, re.M)
    assert len(rows) > 30, out
    return rows


def man_range(help_range):
    """`isvdd --help`'s range text as isvdd.yaml(5) writes it."""
    m = re.fullmatch(r"between (\S+) and (\S+)", help_range)
    if m:
        return f"{m[1]} to {m[2]}"
    m = re.fullmatch(r"one of (.*)", help_range)
    if m:
        return "one of " + ", ".join(m[1].split())
    m = re.fullmatch(r"in (.*)", help_range)
    assert m, help_range
    return m[1]


def test_man_yaml5_documents_every_key_of_the_table():
    text = man_text("isvdd.yaml.5")
    documented = re.findall(r"^([a-z_]+\.[a-z_]+) \((.*)\)$", text, re.M)
    keys = isvdd_keys()
    assert [k for k, _ in documented] == [k for k, *_ in keys], "keys differ (or their order)"
    for (key, attrs), (_, typ, default, rng) in zip(documented, keys):
        want = f"{typ}; default {default}" + (f"; {man_range(rng)}" if rng else "")
        assert attrs == want, f"isvdd.yaml.5 says {key} ({attrs}); isvdd --help: ({want})"


def test_man_isvdd8_documents_every_option_and_exit_code():
    text = man_text("isvdd.8")
    out = run([isvdd_path(), "--help"])
    usage = out[:out.index("Configuration keys")]
    options = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*|-[a-zA-Z])\b", usage))
    assert {"--config", "--check", "--repair", "--help", "--version"} <= options, options
    for opt in options | {"-h", "-V"}:
        assert re.search(r"(?<![\w-])" + re.escape(opt) + r"\b", text), f"isvdd.8 lacks {opt}"
    codes = re.search(r"exit codes: (.*?)\n\n", usage, re.S)[1]
    for code in re.findall(r"(\d) [a-z]", codes):
        assert re.search(r"^\.TP\n\.B " + code + "$", text, re.M), f"isvdd.8 lacks exit code {code}"
    for word in ("SIGHUP", "SIGTERM", "READY=1", "RELOADING=1", "STOPPING=1", "WATCHDOG=1", "STATUS="):
        assert word in text, word


def test_man_pages_format_without_warnings():
    for page in ("isvdd.8", "isvd.1", "isvdd.yaml.5"):
        r = subprocess.run(["groff", "-man", "-ww", "-z", "-t", os.path.join(MAN, page)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and not r.stderr, f"{page}: {r.stderr}"


def test_man_pages_carry_the_version():
    version = run([isvdd_path(), "--version"]).split()[1]
    for page in ("isvdd.8", "isvd.1", "isvdd.yaml.5"):
        th = re.search(r'^\.TH .*$', open(os.path.join(MAN, page)).read(), re.M)[0]
        assert f'"isvd {version}"' in th, f"{page}: {th} (isvdd is {version})"


def man_sections(text):
    """{first words of a .SS/.SH heading: its text up to the next heading}."""
    parts = re.split(r'^\.S[SH] "?(.*?)"?$', text, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def help_options(text):
    """[(short or None, long, default or None)] of the option lines of a --help."""
    opts = []
    for m in re.finditer(r"^  (?:(-\w), )?(--[a-z-]+)[^\n]*?(?:\(default:? ([^)]*)\))?$", text, re.M):
        opts.append((m[1], m[2], m[3]))
    return opts


def test_man_isvd1_documents_every_command_option_and_default():
    assert ISVD_CLI, "set ISVD_CLI (meson test does)"
    text = man_text("isvd.1")
    sections = man_sections(text)
    top = run([ISVD_CLI, "--help"])
    commands = re.findall(r"^  ([a-z]+) +isvd \1\b", top, re.M)
    assert len(commands) >= 9, top
    common = help_options(top[top.index("common options:"):])
    assert len(common) >= 8, common
    common_text = sections["COMMON OPTIONS"]
    for short, long, default in common:
        for o in filter(None, (short, long)):
            assert re.search(r"(?<![\w-])" + re.escape(o) + r"\b", common_text), f"isvd.1 lacks {o}"
        if default:
            assert f"default {default}" in common_text, (long, default)
    for env in set(re.findall(r"ISVD_[A-Z_]+", top)):
        assert env in sections["ENVIRONMENT"], env
    common_longs = {lng for _, lng, _ in common}
    for cmd in commands:
        sec = [body for head, body in sections.items() if head.startswith(f"isvd {cmd} ")]
        assert len(sec) == 1, f"isvd.1 has no section 'isvd {cmd} ...'"
        out = run([ISVD_CLI, cmd, "--help"])
        usage = out.splitlines()[0].removeprefix("usage: ")
        assert usage in sections, f"isvd.1 has no section headed {usage!r}"
        for short, long, default in help_options(out):
            if long in common_longs:
                continue
            for o in filter(None, (short, long)):
                assert re.search(r"(?<![\w-])" + re.escape(o) + r"\b", sec[0]), f"isvd.1: {cmd} lacks {o}"
            if default:
                assert f"default {default}" in sec[0] or f"default: {default}" in sec[0], \
                    f"isvd.1: {cmd} {long} lacks its default {default}"
