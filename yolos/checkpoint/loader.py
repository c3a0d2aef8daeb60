"""``from_pretrained``: one entry point for every checkpoint format, loaded strictly.

=============================  ==================================================================
what                           how it is recognized
=============================  ==================================================================
transformers directory         a folder with ``config.json`` + ``model.safetensors`` (or sharded
                               ``model.safetensors.index.json``, or ``pytorch_model.bin``)
hub id / variant name          ``hustvl/yolos-small``, ``yolos-s``: downloaded by huggingface_hub
native file                    ``.safetensors`` with ``yolos_config`` metadata (``YOLOS.save``)
original hustvl/YOLOS          ``.pth`` with ``{"model": {"backbone.*", "class_embed.*", ...}}``
=============================  ==================================================================
"""
from __future__ import annotations

import json
from pathlib import Path

from ..defaults import DEFAULT_MODEL
from ..errors import CheckpointError
from ..model import YOLOS, get_variant, infer_variant_name
from .hf import config_from_hf, hf_to_ours
from .native import CONFIG_KEY, config_from_metadata, load_native
from .original import is_original_state_dict, model_from_original_state_dict
from .safe_io import (
    empty_model,
    load_pickle,
    load_safetensors,
    load_strict,
    read_safetensors_metadata,
    sniff_format,
    unwrap_state_dict,
)

HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# Names of the model shipped in the package, anywhere a model is named (--model, train --init,
# yolos.from_pretrained).
BUNDLED_NAMES = ("bundled", DEFAULT_MODEL.stem)


def from_pretrained(name_or_path, device="cpu", *, model_class=YOLOS, **overrides) -> YOLOS:
    """Load a YOLOS detector from a file, a directory, a hub id or a variant name.

    Args:
        name_or_path: a transformers directory, a native ``.safetensors``, an original
            ``.pth``, a hub id (``"hustvl/yolos-small"``) or a variant name (``"yolos-s"``).
        device: where to put the model (returned in eval mode).
        model_class: the class to build (:class:`yolos.YOLOS`, or the API's subclass with
            ``predict``/``save``, :class:`yolos.Detector`).
        overrides: ModelConfig fields to set. For original checkpoints they fill in what the
            shapes cannot tell (``image_size=``, ``num_heads=``); elsewhere they must agree
            with the stored shapes (e.g. ``class_names=`` is always fine).

    Raises:
        CheckpointError: naming the file (or hub id), for missing/unexpected keys, shape
            mismatches, unsafe pickles, unreadable files or an unreachable hub.
    """
    if str(name_or_path) in BUNDLED_NAMES and not Path(name_or_path).exists():
        name_or_path = DEFAULT_MODEL
    where = check_model_name(name_or_path)
    if isinstance(where, Path):
        if where.is_dir():
            return load_hf_directory(where, device=device, model_class=model_class, **overrides)
        return load_file(where, device=device, model_class=model_class, **overrides)
    return load_hf_directory(download_from_hub(where), device=device, model_class=model_class, **overrides)


def check_model_name(name_or_path):
    """What a model argument names, decided without loading anything: an existing file or
    directory (a ``Path``), or a hub repository id (a ``str``; variant names map to their released
    checkpoint's). Raises CheckpointError for a name that is none of these."""
    path = Path(name_or_path)
    if path.is_dir() or path.is_file():
        return path
    name = str(name_or_path)
    looks_like_path = (
        path.suffix in (".pth", ".pt", ".bin", ".safetensors", ".ckpt")
        or name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1
    )
    if looks_like_path:
        raise CheckpointError(f"checkpoint not found: {name}")
    try:
        variant = get_variant(name)
    except KeyError:
        if "/" in name and all(name.split("/")):
            return name
        raise CheckpointError(
            f"{name!r} is neither an existing file or directory, a hub id (owner/name), a "
            f"released variant name (yolos-ti, yolos-s, yolos-s-300, yolos-s-dwr, yolos-b) nor "
            f"'bundled' (the micro model shipped in the package)"
        ) from None
    if variant.hub_id is None:
        raise CheckpointError(
            f"variant {name!r} has no released checkpoint; yolos.create_model({name!r}) "
            f"builds it with random weights"
        )
    return variant.hub_id


# ----------------------------------------------------------------------------- files
def _model_from_original(state: dict, path: Path, device, overrides: dict, model_class=YOLOS) -> YOLOS | None:
    """The model for an original hustvl/YOLOS state dict, None for other key sets; transformers
    keys without their config.json are refused here (the config can't be inferred)."""
    if is_original_state_dict(state):
        return model_from_original_state_dict(state, path, device=device, model_class=model_class, **overrides)
    if any(k.startswith("vit.") for k in state):
        raise CheckpointError(
            f"{path} holds transformers weights but no config: pass the directory that has "
            f"its config.json beside it instead of the file"
        )
    return None


def load_file(path: Path, device="cpu", *, model_class=YOLOS, **overrides) -> YOLOS:
    """A single file: native ``.safetensors``, or an original ``.pth`` / ``.safetensors``."""
    if sniff_format(path) == "safetensors":  # by content, whatever the name says
        metadata = read_safetensors_metadata(path)
        if CONFIG_KEY in metadata:
            return load_native(path, device=device, model_class=model_class, **overrides)
        state, _ = load_safetensors(path)
        model = _model_from_original(state, path, device, overrides, model_class)
        if model is not None:
            return model
        config_from_metadata(metadata, path)  # raises, explaining what is accepted
    state = unwrap_state_dict(load_pickle(path), path)
    model = _model_from_original(state, path, device, overrides, model_class)
    if model is not None:
        return model
    if "blocks.0.attn.qkv.weight" in state and "det_tokens" not in state:
        raise CheckpointError(
            f"{path} looks like an ImageNet ViT/DeiT classifier, not a detector: build the "
            f"model with yolos.create_model(...) and call "
            f"yolos.checkpoint.load_imagenet_backbone(model, path)"
        )
    raise CheckpointError(
        f"{path}: unrecognized checkpoint keys (e.g. {sorted(state)[:3]}); expected an original "
        f"hustvl/YOLOS .pth ('backbone.*'), a transformers directory or a YOLOS.save() file"
    )


