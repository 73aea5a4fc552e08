"""What a run records about the machine it ran on (rednet.provenance)."""
from __future__ import annotations

from rednet.provenance import cpu_model

BLOCK = """processor\t: {n}
vendor_id\t: AuthenticAMD
cpu family\t: {family}
model\t\t: {model}
model name\t: AMD EPYC
flags\t\t: fpu sse sse2 avx {flags}

"""


def _cpuinfo(tmp_path, family, model, flags):
    p = tmp_path / "cpuinfo"
    p.write_text("".join(BLOCK.format(n=n, family=family, model=model, flags=flags) for n in range(2)))
    return p


def test_cpu_model_tells_apart_cpus_of_one_name(tmp_path):
    """Two machines here both call themselves "AMD EPYC"; the record must say which."""
    zen3 = cpu_model(_cpuinfo(tmp_path, 25, 1, "avx2 fma"))
    zen5 = cpu_model(_cpuinfo(tmp_path, 26, 2, "avx2 avx512f avx512bw"))
    assert zen3 == "AMD EPYC (family 25, model 1, AVX2)"
    assert zen5 == "AMD EPYC (family 26, model 2, AVX512)"


def test_cpu_model_without_cpuinfo_is_none(tmp_path):
    assert cpu_model(tmp_path / "absent") is None
