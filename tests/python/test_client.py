"""The taskfarm Python package against a real job service (sink, ventilator, workers)."""
import io
import json
import subprocess
import sys
import time

import pytest

import taskfarm
from taskfarm import (Client, InvalidJob, JobFailed, JobNotFinished, JobState, ServiceUnavailable,
                      UnknownJob, pb)
from farm import binary

SMALL = {"name": "small", "tasks": [{"kernel": "saxpy", "count": 60, "size": 5000, "seed": 2}]}
LONG = {"name": "long", "tasks": [{"kernel": "sleep", "count": 2000, "size": 20000}]}


def test_submit_dict_path_and_spec_give_the_same_typed_report(farm, tmp_path):
    path = tmp_path / "small.json"
    path.write_text(json.dumps(SMALL))
    spec = taskfarm.job_spec(SMALL)
    with Client(farm.server) as client:
        reports = [client.submit(job).wait(timeout=60, progress=False)
                   for job in (SMALL, str(path), path, spec)]
    for r in reports:
        assert isinstance(r, pb.Report)
        assert r.tasks_ok == 60 and r.tasks_failed == 0
        assert r.state == "done"
    assert len({r.result_digest for r in reports}) == 1
    assert len({r.job_id for r in reports}) == 4


def test_status_jobs_and_report_while_running_and_after(farm):
    with Client(farm.server) as client:
        job = client.submit(LONG)
        assert len(job.id) == 16 and job.name == "long"
        deadline = time.monotonic() + 20
        while (st := job.status()).done == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert st.state is JobState.RUNNING and st.state == "running"
        assert 0 < st.done < st.total == 2000 and 0 < st.fraction < 1
        assert not st.finished and st.report is None
        with pytest.raises(JobNotFinished):
            job.report()
        assert [j.id for j in client.jobs()] == [job.id]
        assert client.job("long").id == job.id  # by name
        with pytest.raises(TimeoutError, match="still running"):
            job.wait(timeout=0.3, progress=False)
        assert job.cancel() is True
        assert job.cancel() is False  # already cancelled
        with pytest.raises(JobFailed) as e:
            job.wait(timeout=10, progress=False)
        assert e.value.state is JobState.CANCELLED
        assert e.value.report.state == "cancelled"
        st = job.status()
        assert st.finished and st.state == JobState.CANCELLED
        assert job.report().state == "cancelled"


def test_failed_tasks_raise_jobfailed_with_their_errors(make_farm):
    f = make_farm(workers=1, worker_env={"TASKFARM_TEST_FAIL_TASK": "3"})
    with Client(f.server) as client:
        job = client.submit(SMALL)
        with pytest.raises(JobFailed) as e:
            job.wait(timeout=60, progress=False)
    err = e.value
    assert err.state is JobState.FAILED
    assert [(x.task_id, x.kernel) for x in err.failures] == [(3, "saxpy")]
    assert "injected failure" in err.failures[0].error
    assert err.report.tasks_ok == 59
    assert "task 3 (saxpy)" in str(err)


def test_invalid_jobs_are_invalidjob_and_do_not_disturb_the_service(farm, tmp_path):
    with Client(farm.server) as client:
        with pytest.raises(InvalidJob, match="'f/t' is not a kernel name"):
            client.submit({"tasks": [{"kernel": "f/t", "count": 1}]})
        with pytest.raises(InvalidJob, match="colour"):
            client.submit({"tasks": [{"kernel": "noop", "count": 1}], "colour": 1})
        with pytest.raises(InvalidJob, match="cannot read job file"):
            client.submit(tmp_path / "missing.json")
        (tmp_path / "bad.json").write_text("{ not json")
        with pytest.raises(InvalidJob):
            client.submit(tmp_path / "bad.json")
        with pytest.raises(UnknownJob):
            client.status("0123456789abcdef")
        with pytest.raises(UnknownJob):
            client.cancel("nothing-by-that-name")
        assert client.submit(SMALL).wait(timeout=60, progress=False).tasks_ok == 60


def test_a_service_that_does_not_answer_is_serviceunavailable_quickly(tmp_path):
    t0 = time.monotonic()
    with Client(f"ipc://{tmp_path}/nobody", timeout=0.5) as client:
        with pytest.raises(ServiceUnavailable, match="no answer from the job service"):
            client.jobs()
        with pytest.raises(ServiceUnavailable):  # and again: the client recovers its socket
            client.jobs()
    assert time.monotonic() - t0 < 3


def test_progress_bar_draws_on_the_terminal_stream(farm, capsys):
    with Client(farm.server) as client:
        client.submit(SMALL).wait(timeout=60, progress=True)
    err = capsys.readouterr().err
    assert "\r" in err and "100%|" in err and "60/60" in err and "tasks/s" in err


def test_progress_bar_stays_quiet_off_a_terminal():
    out = io.StringIO()
    bar = taskfarm.ProgressBar("job", stream=out)
    bar.update(1, 2, 1.0)
    bar.close()
    assert out.getvalue() == ""
    assert taskfarm.ProgressBar("j", enabled=True).line(500, 1000, 100.0).startswith("j  50%|")


