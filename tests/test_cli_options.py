"""One table of the options the commands share: every command that takes a model, a device, a
size or a dataset declares it through yolos.cli.options, so its parser and --help agree with the
table (same flags, defaults and help)."""
from __future__ import annotations

import argparse

import pytest

from yolos.cli import build_parser
from yolos.cli.options import MODEL_HELP

SHARED = {  # option -> (dest, default, a phrase its help must say)
    "--model": ("model", None, MODEL_HELP),
    "--device": ("device", None, "default: cuda if available, else cpu"),
    "--short-side": ("short_side", None, "default: the model's evaluation size"),
    "--long-side": ("long_side", None, "default: the model's evaluation size"),
    "--data": ("data", None, "COCO, YOLO, Pascal VOC or LabelImg layout"),
}
TAKES = {  # command -> the shared options it takes
    "predict": {"--model", "--device", "--short-side", "--long-side"},
    "val": {"--model", "--device", "--short-side", "--long-side", "--data"},
    "analyze": {"--model", "--device", "--short-side", "--long-side", "--data"},
    "benchmark": {"--model", "--device", "--short-side", "--long-side"},
    "export": {"--model"},
    "flops": {"--model", "--short-side", "--long-side", "--data"},
    "info": {"--model"},
    "serve": {"--model", "--device"},
}
# train builds a model: its --model names the variant to build (weights come from --init), and its
# --data is the training dataset; its own options are generated from TrainConfig.


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _option(parser, flag):
    return next((a for a in parser._actions if flag in a.option_strings), None)


@pytest.mark.parametrize("command", sorted(TAKES))
def test_shared_options_mean_the_same_everywhere(command, capsys):
    parser = _subparsers()[command]
    for flag, (dest, default, phrase) in SHARED.items():
        action = _option(parser, flag)
        if flag not in TAKES[command]:
            assert action is None or command == "benchmark" and flag == "--data", f"{command} {flag}"
            continue
        assert action is not None, f"yolos {command} lacks {flag}"
        assert action.dest == dest and action.default == default, f"{command} {flag}"
        assert phrase in action.help, f"{command} {flag}: {action.help!r}"
    with pytest.raises(SystemExit) as done:
        parser.parse_args(["--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for flag in TAKES[command]:
        assert flag in text


def test_a_variant_name_means_its_released_weights_everywhere(capsys):
    """--model micro: micro has no released weights, so every command says so the same way,
    and --random-weights exists only where weights do not matter."""
    from yolos.cli import main

    for argv in (["info", "--model", "micro"], ["val", "--model", "micro", "--data", "nowhere"],
                 ["benchmark", "--model", "micro", "--images", "1"], ["export", "--model", "micro"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "no released checkpoint" in err or "nowhere" in err, (argv, err)
    parsers = _subparsers()
    assert {c for c in TAKES if _option(parsers[c], "--random-weights")} == {"benchmark", "export"}
