"""The optional C kernel of the exact scan (`mrl_tui/core/search/_fused.c`).

Everything else about the package is in pyproject.toml. Without a C compiler the build skips the
extension (``optional=True``) and the index scans with numpy instead.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "mrl_tui.core.search._fused",
            sources=["mrl_tui/core/search/_fused.c"],
            # Portable: no -march=native; the AVX2 copy of the kernel is picked at run time.
            extra_compile_args=["-O3", "-Wno-psabi"],
            optional=True,
        )
    ]
)
