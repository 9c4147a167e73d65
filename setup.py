"""cffi_modules needs setup(); everything else lives in pyproject.toml."""

from setuptools import setup

setup(cffi_modules=["sim/build_native.py:ffibuilder"])
