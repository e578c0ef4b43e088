"""taskfarm: submit jobs to a taskfarm job service, follow them and read their reports.

>>> import taskfarm
>>> with taskfarm.Client("head:5560") as client:
...     job = client.submit({"name": "pi", "tasks": [{"kernel": "montecarlo_pi", "count": 100,
...                                                   "size": 1000000}]})
...     report = job.wait(timeout=60)
...     array = client.submit({"tasks": [{"kernel": "exec", "count": 10, "argv": ["echo", "{index}"]}]})
...     for result in array.results():   # outputs (exec, plugins, sweeps), as tasks finish
...         print(result.task_id, result.output)
"""
from ._proto import pb
from .client import Client, Job, JobStatus, Keys, endpoint, job_spec
from .errors import (InvalidJob, JobFailed, JobNotFinished, NoOutputs, ServiceUnavailable,
                     TaskfarmError, UnknownJob)
from .progress import ProgressBar
from .results import ResultStream, TaskResult
from .states import JobState

__version__ = "0.1.0"

__all__ = ["Client", "Job", "JobStatus", "JobState", "Keys", "ProgressBar", "endpoint",
           "job_spec", "pb", "TaskfarmError", "ServiceUnavailable", "InvalidJob", "UnknownJob",
           "JobNotFinished", "JobFailed", "NoOutputs", "ResultStream", "TaskResult"]
