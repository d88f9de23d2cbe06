"""The C extension: the marker functions the agent hooks, and their binding."""
from setuptools import Extension, setup

setup(ext_modules=[Extension(
    "taskscope_marker._native",
    sources=["src/taskscope_marker.c", "src/taskscope_marker/_native.c"],
    include_dirs=["include"],
)])
