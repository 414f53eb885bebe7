"""Configuration and process life-cycle: --check on good and bad files
(file:line:col and the key in every message), --help documents every key of
configs/default.yaml, --version, a refused bind, SIGTERM and SIGHUP."""
import os
import re
import signal
import socket

import pytest

from isvdd_harness import REPO, Daemon, run_isvdd

CONFIGS = os.path.join(REPO, "configs")


def shipped_configs():
    return sorted(f for f in os.listdir(CONFIGS) if f.endswith(".yaml"))


def built_with_kafka():
    return " kafka: librdkafka " in run_isvdd("--version").stdout


@pytest.mark.parametrize("name", shipped_configs())
def test_shipped_configs_pass_check(name):
    r = run_isvdd("--check", "--config", os.path.join(CONFIGS, name))
    if name.startswith("kafka-") and not built_with_kafka():
        # an isvdd built without librdkafka refuses a kafka section, and says why
        assert r.returncode == 1 and "built without Kafka support" in r.stderr, r.stderr
        return
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith(": ok")


def test_help_documents_every_key_of_default_yaml():
    r = run_isvdd("--help")
    assert r.returncode == 0
    documented = set(re.findall(r"^  ([a-z_]+\.[a-z_]+) ", r.stdout, re.M))
    # keys of default.yaml, commented-out ones (and sections) included
    keys, section = set(), None
    with open(os.path.join(CONFIGS, "default.yaml")) as f:
        for line in f:
            m = re.match(r"^(?:# )?([a-z_]+):", line)
            if m:
                section = m.group(1)
                continue
            m = re.match(r"^  #? ?([a-z_]+):", line)
            if m and section:
                keys.add(f"{section}.{m.group(1)}")
    assert keys == documented
    for needed in ("model.dim", "model.half_life", "endpoints.publish", "batching.max_delay_ms",
                   "publish.factors_every_ms", "storage.checkpoint_every_s",
                   "limits.max_rows_per_push", "log.format"):
        assert needed in documented


def test_version():
    r = run_isvdd("--version")
    assert r.returncode == 0
    assert re.match(r"isvdd \d+\.\d+\.\d+ \(protocol 1\)", r.stdout)


BAD = """\
model:
  rank: 0
  dim: many
  colour: blue
  center: &c true
  forget: 0.5
  half_life: 100
endpoints:
  ingest: tcp://127.0.0.1:1
  query: tcp://127.0.0.1:1
  publish: udp://nowhere
extras: {}
log:
  level: !!str info
  format: xml
  file: *c
"""


