"""Training step: forward + set loss + backward, yolos (YOLOS + SetCriterion) vs transformers'
YolosForObjectDetection with its own loss (``labels=``), identical weights and batch, same process,
alternating, medians. Also checks that the two losses agree.

With ``--autocast``: our training step (``yolos.train.engine.accumulate_gradients``: forward, set
loss with matching, backward) in fp32 against bf16 autocast, the two timings the recipes' bf16
choice (``yolos.train.autocast``) makes at the start of a run. With ``--det-tokens``: our fp32
step at each count of [DET] tokens (what ``--num-det-tokens`` saves a fine-tune). With ``--freeze``:
our fp32 step with the embeddings and each count of first blocks frozen (``--freeze``), at the
bundled model's 36 [DET] tokens. With ``--eager-attention``: our fp32 step (AdamW's update included,
36 [DET] tokens) with SDPA's attention, as training runs, against the eager products
(``kernels._eager``: scores, softmax, product; autograd keeps the S x S probabilities), the
per-CPU choice inference makes in bf16 and training does not.

    python -m benchmarks.train_step [--cases ti micro] [--repeats 5]
    python -m benchmarks.train_step --autocast --cases ti micro-b32 --repeats 7
    python -m benchmarks.train_step --det-tokens 36 24 16 --cases micro-b32 --repeats 9
    python -m benchmarks.train_step --freeze 0 1 2 --cases micro-b16 --repeats 9
    python -m benchmarks.train_step --eager-attention --cases micro-b16 micro-b32 ti --repeats 9
"""
from __future__ import annotations

import argparse

import torch

from benchmarks.common import environment, model_pair, table, time_alternating

CASES = {
    "ti": ("yolos-ti", 512, 672, 2),
    "micro": ("micro", 128, 128, 8),
    "micro-b16": ("micro", 128, 128, 16),
    "micro-b32": ("micro", 128, 128, 32),  # the fine-tune benchmark's step
}


def make_targets(batch: int, num_classes: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    targets = []
    for _ in range(batch):
        n = int(torch.randint(1, 8, (1,), generator=g))
        cxcy = torch.rand(n, 2, generator=g) * 0.6 + 0.2
        wh = torch.rand(n, 2, generator=g) * 0.3 + 0.05
        targets.append({"labels": torch.randint(0, num_classes, (n,), generator=g),
                        "boxes": torch.cat([cxcy, wh], 1)})
    return targets


def run_case(key, repeats):
    from yolos.train.criterion import SetCriterion

    variant, h, w, batch = CASES[key]
    ours, theirs = model_pair(variant, "sdpa")
    ours.train()
    theirs.train()
    criterion = SetCriterion(ours.config.num_classes)
    x = torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(1))
    targets = make_targets(batch, ours.config.num_classes)
    hf_labels = [{"class_labels": t["labels"], "boxes": t["boxes"]} for t in targets]

    def step_ours():
        ours.zero_grad(set_to_none=True)
        loss = criterion(ours(x), targets)["loss"]
        loss.backward()
        return loss.item()

    def step_theirs(mode):
        def call():
            theirs.set_attn_implementation(mode)
            theirs.zero_grad(set_to_none=True)
            loss = theirs(pixel_values=x, labels=hf_labels).loss
            loss.backward()
            return loss.item()
        return call

    losses = {"ours": step_ours(), "hf": step_theirs("sdpa")()}
    grad_diff = max(
        (a.grad - b.grad).abs().max().item()
        for a, b in [(ours.blocks[0].mlp.fc1.weight, theirs.vit.encoder.layer[0].intermediate.dense.weight)]
    )
    times = time_alternating(
        {"ours": step_ours, "hf-sdpa": step_theirs("sdpa"), "hf-eager": step_theirs("eager")},
        repeats=repeats, warmup=1,
    )
    return f"{variant} {h}x{w} b{batch}", times, losses, grad_diff


def our_step(model, group, bf16=False, update=False):
    """One call of our training step (``accumulate_gradients``: forward, set loss with matching,
    backward; with ``update`` also AdamW's step) of ``model`` on ``group`` ([(pixels, targets)]),
    fp32 or under bf16 autocast."""
    from yolos.train.criterion import SetCriterion
    from yolos.train.engine import StepParts, accumulate_gradients
    from yolos.train.matcher import HungarianMatcher
    from yolos.train.optim import LRSchedule, build_optimizer

    criterion = SetCriterion(model.config.num_classes, HungarianMatcher(cost_class=1, cost_bbox=5, cost_giou=2))
    optimizer = build_optimizer(model, lr=1e-4, weight_decay=1e-4)
    parts = StepParts(model, criterion, optimizer, LRSchedule(1e-4, 1, 1e-7, 0, 1e-6, 0), torch.device("cpu"),
                      bf16=bf16)

    def call():
        optimizer.zero_grad(set_to_none=True)
        accumulate_gradients(parts, group, "benchmark", (0, 0, 0))
        if update:
            optimizer.step()
    return call


def _case_inputs(key):
    variant, h, w, batch = CASES[key]
    x = torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(1))
    return variant, f"{variant} {h}x{w} b{batch}", x, batch


