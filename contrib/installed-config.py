#!/usr/bin/env python3
"""contrib/installed-config.py IN OUT — writes the configuration installed
as /etc/isvd/isvdd.yaml (meson install, the Debian package): IN
(configs/default.yaml, the one scripts/run starts) with its header and its
storage.dir line rewritten for isvdd.service, which runs in /var/lib/isvd
(StateDirectory=).  Everything else — loopback endpoints, every key with
its default — stays as in IN, so the two cannot drift.  Fails when IN no
longer has the lines it rewrites."""
import re
import sys

src, dst = sys.argv[1], sys.argv[2]
text = open(src, encoding="utf-8").read()

HEADER = """\
# /etc/isvd/isvdd.yaml — the configuration of isvdd.service (systemd): isvdd
# on loopback only, learning the dimension from the first push, its model
# and write-ahead log in /var/lib/isvd/data.  Every key is listed with its
# default; isvdd.yaml(5) and `isvdd --help` document them all, and
# `isvdd --check --config /etc/isvd/isvdd.yaml` validates this file.  After
# editing: `systemctl restart isvdd` (SIGHUP, `systemctl reload isvdd`,
# only reopens the log file and re-reads the CURVE client keys).
# Generated from configs/default.yaml of the isvd source.
"""
body_at = text.find("\nmodel:")
if not text.startswith("# configs/default.yaml") or body_at < 0:
    sys.exit(f"{src}: the header this script replaces is not there")
text = HEADER + text[body_at:]

line = re.compile(r"^  dir: \./data .*$", re.M)
if len(line.findall(text)) != 1:
    sys.exit(f"{src}: no single 'dir: ./data' line under storage:")
text = line.sub("  dir: /var/lib/isvd/data   # under StateDirectory=isvd of isvdd.service; one daemon per dir",
                text)
open(dst, "w", encoding="utf-8").write(text)
