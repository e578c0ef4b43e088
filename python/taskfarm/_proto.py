"""The protobuf module generated from proto/taskfarm.proto.

Installed packages carry it (made by protoc at `pip install` time). From a checkout, it is taken
from the CMake build (build/python/taskfarm_pb2.py, or the folder in $TASKFARM_PYTHON_DIR).
"""
import importlib
import os
import sys

try:
    from . import taskfarm_pb2 as pb  # type: ignore[attr-defined]
except ImportError:
    _here = os.path.dirname(os.path.abspath(__file__))
    for _dir in (os.environ.get("TASKFARM_PYTHON_DIR", ""),
                 os.path.join(_here, "..", "..", "build", "python")):
        if _dir and os.path.isfile(os.path.join(_dir, "taskfarm_pb2.py")) and _dir not in sys.path:
            sys.path.append(_dir)
    try:
        pb = importlib.import_module("taskfarm_pb2")
    except ModuleNotFoundError as e:
        if e.name == "taskfarm_pb2":
            raise ImportError(
                "taskfarm's protobuf module is missing: install the package (pip install "
                "./python), or build taskfarm with CMake and set PYTHONPATH=build/python") from e
        raise ImportError(f"taskfarm needs {e.name} (Debian: python3-protobuf)") from e

PROTOCOL_VERSION = 1  # common/protocol.h: kProtocolVersion

__all__ = ["pb", "PROTOCOL_VERSION"]
