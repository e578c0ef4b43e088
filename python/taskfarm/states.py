"""Job states: the one place where the wire's representation becomes JobState."""
import enum
from typing import Union

from ._proto import pb


class JobState(str, enum.Enum):
    """A job's state. Compares equal to its name in words: ``JobState.DONE == "done"``."""

    QUEUED = "queued"            # submitted; waiting for the sink to accept it
    RUNNING = "running"          # tasks being dispatched
    DONE = "done"                # every task succeeded
    FAILED = "failed"            # complete, some tasks failed
    CANCELLED = "cancelled"      # cancelled by a client
    INTERRUPTED = "interrupted"  # a role of a one-shot farm was stopped before the end
    UNKNOWN = "unknown"

    @property
    def finished(self) -> bool:
        """Whether the job is over (its state will not change again)."""
        return self in (JobState.DONE, JobState.FAILED, JobState.CANCELLED, JobState.INTERRUPTED)

    def __str__(self) -> str:
        return self.value

    @classmethod
    def from_wire(cls, value: Union[int, str]) -> "JobState":
        """Returns: the state of a JobStatus.state field (the proto enum, JOB_DONE -> DONE; or
        the word, as older services sent it)."""
        if isinstance(value, int):
            try:
                value = pb.JobState.Name(value).removeprefix("JOB_").lower()
            except ValueError:
                return cls.UNKNOWN
        try:
            return cls(value)
        except ValueError:
            return cls.UNKNOWN
