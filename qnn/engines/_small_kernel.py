"""Compiled (numba) kernels of the small path's U variant: the whole circuit unitary, its
readout and their backward in four calls per pass (the rotations, the embedded state, the
forward, the backward; five with the amplitude embedding's gradient) instead of about
seventy numpy calls: at a few qubits the calls, not the arithmetic, are the cost.

The arithmetic is that of :class:`._small_numpy._NumpyFused`'s U variant for a *real*
embedded state (the RY product state or a real amplitude embedding), one copy after the
other along a leading axis ``G``:

- :func:`ry_state`: the RY product state ``psi (G, N, B)`` (wire 0 most significant).
- :func:`u_forward`: ``U`` built gate by gate from the identity (each rotation acts on the
  rows of its wire, each permutation with phases moves rows), every intermediate kept;
  ``phi = U psi`` as ``Re``/``Im`` products, ``out = |phi|^2 S``.
- :func:`u_backward`: ``dL/dpsi = Re(U^H lam)``, ``dL/dU = lam psi^T`` with
  ``lam = 2 phi (S g)``; ``dL/dU`` carried back gate by gate, each rotation's angle getting
  ``Re sum conj(dL/dU_out) (dR_p/dt (x) 1) U_in`` from the 2 x 2 reduced matrix of its wire
  (``2 dR/dt_p = R(t + pi e_p)``, from the rotation table); and the RY inputs' gradient
  ``sum_x dL/dpsi[x] (J_i psi / 2)[x]`` with ``J_i`` flipping wire ``i``.

numba is optional (``pip install qnn[fast]``; shap, in the ``explain`` extra, needs it too):
without it :func:`available` is False and the numpy twin runs.  The kernels compile on first
use, 10-20 s per dtype, and numba keeps them on disk (:func:`compile_kernels` does it ahead).
The slow references are the numpy twin and the ``gates`` path:
``tests/engines/test_small_kernel.py``.
"""

from __future__ import annotations

import os

_KERNELS: list = []  # [namespace of compiled kernels] or [None] when numba is unavailable


def available() -> bool:
    """Whether the compiled kernels can run here (numba importable and not disabled by
    ``QNN_NO_NUMBA=1``)."""
    return _kernels() is not None


def _kernels():
    if not _KERNELS:
        if os.environ.get("QNN_NO_NUMBA", "") not in ("", "0"):
            _KERNELS.append(None)
        else:
            try:
                import numba  # noqa: F401
            except Exception:  # pragma: no cover - numba missing or broken
                _KERNELS.append(None)
            else:
                _KERNELS.append(_compile())
    return _KERNELS[0]


def compile_kernels(dtypes=("float32", "float64")) -> bool:
    """Compile the kernels now for real ``dtypes`` (each with its complex twin), so that a
    first run does not wait for them: the small path's and the MPS readout's
    (:mod:`._mps_kernel`), about 25-35 s per dtype, once per machine (numba keeps them on
    disk, beside these modules or in the user's cache).  False where numba is unavailable
    (the numpy twin and the torch readout run instead).

    Example:
        >>> from qnn.engines import compile_kernels
        >>> compile_kernels(["float16"])
        Traceback (most recent call last):
            ...
        ValueError: compile_kernels: dtypes must be 'float32' or 'float64'; got 'float16'
    """
    import numpy as np

    from qnn.engines import _mps_kernel

    bad = [name for name in dtypes if str(name) not in ("float32", "float64")]
    if bad:
        raise ValueError(f"compile_kernels: dtypes must be 'float32' or 'float64'; got {bad[0]!r}")
    if not available():
        return False
    for name in dtypes:
        rd = np.dtype(str(name))
        cd = np.complex64 if rd == np.float32 else np.complex128
        n, B = 2, 3
        i2 = np.arange(2, dtype=np.int64)
        gates = gate_table(np.zeros((1, 2), rd), np.zeros(0, rd), i2, np.ones(2, rd), np.zeros(2, rd),
                           i2.reshape(2, 1), np.array([[0.5], [-0.5]], rd), np.ones((8, 2), cd))
        ops = np.array([[0, 0, 0], [0, 1, 1], [1, 0, 0]], dtype=np.int64)
        perm, phase, S = np.arange(4, dtype=np.int64)[None], np.ones((1, 4), cd), np.ones((4, n), rd)
        psi, norms, _ = amplitude_state(np.ones((1, B, 3), rd), 0, 3, rd.type(0.5), n)
        amplitude_grad(psi, psi, norms, 0, 3, 3)
        psi = ry_state(np.zeros((1, B, n), rd), i2, np.ones(n, rd), np.zeros(n, rd), n)
        out, *saved = u_forward(gates, ops, perm, phase, S, psi)
        u_backward(np.ones((1, B, n), rd), S, saved + [psi], gates, ops, perm, phase, np.ones((2, 2), rd),
                   np.ones((n, n), rd), True, True, n)
        _mps_kernel.warm(rd)  # the MPS path's readout
    return True


