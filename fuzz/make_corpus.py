#!/usr/bin/python3
"""Writes the seed corpora in fuzz/corpus/: valid encoded envelopes of every kind for
fuzz_decode and job files for fuzz_job_json. Run it again after changing proto/taskfarm.proto:

    fuzz/make_corpus.py          # needs protoc and python3-protobuf
"""
import base64
import os
import struct
import subprocess
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(here)
gen = tempfile.mkdtemp()
subprocess.run(["protoc", f"-I{root}/proto", f"--python_out={gen}", "taskfarm.proto"], check=True)
sys.path.insert(0, gen)
import taskfarm_pb2 as pb  # noqa: E402


def write(target, name, data):
    d = os.path.join(here, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def envelope(name, fill, version=1):
    e = pb.Envelope(version=version)
    fill(e)
    write("fuzz_decode", name, e.SerializeToString())


def floats(*xs):
    return struct.pack(f"<{len(xs)}f", *xs)


def tasks(e):
    b = e.tasks
    specs = [("noop", 0, b""), ("sleep", 10, b""), ("saxpy", 64, b""), ("reduce", 100, b""),
             ("sgemm", 8, b""), ("mandelbrot", 32, b""), ("montecarlo_pi", 1000, b""),
             ("sort", 50, b""), ("saxpy", 0, floats(2.0, 1, 2, 3, 4, 5, 6)),
             ("reduce", 0, floats(1.5, 2.5, -1)), ("sort", 0, struct.pack("<4I", 9, 3, 7, 1)),
             ("sgemm", 2, floats(1, 2, 3, 4, 5, 6, 7, 8)), ("nosuchkernel", 1, b"")]
    for i, (k, size, payload) in enumerate(specs):
        b.tasks.add(job_id=0x1234, task_id=i, kernel=k, size=size, seed=7, index=i, count=len(specs),
                    payload=payload, attempt=1, sent_ns=1_700_000_000_000_000_000)


def results(e):
    b = e.results
    b.worker.id, b.worker.host, b.worker.device, b.worker.slots = "w1", "node1", "cpu", 4
    b.results.add(job_id=0x1234, task_id=0, attempt=1, status=pb.STATUS_OK, kernel="saxpy",
                  checksum=0xdeadbeef, value=3.5, sent_ns=1_700_000_000_000_000_000,
                  started_ns=1_700_000_000_100_000_000, finished_ns=1_700_000_000_200_000_000,
                  bytes=1200, flops=200)
    b.results.add(job_id=0x1234, task_id=1, attempt=1, status=pb.STATUS_FAILED, kernel="sgemm",
                  error="out of memory", retryable=True)
    b.results.add(job_id=0x1234, task_id=1, attempt=3, status=pb.STATUS_FAILED, kernel="sgemm",
                  error="bad size")
    b.results.add(job_id=0x1234, task_id=999, attempt=1, status=pb.STATUS_OK, kernel="noop")


envelope("tasks", tasks)
envelope("results", results)
envelope("batch_start", lambda e: e.batch_start.MergeFrom(
    pb.BatchStart(job_id=0x1234, name="demo", total=1000, max_attempts=3,
                  start_ns=1_700_000_000_000_000_000)))
envelope("hello", lambda e: e.hello.MergeFrom(pb.Hello(
    worker=pb.WorkerInfo(id="w1", host="node1", device="cuda:0 (H100)", slots=4,
                         gpu_mem_bytes=1 << 30), credit=8)))
envelope("credit", lambda e: e.credit.MergeFrom(pb.Credit(credit=16)))
envelope("heartbeat", lambda e: e.heartbeat.MergeFrom(pb.Heartbeat(epoch=0xabcdef)))
envelope("welcome", lambda e: e.welcome.MergeFrom(pb.Welcome(epoch=0xabcdef)))
envelope("reconnect", lambda e: e.reconnect.SetInParent())
envelope("goodbye", lambda e: e.goodbye.MergeFrom(pb.Goodbye(
    returned=[pb.TaskRef(job_id=7, task_id=i) for i in (0, 1, 5, 299, 300)])))
envelope("job_accepted", lambda e: e.job_accepted.MergeFrom(pb.JobAccepted(job_id=0x1234)))
envelope("ack", lambda e: e.ack.MergeFrom(pb.Ack(job_id=7, done=[0, 1, 2, 3, 299, 300, 1 << 40],
                                                 retry=[4, 5], failed=[3])))
envelope("batch_end", lambda e: e.batch_end.MergeFrom(pb.BatchEnd(job_id=0x1234, tasks_ok=999,
                                                                  tasks_failed=1)))
envelope("kill", lambda e: e.kill.SetInParent())
envelope("cancel_job", lambda e: e.cancel_job.MergeFrom(pb.CancelJob(job_id=0x1234)))
envelope("submit", lambda e: e.submit.MergeFrom(pb.SubmitJob(job=pb.JobSpec(
    name="sub", max_attempts=2, priority=5,
    tasks=[pb.TaskSpec(kernel="saxpy", count=3, size=1000, seed=1),
           pb.TaskSpec(kernel="reduce", count=1, payload=floats(1, 2, 3)),
           pb.TaskSpec(kernel="mandelbrot", count=4, size=64)]))))
envelope("status", lambda e: e.status.MergeFrom(pb.StatusRequest(job="sub")))
envelope("cancel", lambda e: e.cancel.MergeFrom(pb.CancelRequest(job="0000000000001234")))
envelope("wrong_version", lambda e: e.kill.SetInParent(), version=2)
write("fuzz_decode", "no_body", pb.Envelope(version=1).SerializeToString())

payload = base64.b64encode(floats(2.0, 1, 2, 3, 4, 5, 6)).decode()
jobs = {
    "demo.json": open(os.path.join(root, "examples", "demo.json")).read(),
    "readme.json": """{ "name": "mandel-4k", "max_attempts": 3,
  "tasks": [ { "kernel": "mandelbrot", "count": 256, "size": 4096, "seed": 1 },
             { "kernel": "saxpy", "count": 1000, "size": 1048576 },
             { "kernel": "reduce", "count": 1, "payload": "AACAPwAAAEA=" } ] }""",
    "payload.json": '{"tasks": [{"kernel": "saxpy", "count": 2, "payload": "%s"}], '
                    '"priority": -3}' % payload,
    "every_kernel.json": """{"name": "all", "max_attempts": 100, "tasks": [
  {"kernel": "noop", "count": 4294967295}, {"kernel": "sleep", "size": 2000, "count": 1},
  {"kernel": "sgemm", "size": 16384, "count": 1}, {"kernel": "montecarlo_pi", "size": 17179869184, "count": 2},
  {"kernel": "sort", "size": 268435456, "count": 1, "seed": 7}]}""",
    # Refused by the strict pre-pass (common/strict_json.h); protobuf alone accepts each one.
    "quoted_numbers.json": """{"name": "all", "tasks": [
  {"kernel": "noop", "count": "18446744073709551615"},
  {"kernel": "sort", "size": "268435456", "count": 1, "seed": "7"}]}""",
    "duplicate_name.json": '{"name": "a", "name": "b", "tasks": [{"kernel": "noop", "count": 1}]}',
    "duplicate_tasks.json": '{"tasks": [{"kernel": "noop", "count": 3}], '
                            '"tasks": [{"kernel": "noop", "count": 5}]}',
    "duplicate_alias.json": '{"maxAttempts": 2, "max_attempts": 3, '
                            '"tasks": [{"kernel": "noop", "count": 1}]}',
    "duplicate_escaped.json": '{"tasks": [{"kernel": "noop", "count": 1, "co\\u0075nt": 2}]}',
    "duplicate_in_unknown.json": '{"tasks": [{"kernel": "noop", "count": 1}], '
                                 '"x": [{"a": 1, "a": 2}]}',
    "control_name.json": '{"name": "fake\\ninfo: done\\u001b[2J\\u202e", '
                         '"tasks": [{"kernel": "noop", "count": 1}]}',
    "utf8_name.json": '{"name": "r\u00e9seau \u2713", "keepOutput": true, '
                      '"tasks": [{"kernel": "mandelbrot", "count": 2, "size": 64}]}',
    "unknown_field.json": '{"tasks": [{"kernel": "noop", "count": 1}], "colour": "blue"}',
    "negative_size.json": '{"tasks": [{"kernel": "saxpy", "count": 1, "size": -5}]}',
    "bad_base64.json": '{"tasks": [{"kernel": "reduce", "count": 1, "payload": "***"}]}',
    "empty.json": "{}",
}
for name, text in jobs.items():
    write("fuzz_job_json", name, text)
print(f"corpus written to {os.path.join(here, 'corpus')}")
