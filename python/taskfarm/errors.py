"""Exceptions of the taskfarm client. All derive from TaskfarmError."""
from typing import List, Optional


class TaskfarmError(Exception):
    """Base class of every error the client raises."""


class ServiceUnavailable(TaskfarmError):
    """The job service did not answer in time (not running, unreachable, or wrong keys)."""


class InvalidJob(TaskfarmError, ValueError):
    """The job was refused: unreadable file, bad JSON, unknown field or kernel, no tasks..."""


class UnknownJob(TaskfarmError, LookupError):
    """No job has that id or name (or the service forgot it: it keeps the last 1000)."""


class NoOutputs(TaskfarmError, LookupError):
    """The sink has no results to stream for the job: its kernels return no outputs (built-in
    kernels without keep_output: the report has their results), or the job is not one of this
    sink's (another sink, or a results directory that was removed)."""


class JobNotFinished(TaskfarmError):
    """The job has no report yet: it is still queued or running."""


class JobFailed(TaskfarmError):
    """The job ended without every task succeeding (failed, cancelled or interrupted).

    Attributes: job_id, state (JobState), failures (TaskFailure messages: task_id, kernel,
    attempts, error; the first 100), report (the final or partial Report).
    """

    def __init__(self, job_id: str, state, failures: List, report: Optional[object]):
        self.job_id = job_id
        self.state = state
        self.failures = list(failures)
        self.report = report
        detail = ""
        if self.failures:
            f = self.failures[0]
            more = f" (and {len(self.failures) - 1} more)" if len(self.failures) > 1 else ""
            detail = f": task {f.task_id} ({f.kernel}) {f.error}{more}"
        super().__init__(f"job {job_id} {state}{detail}")
