"""The object a user holds: the YOLOS network with the conveniences people expect of it.

:class:`Detector` is :class:`yolos.model.YOLOS` (the same module and state dict; ``model(pixel_values)``
as before) plus ``predict``, ``save``, ``save_pretrained`` and ``compile_for``, whose code lives in
the layers above the network (inference, checkpoint, export). It is what :func:`from_pretrained`
and :func:`create_model` return, so the network module itself knows nothing of them and every
import flows one way.

    import yolos
    model = yolos.from_pretrained("hustvl/yolos-small")
    model.predict("cats.jpg")[0].plot().save("cats_annotated.jpg")
"""
from __future__ import annotations

from pathlib import Path

from . import defaults
from .checkpoint.hf import save_hf_directory
from .checkpoint.loader import from_pretrained as _load
from .checkpoint.native import save_native
from .export.engines import compile_for
from .inference.predictor import predict
from .model import VARIANTS, YOLOS, get_variant


class Detector(YOLOS):
    """A YOLOS detector (see the module doc)."""

    def predict(self, images, threshold: float = defaults.THRESHOLD, **kwargs):
        """Detect objects in images (paths, PIL images, arrays or tensors); one
        :class:`yolos.Detections` per image. See :func:`yolos.inference.predictor.predict`."""
        return predict(self, images, threshold=threshold, **kwargs)

    def save(self, path, overwrite: bool = False) -> None:
        """Write the project's single-file format (safetensors with the config inside); an existing
        file is refused unless ``overwrite``."""
        save_native(self, path, overwrite=overwrite)

    def save_pretrained(self, directory, overwrite: bool = False):
        """Write ``directory`` in transformers' format (config.json, model.safetensors,
        preprocessor_config.json); a folder holding a model already is refused unless ``overwrite``."""
        return save_hf_directory(self, directory, overwrite=overwrite)

    def compile_for(self, runtime: str = "auto", dtype=None, **kwargs):
        """The network ``runtime`` runs for this model, with the same ``predict``
        (:func:`yolos.export.engines.compile_for`)."""
        return compile_for(self, runtime, dtype, **kwargs)

    @classmethod
    def from_network(cls, network: YOLOS) -> Detector:
        """A Detector holding a copy of ``network``'s weights (a model made by training, say)."""
        model = cls(network.config)
        model.load_state_dict(network.state_dict())
        first = next(network.parameters())
        return model.to(first.device).train(network.training)


def from_pretrained(name_or_path, device="cpu", **overrides) -> Detector:
    """Load a detector from a file, a folder, a hub id, a variant name or ``"bundled"``
    (:func:`yolos.checkpoint.from_pretrained`)."""
    return _load(name_or_path, device, model_class=Detector, **overrides)


def create_model(name: str = "micro", **overrides) -> Detector:
    """A randomly initialized detector of a named variant; ``overrides`` change config fields
    (``num_classes=5``, ``num_det_tokens=20``)."""
    config = get_variant(name).config
    return Detector(config.replace(**overrides) if overrides else config)


def load_model(name: str | None, random_weights: bool = False, device=None) -> tuple[Detector, str]:
    """``(model, label)`` for what a command's ``--model`` names: None is the bundled model;
    anything else goes through :func:`from_pretrained` (a file, a folder, a hub id, a variant
    name: its released weights). With ``random_weights`` the name must be a variant's, built with
    random weights (speed and FLOPs do not depend on them)."""
    if random_weights:
        if name is None:
            raise ValueError("--random-weights: name the variant with --model (" + ", ".join(VARIANTS) + ")")
        try:
            get_variant(name)
        except KeyError:
            raise ValueError(f"--random-weights: --model must be a variant name, got {name!r}") from None
        return create_model(name).to(device or "cpu").eval(), f"{name} (random weights)"
    if name is None:
        if not defaults.DEFAULT_MODEL.is_file():
            raise FileNotFoundError(f"the bundled model {defaults.DEFAULT_MODEL} is missing; pass --model")
        return from_pretrained(defaults.DEFAULT_MODEL, device=device or "cpu"), defaults.DEFAULT_MODEL.stem
    return from_pretrained(name, device=device or "cpu"), Path(str(name).rstrip("/")).name


__all__ = ["Detector", "from_pretrained", "create_model", "load_model"]