def autocast_case(key, repeats):
    """Median seconds of our training step in fp32 and under bf16 autocast, alternating."""
    from yolos import create_model

    variant, case, x, batch = _case_inputs(key)
    model = create_model(variant).train()
    group = [(x, make_targets(batch, model.config.num_classes))]
    return case, time_alternating({"fp32": our_step(model, group, False), "bf16": our_step(model, group, True)},
                                  repeats=repeats, warmup=1)


def per_model_case(key, values, build, repeats):
    """Median seconds of our fp32 training step (AdamW's update included) of ``build(variant, v)``
    for each value ``v``, alternating."""
    variant, case, x, batch = _case_inputs(key)
    steps = {}
    for v in values:
        model = build(variant, v).train()
        steps[v] = our_step(model, [(x, make_targets(batch, model.config.num_classes))], update=True)
    return case, time_alternating(steps, repeats=repeats, warmup=1)


def with_tokens(variant, tokens):
    from yolos import create_model

    return create_model(variant, num_det_tokens=tokens)


def with_frozen_blocks(variant, blocks):
    """The bundled model's 36 [DET] tokens, the embeddings and the first ``blocks`` blocks frozen."""
    from yolos import create_model
    from yolos.train.optim import freeze_input_side

    model = create_model(variant, num_det_tokens=36)
    freeze_input_side(model, blocks)
    return model


def eager_attention_case(key, repeats):
    """Median seconds of our fp32 training step with SDPA and with the eager attention products,
    alternating (the model module's attention is swapped for the eager path's calls only)."""
    import yolos.model.vit as vit
    from yolos import create_model
    from yolos.model import kernels

    variant, case, x, batch = _case_inputs(key)
    model = (create_model(variant, num_det_tokens=36) if variant == "micro" else create_model(variant)).train()
    step = our_step(model, [(x, make_targets(batch, model.config.num_classes))], update=True)

    def eager(q, k, v, mask=None):
        return kernels.attention(q, k, v, mask) if mask is not None else kernels._eager(q, k, v)

    def with_attention(attend):
        def call():
            before, vit.attend = vit.attend, attend
            try:
                return step()
            finally:
                vit.attend = before
        return call
    return case, time_alternating({"sdpa": with_attention(kernels.attention), "eager": with_attention(eager)},
                                  repeats=repeats, warmup=1)


def two_way_table(cases, case_fn, repeats, names, headers, speed_up):
    """A table of ``case_fn(key, repeats) -> (case, {name: seconds})`` for each case: both times and
    the second's time over the first's (or, with ``speed_up``, the first's over the second's)."""
    rows = []
    for key in cases:
        case, t = case_fn(key, repeats)
        first, second = (t[n] for n in names)
        rows.append([case, f"{first:.3f}", f"{second:.3f}", f"{first / second if speed_up else second / first:.2f}x"])
    return table(rows, ["case", *headers])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--autocast", action="store_true", help="our step in fp32 against bf16 autocast")
    ap.add_argument("--det-tokens", type=int, nargs="+", metavar="T",
                    help="our fp32 step with each of these counts of [DET] tokens (--num-det-tokens)")
    ap.add_argument("--freeze", type=int, nargs="+", metavar="N",
                    help="our fp32 step with the embeddings and the first N blocks frozen, for each N (--freeze)")
    ap.add_argument("--eager-attention", action="store_true",
                    help="our fp32 step with SDPA's attention against the eager products")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(environment())
    rows = []
    for values, build, name in ((args.det_tokens, with_tokens, "[DET] tokens"),
                                (args.freeze, with_frozen_blocks, "frozen blocks")):
        if values:
            for key in args.cases:
                case, t = per_model_case(key, values, build, args.repeats)
                rows += [[case, v, f"{t[v]:.3f}", f"{t[v] / t[values[0]]:.2f}x"] for v in values]
            print(table(rows, ["case", name, "s/step", f"vs {values[0]}"]))
            return
    if args.eager_attention:
        print(two_way_table(args.cases, eager_attention_case, args.repeats, ("sdpa", "eager"),
                            ["SDPA s/step", "eager s/step", "eager / SDPA"], speed_up=False))
        return
    if args.autocast:
        print(two_way_table(args.cases, autocast_case, args.repeats, ("fp32", "bf16"),
                            ["fp32 s/step", "bf16 autocast s/step", "bf16 speed-up"], speed_up=True))
        return
    for key in args.cases:
        case, t, losses, grad_diff = run_case(key, args.repeats)
        peer = min(("hf-sdpa", "hf-eager"), key=t.get)
        print(f"  {case}: {({k: round(v, 4) for k, v in t.items()})} losses {losses}", flush=True)
        rows.append([case, f"{t['ours']:.3f}", f"{t['hf-eager']:.3f}", f"{t['hf-sdpa']:.3f}",
                     f"{t[peer] / t['ours']:.2f}x vs {peer[3:]}",
                     f"{abs(losses['ours'] - losses['hf']):.1e}", f"{grad_diff:.1e}"])
    print(table(rows, ["case", "yolos s/step", "transformers eager s/step", "transformers sdpa s/step",
                       "speed-up vs faster peer", "|loss diff|", "max |grad diff| (fc1, layer 0)"]))


if __name__ == "__main__":
    main()
