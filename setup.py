"""The one compiled part of migstream: the bulk-stage record walk (migstream/wire/_runscan.c).

Everything else is in pyproject.toml.  The extension is optional: without a C
compiler the install still succeeds and migstream uses the same walk in Python
(slower, identical results).
"""

from setuptools import Extension
from setuptools import setup

setup(
    ext_modules=[
        Extension("migstream.wire._runscan", ["migstream/wire/_runscan.c"], optional=True, extra_compile_args=["-O2"])
    ]
)
