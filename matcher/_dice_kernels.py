"""Numba kernels behind :mod:`matcher.similarity` (see there for the design).

LLVM intrinsics (vector popcount, count-trailing-zeros and the 8x8 block compare mask),
the popcount, pair-scoring, threshold-candidate and top-k kernels. Nothing here checks
its inputs: call the typed wrappers in :mod:`matcher.similarity`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from llvmlite import ir  # type: ignore[import-untyped]
from numba import njit, prange
from numba.core import cgutils as _cgutils
from numba.core import types
from numba.extending import intrinsic

# Micro-kernel: _R rows of a against one block of 8 rows of b (64 pairs, 64-bit mask).
# _TILE blocks of b (256 KiB at 1024 bits) stay in L2 while a super-group of rows passes
# over them. A task buffers up to _CAP hits before it must be re-run straight into the
# output; a round holds about _ROUND_TASKS tasks.
_R = 8
_TILE = 256
_CAP = 512
_ROUND_TASKS = 512
_BIG = 1 << 40
cgutils: Any = _cgutils  # numba ships no types for its code generation helpers

_I64 = ir.IntType(64)
_V8 = ir.VectorType(_I64, 8)


def _llvm_fn(builder: Any, name: str, ret: Any, arg: Any) -> Any:
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(ret, [arg]), name)


def _splat(builder: Any, x: Any) -> Any:
    v = builder.insert_element(ir.Constant(_V8, None), x, ir.Constant(ir.IntType(32), 0))
    zeros = ir.Constant(ir.VectorType(ir.IntType(32), 8), [0] * 8)
    return builder.shuffle_vector(v, ir.Constant(_V8, None), zeros)


def _popcnt_intrinsic(typingctx, x):  # type: ignore[no-untyped-def]
    """LLVM ``ctpop`` on one word."""
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.ctpop(args[0])

    return sig, codegen


def _ctz_intrinsic(typingctx, x):  # type: ignore[no-untyped-def]
    """LLVM ``cttz``: index of the lowest set bit of a non-zero word."""
    sig = types.int64(types.uint64)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.cttz(args[0], ir.Constant(ir.IntType(1), 1))

    return sig, codegen


def _block_mask_intrinsic(typingctx, a, i0, bt, jb, cmin, ci, scratch):  # type: ignore[no-untyped-def]
    """Counts ``|a[i0 + r] & b[8 jb + l]|`` for ``r, l < 8`` with 8-lane vector code.

    ``bt`` holds ``b`` in blocks of 8 rows stored word-major (``bt[jb, k, l]`` is word
    ``k`` of row ``8 jb + l``), so one vector load takes word ``k`` of 8 rows, ANDs it
    with a broadcast word of ``a`` and popcounts it (VPOPCNTQ where the CPU has it):
    the counts accumulate per lane and need no horizontal sum. The 64 counts go to
    ``scratch[8 r + l]``; bit ``8 r + l`` of the result is set where the count reaches
    ``cmin[ci + r]``.
    """
    if (a.ndim, a.layout, bt.ndim, bt.layout) != (2, "C", 3, "C"):
        return None  # the address arithmetic below assumes C-contiguous arrays
    sig = types.uint64(a, i0, bt, jb, cmin, ci, scratch)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        aty, ity, bty, jty, cty, city, sty = signature.args
        arr_a = context.make_array(aty)(context, builder, args[0])
        arr_b = context.make_array(bty)(context, builder, args[2])
        arr_c = context.make_array(cty)(context, builder, args[4])
        arr_s = context.make_array(sty)(context, builder, args[6])
        w = cgutils.unpack_tuple(builder, arr_a.shape, 2)[1]
        i = context.cast(builder, args[1], ity, types.intp)
        j = context.cast(builder, args[3], jty, types.intp)
        c0 = context.cast(builder, args[5], city, types.intp)
        bbase = builder.gep(arr_b.data, [builder.mul(j, builder.shl(w, ir.Constant(w.type, 3)))])
        rows = [
            builder.gep(arr_a.data, [builder.mul(builder.add(i, ir.Constant(i.type, r)), w)])
            for r in range(_R)
        ]
        accs = [cgutils.alloca_once_value(builder, ir.Constant(_V8, None)) for _ in range(_R)]
        ctpop = _llvm_fn(builder, "llvm.ctpop.v8i64", _V8, _V8)
        with cgutils.for_range(builder, w) as loop:
            k = loop.index
            bptr = builder.gep(bbase, [builder.shl(k, ir.Constant(k.type, 3))])
            bv = builder.load(builder.bitcast(bptr, _V8.as_pointer()), align=8)
            for r in range(_R):
                av = _splat(builder, builder.load(builder.gep(rows[r], [k])))
                pc = builder.call(ctpop, [builder.and_(av, bv)])
                builder.store(builder.add(builder.load(accs[r]), pc), accs[r])
        mask = ir.Constant(_I64, 0)
        for r in range(_R):
            acc = builder.load(accs[r])
            sptr = builder.gep(arr_s.data, [ir.Constant(_I64, 8 * r)])
            builder.store(acc, builder.bitcast(sptr, _V8.as_pointer()), align=8)
            bound = builder.load(
                builder.gep(arr_c.data, [builder.add(c0, ir.Constant(c0.type, r))])
            )
            hit = builder.icmp_signed(">=", acc, _splat(builder, bound))
            bits = builder.zext(builder.bitcast(hit, ir.IntType(8)), _I64)
            mask = builder.or_(mask, builder.shl(bits, ir.Constant(_I64, 8 * r)))
        return mask

    return sig, codegen


_popcnt: Any = intrinsic(_popcnt_intrinsic)
_ctz: Any = intrinsic(_ctz_intrinsic)
_block_mask: Any = intrinsic(_block_mask_intrinsic)


# -- kernels -----------------------------------------------------------------------------


@njit(parallel=True, nogil=True, cache=True)
def _popcounts_kernel(x):  # type: ignore[no-untyped-def]
    n, w = x.shape
    out = np.empty(n, dtype=np.int32)
    for i in prange(n):
        c = 0
        for k in range(w):
            c += _popcnt(x[i, k])
        out[i] = c
    return out


@njit(nogil=True, cache=True)
def _popcounts_serial(x):  # type: ignore[no-untyped-def]
    # waking the thread pool costs more than counting a few thousand rows
    n, w = x.shape
    out = np.empty(n, dtype=np.int32)
    for i in range(n):
        c = 0
        for k in range(w):
            c += _popcnt(x[i, k])
        out[i] = c
    return out


@njit(nogil=True, cache=True, inline="always")
def _score(c, s):  # type: ignore[no-untyped-def]
    return 2.0 * c / s if s > 0 else 0.0


@njit(parallel=True, nogil=True, cache=True)
def _pairs_kernel(a, b, pa, pb, pi, pj):  # type: ignore[no-untyped-def]
    w = a.shape[1]
    out = np.empty(pi.shape[0], dtype=np.float64)
    for t in prange(pi.shape[0]):
        i = pi[t]
        j = pj[t]
        c = 0
        for k in range(w):
            c += _popcnt(a[i, k] & b[j, k])
        out[t] = _score(c, pa[i] + pb[j])
    return out


@njit(nogil=True, cache=True)
def _cmin_table(nbits, threshold):  # type: ignore[no-untyped-def]
    """For each popcount ``p``, a lower bound on ``|a & b|`` for any pair that can score.

    ``need[s]`` is the least count ``c`` with ``2c / s >= threshold`` (the same float
    expression as the exact test); a pair with popcounts ``p, q`` needs ``need[p + q]``,
    which must not exceed ``min(p, q)``. The bound is the least such need over all ``q``;
    the kernel only looks closely at pairs whose count reaches it.
    """
    need = np.full(2 * nbits + 1, _BIG, dtype=np.int64)
    for s in range(2 * nbits + 1):
        c = max(0, min(s, int(np.ceil(threshold * s / 2.0))))
        while c > 0 and _score(c - 1, s) >= threshold:
            c -= 1
        while c <= s and _score(c, s) < threshold:
            c += 1
        if c <= s:
            need[s] = c
    out = np.full(nbits + 1, _BIG, dtype=np.int64)
    for p in range(nbits + 1):
        for q in range(nbits + 1):
            c = need[p + q]
            if c <= min(p, q) and c < out[p]:
                out[p] = c
    return out


@njit(nogil=True, cache=True)
def _grown(x, used, size):  # type: ignore[no-untyped-def]
    """A copy of ``x`` with room for ``size`` items, keeping its first ``used``."""
    out = np.empty(size, dtype=x.dtype)
    for t in range(used):
        out[t] = x[t]
    return out


@njit(nogil=True, cache=True)
def _cand_task(  # type: ignore[no-untyped-def]
    a,
    bt,
    pa,
    pb,
    cmin,
    threshold,
    self_join,
    n,
    m,
    g0,
    g1,
    jb0,
    jb1,
    direct,
    cursor,
    out_r,
    out_j,
    out_c,
    cap,
):
    """Rows ``[8 g0, 8 g1)`` of ``a`` against blocks ``[jb0, jb1)`` of ``bt``.

    Hits come out in ``j`` order for each row. With ``direct`` they go straight to the
    output at ``cursor[local row]``; otherwise the first ``cap`` go to a task buffer (with
    their local row) and ``cursor`` counts hits per local row. Returns the hit count.
    """
    scratch = np.empty(_R * 8, dtype=np.int64)
    k = 0
    for t0 in range(jb0, jb1, _TILE):
        t1 = min(jb1, t0 + _TILE)
        for g in range(g0, g1):
            i0 = g * _R
            js = t0
            if self_join:
                js = max(t0, (i0 + 1) // 8)
            for jb in range(js, t1):
                mask = _block_mask(a, i0, bt, jb, cmin, i0, scratch)
                while mask != 0:
                    t = _ctz(mask)
                    mask &= mask - np.uint64(1)
                    i = i0 + (t >> 3)
                    j = jb * 8 + (t & 7)
                    if i >= n or j >= m or (self_join and j <= i):
                        continue
                    c = scratch[t]
                    if _score(c, pa[i] + pb[j]) >= threshold:
                        r = i - g0 * _R
                        if direct:
                            o = cursor[r]
                            out_j[o] = j
                            out_c[o] = c
                            cursor[r] = o + 1
                        else:
                            if k < cap:
                                out_r[k] = r
                                out_j[k] = j
                                out_c[k] = c
                            cursor[r] += 1
                        k += 1
    return k


@njit(parallel=True, nogil=True, cache=True)
def _candidates_kernel(  # type: ignore[no-untyped-def]
    a, bt, pa, pb, cmin, threshold, self_join, n, m, sg, nchunks
):
    """Drive :func:`_cand_task` over (chunk of b, super-group of ``sg`` row groups).

    Work goes in rounds of super-groups. Pass 1 buffers each task's hits (up to a cap)
    and counts them per row; offsets in ``(i, j)`` order follow; pass 2 scatters the
    buffers, re-running directly into the output any task whose buffer overflowed.
    """
    ngroups = a.shape[0] // _R
    nsg = (ngroups + sg - 1) // sg
    mb = bt.shape[0]
    cb = (mb + nchunks - 1) // nchunks
    rows = sg * _R
    per_round = max(1, _ROUND_TASKS // nchunks)
    out_i = np.empty(1024, dtype=np.int64)
    out_j = np.empty(1024, dtype=np.int64)
    out_c = np.empty(1024, dtype=np.int32)
    total = 0
    for s0 in range(0, nsg, per_round):
        s1 = min(nsg, s0 + per_round)
        nt = (s1 - s0) * nchunks
        counts = np.zeros((nt, rows), dtype=np.int64)
        hits = np.zeros(nt, dtype=np.int64)
        buf_r = np.empty((nt, _CAP), dtype=np.int64)
        buf_j = np.empty((nt, _CAP), dtype=np.int64)
        buf_c = np.empty((nt, _CAP), dtype=np.int32)
        for t in prange(nt):
            s = s0 + t // nchunks
            c = t % nchunks
            g1 = min(ngroups, (s + 1) * sg)
            hits[t] = _cand_task(
                a,
                bt,
                pa,
                pb,
                cmin,
                threshold,
                self_join,
                n,
                m,
                s * sg,
                g1,
                c * cb,
                min(mb, (c + 1) * cb),
                False,
                counts[t],
                buf_r[t],
                buf_j[t],
                buf_c[t],
                _CAP,
            )
        # Output order: super-group, row, chunk. cursors[t, r] is where task t's hits for
        # local row r start.
        cursors = np.empty((nt, rows), dtype=np.int64)
        acc = total
        for s in range(s1 - s0):
            for r in range(rows):
                for c in range(nchunks):
                    t = s * nchunks + c
                    cursors[t, r] = acc
                    acc += counts[t, r]
        if acc > out_i.shape[0]:
            size = max(acc, 2 * out_i.shape[0])
            out_i = _grown(out_i, total, size)
            out_j = _grown(out_j, total, size)
            out_c = _grown(out_c, total, size)
        for t in prange(nt):
            s = s0 + t // nchunks
            c = t % nchunks
            base = s * rows
            for r in range(rows):
                o = cursors[t, r]
                for x in range(counts[t, r]):
                    out_i[o + x] = base + r
            cur = cursors[t].copy()
            if hits[t] <= _CAP:
                for x in range(hits[t]):
                    r = buf_r[t, x]
                    o = cur[r]
                    out_j[o] = buf_j[t, x]
                    out_c[o] = buf_c[t, x]
                    cur[r] = o + 1
            else:
                g1 = min(ngroups, (s + 1) * sg)
                _cand_task(
                    a,
                    bt,
                    pa,
                    pb,
                    cmin,
                    threshold,
                    self_join,
                    n,
                    m,
                    s * sg,
                    g1,
                    c * cb,
                    min(mb, (c + 1) * cb),
                    True,
                    cur,
                    buf_r[t],
                    out_j,
                    out_c,
                    0,
                )
        total = acc
    return out_i[:total], out_j[:total], out_c[:total]


@njit(nogil=True, cache=True)
def _topk_task(  # type: ignore[no-untyped-def]
    a, bt, pq, pb, cmin, qmin_blk, threshold, n, m, g0, g1, jb0, jb1, k, best_j, best_s, filled
):
    """Best ``k`` of blocks ``[jb0, jb1)`` for rows ``[8 g0, 8 g1)``; ties to lower ``j``.

    ``cmin`` (this task's own copy, by local row) starts at the threshold's bound. Once
    a row holds ``k`` results, a pair must beat the ``k``-th best score ``s``, which needs
    a count above ``s (p + q) / 2``; with ``q`` the block's least popcount
    (``qmin_blk``) that bound is set before each block, so most blocks are dismissed by
    the vector compare alone.
    """
    scratch = np.empty(_R * 8, dtype=np.int64)
    base = cmin.copy()
    for t0 in range(jb0, jb1, _TILE):
        t1 = min(jb1, t0 + _TILE)
        for g in range(g0, g1):
            i0 = g * _R
            l0 = i0 - g0 * _R
            for jb in range(t0, t1):
                qb = qmin_blk[jb]
                for r in range(l0, l0 + _R):
                    if filled[r] == k:
                        bound = np.int64(best_s[r, k - 1] * (pq[i0 + r - l0] + qb) * 0.5) - 1
                        cmin[r] = max(base[r], bound)
                mask = _block_mask(a, i0, bt, jb, cmin, l0, scratch)
                while mask != 0:
                    t = _ctz(mask)
                    mask &= mask - np.uint64(1)
                    i = i0 + (t >> 3)
                    j = jb * 8 + (t & 7)
                    if i >= n or j >= m:
                        continue
                    r = l0 + (t >> 3)
                    p = pq[i]
                    s = _score(scratch[t], p + pb[j])
                    f = filled[r]
                    if f < k:
                        if s < threshold:
                            continue
                        pos = f
                        filled[r] = f + 1
                    else:
                        if s <= best_s[r, k - 1]:
                            continue
                        pos = k - 1
                    # insert after every entry scoring >= s: those have lower j
                    while pos > 0 and best_s[r, pos - 1] < s:
                        best_s[r, pos] = best_s[r, pos - 1]
                        best_j[r, pos] = best_j[r, pos - 1]
                        pos -= 1
                    best_s[r, pos] = s
                    best_j[r, pos] = j


@njit(parallel=True, nogil=True, cache=True)
def _topk_kernel(a, bt, pq, pb, cmin_p, qmin_blk, threshold, n, m, k, sg, nchunks):  # type: ignore[no-untyped-def]
    """Drive :func:`_topk_task` over (chunk, super-group), then merge chunks per row."""
    ngroups = a.shape[0] // _R
    nsg = (ngroups + sg - 1) // sg
    mb = bt.shape[0]
    cb = (mb + nchunks - 1) // nchunks
    rows = sg * _R
    best_j = np.full((nsg * nchunks, rows, k), -1, dtype=np.int64)
    best_s = np.zeros((nsg * nchunks, rows, k), dtype=np.float64)
    filled = np.zeros((nsg * nchunks, rows), dtype=np.int64)
    for t in prange(nsg * nchunks):
        s = t // nchunks
        c = t % nchunks
        cmin = np.empty(rows, dtype=np.int64)
        for r in range(rows):
            i = s * rows + r
            cmin[r] = cmin_p[pq[i]] if i < n else _BIG
        _topk_task(
            a,
            bt,
            pq,
            pb,
            cmin,
            qmin_blk,
            threshold,
            n,
            m,
            s * sg,
            min(ngroups, (s + 1) * sg),
            c * cb,
            min(mb, (c + 1) * cb),
            k,
            best_j[t],
            best_s[t],
            filled[t],
        )
    counts = np.zeros(n, dtype=np.int64)
    for i in range(n):
        s = i // rows
        r = i % rows
        tot = 0
        for c in range(nchunks):
            tot += filled[s * nchunks + c, r]
        counts[i] = min(k, tot)
    offs = np.zeros(n + 1, dtype=np.int64)
    for i in range(n):
        offs[i + 1] = offs[i] + counts[i]
    out_q = np.empty(offs[n], dtype=np.int64)
    out_j = np.empty(offs[n], dtype=np.int64)
    out_s = np.empty(offs[n], dtype=np.float64)
    for i in prange(n):
        s = i // rows
        r = i % rows
        head = np.zeros(nchunks, dtype=np.int64)
        for x in range(counts[i]):
            # k-way merge: best score first; equal scores go to the earlier chunk (lower j)
            bc = -1
            for c in range(nchunks):
                t = s * nchunks + c
                if head[c] < filled[t, r] and (
                    bc < 0 or best_s[t, r, head[c]] > best_s[s * nchunks + bc, r, head[bc]]
                ):
                    bc = c
            t = s * nchunks + bc
            o = offs[i] + x
            out_q[o] = i
            out_j[o] = best_j[t, r, head[bc]]
            out_s[o] = best_s[t, r, head[bc]]
            head[bc] += 1
    return out_q, out_j, out_s
