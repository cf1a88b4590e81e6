"""NF4 versus FP4 and absmax int4 on real pretrained weights (MiniLM), measured on the CPU."""

import pytest
import torch

from qlora_helpers.modeling.quant_error import absmax_int4, pretrained_matrices, quantization_errors
from qlora_helpers.presets import offline_model_dir


def test_absmax_int4_is_exact_on_representable_values():
    w = torch.tensor([[7.0, -7.0, 3.0, 0.0] * 16])  # one block of 64, scale 7: codes are the values
    restored, nbytes = absmax_int4(w)
    assert torch.equal(restored, w) and nbytes == 32 + 4


def test_nf4_beats_fp4_and_int4_on_real_weights_and_double_quant_saves_bits():
    rows = quantization_errors(pretrained_matrices(offline_model_dir()))
    by = {}
    for r in rows:
        by.setdefault(r["matrix"], {})[r["method"]] = r
    assert len(by) == 3
    for methods in by.values():
        nf4 = methods["NF4"]["relative_error"]
        assert nf4 < methods["absmax int4"]["relative_error"] and nf4 < methods["FP4"]["relative_error"]
        assert 0.05 < nf4 < 0.15
        assert methods["NF4 + double quant"]["relative_error"] == pytest.approx(nf4, rel=0.02)
        assert methods["NF4"]["bits_per_weight"] == 4.5  # 4 bits + one fp32 scale per 64 weights
        assert 4.12 < methods["NF4 + double quant"]["bits_per_weight"] < 4.14
