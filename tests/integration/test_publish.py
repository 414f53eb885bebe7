"""A subscriber receives `spectrum` and `factors` snapshots with increasing
seq, the documented keys, and sign-normalised vectors; each snapshot's σ
(and a factors snapshot's subspace and mean) is numpy's SVD of the first
seq rows pushed (dim 10 at rank 4 runs in exact mode)."""
import time

import numpy as np
import zmq

from isvdd_harness import Daemon, assert_factors_match, sign_normalise, unmat, unpack


def test_subscriber_gets_spectrum_and_factors(tmp_path):
    d = Daemon(tmp_path, model={"dim": 10, "rank": 4, "center": True},
               extra_sections={"publish": {"spectrum_every_ms": 50, "spectrum_every_rows": 500,
                                           "factors_every_ms": 120}})
    spectra, factors = [], []
    try:
        sub = d.sub()
        rng = np.random.default_rng(3)
        mix = rng.standard_normal((10, 10))
        deadline = time.monotonic() + 60
        pushed, rows = 0, []
        while (len(spectra) < 5 or len(factors) < 3) and time.monotonic() < deadline:
            rows.append(rng.standard_normal((200, 10)) @ mix)
            assert d.push(rows[-1])["ok"]
            pushed += 200
            end = time.monotonic() + 0.06
            while time.monotonic() < end:
                if sub.poll(10):
                    topic, body = sub.recv_multipart()
                    (spectra if topic == b"spectrum" else factors).append(unpack(body))
        assert len(spectra) >= 5 and len(factors) >= 3, (len(spectra), len(factors))
        final = d.factors()
    finally:
        assert d.stop() == 0

    X = np.vstack(rows)
    seqs = [s["seq"] for s in spectra]
    assert all(b > a for a, b in zip(seqs, seqs[1:])), seqs
    now = time.time()
    for s in spectra:
        assert set(s) == {"seq", "rows_seen", "sigma", "explained_energy_ratio", "t",
                          "rows_with_gaps", "values_imputed"}
        assert s["rows_with_gaps"] == 0 and s["values_imputed"] == 0
        assert s["rows_seen"] == s["seq"] and 0 < s["seq"] <= pushed
        assert len(s["sigma"]) == 4 and all(a >= b for a, b in zip(s["sigma"], s["sigma"][1:]))
        assert 0 < s["explained_energy_ratio"] <= 1 and abs(s["t"] - now) < 120
        first = X[:s["seq"]]
        s_ref = np.linalg.svd(first - first.mean(axis=0), compute_uv=False)[:4]
        assert np.allclose(s["sigma"], s_ref, rtol=1e-9, atol=0), (s["seq"], s["sigma"], s_ref)
    fseqs = [f["seq"] for f in factors]
    assert all(b > a for a, b in zip(fseqs, fseqs[1:])), fseqs
    for f in factors:
        assert f["ok"] is True and "id" not in f
        vt = unmat(f["vt"])
        assert vt.shape == (4, 10) and len(f["sigma"]) == 4 and len(f["mean"]) == 10
        assert np.array_equal(vt, sign_normalise(vt))
        assert np.allclose(vt @ vt.T, np.eye(4), atol=1e-10)
        assert_factors_match((np.array(f["sigma"]), vt, np.array(f["mean"]), f["seq"]),
                             X[:f["seq"]], center=True)
    assert factors[-1]["seq"] <= final[3]


def test_a_subscriber_that_never_reads_does_not_block_ingest(tmp_path):
    d = Daemon(tmp_path, model={"dim": 300, "rank": 16},
               extra_sections={"publish": {"spectrum_every_ms": 1, "spectrum_every_rows": 1,
                                           "factors_every_ms": 1},
                               "limits": {"publish_hwm": 1}})
    try:
        d.sub()                                  # connected, never read
        rng = np.random.default_rng(4)
        for b in range(200):
            r = d.push(rng.standard_normal((5, 300)))   # each reply within the harness timeout
            assert r["ok"] and r["seq"] == 5 * (b + 1)
        assert d.info()["rows_seen"] == 1000
    finally:
        assert d.stop() == 0
