"""The one compiled part: the bulk scan of chain verification (arxctl/chain/_native.c).

It is optional: without a C compiler the install still succeeds and `verify_chain` uses the same scan in Python
(slower, same verdicts). Set ARXCTL_REQUIRE_NATIVE=1 to make a failed build an error (`make test` does).
"""

import os

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "arxctl.chain._native",
            ["arxctl/chain/_native.c"],
            extra_compile_args=["-O3", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            optional=os.environ.get("ARXCTL_REQUIRE_NATIVE") != "1",
        )
    ]
)
