"""The compiled half of :mod:`hepatoplan.nearest_voxel`: Maurer, Qi and Raghavan's separable
feature transform (IEEE PAMI 25(2), 2003) with numba (``cache=True``: compiled once per
installation, about 3 s; later processes load it, 0.2 s import + 0.4 s first call) and ``nogil``.
A module of its own so that importing :mod:`hepatoplan.nearest_voxel` does not import numba.
``python nearest_voxel_compiled.py FOLDER NAME`` (this file as a script) compiles :func:`transform` ahead of time
into the extension module ``NAME`` in ``FOLDER`` (numba's ``pycc``; what
:func:`hepatoplan.nearest_voxel.compiled_transform` loads without numba).

Method, one axis after the other: the nearest mask voxel along axis 0 (two scans per plane), then
along axis 1 in each axis-0 plane, then along axis 2 over those, where the outputs are read at
``at`` only. Among equidistant voxels the one found first along the axis wins (lower index), which
is scipy's rule; distances are computed in the same arithmetic order, so ties come out the same.
:func:`transform` takes C-contiguous bool ``mask`` and ``at`` and the three spacings (mm) and
returns what :func:`hepatoplan.nearest_voxel.nearest_voxel` does.

:func:`subtree_sums`, :func:`neighbours` and :func:`reached` (the vascular analysis' downstream sums, one loop over
a tree, its voxel graph's edges, and the nodes a search reaches on it) are compiled here with the transform, so that
they need no module of their own to build and load.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def transform(mask, at, sx, sy, sz):  # pragma: no cover (compiled)
    nx, ny, nz = mask.shape
    n = max(nx, ny, nz)
    has = np.empty(n, np.bool_)
    other = np.zeros(n)  # squared distance (mm²) of each site off the line
    stack = np.empty(n, np.int64)
    site = np.empty(n, np.int64)
    line = np.empty(n, np.int64)
    # axis 0: in each x-line, the nearest mask voxel (lower x on a tie) as its rank in C order
    # (the mask's voxels are numbered as np.flatnonzero lists them), -1 if none
    ijk = np.empty((np.count_nonzero(mask), 2), np.int32)  # x and y of each rank
    work = np.empty((nx, ny, nz), np.int32)
    last = np.full((ny, nz), -1, np.int32)
    rank = 0
    for x in range(nx):
        for y in range(ny):
            for z in range(nz):
                if mask[x, y, z]:
                    last[y, z] = rank
                    ijk[rank, 0], ijk[rank, 1] = x, y
                    rank += 1
                work[x, y, z] = last[y, z]
    last[:] = -1
    for x in range(nx - 1, -1, -1):
        for y in range(ny):
            for z in range(nz):
                before = work[x, y, z]
                if mask[x, y, z]:
                    last[y, z] = before  # its own rank
                after = last[y, z]
                if after >= 0 and (before < 0 or ijk[after, 0] - x < x - ijk[before, 0]):
                    work[x, y, z] = after
    # axis 1, in each x-plane: the nearest mask voxel in the plane
    for x in range(nx):
        for z in range(nz):
            for y in range(ny):
                a = work[x, y, z]
                line[y] = a
                has[y] = a >= 0
                if a >= 0:
                    t = (ijk[a, 0] - x) * sx
                    other[y] = t * t
            _nearest_on_line(ny, has, other, sy, stack, site)
            for y in range(ny):
                q = site[y]
                work[x, y, z] = -1 if q < 0 else line[q]
    # axis 2, read at ``at`` only (in C order)
    out = np.empty(np.count_nonzero(at), np.int32)
    i = 0
    for x in range(nx):
        for y in range(ny):
            wanted = False
            for z in range(nz):
                if at[x, y, z]:
                    wanted = True
                    break
            if not wanted:
                continue
            for z in range(nz):
                a = work[x, y, z]
                line[z] = a
                has[z] = a >= 0
                if a >= 0:
                    t0 = (ijk[a, 0] - x) * sx
                    t1 = (ijk[a, 1] - y) * sy
                    other[z] = t0 * t0 + t1 * t1
            _nearest_on_line(nz, has, other, sz, stack, site)
            for z in range(nz):
                if at[x, y, z]:
                    q = site[z]
                    out[i] = -1 if q < 0 else line[q]
                    i += 1
    return out


@njit(cache=True, nogil=True)
def _nearest_on_line(n, has, other, s, stack, site):  # pragma: no cover (compiled)
    """One line of ``n`` voxels (spacing ``s``): the sites ``q`` (``has[q]``) lie ``other[q]``
    (squared mm) off the line; ``site[p]`` = the site nearest to voxel ``p`` (-1: none).

    The sites that are nearest somewhere form a stack (Maurer's lower envelope: a site is
    dropped when its two neighbours hide it); then each voxel walks the stack while the next
    site is strictly nearer, so the lower index wins a tie.
    """
    top = -1
    for q in range(n):
        if not has[q]:
            continue
        while top >= 1:
            v, u = stack[top], stack[top - 1]
            a = (v - u) * s
            b = (q - v) * s
            c = a + b
            if c * other[v] - b * other[u] - a * other[q] - a * b * c <= 0.0:
                break
            top -= 1
        top += 1
        stack[top] = q
    if top < 0:
        for p in range(n):
            site[p] = -1
        return
    k = 0
    for p in range(n):
        t = (stack[k] - p) * s
        d_here = other[stack[k]] + t * t
        while k < top:
            t = (stack[k + 1] - p) * s
            d_next = other[stack[k + 1]] + t * t
            if d_here <= d_next:
                break
            d_here = d_next
            k += 1
        site[p] = stack[k]


@njit(cache=True, nogil=True)
def subtree_sums(order, parent, weights):  # pragma: no cover (compiled)
    """``weights`` (one per node of a forest) summed over each node's subtree: node ``v``'s parent is
    ``parent[v]`` (< 0: a root) and ``order`` lists every node after its parent (the vascular analysis'
    downstream sums over its shortest-path tree, :class:`hepatoplan.resection.vascular._Downstream`)."""
    sums = weights.copy()
    for i in range(len(order) - 1, -1, -1):
        v = order[i]
        if parent[v] >= 0:
            sums[parent[v]] += sums[v]
    return sums


@njit(cache=True, nogil=True)
def neighbours(key, number, steps, weights, indptr, indices, data):  # pragma: no cover (compiled)
    """A voxel graph's CSR arrays (:func:`hepatoplan.resection.vascular._voxel_graph`): node ``i`` at
    ``key[i]`` in the flat array ``number`` (node number + 1 there, 0: none) is joined to the node at
    ``key[i] + steps[s]``, weight ``weights[s]``, for each step in turn. Fills ``indptr`` (n + 1),
    ``indices`` and ``data`` (room for n × steps) and returns the number of edges."""
    e = 0
    indptr[0] = 0
    for i in range(len(key)):
        for s in range(len(steps)):
            j = number[key[i] + steps[s]] - 1
            if j >= 0:
                indices[e] = j
                data[e] = weights[s]
                e += 1
        indptr[i + 1] = e
    return e


@njit(cache=True, nogil=True)
def reached(indptr, indices, keep, seeds):  # pragma: no cover (compiled)
    """The nodes of ``keep`` that a graph (CSR ``indptr``, ``indices``) joins to a node of ``seeds`` through
    nodes of ``keep`` (a breadth-first search)."""
    out = np.zeros(len(keep), np.bool_)
    queue = np.empty(len(keep), np.int64)
    end = 0
    for s in seeds:
        if keep[s] and not out[s]:
            out[s] = True
            queue[end] = s
            end += 1
    start = 0
    while start < end:
        u = queue[start]
        start += 1
        for e in range(indptr[u], indptr[u + 1]):
            v = indices[e]
            if keep[v] and not out[v]:
                out[v] = True
                queue[end] = v
                end += 1
    return out


def build_ahead_of_time(folder: str, name: str) -> None:
    """Compile :func:`transform`, :func:`subtree_sums`, :func:`neighbours` and :func:`reached` for their one
    signature each into the extension module ``name`` in ``folder``
    (built in a temporary folder there, then renamed into place: a concurrent build leaves one whole
    file). Generic code for the machine's architecture (no host-specific instructions: a shared cache
    folder may serve other CPUs); the GIL released during the call, as ``nogil`` does."""
    import os
    import tempfile
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pycc's pending deprecation
        from numba.core.compiler import Flags
        from numba.pycc import CC, compiler

    class ReleasingTheGil(Flags):  # pycc's wrapper holds the GIL otherwise
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.release_gil = True

    compiler.Flags = ReleasingTheGil
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        cc = CC(name)
        cc.output_dir = tmp
        cc.verbose = False
        cc.export("transform", "i4[::1](b1[:, :, ::1], b1[:, :, ::1], f8, f8, f8)")(transform.py_func)
        cc.export("subtree_sums", "f8[::1](i8[::1], i4[::1], f8[::1])")(subtree_sums.py_func)
        cc.export("neighbours", "i8(i8[::1], i4[::1], i8[::1], f8[::1], i4[::1], i4[::1], f8[::1])")(neighbours.py_func)
        cc.export("reached", "b1[::1](i4[::1], i4[::1], b1[::1], i8[::1])")(reached.py_func)
        cc.compile()
        (built,) = [f for f in os.listdir(tmp) if f.startswith(name + ".")]
        os.replace(os.path.join(tmp, built), os.path.join(folder, built))


if __name__ == "__main__":
    import sys

    build_ahead_of_time(*sys.argv[1:3])