def test_progress_bar_says_why_a_job_waits():
    line = taskfarm.ProgressBar("j", enabled=True).line(0, 10, 0.0, state="queued",
                                                          reason="no worker connected")
    assert line.endswith("] queued: no worker connected")


def test_taskfarm_port_base_moves_the_default_ports_as_in_the_programs(monkeypatch):
    monkeypatch.setenv("TASKFARM_PORT_BASE", "6557")
    assert taskfarm.endpoint("head") == "tcp://head:6560"
    assert taskfarm.endpoint("head:7000") == "tcp://head:7000"
    assert Client("head").results_endpoint == "tcp://head:6561"
    monkeypatch.setenv("TASKFARM_PORT_BASE", "80")
    with pytest.raises(ValueError, match="TASKFARM_PORT_BASE='80'"):
        taskfarm.endpoint("head")


def test_endpoints_are_read_like_the_taskfarm_programs_read_them():
    assert taskfarm.endpoint("head") == "tcp://head:5560"
    assert taskfarm.endpoint("head:6000") == "tcp://head:6000"
    assert taskfarm.endpoint("6000") == "tcp://localhost:6000"
    assert taskfarm.endpoint("ipc:///tmp/x") == "ipc:///tmp/x"


def test_job_states_come_from_the_proto_enum_in_one_place():
    for value in pb.JobState.values():
        if value == pb.JOB_STATE_UNSPECIFIED:
            continue
        state = JobState.from_wire(value)
        assert state is not JobState.UNKNOWN, pb.JobState.Name(value)
        assert ("JOB_" + state.value.upper()) == pb.JobState.Name(value)
    assert JobState.from_wire("done") is JobState.DONE  # the words of older services
    assert JobState.from_wire(99) is JobState.UNKNOWN


def test_curve_keys(make_farm, tmp_path):
    keys, auth = tmp_path / "keys", tmp_path / "authorized"
    # Keys are authorized by role: the head key, a worker key, and this client's own key.
    for name, role in (("head", "head"), ("w", "workers"), ("me", "clients")):
        subprocess.run([binary("taskfarm"), "keygen", name, "--dir", str(keys)], check=True,
                       capture_output=True)
        (auth / role).mkdir(parents=True, exist_ok=True)
        (auth / role / f"{name}.pub").write_bytes((keys / f"{name}.pub").read_bytes())
    head = ["--curve-secret", str(keys / "head.key"), "--authorized-keys", str(auth)]
    f = make_farm(workers=0, sink_args=head,
                  vent_args=head + ["--server-key", str(keys / "head.pub")])
    f.worker("cw", extra=["--curve-secret", str(keys / "w.key"), "--server-key",
                          str(keys / "head.pub")])
    with Client(f.server, keys=(str(keys / "me.key"), str(keys / "head.pub"))) as client:
        assert client.submit(SMALL).wait(timeout=60, progress=False).tasks_ok == 60
    with Client(f.server, timeout=0.5) as client:  # no keys: the handshake never completes
        with pytest.raises(ServiceUnavailable):
            client.jobs()
    with pytest.raises(taskfarm.TaskfarmError, match="cannot read key file"):
        Client(f.server, keys=(str(tmp_path / "none.key"), str(keys / "head.pub"))).jobs()
    # The worker's key is not a client's: the service refuses it.
    with Client(f.server, keys=(str(keys / "w.key"), str(keys / "head.pub")), timeout=0.5) as c:
        with pytest.raises(ServiceUnavailable):
            c.jobs()
    # A public key given as the secret, and a secret given as the server's key.
    with pytest.raises(taskfarm.TaskfarmError, match="not a secret key file"):
        Client(f.server, keys=(str(keys / "me.pub"), str(keys / "head.pub"))).jobs()
    with pytest.raises(taskfarm.TaskfarmError, match="is a secret key"):
        Client(f.server, keys=(str(keys / "me.key"), str(keys / "head.key"))).jobs()


@pytest.mark.skipif(not hasattr(pb, "WorkersRequest"),
                    reason="this build's protocol has no workers request yet")
def test_workers(farm):
    with Client(farm.server) as client:
        deadline = time.monotonic() + 10
        while len(workers := client.workers()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert sorted(w.id for w in workers) == ["w0", "w1"]
    assert all(w.slots == 2 and w.device == "cpu" for w in workers)


def test_example_client_uses_the_package(farm, tmp_path):
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    (tmp_path / "small.json").write_text(json.dumps(SMALL))
    p = subprocess.run([sys.executable, str(root / "examples/python/taskfarm_client.py"),
                        str(tmp_path / "small.json"), "--server", farm.server, "--report",
                        str(tmp_path / "r.json")], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "done: 60 ok" in p.stdout
    assert json.loads((tmp_path / "r.json").read_text())["tasks_ok"] == 60


def test_sweep_example(farm):
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    p = subprocess.run([sys.executable, str(root / "examples/python/sweep.py"), "--server",
                        farm.server, "--sizes", "1024,16384", "--count", "20"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["saxpy-1024", "saxpy-16384"]
    assert all("20/20 ok" in line for line in lines)
