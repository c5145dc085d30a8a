"""Only here because cffi's build hook is a setup() keyword; all metadata is in pyproject.toml."""

from setuptools import setup

setup(cffi_modules=["host/bmsfil/_build_core.py:ffibuilder"])
