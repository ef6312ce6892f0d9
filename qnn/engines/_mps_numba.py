"""The jitted code of :mod:`._mps_kernel` (imported only where numba is available; module-level
functions, so that numba's disk cache holds them and the calls between them)."""

from __future__ import annotations

import numba
import numpy as np

PARENT, OFF, SL, SS, SR, DL, DR, KIND, EOFF = range(9)  # the node table's columns (._mps_kernel)

jit = numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})


@jit
def xy(i, nodes, ops, Ar, Ai, Er, Ei, Xr, Xi, Yr, Yi):
    """``X = E_parent T`` and ``Y = P X`` of node ``i``."""
    par, off, sl, ss, sr, dl, dr, kind, _ = nodes[i]
    pe = nodes[par, EOFF]
    B = Ar.shape[1]
    for lp in range(dl):
        for s in range(2):
            for r in range(dr):
                xr, xi = Xr[lp, s, r], Xi[lp, s, r]
                xr[:] = 0
                xi[:] = 0
                for m in range(dl):
                    er, ei = Er[pe + lp * dl + m], Ei[pe + lp * dl + m]
                    t = off + m * sl + s * ss + r * sr
                    tr, ti = Ar[t], Ai[t]
                    for b in range(B):
                        xr[b] += er[b] * tr[b] - ei[b] * ti[b]
                        xi[b] += er[b] * ti[b] + ei[b] * tr[b]
    local(kind, ops[i], dl, dr, Xr, Xi, Yr, Yi, False)


@jit
def local(kind, P, dl, dr, Xr, Xi, Yr, Yi, adjoint):
    """``Y[l', s', r] = sum_s Q[s', s] X[l', s, r]`` with ``Q = P`` or ``P^H`` (``adjoint``);
    ``P (2, 2, 2)``: real and imaginary planes; kind 0 the identity, 1 real diagonal."""
    B = Xr.shape[3]
    for lp in range(dl):
        for r in range(dr):
            if kind == 0:
                for s in range(2):
                    Yr[lp, s, r] = Xr[lp, s, r]
                    Yi[lp, s, r] = Xi[lp, s, r]
            elif kind == 1:
                for s in range(2):
                    f = P[0, s, s]
                    for b in range(B):
                        Yr[lp, s, r, b] = f * Xr[lp, s, r, b]
                        Yi[lp, s, r, b] = f * Xi[lp, s, r, b]
            else:
                for s in range(2):
                    if adjoint:  # Q[s, t] = conj(P[t, s])
                        q0r, q0i, q1r, q1i = P[0, 0, s], -P[1, 0, s], P[0, 1, s], -P[1, 1, s]
                    else:
                        q0r, q0i, q1r, q1i = P[0, s, 0], P[1, s, 0], P[0, s, 1], P[1, s, 1]
                    x0r, x0i, x1r, x1i = Xr[lp, 0, r], Xi[lp, 0, r], Xr[lp, 1, r], Xi[lp, 1, r]
                    yr, yi = Yr[lp, s, r], Yi[lp, s, r]
                    for b in range(B):
                        yr[b] = q0r * x0r[b] - q0i * x0i[b] + q1r * x1r[b] - q1i * x1i[b]
                        yi[b] = q0r * x0i[b] + q0i * x0r[b] + q1r * x1i[b] + q1i * x1r[b]


@jit
def scratch(nodes, B, dt):
    """A ``(D, 2, D, B)`` work array for the widest bond ``D``."""
    D = max(1, nodes[:, DL].max(), nodes[:, DR].max())
    return np.empty((D, 2, D, B), dt)


@jit
def forward(Ar, Ai, nodes, ops, pairs, signs):
    """:func:`._mps_kernel.readout_forward`: the nodes' environments in table order, then the words."""
    B = Ar.shape[1]
    N = nodes.shape[0]
    size = nodes[N - 1, EOFF] + nodes[N - 1, DR] ** 2
    Er = np.zeros((size, B), Ar.dtype)
    Ei = np.zeros((size, B), Ar.dtype)
    Xr, Xi, Yr, Yi = (scratch(nodes, B, Ar.dtype), scratch(nodes, B, Ar.dtype),
                      scratch(nodes, B, Ar.dtype), scratch(nodes, B, Ar.dtype))
    for i in range(N):
        par, off, sl, ss, sr, dl, dr, kind, e = nodes[i]
        if par < 0:
            Er[e] = 1
            continue
        xy(i, nodes, ops, Ar, Ai, Er, Ei, Xr, Xi, Yr, Yi)
        for rp in range(dr):
            for r in range(dr):
                er, ei = Er[e + rp * dr + r], Ei[e + rp * dr + r]
                for lp in range(dl):
                    for s in range(2):
                        t = off + lp * sl + s * ss + rp * sr
                        tr, ti = Ar[t], Ai[t]
                        yr, yi = Yr[lp, s, r], Yi[lp, s, r]
                        for b in range(B):  # conj(T) Y
                            er[b] += tr[b] * yr[b] + ti[b] * yi[b]
                            ei[b] += tr[b] * yi[b] - ti[b] * yr[b]
    J = pairs.shape[0]
    out = np.zeros((J, B), Ar.dtype)
    for j in range(J):
        a, c = nodes[pairs[j, 0], EOFF], nodes[pairs[j, 1], EOFF]
        o = out[j]
        for p in range(nodes[pairs[j, 0], DR] ** 2):
            lr, li, rr, ri = Er[a + p], Ei[a + p], Er[c + p], Ei[c + p]
            for b in range(B):
                o[b] += lr[b] * rr[b] - li[b] * ri[b]
        o *= signs[j]
    return out, Er, Ei


