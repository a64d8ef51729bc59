"""When a watch event's pass comes: the kopf handlers (handlers.py) report what an event changed
(`cache.Change`), and this puts the pipeline's key in the work queue that soon.

A burst of events folds into one pass (`batch_seconds`); an event that changed nothing a pass reads
wakes nothing; and one that moved only a Job's running counts waits until the status may take them
(pacing.py), since the pass would hold them until then anyway. At hundreds of pipelines those count
events would be most of the passes, queued ahead of the passes that start the next stage.
"""

from __future__ import annotations

from dataclasses import dataclass

from trainpipe_operator.cache import Change, Key
from trainpipe_operator.pacing import StatusPacing
from trainpipe_operator.workqueue import WorkQueue


@dataclass
class Wakeups:
    queue: WorkQueue[Key]
    pacing: StatusPacing
    # A watch event's pass waits this long, so the burst a Job's pods make (each start and finish
    # changes the Job) folds into one pass instead of one pass per event.
    batch_seconds: float = 0.25

    def notify(self, key: Key, urgent: bool = False) -> None:
        """A watch event about `key`: a pass within `batch_seconds`, one for all the events until then."""
        if self.batch_seconds > 0:
            self.queue.add_after(key, self.batch_seconds, urgent=urgent)
        else:
            self.queue.add(key, urgent=urgent)

    def changed(self, key: Key, change: Change) -> None:
        """A watch event's `change` to a child `key`'s pass reads: a change of state may move the run on
        (a Job finished: the next stage starts), so its pass goes ahead of routine ones (workqueue.py)."""
        if change is Change.STATE:
            self.notify(key, urgent=True)
        elif change is Change.COUNTS:
            self.queue.add_after(key, max(self.batch_seconds, self.pacing.hold_left(key)))
