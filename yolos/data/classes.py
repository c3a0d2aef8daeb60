"""A model's classes beside a dataset's: matched by name, never by position.

A model labels its outputs ``0..C-1`` and knows each label's name (and the category id of the
dataset it was trained on); a dataset numbers its categories its own way (VOC by sorted name,
COCO exports however the tool did, YOLO by ``names`` order). Comparing the two by id silently
scores a circle as a square whenever two datasets number the same classes differently, so every
command that puts a model beside a dataset (``yolos val``, ``yolos train --init``, a train split
beside its val split) goes through :func:`match_classes`:

* names are compared after :func:`name_key` (case, spaces, ``_`` and ``-`` do not matter:
  ``Traffic_Light`` is ``traffic light``);
* ``class_map`` pairs ``MODEL=DATA`` first (synonyms; several model classes may name one dataset
  class, which merges them); every other class is matched by name;
* a model without class names is matched by category id, and says so;
* no class in common is an error that shows both lists.

The result, :class:`ClassMatch`, maps model labels to the dataset's category ids and says in one
line what it did (:meth:`ClassMatch.summary`): nothing when the two agree already.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..errors import DatasetError
from .check import RawSplit

MAX_MAP_BYTES = 1 << 20


def name_key(name: str) -> str:
    """The form in which two class names are compared: case-folded, ``_``/``-``/spaces as one space."""
    return re.sub(r"[\s_\-]+", " ", str(name)).strip().casefold()


def model_classes(config) -> dict[int, str]:
    """``label -> name`` of the labels of a ModelConfig that have a name (COCO's unused "N/A"
    ids and labels named by their number only are left out)."""
    names = config.class_names or {}
    return {label: str(name) for label, name in sorted(names.items())
            if 0 <= label < config.num_classes and name not in ("N/A", "") and str(name) != str(label)}


def parse_class_map(value, option: str = "--class-map") -> dict[str, str]:
    """``{model class: dataset class}`` from ``"a=b,c=d"``, a YAML file of that mapping, or a dict.
    A ValueError names the option and the bad entry."""
    if value is None or value == "" or value == {}:
        return {}
    if isinstance(value, dict):
        pairs = list(value.items())
    else:
        text = str(value)
        path = Path(text)
        if "=" not in text and path.suffix.lower() in (".yaml", ".yml", ".json"):
            pairs = list(_read_map_file(path, option).items())
        else:
            pairs = []
            for item in text.split(","):
                if not item.strip():
                    continue
                model, sep, data = item.partition("=")
                if not sep or not model.strip() or not data.strip():
                    raise ValueError(f"{option}: expected MODEL=DATA pairs separated by commas (or a YAML file), "
                                     f"got {item.strip()!r}")
                pairs.append((model, data))
    out: dict[str, str] = {}
    for model, data in pairs:
        if not isinstance(model, (str, int)) or not isinstance(data, (str, int)) or isinstance(data, bool):
            raise ValueError(f"{option}: class names must be text, got {model!r}: {data!r}")
        model, data = str(model).strip(), str(data).strip()
        if name_key(model) in {name_key(k) for k in out}:
            raise ValueError(f"{option}: model class {model!r} is mapped twice (a model class names one dataset class)")
        out[model] = data
    return out


def _read_map_file(path: Path, option: str) -> dict:
    try:
        if path.stat().st_size > MAX_MAP_BYTES:
            raise ValueError(f"{option}: {path} is larger than {MAX_MAP_BYTES >> 20} MB")
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{option}: {path} not found") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError) as e:
        raise ValueError(f"{option}: cannot read {path} ({type(e).__name__})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{option}: {path} must map model class names to dataset class names")
    return data


@dataclass(frozen=True)
class ClassMatch:
    """Model labels beside dataset categories (see the module doc).

    ``label_to_category``: model label -> the dataset category id it predicts (labels absent: no
    dataset class); ``model_names``: label -> name; ``data_names``: category id -> name;
    ``how``: "names" or "ids"; ``by_hand``: the ``class_map`` pairs that were used."""

    label_to_category: dict
    model_names: dict
    data_names: dict
    how: str
    by_hand: tuple = ()
    model_ids: dict | None = None  # label -> the category id the model was trained with

    @property
    def compared(self) -> list[int]:
        """Dataset category ids that some model label predicts."""
        return sorted(set(self.label_to_category.values()))

    @property
    def missing(self) -> list[int]:
        """Dataset category ids no model label predicts (not comparable)."""
        mapped = set(self.label_to_category.values())
        return [c for c in self.data_names if c not in mapped]

    @property
    def unused(self) -> list[int]:
        """Model labels with no dataset class."""
        return [label for label in self.model_names if label not in self.label_to_category]

    @property
    def same_ids(self) -> bool:
        """Every mapped label keeps the category id the model was trained with."""
        ids = self.model_ids or {}
        return all(ids.get(label, label) == cat for label, cat in self.label_to_category.items())

    def category_ids(self, num_classes: int) -> list[int | None]:
        """The dataset category of each model label ``0..num_classes-1`` (None: none)."""
        return [self.label_to_category.get(i) for i in range(num_classes)]

    def rows_for(self, category_ids: list[int]) -> list[int | None]:
        """For each dataset category (in the order given), the model label that predicts it
        (the first, when several were merged into it), or None: the class head rows a
        fine-tuned model keeps."""
        first: dict[int, int] = {}
        for label, cat in sorted(self.label_to_category.items()):
            first.setdefault(cat, label)
        return [first.get(c) for c in category_ids]

    def summary(self, what: str = "the model") -> str | None:
        """One line on what the match did, or None when the classes line up as they are."""
        parts = []
        if self.how in ("ids", "position"):
            rule = "category ids" if self.how == "ids" else "categories in id order"
            parts.append(f"{what} has no class names: its labels are matched with the dataset's {rule}")
        elif not self.same_ids:
            moved = [f"{self.model_names[label]} {self._model_id(label)}->{cat}"
                     for label, cat in sorted(self.label_to_category.items()) if self._model_id(label) != cat]
            parts.append("classes matched by name (the dataset numbers them differently): " + ", ".join(moved[:8])
                         + (f", ... ({len(moved)} in all)" if len(moved) > 8 else ""))
        if self.by_hand:
            parts.append("mapped by hand: " + ", ".join(f"{m}={d}" for m, d in self.by_hand))
        if self.missing:
            parts.append(f"not among {what}'s classes: {_names(self.missing, self.data_names)}")
        if self.unused and self.how == "names":
            parts.append(f"{what}'s classes not in the dataset: {_names(self.unused, self.model_names)}")
        return "; ".join(parts) or None

    def _model_id(self, label: int) -> int:
        return (self.model_ids or {}).get(label, label)


def _names(keys, names: dict, limit: int = 12) -> str:
    shown = [names[k] for k in keys[:limit]]
    return ", ".join(shown) + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def match_classes(model_names: dict[int, str], categories: list[dict], class_map=None,
                  model_ids: dict[int, int] | None = None, what: str = "the model",
                  source: str = "the dataset", num_labels: int | None = None,
                  allow_disjoint: bool = False) -> ClassMatch:
    """Match model labels (``label -> name``; empty when the model has none) with a dataset's
    ``categories`` (``[{"id", "name"}]``). ``class_map``: ``{model name: dataset name}`` pairs
    applied first (:func:`parse_class_map`). ``model_ids``: ``label -> category id`` the model
    was trained with, for the id fallback and the summary; ``num_labels``: the model's label
    count (a model with neither names nor ids is matched by position, when the counts agree).
    Raises DatasetError when nothing can be compared (unless ``allow_disjoint``: fine-tuning
    to new classes), a mapped name does not exist, or a name is ambiguous."""
    data_names = {c["id"]: str(c["name"]) for c in categories}
    model_ids = dict(model_ids or {})
    if not model_names:  # nothing to compare by name: ids (or, without ids, position) are all there is
        return _match_without_names(model_ids, data_names, num_labels, what, source)
    data_by_key = _unique_keys(data_names, f"{source}: class", "the dataset")
    model_by_key = _unique_keys(model_names, f"{what}: class", what)
    mapping: dict[int, int] = {}
    by_hand = []
    for model_name, data_name in (class_map or {}).items():
        label = model_by_key.get(name_key(model_name))
        cid = data_by_key.get(name_key(data_name))
        if label is None:
            raise DatasetError(f"--class-map: {model_name!r} is not one of {what}'s classes "
                               f"({', '.join(model_names.values())})")
        if cid is None:
            raise DatasetError(f"--class-map: {data_name!r} is not one of {source}'s classes "
                               f"({', '.join(data_names.values())})")
        mapping[label] = cid
        by_hand.append((model_names[label], data_names[cid]))
    for key, label in model_by_key.items():
        if label not in mapping and key in data_by_key:
            mapping[label] = data_by_key[key]
    if not mapping and not allow_disjoint:
        raise DatasetError(f"{source}: no class in common between {what}'s classes "
                           f"[{', '.join(model_names.values())}] and the dataset's "
                           f"[{', '.join(data_names.values())}]; map them with --class-map MODEL=DATA,...")
    return ClassMatch(mapping, dict(model_names), data_names, "names", tuple(by_hand),
                      model_ids=model_ids or None)


def _match_without_names(model_ids: dict, data_names: dict, num_labels, what: str, source: str) -> ClassMatch:
    if model_ids:
        mapping = {label: cid for label, cid in model_ids.items() if cid in data_names}
        how = "ids"
    elif num_labels is not None and len(data_names) == num_labels:  # written before ids were kept
        mapping, how = dict(enumerate(sorted(data_names))), "position"
        model_ids = dict(mapping)
    else:
        mapping = {cid: cid for cid in data_names if num_labels is not None and 0 <= cid < num_labels}
        how = "ids"
    if not mapping:
        raise DatasetError(f"{source}: {what} has no class names, and its labels cannot be matched with the "
                           f"dataset's category ids {sorted(data_names)[:12]}")
    names = {label: str(model_ids.get(label, label)) for label in (model_ids or mapping)}
    return ClassMatch(mapping, names, data_names, how, model_ids=model_ids or None)


def _unique_keys(names: dict, where: str, whose: str) -> dict[str, int]:
    """``name_key -> key`` of ``names``; two classes with one name are an error naming both."""
    out: dict[str, int] = {}
    for key, name in names.items():
        k = name_key(name)
        if k in out:
            raise DatasetError(f"{where} name {name!r} is used twice in {whose} ({names[out[k]]!r} id {out[k]} "
                               f"and id {key}); rename one so that classes can be told apart")
        out[k] = key
    return out


def config_match(config, categories: list[dict], class_map=None, source: str = "the dataset",
                 allow_disjoint: bool = False) -> ClassMatch:
    """:func:`match_classes` for a model's ModelConfig."""
    names = model_classes(config)
    if config.category_ids is not None or names or config.num_classes == 91:
        ids = {label: config.category_id(label) for label in range(config.num_classes)}
    else:
        ids = None  # a model written before category ids were kept: by position
    return match_classes(names, categories, class_map, model_ids=ids, source=source, num_labels=config.num_classes,
                         allow_disjoint=allow_disjoint)


def compared_split(raw: RawSplit, match: ClassMatch) -> RawSplit:
    """``raw`` with only the categories some model label predicts (and their annotations): AP
    over what can be compared. Images keep their places, so detections on them still count."""
    keep = set(match.compared)
    coco = dict(raw.coco, categories=[c for c in raw.coco["categories"] if c["id"] in keep],
                annotations=[a for a in raw.coco["annotations"] if a["category_id"] in keep])
    return dataclasses.replace(raw, coco=coco)


__all__ = ["compared_split", "ClassMatch", "match_classes", "config_match", "parse_class_map", "name_key",
           "model_classes"]