def test_check_reports_every_problem_with_line_and_column(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text(BAD)
    r = run_isvdd("--check", "--config", str(p))
    assert r.returncode != 0
    err = r.stderr
    expect = [
        (2, 3, "model.rank must be between 1 and 4096, got 0"),
        (3, 3, "model.dim must be an integer"),
        (4, 3, "unknown key 'model.colour'"),
        (5, 11, "anchors are not allowed"),
        (7, 3, "model.forget and model.half_life both set"),
        (10, 3, "endpoints.ingest and endpoints.query are the same endpoint"),
        (11, 3, "endpoints.publish must be a zmq endpoint"),
        (12, 1, "unknown section 'extras'"),
        (14, 10, "tags are not allowed"),
        (15, 3, "log.format must be one of text, json, got 'xml'"),
        (16, 9, "aliases are not allowed"),
    ]
    for line, col, text in expect:
        assert f"{p}:{line}:{col}: " in err and text in err, (line, col, text, err)
        assert any(l.startswith(f"{p}:{line}:{col}: ") and text in l for l in err.splitlines()), (text, err)
    assert "11 problems" in err


@pytest.mark.parametrize("text,where,what", [
    ("model:\n  rank: [1\n", ":3:1:", "YAML syntax error"),
    ("model:\n  rank: 4\n---\nmodel:\n  rank: 5\n", ":3:1:", "only one YAML document"),
    ("- model\n", ":1:1:", "top level must be a mapping"),
    ("model:\n  rank: 4\n  rank: 5\n", ":3:3:", "model.rank appears twice"),
    ("model:\n  center: yes\n", ":2:3:", "model.center must be true or false"),
    ("model:\n  rank: \"8\"\n", ":2:3:", "model.rank must be an integer"),
    ("model:\n  forget: 0\n", ":2:3:", "model.forget must be in (0, 1], got 0"),
    ("batching:\n  max_rows: 100000\n", ":2:3:", "batching.max_rows must be between 1 and 65536"),
    ("model:\n  rank:\n", ":2:3:", "model.rank needs a value"),
    ("storage:\n  dir: \"\"\n", ":2:3:", "storage.dir must not be empty"),
])
def test_check_single_problems(tmp_path, text, where, what):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    r = run_isvdd("--check", "--config", str(p))
    assert r.returncode != 0
    assert f"{p}{where} " in r.stderr and what in r.stderr, r.stderr


def test_size_cap_and_missing_file(tmp_path):
    p = tmp_path / "big.yaml"
    p.write_text("# " + "x" * (1 << 20) + "\n")
    r = run_isvdd("--check", "--config", str(p))
    assert r.returncode != 0 and "larger than the limit" in r.stderr
    r = run_isvdd("--check", "--config", str(tmp_path / "nope.yaml"))
    assert r.returncode != 0 and "cannot open" in r.stderr
    r = run_isvdd("--bogus")
    assert r.returncode == 2


def test_empty_config_is_all_defaults(tmp_path):
    p = tmp_path / "empty.yaml"
    p.write_text("# nothing\n")
    r = run_isvdd("--check", "--config", str(p))
    assert r.returncode == 0, r.stderr


def test_refuses_to_start_when_an_endpoint_cannot_be_bound(tmp_path):
    busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        p = tmp_path / "busy.yaml"
        p.write_text(f"endpoints:\n  ingest: ipc://{tmp_path}/in.sock\n"
                     f"  query: tcp://127.0.0.1:{port}\n  publish: ipc://{tmp_path}/pub.sock\n"
                     f"storage:\n  dir: {tmp_path}/data\n")
        r = run_isvdd("--config", str(p), timeout=30)
        assert r.returncode != 0
        assert f"cannot bind the query endpoint tcp://127.0.0.1:{port}" in r.stderr
        assert "Address already in use" in r.stderr
    finally:
        busy.close()


def test_sigterm_exits_zero_and_sighup_reopens_the_log(tmp_path):
    d = Daemon(tmp_path)
    try:
        assert d.push([[1.0, 2.0, 3.0]])["ok"]
        os.rename(d.log_path, d.log_path + ".1")     # what logrotate does
        d.signal(signal.SIGHUP)
        for _ in range(100):
            if os.path.exists(d.log_path):
                break
            d.q.poll(50)
        assert d.info()["rows_seen"] == 1
        assert "log reopened" in d.log()
        with open(d.log_path + ".1") as f:
            first = f.read()
        assert first.count("starting") == 1 and "dim 0 (from the first push)" in first
    finally:
        rc = d.stop()
    assert rc == 0
    assert "stopped" in d.log()


def test_sigint_exits_zero(tmp_path):
    d = Daemon(tmp_path)
    d.signal(signal.SIGINT)
    assert d.proc.wait(20) == 0
    d.stop()


def test_check_kafka_properties(tmp_path):
    """kafka.properties go to librdkafka as they are: --check asks it about each
    one, and refuses those isvdd sets itself, each at its line and column."""
    p = tmp_path / "k.yaml"
    p.write_text("model:\n  dim: 4\nkafka:\n  brokers: 127.0.0.1:1\n  topic: t\n  properties:\n"
                 "    group.id: x\n    no.such.property: 1\n    session.timeout.ms: many\n"
                 "    socket.timeout.ms: 10000\n")
    r = run_isvdd("--check", "--config", str(p))
    assert r.returncode == 1, r.stderr
    if not built_with_kafka():
        assert f"{p}:3:1: kafka: this isvdd is built without Kafka support" in r.stderr, r.stderr
        return
    assert f"{p}:7:5: kafka.properties.group.id: isvdd sets it itself (kafka.group)" in r.stderr
    assert f"{p}:8:5: kafka.properties.no.such.property: " in r.stderr
    assert f"{p}:9:5: kafka.properties.session.timeout.ms: " in r.stderr
    assert "socket.timeout.ms" not in r.stderr
    assert "3 problems" in r.stderr
