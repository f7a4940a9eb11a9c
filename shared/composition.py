"""A function's composition root, held once per container: `Root(build)`.

Each Lambda handler module holds exactly one `Root` whose `build` (the flow's `bootstrap`) reads the
function's settings and builds every adapter, store and service it needs. `root.get()` builds on first
use, so an imported module (and a SnapStart snapshot, taken after INIT) holds nothing; every later call
returns the same objects. `root.reset()` forgets them: SnapStart calls it after each restore
(`shared.snapstart`), so a secret, a credential or a connection is never shared between restored
environments; the local stack and the tests call it after changing the environment, or `root.use(app)`
to run the handler over objects they built themselves (fakes included).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from shared.snapstart import forget_after_restore


class Root[T]:
    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._built: T | None = None
        forget_after_restore(self)  # SnapStart: nothing built crosses a restore

    def get(self) -> T:
        """The container's objects, built on first use."""
        built = self._built
        if built is None:
            with self._lock:
                if self._built is None:
                    self._built = self._build()
                built = self._built
        return built

    def reset(self) -> None:
        """Forget what was built: the next `get` builds again from the environment as it is then."""
        with self._lock:
            self._built = None

    def use(self, built: T) -> None:
        """Serve `built` from now on (a test's or a dev tool's own object graph)."""
        with self._lock:
            self._built = built
