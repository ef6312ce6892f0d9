"""State-sized scratch buffers kept between calls (the torch engine's workspace).

At 16 qubits and batch 256 a state is 134 MB.  glibc serves every block above 32 MiB with a
fresh ``mmap`` and unmaps it on ``free``, so a buffer allocated per call is first written page
by page: on this project's VMs that costs ~0.4 s per state-sized buffer, more than the
multiply that fills it.  A :class:`Workspace` (one per engine runner) keeps the buffers it has
handed out and hands them out again once nothing else refers to them.

A buffer is handed out only if it is

* not *leased*: a call takes buffers with :meth:`Workspace.take` and gives them back with
  :meth:`Workspace.release` when it returns (also on an exception), so two calls at once (two
  threads, or a nested call) never share one; and
* not referenced by any tensor outside the workspace: the storage's use count is that of the
  workspace's own tensor.  A state saved for the backward (``ctx.save_for_backward``) or
  returned to the caller, or any view of it, holds a reference, so it is never overwritten
  while it can still be read.

The reference count comes from ``torch._C._storage_Use_Count``; where a build lacks it, no
buffer is ever reused (every ``take`` allocates, as before).  Memory: at most ``max_buffers``
buffers are kept, and a request that finds no free buffer of its shape first drops the free ones
of other shapes (an earlier batch size); :meth:`Workspace.clear` drops every free one
(``TorchEngine.clear_cache``).
"""

from __future__ import annotations

import sys
import threading

import numpy as np
import torch

_use_count = getattr(torch._C, "_storage_Use_Count", None)
if not hasattr(torch.Tensor, "_use_count"):  # pragma: no cover - older builds
    _use_count = None


def _refs(t: torch.Tensor) -> int:
    """References to ``t``'s memory besides the workspace's own: other tensors on its storage
    (views) and other holders of this very tensor (a state saved for the backward keeps the
    tensor itself, not a view).  The temporary storage object of ``untyped_storage()`` holds
    one reference itself."""
    return (_use_count(t.untyped_storage()._cdata) - 2) + (t._use_count() - 1)


class Workspace:
    """A pool of reusable tensors (see the module docstring)."""

    def __init__(self, max_buffers: int = 8):
        self.max_buffers = max_buffers
        self._bufs: list[torch.Tensor] = []
        self._leased: set[int] = set()  # data_ptr of the buffers taken and not released
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._bufs)

    def nbytes(self) -> int:
        """Bytes held (free and leased)."""
        return sum(b.numel() * b.element_size() for b in self._bufs)

    def _free(self, b: torch.Tensor) -> bool:
        return b.data_ptr() not in self._leased and _use_count is not None and _refs(b) == 0

    def take(self, shape, dtype, device) -> torch.Tensor:
        """A tensor of ``shape`` / ``dtype`` / ``device`` with arbitrary contents, leased to the
        caller until :meth:`release`."""
        shape = torch.Size(shape)
        device = torch.device(device)
        with self._lock:
            for b in self._bufs:
                if b.shape == shape and b.dtype == dtype and b.device == device and self._free(b):
                    self._leased.add(b.data_ptr())
                    return b
            # a miss: free buffers of other shapes belong to an earlier workload (another
            # batch size), so they go first; a steady workload never misses
            self._bufs = [x for x in self._bufs if x.shape == shape or not self._free(x)]
            b = torch.empty(shape, dtype=dtype, device=device)
            if _use_count is not None:
                if len(self._bufs) >= self.max_buffers:  # make room: drop a free one, else do not keep b
                    spare = next((i for i, x in enumerate(self._bufs) if self._free(x)), None)
                    if spare is None:
                        return b
                    del self._bufs[spare]
                self._bufs.append(b)
                self._leased.add(b.data_ptr())
            return b

    def release(self, *bufs) -> None:
        """Give back buffers got from :meth:`take` (others are ignored)."""
        with self._lock:
            for b in bufs:
                if b is not None:
                    self._leased.discard(b.data_ptr())

    def clear(self) -> None:
        """Drop every buffer that is neither leased nor referenced elsewhere."""
        with self._lock:
            self._bufs = [b for b in self._bufs if not self._free(b)]


class ArrayPool:
    """:class:`Workspace` for numpy arrays (the small path's numpy twin): state-sized arrays
    handed out again once nothing else refers to them, so a steady workload stops writing
    fresh pages (on this project's VMs the page faults of a pass's fresh state-sized arrays
    cost about as much as its arithmetic at 8 qubits, B=256: bench/README.md round 4).

    An array is handed out only if it is not leased (:meth:`take` ... :meth:`release`) and no
    other object refers to it (``sys.getrefcount``: a view's base, a state saved for the
    backward and an array or tensor handed to the caller all hold a reference)."""

    def __init__(self, max_buffers: int = 12):
        self.max_buffers = max_buffers
        self._bufs: list = []
        self._leased: set[int] = set()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._bufs)

    def nbytes(self) -> int:
        """Bytes held (free and leased)."""
        return sum(b.nbytes for b in self._bufs)

    def _free(self, i: int) -> bool:
        # references: the list, getrefcount's argument
        return id(self._bufs[i]) not in self._leased and sys.getrefcount(self._bufs[i]) <= 2

    def take(self, shape, dtype):
        """An array of ``shape`` / ``dtype`` with arbitrary contents, leased until :meth:`release`."""
        shape = tuple(shape)
        dtype = np.dtype(dtype)
        with self._lock:
            for i in range(len(self._bufs)):  # (no local name for a candidate: it would count)
                if self._bufs[i].shape == shape and self._bufs[i].dtype == dtype and self._free(i):
                    self._leased.add(id(self._bufs[i]))
                    return self._bufs[i]
            keep = [i for i in range(len(self._bufs)) if self._bufs[i].shape == shape or not self._free(i)]
            self._bufs = [self._bufs[i] for i in keep]
            b = np.empty(shape, dtype)
            if len(self._bufs) >= self.max_buffers:
                spare = next((i for i in range(len(self._bufs)) if self._free(i)), None)
                if spare is None:
                    return b
                del self._bufs[spare]
            self._bufs.append(b)
            self._leased.add(id(b))
            return b

    def release(self, *arrs) -> None:
        """Give back arrays got from :meth:`take` (others are ignored)."""
        with self._lock:
            for a in arrs:
                if a is not None:
                    self._leased.discard(id(a))

    def clear(self) -> None:
        """Drop every array that is neither leased nor referenced elsewhere."""
        with self._lock:
            self._bufs = [self._bufs[i] for i in range(len(self._bufs)) if not self._free(i)]
