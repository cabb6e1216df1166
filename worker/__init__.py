"""The scheduler: runs the jobs the domains define, at most once per interval across processes.

``worker.jobs`` lists the jobs, ``worker.leases`` claims them (the
``worker_job`` table), ``worker.runner`` runs them: in ``memberguard worker``
and, unless ``MEMBERGUARD_WORKER_IN_SERVER=false``, in a thread of each server.
"""
