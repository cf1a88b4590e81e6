"""bitsandbytes' notice about an optional Hub kernel is dropped; its other warnings still reach the user."""

import logging
import subprocess
import sys
from pathlib import Path

import qlora_helpers  # noqa: F401  (installs the filter, as any use of the package does)
from qlora_helpers.library_logs import BNB_CPU_LOGGER, quiet_known_library_warnings

ROOT = Path(__file__).resolve().parents[1]


def test_only_the_optional_hub_kernel_notice_is_dropped(caplog):
    quiet_known_library_warnings()  # a second call must not stack a second filter
    logger = logging.getLogger(BNB_CPU_LOGGER)
    assert sum(type(f).__name__ == "_DropOptionalHubKernelNotice" for f in logger.filters) == 1
    with caplog.at_level(logging.WARNING, logger=BNB_CPU_LOGGER):
        logger.warning(
            "Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please make sure you "
            "already `pip install kernels`",
            "No module named 'kernels'",
        )
        logger.warning("some other bitsandbytes warning")
    assert [r.getMessage() for r in caplog.records] == ["some other bitsandbytes warning"]


def _stderr_of(code: str) -> str:
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stderr


def test_importing_the_package_then_bitsandbytes_prints_no_notice():
    """On CPUs with AVX512-BF16 (the CI machine kind has them, this test's machine may not) bitsandbytes
    alone logs the notice at import, so there the test shows the filter at work."""
    from bitsandbytes.functional import has_avx512bf16

    if has_avx512bf16():
        assert "kernels-community" in _stderr_of("import bitsandbytes")
    assert "kernels-community" not in _stderr_of("import qlora_helpers, bitsandbytes")


def test_expected_dequantize_and_exporter_notices_are_dropped_and_nothing_else():
    from qlora_helpers.library_logs import EXPECTED_NOTICES

    class Kept(logging.Handler):
        def __init__(self):
            super().__init__()
            self.messages = []

        def emit(self, record):
            self.messages.append(record.getMessage())

    quiet_known_library_warnings()
    for name, start in EXPECTED_NOTICES.items():
        logger, kept = logging.getLogger(name), Kept()
        assert sum(type(f).__name__ == "_DropExpectedNotice" for f in logger.filters) == 1
        logger.addHandler(kept)  # transformers' loggers do not propagate to the root one
        try:
            logger.warning(f"{start} and the rest of the notice")
            logger.warning("another warning")
        finally:
            logger.removeHandler(kept)
        assert kept.messages == ["another warning"], name