def gate_table(w, consts, sh_idx, sh_scale, sh_off, gidx, S, C):
    """The rotations from the weights ``w (G, P)`` (sources past ``P`` are ``consts``): gate
    ``j``'s angle ``p`` is ``src[sh_idx[s]] * sh_scale[s] + sh_off[s]`` with ``s = gidx[j, p]``;
    its matrix entries ``C exp(i S t)`` (:class:`._small_numpy._RotTable`'s fit, rows in
    ``(2, 2, E)`` order) -> ``gates (G, n_gates, E, 2, 2)``."""
    return _kernels().gate_table(w, consts, sh_idx, sh_scale, sh_off, gidx, S, C)


def amplitude_state(x, start, n_features, pad, n):
    """The amplitude embedding of ``x[..., start:start + n_features]`` padded with ``pad`` to
    ``2**n`` values and normalised (scaled by its largest entry first, as
    :func:`._amplitude.amplitude_states_np`): ``psi (G, 2**n, B)`` (batch last), ``norms (G,
    B)`` (the padded vectors' L2 norms) and the index ``g * B + b`` of the first all-zero
    vector (``-1`` when there is none; the caller raises)."""
    return _kernels().amplitude_state(x, start, n_features, pad, n)


def amplitude_grad(gpsi, psi, norms, start, n_features, d):
    """``dL/dx (G, B, d)`` from the states' cotangent ``gpsi (G, N, B)``: ``(gpsi - psi (psi .
    gpsi)) / |v|`` on the embedded columns."""
    return _kernels().amplitude_grad(gpsi, psi, norms, start, n_features, d)


def ry_state(x, idx, scale, off, n):
    """``x (G, B, d)``, half of wire ``i``'s angle ``x[..., idx[i]] * scale[i] + off[i]`` (the
    caller halves ``scale`` and ``off``) -> the RY product state ``(G, 2**n, B)`` (batch last)."""
    return _kernels().ry_state(x, idx, scale, off, n)


def u_forward(gates, ops, perms, phases, S, psi):
    """``gates (G, n_gates, E, 2, 2)`` (entry 0 the rotation, ``1 + p`` it with angle ``p``
    shifted by ``pi``), ``ops (n_ops, 3)`` rows ``(0, wire, gate)`` or ``(1, 0, permutation)``,
    ``perms (n_perm, N)`` / ``phases (n_perm, N)`` (``U <- phase * U[perm]``), ``S (N, K)``,
    ``psi (G, N, B)`` real (batch last) -> ``out (G, B, K)`` and what :func:`u_backward` needs."""
    return _kernels().u_forward(gates, ops, perms, phases, S, psi)


