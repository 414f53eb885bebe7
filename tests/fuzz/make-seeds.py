#!/usr/bin/env python3
"""tests/fuzz/make-seeds.py — (re)write the seed corpus in corpus/request/.

One file per seed: valid requests for every op, both matrix forms, and the
hostile shapes the unit tests name (oversized counts, depth bombs, trailing
bytes, ragged rows, Inf, shape/data mismatch, overflowing shapes), so the
fuzzer starts next to every branch of the decoder.  A minimal msgpack
packer is inlined so the script needs only the Python standard library.
"""
import os
import struct

def pack(v):
    if v is None:
        return b'\xc0'
    if v is True:
        return b'\xc3'
    if v is False:
        return b'\xc2'
    if isinstance(v, Raw):
        return v.b
    if isinstance(v, int):
        if 0 <= v < 128:
            return bytes([v])
        if -32 <= v < 0:
            return struct.pack('b', v)
        if v >= 0:
            return b'\xcf' + struct.pack('>Q', v)
        return b'\xd3' + struct.pack('>q', v)
    if isinstance(v, float):
        return b'\xcb' + struct.pack('>d', v)
    if isinstance(v, str):
        b = v.encode()
        return (bytes([0xa0 | len(b)]) if len(b) < 32 else b'\xd9' + bytes([len(b)])) + b
    if isinstance(v, bytes):
        return b'\xc4' + bytes([len(v)]) + v
    if isinstance(v, list):
        return bytes([0x90 | len(v)]) + b''.join(pack(x) for x in v) if len(v) < 16 else \
            b'\xdc' + struct.pack('>H', len(v)) + b''.join(pack(x) for x in v)
    if isinstance(v, dict):
        return bytes([0x80 | len(v)]) + b''.join(pack(k) + pack(x) for k, x in v.items())
    raise TypeError(v)

class Raw:
    def __init__(self, b):
        self.b = b

def f64(*xs):
    return struct.pack('<%dd' % len(xs), *xs)

def f32(*xs):
    return struct.pack('<%df' % len(xs), *xs)

shaped = {'shape': [2, 3], 'dtype': 'f64', 'data': f64(1, 2, 3, 4, 5, 6)}
seeds = {
    'ping': {'op': 'ping'},
    'ping-id': {'op': 'ping', 'id': 7},
    'info-id-map': {'id': {'a': [1, 2.5, None]}, 'op': 'info'},
    'factors': {'op': 'factors', 'id': 'q-1'},
    'checkpoint': {'op': 'checkpoint'},
    'push-rows': {'op': 'push', 'rows': [[1, 2.5, None], [-3, 4, 5]]},
    'push-one-row': {'op': 'push', 'rows': [1, 2, 3, 4]},
    'push-shaped': {'op': 'push', 'rows': shaped, 'client': 'loader', 'batch': 12},
    'push-f32': {'op': 'push', 'rows': {'shape': [1, 2], 'dtype': 'f32', 'data': f32(1.5, float('nan'))}},
    'project-u': {'op': 'project', 'rows': [[0.5, 0.25]], 'space': 'u'},
    'reconstruct': {'op': 'reconstruct', 'rows': shaped},
    'unknown-op': {'op': 'pong'},
    'unknown-key': {'op': 'ping', 'x': 1},
    'ragged': {'op': 'push', 'rows': [[1, 2], [3]]},
    'inf': {'op': 'push', 'rows': [[1, float('inf')]]},
    'mismatch': {'op': 'push', 'rows': {'shape': [2, 2], 'dtype': 'f64', 'data': f64(1)}},
    'overflow-shape': {'op': 'push', 'rows': {'shape': [2**63, 2**63], 'dtype': 'f64', 'data': b''}},
    'string-in-row': {'op': 'push', 'rows': [[1, 'x']]},
    'reply-ok': {'ok': True, 'seq': 1},
    'reply-error': {'ok': False, 'id': 1, 'error': {'code': 'BAD_MATRIX', 'message': 'row 0'}},
    'spectrum': {'seq': 5, 'rows_seen': 5, 'sigma': [2.0, 1.0], 'explained_energy_ratio': 0.5, 't': 1.5},
}
raw = {
    'array32-huge': b'\xdd\x10\x00\x00\x00\x01',
    'map32-huge': b'\xdf\xff\xff\xff\xff',
    'rows-bin32-huge': b'\x82' + pack('op') + pack('push') + pack('rows') + b'\xc6\x10\x00\x00\x00',
    'str32-huge': b'\x81\xdb\xff\xff\xff\xff',
    'depth-bomb': b'\x82' + pack('op') + pack('ping') + pack('id') + b'\x91' * 64 + b'\xc0',
    'trailing': pack({'op': 'ping'}) + b'\x00',
    'truncated': pack({'op': 'push', 'rows': shaped})[:-5],
}

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'corpus', 'request')
os.makedirs(out, exist_ok=True)
for name, v in seeds.items():
    with open(os.path.join(out, name), 'wb') as f:
        f.write(pack(v))
for name, b in raw.items():
    with open(os.path.join(out, name), 'wb') as f:
        f.write(b)
