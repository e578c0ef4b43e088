"""`pip install ./python` works offline and installs a protobuf module made from this checkout's
proto/taskfarm.proto (never a stale copy)."""
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_pip_install_works_offline_in_a_venv(tmp_path):
    env_dir = tmp_path / "venv"
    # Debian's python3-zmq and python3-protobuf come from the system site-packages.
    venv.EnvBuilder(system_site_packages=True, with_pip=True).create(env_dir)
    py = str(env_dir / "bin" / "python")
    # Only what pip installed: not the checkout's package nor the build's module.
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TASKFARM_PYTHON_DIR")}
    p = subprocess.run([py, "-m", "pip", "install", "--no-index", "--no-cache-dir",
                        str(ROOT / "python")], capture_output=True, text=True, timeout=120,
                       env=clean)
    assert p.returncode == 0, p.stdout + p.stderr
    check = ("import taskfarm, json; from google.protobuf import descriptor_pb2 as d; "
             "fd = d.FileDescriptorProto(); taskfarm.pb.DESCRIPTOR.CopyToProto(fd); "
             "print(json.dumps([taskfarm.pb.__file__, [m.name for m in fd.message_type]]))")
    out = subprocess.run([py, "-c", check], capture_output=True, text=True, cwd=tmp_path,
                         timeout=60, env=clean)
    assert out.returncode == 0, out.stderr
    import json
    path, messages = json.loads(out.stdout)
    assert str(env_dir) in path, path  # the installed copy, not the checkout's
    # Every message of the proto in this checkout is in the installed module.
    proto = (ROOT / "proto" / "taskfarm.proto").read_text()
    import re
    expected = re.findall(r"^message (\w+)", proto, re.M)
    assert sorted(messages) == sorted(expected)


def test_sdist_carries_the_proto(tmp_path):
    sys.path.insert(0, str(ROOT / "python" / "_build"))
    try:
        import taskfarm_build
    finally:
        sys.path.pop(0)
    name = taskfarm_build.build_sdist(str(tmp_path))
    import tarfile
    with tarfile.open(tmp_path / name) as tar:
        names = tar.getnames()
    assert "taskfarm-0.1.0/taskfarm.proto" in names
    assert "taskfarm-0.1.0/taskfarm/client.py" in names
    assert not any(n.endswith("taskfarm_pb2.py") for n in names)
