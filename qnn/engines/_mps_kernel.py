"""Compiled (numba) kernels of the MPS path's readout: both environment tries, every word and
their backward in one call each, batch last, instead of about 130 batched products of tiny
(bond-sized: 4 x 4 to 8 x 8 for two strongly entangling layers) matrices per pass at 12 qubits,
which torch runs one BLAS call per sample.

The arithmetic is :meth:`._mps.MPSRunner._readout`'s (the torch readout is the slow
reference: ``tests/engines/test_mps.py``).  The tries' nodes are one table, parents before
children; node ``i`` extends its parent's environment ``E (D, D)`` (``[bra, ket]``) by one
site ``T[l, s, r]`` and one local operator ``P``:

    ``X[l', s, r] = sum_l E[l', l] T[l, s, r]``,  ``Y = P X`` (on ``s``),
    ``E'[r', r] = sum_{l', s} conj(T[l', s, r']) Y[l', s, r]``;

the right trie reads its sites transposed (``T[r, s, l]``), through the strides of its rows.
A word is ``sign * Re sum L * R`` of its two environments.  The backward (torch's convention
for complex gradients, ``dL/dRe + i dL/dIm``), with ``G`` the cotangent of ``E'``:

    ``Z = P^H`` applied to ``W[l', s', r] = sum_{r'} T[l', s', r'] G[r', r]``,
    ``dE[l', l] += sum_{s, r} Z[l', s, r] conj(T[l, s, r])``,
    ``dT[l, s, r] += sum_{l'} conj(E[l', l]) Z[l', s, r]``  (the ket),
    ``dT[l', s, r'] += sum_r conj(G[r', r]) Y[l', s, r]``  (the bra).

Complex numbers are held as real and imaginary planes ``(..., B)``, so that every inner loop
runs over the batch in contiguous memory and vectorises.  numba is optional (``qnn[fast]``);
without it (:func:`._small_kernel.available`) the torch readout runs.
"""

from __future__ import annotations

import numpy as np

from qnn.engines._small_kernel import available

__all__ = ["available", "readout_forward", "readout_backward", "node_table", "warm"]

_NS: list = []  # [the jitted module, ._mps_numba]


def _kernels():
    if not _NS:
        from qnn.engines import _mps_numba

        _NS.append(_mps_numba)
    return _NS[0]


def node_table(n, dims, left_levels, right_levels, pairs, letters_op):
    """The tries of :meth:`._mps.MPSProgram._readout_plan` as kernel tables, for sites of
    shapes ``dims[w] = (D_l, D_r)`` packed one after the other (``(D_l, 2, D_r)`` each, C order).

    ``letters_op(letter) -> (kind, P)``: kind 0 (the identity), 1 (diagonal: ``P[s, s]``
    real) or 2 (a general ``2 x 2``).  Returns ``nodes (N, 9)`` int64 (columns: parent,
    offset of the site, strides of ``l``, ``s``, ``r``, ``D_l``, ``D_r``, kind, offset of the
    node's ``(D_r, D_r)`` environment among all nodes' environments, packed; a root has parent
    -1 and one-dimensional bonds), ``ops (N, 2, 2, 2)`` (real and imaginary planes of ``P``),
    ``pairs (J, 2)`` (each word's left and right node) and the packed sites' size."""
    offs, size = [], 0
    for dl, dr in dims:
        offs.append(size)
        size += dl * 2 * dr
    rows, ops = [], []
    env = [0]  # the next environment's offset: node i's (D_r, D_r) environment is packed too

    def add(parent, off, sl, ss, sr, dl, dr, letter):
        kind, P = (0, np.eye(2)) if letter is None else letters_op(letter)
        rows.append((parent, off, sl, ss, sr, dl, dr, kind, env[0]))
        env[0] += dr * dr
        P = np.asarray(P, dtype=np.complex128)
        ops.append(np.stack([P.real, P.imag]))
        return len(rows) - 1

    ids = {}
    for side, levels in (("L", left_levels), ("R", right_levels)):
        level_ids = [add(-1, 0, 0, 0, 0, 1, 1, None)]
        ids[side] = [level_ids]
        for d, (parents, letters) in enumerate(levels, start=1):
            cur = []
            for par, letter in zip(parents, letters):
                if side == "L":  # site w = d - 1, read as stored: T[l, s, r]
                    w = d - 1
                    dl, dr = dims[w]
                    args = (offs[w], 2 * dr, dr, 1, dl, dr)
                else:  # site w = n - d, read transposed: T'[l, s, r] = T[r, s, l]
                    w = n - d
                    dl, dr = dims[w]
                    args = (offs[w], 1, dr, 2 * dr, dr, dl)
                cur.append(add(level_ids[par], *args, letter))
            level_ids = cur
            ids[side].append(level_ids)
    pair_rows = [(ids["L"][w][li], ids["R"][n - w][ri]) for w, li, ri in pairs]
    nodes = np.array(rows, dtype=np.int64).reshape(-1, 9)
    return nodes, np.array(ops), np.array(pair_rows, dtype=np.int64).reshape(-1, 2), size


def readout_forward(Ar, Ai, nodes, ops, pairs, signs):
    """``Ar, Ai (S, B)``: the packed sites' planes -> ``out (J, B)`` and the packed
    environments ``Er, Ei (sum_i D_r,i^2, B)`` that :func:`readout_backward` needs (``ops``
    and ``signs`` in the sites' dtype)."""
    return _kernels().forward(Ar, Ai, nodes, ops, pairs, signs)


def readout_backward(g, Ar, Ai, nodes, ops, pairs, signs, Er, Ei):
    """``g (J, B)``, the words' cotangent -> the packed sites' gradient planes ``(S, B)``."""
    return _kernels().backward(g, Ar, Ai, nodes, ops, pairs, signs, Er, Ei)


def warm(rd) -> None:
    """Compile both kernels for the real dtype ``rd`` (a two-site chain, one word)."""
    nodes, ops, pairs, size = node_table(2, [(1, 2), (2, 1)], [([0], ["Z"]), ([0], ["X"])],
                                         [([0], ["Y"]), ([0], ["I"])], [(1, 0, 0)], lambda x: (2, np.eye(2)))
    A, ops, signs = np.ones((size, 3), dtype=rd), ops.astype(rd), np.ones(1, dtype=rd)
    out, Er, Ei = readout_forward(A, A, nodes, ops, pairs, signs)
    readout_backward(np.ones_like(out), A, A, nodes, ops, pairs, signs, Er, Ei)