@jit
def backward(g, Ar, Ai, nodes, ops, pairs, signs, Er, Ei):
    """:func:`._mps_kernel.readout_backward`: the words' cotangent onto their environments, then
    the nodes in reverse table order (children before parents) onto the sites and the parents."""
    S, B = Ar.shape
    N = nodes.shape[0]
    Gr = np.zeros(Er.shape, Ar.dtype)
    Gi = np.zeros(Er.shape, Ar.dtype)
    gAr = np.zeros((S, B), Ar.dtype)
    gAi = np.zeros((S, B), Ar.dtype)
    Xr, Xi, Yr, Yi = (scratch(nodes, B, Ar.dtype), scratch(nodes, B, Ar.dtype),
                      scratch(nodes, B, Ar.dtype), scratch(nodes, B, Ar.dtype))
    Wr, Wi = scratch(nodes, B, Ar.dtype), scratch(nodes, B, Ar.dtype)
    gb = np.empty(B, Ar.dtype)
    for j in range(pairs.shape[0]):  # out = sign Re sum L R: dL = g sign conj(R), dR = g sign conj(L)
        a, c = nodes[pairs[j, 0], EOFF], nodes[pairs[j, 1], EOFF]
        for b in range(B):
            gb[b] = g[j, b] * signs[j]
        for p in range(nodes[pairs[j, 0], DR] ** 2):
            lr, li, rr, ri = Er[a + p], Ei[a + p], Er[c + p], Ei[c + p]
            glr, gli, grr, gri = Gr[a + p], Gi[a + p], Gr[c + p], Gi[c + p]
            for b in range(B):
                glr[b] += gb[b] * rr[b]
                gli[b] -= gb[b] * ri[b]
                grr[b] += gb[b] * lr[b]
                gri[b] -= gb[b] * li[b]
    for i in range(N - 1, -1, -1):
        par, off, sl, ss, sr, dl, dr, kind, e = nodes[i]
        if par < 0:
            continue
        pe = nodes[par, EOFF]
        xy(i, nodes, ops, Ar, Ai, Er, Ei, Xr, Xi, Yr, Yi)
        # the bra: dT[l', s, r'] += sum_r conj(G[r', r]) Y[l', s, r]
        # and W[l', s, r] = sum_{r'} T[l', s, r'] G[r', r]
        for lp in range(dl):
            for s in range(2):
                for r in range(dr):
                    Wr[lp, s, r] = 0
                    Wi[lp, s, r] = 0
                for rp in range(dr):
                    t = off + lp * sl + s * ss + rp * sr
                    tr, ti, gtr, gti = Ar[t], Ai[t], gAr[t], gAi[t]
                    for r in range(dr):
                        gr, gi = Gr[e + rp * dr + r], Gi[e + rp * dr + r]
                        yr, yi = Yr[lp, s, r], Yi[lp, s, r]
                        wr, wi = Wr[lp, s, r], Wi[lp, s, r]
                        for b in range(B):
                            gtr[b] += gr[b] * yr[b] + gi[b] * yi[b]
                            gti[b] += gr[b] * yi[b] - gi[b] * yr[b]
                            wr[b] += tr[b] * gr[b] - ti[b] * gi[b]
                            wi[b] += tr[b] * gi[b] + ti[b] * gr[b]
        # Z = P^H W on s (into X's storage): Z[l', s, r] = sum_{s'} conj(P[s', s]) W[l', s', r]
        local(kind, ops[i], dl, dr, Wr, Wi, Xr, Xi, True)
        # dE[l', l] += sum_{s, r} Z[l', s, r] conj(T[l, s, r]);
        # the ket: dT[l, s, r] += sum_{l'} conj(E[l', l]) Z[l', s, r]
        for m in range(dl):
            for s in range(2):
                for r in range(dr):
                    t = off + m * sl + s * ss + r * sr
                    tr, ti, gtr, gti = Ar[t], Ai[t], gAr[t], gAi[t]
                    for lp in range(dl):
                        zr, zi = Xr[lp, s, r], Xi[lp, s, r]
                        er, ei = Er[pe + lp * dl + m], Ei[pe + lp * dl + m]
                        ger, gei = Gr[pe + lp * dl + m], Gi[pe + lp * dl + m]
                        for b in range(B):
                            ger[b] += zr[b] * tr[b] + zi[b] * ti[b]
                            gei[b] += zi[b] * tr[b] - zr[b] * ti[b]
                            gtr[b] += er[b] * zr[b] + ei[b] * zi[b]
                            gti[b] += er[b] * zi[b] - ei[b] * zr[b]
    return gAr, gAi