def load_hf_directory(directory, device="cpu", *, model_class=YOLOS, **overrides) -> YOLOS:
    """transformers' ``save_pretrained`` layout (also what the hub serves)."""
    directory = Path(directory)
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise CheckpointError(
            f"{directory} has no config.json: not a transformers YOLOS directory (a single "
            f"checkpoint file can be passed directly)"
        )
    try:
        hf = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise CheckpointError(f"cannot read {config_file}: {e}") from None
    if not isinstance(hf, dict):
        raise CheckpointError(f"{config_file}: must hold a JSON object, got {type(hf).__name__}")
    if hf.get("model_type", "yolos") != "yolos":
        raise CheckpointError(f"{config_file}: model_type is {hf.get('model_type')!r}, not 'yolos'")
    try:
        config = config_from_hf(hf)
        config = config.replace(**{"variant": infer_variant_name(config), **overrides})
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{config_file}: {e}") from None

    weights, state = _read_hf_weights(directory)
    try:
        ours = hf_to_ours(state)
    except KeyError as e:
        raise CheckpointError(f"{weights}: {e.args[0]}") from None
    model = empty_model(config, model_class)
    load_strict(model, ours, weights)
    return model.to(device).eval()


def _read_hf_weights(directory: Path):
    single = directory / "model.safetensors"
    if single.is_file():
        return single, load_safetensors(single)[0]
    index = directory / "model.safetensors.index.json"
    if index.is_file():  # sharded save_pretrained output
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise CheckpointError(f"cannot read {index}: {e}") from None
        outside = [s for s in shards if not isinstance(s, str) or Path(s).name != s or s in ("", ".", "..")]
        if outside:
            raise CheckpointError(f"{index}: shard {outside[0]!r} is not a file name in {directory} (an index may "
                                  f"only name files beside it)")
        state = {}
        for shard in shards:
            state.update(load_safetensors(directory / shard)[0])
        return index, state
    pickled = directory / "pytorch_model.bin"
    if pickled.is_file():
        return pickled, unwrap_state_dict(load_pickle(pickled), pickled)
    raise CheckpointError(
        f"{directory} has a config.json but no weights (model.safetensors or pytorch_model.bin)"
    )


# ------------------------------------------------------------------------------- hub
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy")


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the hub's host opens within ``timeout`` seconds. Without this
    probe huggingface_hub retries an unreachable hub for ~25 s before giving up. Behind a proxy
    (a proxy variable is set) the probe would say nothing, so the hub is assumed reachable and
    huggingface_hub decides; ``HF_HUB_OFFLINE`` is huggingface_hub's own switch."""
    import os
    import socket
    from urllib.parse import urlparse

    if any(os.environ.get(v) for v in PROXY_VARIABLES):
        return True
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def download_from_hub(repo_id: str) -> Path:
    """Fetch ``config.json`` and the weights of ``repo_id`` into the huggingface_hub cache
    (a cached copy is used offline) and return the snapshot directory."""
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import (
            EntryNotFoundError,
            HfHubHTTPError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
        )
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        raise CheckpointError(
            f"downloading {repo_id!r} needs huggingface_hub (pip install huggingface_hub)"
        ) from None

    def unreachable(err) -> CheckpointError:
        return CheckpointError(
            f"could not reach the Hugging Face hub for {repo_id!r} and it is not in the local "
            f"cache ({type(err).__name__}). Download it on a connected machine with "
            f"`hf download {repo_id} --local-dir DIR` (huggingface_hub's command line), copy DIR here and name "
            f"DIR instead: yolos.from_pretrained(\"DIR\"), `--model DIR`, or `yolos train --init DIR`"
        )

    offline = not hub_reachable()  # then only the local cache is asked, at once
    try:
        config = Path(hf_hub_download(repo_id, "config.json", local_files_only=offline))
    except RepositoryNotFoundError:
        raise CheckpointError(f"no hub repository {repo_id!r} (or it is private/gated)") from None
    except LocalEntryNotFoundError as e:  # offline, or no connection and nothing cached
        raise unreachable(e) from None
    except EntryNotFoundError:
        raise CheckpointError(f"hub repository {repo_id!r} has no config.json") from None
    except (HfHubHTTPError, OSError) as e:
        raise unreachable(e) from None

    first_error = None
    for filename in HF_WEIGHT_FILES:
        try:
            hf_hub_download(repo_id, filename, local_files_only=offline)
            return config.parent
        except LocalEntryNotFoundError as e:
            first_error = first_error or e
        except EntryNotFoundError:
            continue
        except (HfHubHTTPError, OSError) as e:
            first_error = first_error or e
    if first_error is not None:
        raise unreachable(first_error)
    raise CheckpointError(f"hub repository {repo_id!r} has neither of {HF_WEIGHT_FILES}")


__all__ = ["from_pretrained", "check_model_name", "load_file", "load_hf_directory", "download_from_hub"]
