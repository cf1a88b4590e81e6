"""Library log lines that would mislead this project's users, dropped before the libraries load.

bitsandbytes 0.50, on a CPU with AVX512-BF16, tries at import to fetch an optional fused 4-bit matmul
from the Hugging Face Hub through the `kernels` package, and when that is missing logs "Failed to load
CPU gemm_4bit_forward from kernels-community ... pip install kernels" on every start. Nothing failed: it
falls back to its own CPU kernels (the path this project's tests and offline profile use), and following
the advice would make CPU runs depend on downloading code from the Hub. The filter drops that one message
and nothing else from that logger.
"""

from __future__ import annotations

import logging

BNB_CPU_LOGGER = "bitsandbytes.backends.cpu.ops"
OPTIONAL_HUB_KERNEL = "Failed to load CPU gemm_4bit_forward from kernels-community"


class _DropOptionalHubKernelNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(OPTIONAL_HUB_KERNEL)


# Notices a user reads as failure, each on the logger that emits it: dequantizing the 4-bit base for `merge`, the
# 16-bit and merged forms and `export` is meant ("The modules are dequantized in torch.float32 and casted to ..."),
# and the ONNX exporter's "torchvision is not installed. Skipping torchvision::nms" concerns operators a text
# classifier never has.
EXPECTED_NOTICES = {
    "transformers.integrations.bitsandbytes": "The modules are dequantized in",
    "torch.onnx._internal.exporter._registration": "torchvision is not installed",
}


class _DropExpectedNotice(logging.Filter):
    def __init__(self, start: str):
        super().__init__()
        self.start = start

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.start)


def quiet_known_library_warnings() -> None:
    """Install the filter once (importing the package twice must not stack filters). Also: tqdm's notice that
    ipywidgets is missing in a notebook, where its progress bars then print as text, which is what we want."""
    import warnings

    warnings.filterwarnings("ignore", message="IProgress not found")
    # said once as the run starts, in words (hardware.cpu_notes), rather than at every optimizer creation
    warnings.filterwarnings("ignore", message="Paged optimizers are not supported on CPU")
    logger = logging.getLogger(BNB_CPU_LOGGER)
    if not any(isinstance(f, _DropOptionalHubKernelNotice) for f in logger.filters):
        logger.addFilter(_DropOptionalHubKernelNotice())
    for name, start in EXPECTED_NOTICES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropExpectedNotice) for f in logger.filters):
            logger.addFilter(_DropExpectedNotice(start))
