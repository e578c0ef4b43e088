"""PEP 517 build backend for the taskfarm package, standard library only.

pip builds in an isolated environment that would download setuptools; clusters have no
internet, so this backend needs nothing but Python and protoc. It generates taskfarm_pb2.py from
proto/taskfarm.proto at build time (never checked in, never stale) and writes the wheel itself.
The proto is found at $TASKFARM_PROTO, next to this folder (an sdist), or at ../proto (a checkout).
"""
import base64
import hashlib
import io
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "taskfarm"


def _project():
    """Returns: (name, version, summary, requires-python, dependencies) from pyproject.toml."""
    with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as f:
        text = f.read()
    try:
        import tomllib  # Python 3.11+
        p = tomllib.loads(text)["project"]
        return (p["name"], p["version"], p.get("description", ""), p.get("requires-python", ""),
                list(p.get("dependencies", [])))
    except ImportError:  # older Python: the few keys this file uses, one per line
        def key(k):
            m = re.search(rf'^{k}\s*=\s*"([^"]*)"', text, re.M)
            return m.group(1) if m else ""
        deps = re.search(r'^dependencies\s*=\s*\[([^\]]*)\]', text, re.M)
        return (key("name"), key("version"), key("description"), key("requires-python"),
                re.findall(r'"([^"]+)"', deps.group(1)) if deps else [])


def _proto():
    candidates = [os.environ.get("TASKFARM_PROTO", ""),
                  os.path.join(ROOT, "taskfarm.proto"),
                  os.path.join(ROOT, "..", "proto", "taskfarm.proto")]
    for c in candidates:
        if c and os.path.isfile(c):
            return os.path.abspath(c)
    raise RuntimeError("taskfarm.proto not found: build from the taskfarm checkout "
                       "(pip install ./python) or set TASKFARM_PROTO")


def _generate_pb2():
    """Returns: the text of taskfarm_pb2.py, made by protoc."""
    protoc = os.environ.get("PROTOC") or shutil.which("protoc")
    if not protoc:
        raise RuntimeError("protoc not found: install protobuf-compiler (Debian) or set PROTOC")
    proto = _proto()
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([protoc, f"--python_out={out}", f"-I{os.path.dirname(proto)}", proto],
                       check=True)
        with open(os.path.join(out, "taskfarm_pb2.py"), encoding="utf-8") as f:
            return f.read()


def _dist_info(name, version):
    return f"{name}-{version}.dist-info"


def _metadata():
    name, version, summary, requires_python, deps = _project()
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}",
             f"Summary: {summary}"]
    if requires_python:
        lines.append(f"Requires-Python: {requires_python}")
    lines += [f"Requires-Dist: {d}" for d in deps]
    readme = os.path.join(ROOT, "README.md")
    if os.path.isfile(readme):
        lines.append("Description-Content-Type: text/markdown")
        with open(readme, encoding="utf-8") as f:
            return "\n".join(lines) + "\n\n" + f.read()
    return "\n".join(lines) + "\n"


WHEEL = "Wheel-Version: 1.0\nGenerator: taskfarm_build\nRoot-Is-Purelib: true\nTag: py3-none-any\n"


def _record_line(path, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def _package_files():
    """Returns: [(path in the wheel, bytes)] of the package, with the generated module."""
    files = []
    src = os.path.join(ROOT, PACKAGE)
    for entry in sorted(os.listdir(src)):
        if entry.endswith(".py") or entry == "py.typed":
            if entry == "taskfarm_pb2.py":
                continue  # a stray copy: the generated one below is authoritative
            with open(os.path.join(src, entry), "rb") as f:
                files.append((f"{PACKAGE}/{entry}", f.read()))
    files.append((f"{PACKAGE}/taskfarm_pb2.py", _generate_pb2().encode()))
    return files


# ---------------------------------------------------------------- PEP 517 hooks

def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    name, version, *_ = _project()
    info = os.path.join(metadata_directory, _dist_info(name, version))
    os.makedirs(info, exist_ok=True)
    with open(os.path.join(info, "METADATA"), "w", encoding="utf-8") as f:
        f.write(_metadata())
    with open(os.path.join(info, "WHEEL"), "w", encoding="utf-8") as f:
        f.write(WHEEL)
    return os.path.basename(info)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    name, version, *_ = _project()
    info = _dist_info(name, version)
    files = _package_files()
    files.append((f"{info}/METADATA", _metadata().encode()))
    files.append((f"{info}/WHEEL", WHEEL.encode()))
    record = [_record_line(p, d) for p, d in files] + [f"{info}/RECORD,,"]
    files.append((f"{info}/RECORD", ("\n".join(record) + "\n").encode()))
    wheel = f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, wheel), "w", zipfile.ZIP_DEFLATED) as z:
        for path, data in files:
            z.writestr(zipfile.ZipInfo(path, date_time=(2020, 1, 1, 0, 0, 0)), data,
                       zipfile.ZIP_DEFLATED)
    return wheel


def build_sdist(sdist_directory, config_settings=None):
    """A self-contained source archive: the proto goes in next to pyproject.toml."""
    name, version, *_ = _project()
    base = f"{name}-{version}"
    sdist = f"{base}.tar.gz"
    with tarfile.open(os.path.join(sdist_directory, sdist), "w:gz") as tar:
        def add(path, arcname):
            tar.add(path, arcname=f"{base}/{arcname}", recursive=False)
        for f in ("pyproject.toml", "README.md"):
            add(os.path.join(ROOT, f), f)
        add(os.path.join(ROOT, "_build", "taskfarm_build.py"), "_build/taskfarm_build.py")
        for entry in sorted(os.listdir(os.path.join(ROOT, PACKAGE))):
            if (entry.endswith(".py") and entry != "taskfarm_pb2.py") or entry == "py.typed":
                add(os.path.join(ROOT, PACKAGE, entry), f"{PACKAGE}/{entry}")
        add(_proto(), "taskfarm.proto")
        info = io.BytesIO(_metadata().encode())
        ti = tarfile.TarInfo(f"{base}/PKG-INFO")
        ti.size = len(info.getvalue())
        tar.addfile(ti, info)
    return sdist
