#!/usr/bin/env python3
"""Submit a job to a taskfarm job service, wait for it and read its report.

Uses the taskfarm package (python/: `pip install ./python`, or run from a checkout after the
CMake build, which generates the protobuf module into build/python):

    python3 examples/python/taskfarm_client.py examples/mandelbrot.json --server head:5560

Exit status: 0 when every task succeeded, 2 when some failed or the job was cancelled, 1 for a
bad job file or a service that does not answer.
"""
import argparse
import os
import sys

try:
    import taskfarm
except ImportError:  # run from a checkout: the package is in python/
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
    import taskfarm
from google.protobuf import json_format


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("job_file")
    parser.add_argument("--server", default="localhost:5560", help="HOST[:PORT] or endpoint")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for answers")
    parser.add_argument("--report", help="write the JSON report here")
    args = parser.parse_args()
    try:
        with taskfarm.Client(args.server, timeout=args.timeout) as client:
            job = client.submit(args.job_file)
            print(f"submitted {job.name} as {job.id}", flush=True)
            try:
                report = job.wait()  # a progress bar when stderr is a terminal
                code = 0
            except taskfarm.JobFailed as e:
                report, code = e.report, 2
                for f in e.failures[:10]:
                    print(f"  task {f.task_id} ({f.kernel}) failed after {f.attempts} "
                          f"attempt(s): {f.error}", file=sys.stderr)
    except (taskfarm.InvalidJob, taskfarm.ServiceUnavailable, taskfarm.TaskfarmError) as e:
        print(f"taskfarm_client: error: {e}", file=sys.stderr)
        return 1
    print(f"{report.state}: {report.tasks_ok} ok, {report.tasks_failed} failed in "
          f"{report.elapsed_s:.3f} s ({report.tasks_per_s:.0f} tasks/s), "
          f"digest {report.result_digest}")
    if args.report:
        with open(args.report, "w") as f:
            f.write(json_format.MessageToJson(report, preserving_proto_field_name=True))
    return code


if __name__ == "__main__":
    sys.exit(main())
