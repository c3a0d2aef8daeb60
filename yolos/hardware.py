"""What the machine is: CPU model, the vector extensions that matter for matrix products, clock.
Printed by ``yolos benchmark`` and every script in benchmarks/, so each figure names its machine."""
from __future__ import annotations

import functools
import os
import platform
import subprocess
from pathlib import Path


@functools.cache
def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none), read once."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break  # end of the first processor's block
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_name() -> str:
    """The CPU model: /proc/cpuinfo's "model name", else lscpu's, else the platform's."""
    if _cpuinfo().get("model name"):
        return _cpuinfo()["model name"]
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cpu_features() -> dict:
    """What the CPU offers for matrix products, from /proc/cpuinfo: vector extensions and clock."""
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    try:
        mhz = float(info["cpu MHz"])
    except (KeyError, ValueError):
        mhz = float("nan")
    return {"avx2": "avx2" in flags, "avx512": "avx512f" in flags, "avx512_bf16": "avx512_bf16" in flags,
            "amx_bf16": "amx_bf16" in flags, "vnni": bool({"avx512_vnni", "avx_vnni"} & flags),
            "amx_int8": "amx_int8" in flags, "mhz": mhz}


def cpu_summary() -> str:
    """``"Intel(R) Xeon(R) Processor (AVX2, AVX512, AVX512-BF16, AMX-BF16; 2700 MHz)"``."""
    f = cpu_features()
    names = ("avx2", "avx512", "avx512_bf16", "amx_bf16", "vnni", "amx_int8")
    isa = ", ".join(k.upper().replace("_", "-") for k in names if f[k])
    return f"{cpu_name()} ({isa or 'no AVX2'}; {f['mhz']:.0f} MHz)"


def cache_dir() -> Path:
    """Where yolos keeps what it measured or built once per machine: ``$XDG_CACHE_HOME/yolos``
    (default ``~/.cache/yolos``)."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "yolos"


def machine_key() -> str:
    """The CPU and its matrix extensions as a file-name-safe key: a decision measured on one
    machine is only reused on the same kind."""
    isa = "-".join(k for k, on in cpu_features().items() if on is True)
    return "".join(c if c.isalnum() else "-" for c in f"{cpu_name()}-{isa}")
