"""Job.results(): a job's results streamed from the sink's results service, against real
processes (sink --serve with --results-service, ventilator --serve, workers --allow-exec)."""
import json
import subprocess
import threading
import time
from pathlib import Path

import pytest

import taskfarm
from taskfarm import Client, NoOutputs, ServiceUnavailable, TaskfarmError, TaskResult
from taskfarm.results import results_endpoint_near
from farm import binary

EXEC_WORKER = ["--allow-exec"]


def exec_farm(make_farm, workers=1, threads=4):
    return make_farm(workers=workers, threads=threads, worker_args=EXEC_WORKER)


def job_dir(farm, job):
    return farm.dir / "jobs" / job.id


def test_an_exec_jobs_outputs_equal_the_files_in_the_results_directory(make_farm, tmp_path):
    f = exec_farm(make_farm)
    spec = {"name": "echo", "tasks": [
        {"kernel": "exec", "count": 30, "shell": True,
         "argv": ["printf 'task %s of %s\\n' {index} $TASKFARM_JOB_ID; head -c {index} /dev/zero"]},
        {"kernel": "exec", "count": 1, "shell": True, "argv": ["echo oops >&2; exit 3"]}]}
    with Client(f.server, sink=f.results_service) as client:
        job = client.submit(spec)
        results = list(job.results(timeout=60))
        stream = job.results(out_dir=tmp_path / "copy", timeout=60)
        assert stream.drain() == 31 and stream.complete
    assert all(isinstance(r, TaskResult) for r in results)
    assert sorted(r.task_id for r in results) == list(range(31))
    sink_dir = job_dir(f, job)
    sink_index = (sink_dir / "index.jsonl").read_bytes()
    assert (tmp_path / "copy" / "index.jsonl").read_bytes() == sink_index  # byte for byte
    assert [r.index_line for r in results] == sink_index.decode().splitlines()
    for r in results:
        if r.entry == 1:
            assert not r.ok and r.status == "failed" and r.output == b""
            assert "oops" in r.error and "3" in r.error and r.output_file == ""
            continue
        assert r.ok and r.kernel == "exec" and r.attempt == 1 and r.worker.startswith("w0")
        assert r.output == b"task %d of %s\n" % (r.index, job.id.encode()) + b"\0" * r.index
        assert r.size == len(r.output) and r.params == {} and r.error == ""
        assert r.output == (sink_dir / "outputs" / str(r.task_id)).read_bytes()
        assert r.output == (tmp_path / "copy" / "outputs" / str(r.task_id)).read_bytes()
        assert len(r.checksum) == 16
    assert sorted(p.name for p in (tmp_path / "copy" / "outputs").iterdir()) == \
        sorted(p.name for p in (sink_dir / "outputs").iterdir())
    assert results[-1].next_offset == len(sink_index)
    # The same as `taskfarm results` writes from the same service.
    p = subprocess.run([binary("taskfarm"), "--server", f.server, "results", job.id, "--sink",
                        f.results_service, "--out", str(tmp_path / "cli"), "-q"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, p.stderr  # one task failed
    assert (tmp_path / "cli" / "index.jsonl").read_bytes() == sink_index


def test_results_stream_while_the_job_runs_and_resume_after_closing_midway(make_farm, tmp_path):
    f = exec_farm(make_farm, threads=2)
    spec = {"name": "slow", "tasks": [
        {"kernel": "exec", "count": 40, "shell": True, "argv": ["sleep 0.05; echo {index}"]}]}
    with Client(f.server, sink=f.results_service) as client:
        job = client.submit(spec)
        # From the first answer on, while the job is running.
        stream = job.results(timeout=60)
        first = [next(stream) for _ in range(5)]
        assert stream.state == taskfarm.JobState.RUNNING and not stream.complete
        stream.close()
        assert list(stream) == []  # closed: nothing more
        assert stream.offset == first[-1].next_offset
        rest = list(job.results(from_offset=stream.offset, timeout=60))
        # An out_dir fetch closed mid-way takes up from its folder's index.
        with job.results(out_dir=tmp_path / "dir", timeout=60) as s1:
            part = [next(s1) for _ in range(7)]
        s2 = job.results(out_dir=tmp_path / "dir", timeout=60)
        assert s2.offset == part[-1].next_offset
        rest_dir = list(s2)
        assert s2.complete and s2.state == taskfarm.JobState.DONE
    everything = first + rest
    assert sorted(r.task_id for r in everything) == list(range(40))  # no gap, no duplicate
    assert all(r.output == b"%d\n" % r.index for r in everything)
    assert [r.task_id for r in part + rest_dir] == [r.task_id for r in everything]
    index = (job_dir(f, job) / "index.jsonl").read_bytes()
    assert (tmp_path / "dir" / "index.jsonl").read_bytes() == index
    assert len(list((tmp_path / "dir" / "outputs").iterdir())) == 40


def test_a_half_written_local_index_line_is_fetched_again(make_farm, tmp_path):
    f = exec_farm(make_farm)
    with Client(f.server, sink=f.results_service) as client:
        job = client.submit({"tasks": [{"kernel": "exec", "count": 5,
                                        "argv": ["echo", "{index}"]}]})
        job.wait(timeout=60, progress=False)
        job.results(out_dir=tmp_path / "d").drain()
        index = (tmp_path / "d" / "index.jsonl").read_bytes()
        (tmp_path / "d" / "index.jsonl").write_bytes(index[:-7])  # cut inside the last line
        assert job.results(out_dir=tmp_path / "d").drain() == 1
    assert (tmp_path / "d" / "index.jsonl").read_bytes() == index


def test_a_sweeps_results_carry_their_parameters(make_farm):
    f = exec_farm(make_farm)
    spec = {"name": "grid", "tasks": [
        {"kernel": "exec", "argv": ["echo", "{x}-{mode}"],
         "params": {"grid": {"x": [1, 2, 3], "mode": ["a", "b"]}}}]}
    with Client(f.server, sink=f.results_service) as client:
        results = list(client.submit(spec).results(timeout=60))
    assert len(results) == 6
    points = sorted((r.params["mode"], r.params["x"]) for r in results)
    assert points == [(m, x) for m in "ab" for x in "123"]
    for r in results:
        assert r.text() == f"{r.params['x']}-{r.params['mode']}\n"


def test_a_job_without_outputs_is_a_clear_error(farm):
    with Client(farm.server, sink=farm.results_service) as client:
        job = client.submit({"name": "plain", "tasks": [{"kernel": "saxpy", "count": 10,
                                                          "size": 1000}]})
        job.wait(timeout=60, progress=False)
        with pytest.raises(NoOutputs, match="no outputs") as e:
            list(job.results(timeout=10))
        assert "report has its results" in str(e.value)
        running = client.submit({"tasks": [{"kernel": "sleep", "count": 400, "size": 20000}]})
        with pytest.raises(NoOutputs, match="returns no outputs"):
            list(running.results(timeout=10))
        running.cancel()


def test_results_wait_for_a_queued_job_and_no_wait_stops_at_what_exists(make_farm):
    f = make_farm(workers=0)  # nothing runs until a worker joins
    with Client(f.server, sink=f.results_service) as client:
        job = client.submit({"tasks": [{"kernel": "exec", "count": 3, "argv": ["echo", "hi"]}]})
        assert list(job.results(wait=False)) == []
        with pytest.raises(TimeoutError, match="still coming"):
            list(job.results(timeout=0.5))
        got = []
        t = threading.Thread(target=lambda: got.extend(job.results(timeout=60)))
        t.start()
        time.sleep(0.3)
        f.worker("late", extra=EXEC_WORKER)
        t.join(60)
    assert not t.is_alive()
    assert sorted(r.task_id for r in got) == [0, 1, 2] and all(r.output == b"hi\n" for r in got)


def test_a_sink_that_does_not_answer_is_serviceunavailable_and_iterating_again_resumes(
        make_farm, tmp_path):
    f = exec_farm(make_farm)
    with Client(f.server, sink=f"ipc://{tmp_path}/nobody", timeout=0.3) as client:
        job = client.submit({"tasks": [{"kernel": "exec", "count": 3, "argv": ["true"]}]})
        stream = job.results(timeout=30)
        t0 = time.monotonic()
        with pytest.raises(ServiceUnavailable, match="no answer from the results service"):
            next(stream)
        assert time.monotonic() - t0 < 2
        # The sink comes back at that address: the same stream goes on from its offset.
        stream.endpoint = f.results_service
        assert sorted(r.task_id for r in stream) == [0, 1, 2]
        assert stream.complete


def test_endpoints_of_the_results_service():
    assert results_endpoint_near("tcp://head:5560") == "tcp://head:5561"
    assert results_endpoint_near("tcp://10.0.0.5:7000") == "tcp://10.0.0.5:5561"
    assert results_endpoint_near("tcp://[::1]:5560") == "tcp://[::1]:5561"
    assert results_endpoint_near("ipc:///tmp/submit") is None
    assert Client("head").results_endpoint == "tcp://head:5561"
    assert Client("head:6000", sink="node2:7000").results_endpoint == "tcp://node2:7000"
    assert Client("head", sink="node2").results_endpoint == "tcp://node2:5561"
    with pytest.raises(TaskfarmError, match="sink="):
        taskfarm.Job(Client("ipc:///tmp/x"), "0123456789abcdef").results()


def test_bad_arguments_and_bad_folders(make_farm, tmp_path):
    job = taskfarm.Job(Client("head"), "0123456789abcdef")
    with pytest.raises(ValueError, match="not both"):
        job.results(from_offset=10, out_dir=tmp_path)
    with pytest.raises(ValueError):
        job.results(from_offset=-1)
    (tmp_path / "file").write_text("x")
    with pytest.raises(TaskfarmError, match="cannot write results"):
        job.results(out_dir=tmp_path / "file" / "sub")


def test_index_lines_become_typed_results():
    line = json.dumps({"task_id": 7, "entry": 1, "index": 2, "kernel": "exec", "status": "ok",
                       "attempt": 2, "worker": "n3-1", "bytes": 3, "checksum": "00ab" * 4,
                       "value": 0.5, "params": {"x": "1"}, "output": "outputs/7"})
    r = TaskResult.from_index_line(line, b"abc", 99)
    assert (r.task_id, r.entry, r.index, r.kernel, r.attempt, r.worker, r.value) == \
        (7, 1, 2, "exec", 2, "n3-1", 0.5)
    assert r.ok and r.params == {"x": "1"} and r.output == b"abc" and r.next_offset == 99
    assert r.output_file == "outputs/7" and r.size == 3 and r.error == ""
    with pytest.raises(TaskfarmError, match="not a result"):
        TaskResult.from_index_line("{not json", b"", 0)
    with pytest.raises(TaskfarmError, match="not a result"):
        TaskResult.from_index_line('{"status": "ok"}', b"", 0)


def test_the_package_exports_the_results_api():
    assert Path(taskfarm.__file__).parent.joinpath("results.py").exists()
    for name in ("ResultStream", "TaskResult", "NoOutputs"):
        assert name in taskfarm.__all__


def test_results_over_curve_take_the_clients_key(make_farm, tmp_path):
    keys, auth = tmp_path / "keys", tmp_path / "authorized"
    for name, role in (("head", "head"), ("w", "workers"), ("me", "clients")):
        subprocess.run([binary("taskfarm"), "keygen", name, "--dir", str(keys)], check=True,
                       capture_output=True)
        (auth / role).mkdir(parents=True, exist_ok=True)
        (auth / role / f"{name}.pub").write_bytes((keys / f"{name}.pub").read_bytes())
    head = ["--curve-secret", str(keys / "head.key"), "--authorized-keys", str(auth)]
    f = make_farm(workers=0, sink_args=head,
                  vent_args=head + ["--server-key", str(keys / "head.pub")])
    f.worker("cw", extra=EXEC_WORKER + ["--curve-secret", str(keys / "w.key"), "--server-key",
                                        str(keys / "head.pub")])
    me = (str(keys / "me.key"), str(keys / "head.pub"))
    with Client(f.server, keys=me, sink=f.results_service) as client:
        job = client.submit({"tasks": [{"kernel": "exec", "count": 4,
                                        "argv": ["echo", "{index}"]}]})
        outputs = sorted(r.output for r in job.results(timeout=60))
    assert outputs == [b"0\n", b"1\n", b"2\n", b"3\n"]
    # Without keys, or with a worker's key, the results service does not answer.
    for other in (None, (str(keys / "w.key"), str(keys / "head.pub"))):
        with Client(f.server, keys=other, sink=f.results_service, timeout=0.5) as client:
            with pytest.raises(ServiceUnavailable):
                next(taskfarm.Job(client, job.id).results(timeout=5))