def u_backward(g, S, saved, gates, ops, perms, phases, wscatter, xscatter, need_w, need_psi, ry_n):
    """``g (G, B, K)`` -> ``gw (G, P)``, the angles' gradient (gate ``j``'s parameter ``p`` in
    row ``j (E - 1) + p``) summed onto the weights by ``wscatter (n_gates (E - 1), P)``, where
    ``need_w``; ``gpsi (G, N, B)``, where ``need_psi`` or ``ry_n``; ``gx (G, B, d)``, the RY
    angles' gradient summed onto the inputs by ``xscatter (ry_n, d)``, where ``ry_n`` (the
    number of wires).  What is not needed comes back empty."""
    Us, M, ph, psi = saved
    return _kernels().u_backward(g, S, Us, M, ph, psi, gates, ops, perms, phases, wscatter, xscatter,
                                 need_w, need_psi, ry_n)


def _compile():
    """The kernels, compiled by numba on their first call (``cache=True``: once per machine).
    States are batch last, ``(N, B)``: every loop over the batch runs over contiguous memory,
    and every product is one BLAS call."""
    import types

    import numba
    import numpy as np

    # reassociation and contraction only (no assumptions about NaN or infinities)
    jit = numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})

    @jit
    def _gate_table(w, consts, sh_idx, sh_scale, sh_off, gidx, S, C):
        G, P = w.shape
        n_gates, npar = gidx.shape
        m = S.shape[0]
        E = C.shape[0] // 4
        gates = np.empty((G, n_gates, E, 2, 2), dtype=C.dtype)
        t = np.empty(npar, dtype=w.dtype)
        z = np.empty(m, dtype=C.dtype)
        for gi in range(G):
            for j in range(n_gates):
                for p in range(npar):
                    s = gidx[j, p]
                    src = sh_idx[s]
                    v = w[gi, src] if src < P else consts[src - P]
                    t[p] = v * sh_scale[s] + sh_off[s]
                for k in range(m):
                    th = 0.0
                    for p in range(npar):
                        th += S[k, p] * t[p]
                    z[k] = np.cos(th) + 1j * np.sin(th)
                for a in range(2):
                    for b in range(2):
                        for e in range(E):
                            row = (a * 2 + b) * E + e
                            acc = 0j
                            for k in range(m):
                                acc += C[row, k] * z[k]
                            gates[gi, j, e, a, b] = acc
        return gates

    @jit
    def _amplitude_state(x, start, n_features, pad, n):
        G, B = x.shape[0], x.shape[1]
        N = 1 << n
        psi = np.empty((G, N, B), dtype=x.dtype)
        norms = np.empty((G, B), dtype=x.dtype)
        v = np.empty(N, dtype=x.dtype)
        for gi in range(G):
            for b in range(B):
                m = abs(x[gi, b, start]) if n_features else abs(pad)
                for i in range(N):
                    v[i] = x[gi, b, start + i] if i < n_features else pad
                    m = max(m, abs(v[i]))
                if m == 0:
                    return psi, norms, gi * B + b
                ss = 0.0
                for i in range(N):
                    v[i] = v[i] / m
                    ss += v[i] * v[i]
                nu = np.sqrt(ss)
                for i in range(N):
                    psi[gi, i, b] = v[i] / nu
                norms[gi, b] = nu * m
        return psi, norms, -1

    @jit
    def _amplitude_grad(gpsi, psi, norms, start, n_features, d):
        G, N, B = psi.shape
        gx = np.zeros((G, B, d), dtype=psi.dtype)
        dot = np.empty(B, dtype=psi.dtype)
        for gi in range(G):
            dot[:] = 0
            for i in range(N):
                for b in range(B):
                    dot[b] += psi[gi, i, b] * gpsi[gi, i, b]
            for i in range(n_features):
                for b in range(B):
                    gx[gi, b, start + i] = (gpsi[gi, i, b] - psi[gi, i, b] * dot[b]) / norms[gi, b]
        return gx

    @jit
    def _ry_state(x, idx, scale, off, n):
        G, B = x.shape[0], x.shape[1]
        N = 1 << n
        psi = np.empty((G, N, B), dtype=x.dtype)
        c = np.empty((n, B), dtype=x.dtype)
        s = np.empty((n, B), dtype=x.dtype)
        for gi in range(G):
            for b in range(B):
                for i in range(n):
                    h = x[gi, b, idx[i]] * scale[i] + off[i]  # half the angle, in x's dtype
                    c[i, b] = np.cos(h)
                    s[i, b] = np.sin(h)
            ps = psi[gi]
            ps[0] = c[0]
            ps[1] = s[0]
            m = 2
            for i in range(1, n):  # psi <- psi (x) (c_i, s_i), wire i less significant
                for r in range(m - 1, -1, -1):
                    for b in range(B):
                        v = ps[r, b]
                        ps[2 * r, b] = v * c[i, b]
                        ps[2 * r + 1, b] = v * s[i, b]
                m *= 2
        return psi

    @jit
    def _u_forward(gates, ops, perms, phases, S, psi):
        G, N, B = psi.shape
        K = S.shape[1]
        n_ops = ops.shape[0]
        n = 0
        while (1 << n) < N:
            n += 1
        cd, rd = gates.dtype, psi.dtype
        Us = np.zeros((G, n_ops + 1, N, N), dtype=cd)  # U before op i (and the final U)
        M = np.empty((G, 2 * N, N), dtype=rd)  # the final U's real part over its imaginary part
        ph = np.empty((G, 2 * N, B), dtype=rd)  # Re phi over Im phi, phi = U psi
        out = np.empty((G, B, K), dtype=rd)
        o = np.empty((K, B), dtype=rd)
        for gi in range(G):
            U = Us[gi, 0]
            for r in range(N):
                U[r, r] = 1
            for i in range(n_ops):
                V = Us[gi, i + 1]
                kind, q, j = ops[i, 0], ops[i, 1], ops[i, 2]
                if kind == 0:
                    m = 1 << (n - 1 - q)
                    a00, a01 = gates[gi, j, 0, 0, 0], gates[gi, j, 0, 0, 1]
                    a10, a11 = gates[gi, j, 0, 1, 0], gates[gi, j, 0, 1, 1]
                    for r in range(N):
                        if r & m == 0:
                            r1 = r | m
                            for c in range(N):
                                u0, u1 = U[r, c], U[r1, c]
                                V[r, c] = a00 * u0 + a01 * u1
                                V[r1, c] = a10 * u0 + a11 * u1
                else:
                    for r in range(N):
                        src, e = perms[j, r], phases[j, r]
                        for c in range(N):
                            V[r, c] = e * U[src, c]
                U = V
            for r in range(N):
                for c in range(N):
                    M[gi, r, c] = U[r, c].real
                    M[gi, N + r, c] = U[r, c].imag
            f = ph[gi]
            f[:, :] = np.dot(M[gi], psi[gi])
            o[:, :] = 0  # out^T = S^T |phi|^2
            for x in range(N):
                for k in range(K):
                    sk = S[x, k]
                    if sk != 0:
                        for b in range(B):
                            o[k, b] += sk * (f[x, b] * f[x, b] + f[N + x, b] * f[N + x, b])
            out[gi] = o.T
        return out, Us, M, ph

    @jit
    def _u_backward(g, S, Us, M, ph, psi, gates, ops, perms, phases, wscatter, xscatter, need_w,
                    need_psi, ry_n):
        G, N, B = psi.shape
        K = S.shape[1]
        n_ops = ops.shape[0]
        E = gates.shape[2]
        n = 0
        while (1 << n) < N:
            n += 1
        rd = psi.dtype
        grads = np.zeros((G, gates.shape[1] * (E - 1)), dtype=rd)
        gpsi = np.empty((G if need_psi or ry_n else 0, N, B), dtype=rd)
        gt = np.empty((ry_n, B), dtype=rd)
        gw = np.zeros((G if need_w else 0, wscatter.shape[1]), dtype=rd)
        gx = np.zeros((G if ry_n else 0, B, xscatter.shape[1]), dtype=rd)
        gT = np.empty((K, B), dtype=rd)
        D = np.empty((2 * N, B), dtype=rd)  # dL/d(Re phi; Im phi)
        gp = np.empty(B, dtype=rd)
        gU = np.empty((N, N), dtype=gates.dtype)
        gW = np.empty((N, N), dtype=gates.dtype)
        for gi in range(G):
            gT[:, :] = g[gi].T
            f = ph[gi]
            for x in range(N):  # dL/dp[x] = sum_k S[x, k] g[k]; dL/d phi = 2 phi dL/dp
                gp[:] = 0
                for k in range(K):
                    sk = S[x, k]
                    if sk != 0:
                        for b in range(B):
                            gp[b] += sk * gT[k, b]
                for b in range(B):
                    D[x, b] = 2 * gp[b] * f[x, b]
                    D[N + x, b] = 2 * gp[b] * f[N + x, b]
            if need_psi or ry_n:
                gpsi[gi] = np.dot(M[gi].T, D)  # Re(U^H lam)
            if need_w:
                gM = np.dot(D, psi[gi].T)  # dL/dU = lam psi^T: real part over imaginary part
                for r in range(N):
                    for c in range(N):
                        gU[r, c] = gM[r, c] + 1j * gM[N + r, c]
                for i in range(n_ops - 1, -1, -1):
                    kind, q, j = ops[i, 0], ops[i, 1], ops[i, 2]
                    Ub = Us[gi, i]
                    if kind == 0:
                        m = 1 << (n - 1 - q)
                        # rho[a, b] = sum conj(gU[(.., a, ..), c]) Ub[(.., b, ..), c]
                        r00 = r01 = r10 = r11 = 0j
                        for r in range(N):
                            if r & m == 0:
                                r1 = r | m
                                for c in range(N):
                                    g0, g1 = np.conj(gU[r, c]), np.conj(gU[r1, c])
                                    u0, u1 = Ub[r, c], Ub[r1, c]
                                    r00 += g0 * u0
                                    r01 += g0 * u1
                                    r10 += g1 * u0
                                    r11 += g1 * u1
                        for pp in range(E - 1):
                            d = gates[gi, j, 1 + pp]
                            v = r00 * d[0, 0] + r01 * d[0, 1] + r10 * d[1, 0] + r11 * d[1, 1]
                            grads[gi, j * (E - 1) + pp] = 0.5 * v.real
                        if i > 0:  # gU <- (R^H (x) 1) gU
                            a00, a01 = np.conj(gates[gi, j, 0, 0, 0]), np.conj(gates[gi, j, 0, 0, 1])
                            a10, a11 = np.conj(gates[gi, j, 0, 1, 0]), np.conj(gates[gi, j, 0, 1, 1])
                            for r in range(N):
                                if r & m == 0:
                                    r1 = r | m
                                    for c in range(N):
                                        u0, u1 = gU[r, c], gU[r1, c]
                                        gU[r, c] = a00 * u0 + a10 * u1
                                        gU[r1, c] = a01 * u0 + a11 * u1
                    elif i > 0:  # U_out[r] = phase[r] U_in[perm[r]]
                        for r in range(N):
                            src, e = perms[j, r], np.conj(phases[j, r])
                            for c in range(N):
                                gW[src, c] = e * gU[r, c]
                        gU[:, :] = gW
                gw[gi] = np.dot(grads[gi], wscatter)
            if ry_n:  # dL/dt_i = sum_x gpsi[x] (J_i psi / 2)[x], J_i = [[0, -1], [1, 0]] on wire i
                gs, ps = gpsi[gi], psi[gi]
                for i in range(ry_n):
                    m = 1 << (n - 1 - i)
                    t = gt[i]
                    t[:] = 0
                    for x in range(N):
                        if x & m == 0:
                            y = x | m
                            for b in range(B):
                                t[b] += gs[y, b] * ps[x, b] - gs[x, b] * ps[y, b]
                    t *= 0.5
                gx[gi] = np.dot(gt.T, xscatter)
        return gw, gpsi, gx

    return types.SimpleNamespace(gate_table=_gate_table, amplitude_state=_amplitude_state,
                                 amplitude_grad=_amplitude_grad, ry_state=_ry_state, u_forward=_u_forward, u_backward=_u_backward)
