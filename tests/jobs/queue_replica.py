"""Another replica for tests/jobs/test_queue.py: a process of its own consuming the shared
queue's kind ``k`` with a worker that announces each job (a line ``started <id>`` on stdout)
and then blocks until it is killed.

    python -m tests.jobs.queue_replica <sqlalchemy-url> <heartbeat_s> <lease_s>
"""

from __future__ import annotations

import sys
import threading

from service.jobs import Job
from service.jobs.queue import ProcrastinateExecutor


def main() -> None:
    url, heartbeat_s, lease_s = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    executor = ProcrastinateExecutor(url, heartbeat_s=heartbeat_s, lease_s=lease_s, poll_s=0.1)

    def worker(job: Job) -> None:
        print(f"started {job.id}", flush=True)
        threading.Event().wait()

    executor.register("k", worker, retries=1, load=lambda job_id: {}, lost=lambda job_id: None)
    executor.start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
