"""The `kcaption` command line.

Each sub-command is a thin shell over a function of the package, imported only
when the command runs: `--help` is instant, and `kcaption steps` reads the
graded steps from the source without importing TensorFlow.

What a user sees:
- A mistake in what was asked (a missing or damaged file, a folder in the way,
  a bad argument) is one line on stderr, `kcaption COMMAND: error: ...`, and
  exit code 2, before any work is done. Arguments are checked by argparse (a
  number that must be positive says so, naming the argument); the rest is a
  `kcaption.errors.UsageError`, raised by the package where it knows the
  cause is the input. Any other exception is a bug and keeps its traceback:
  catching ValueError here would hide those too (see `kcaption.errors`).
  `kcaption --debug COMMAND ...` shows the traceback of a UsageError as well.
- Graded steps a command needs that are still stubs: the list of them (exit 2).
- The kit's warnings (`KcaptionWarning`) are one line each, `kcaption: warning: ...`.
- TensorFlow's C++ start-up lines are not shown (see `kcaption.quiet`);
  `--debug` or KCAPTION_TF_LOGS=1 shows them.
- `caption` exits with 1 when some of the images could not be read (each is
  named, the others are captioned), 2 when none could.
"""

import argparse
import os
import sys
import warnings


def _steps(args):
    from kcaption import steps

    print(steps.table())


def _demo(args):
    from kcaption.train import demo

    demo(model=args.model, out=args.out, epochs=args.epochs, small=args.small, force=args.force)


def _train(args):
    from kcaption.train import train

    train(
        model=args.model, data=args.data, root=args.root, epochs=args.epochs, out=args.out,
        batch_size=args.batch_size, small=args.small, force=args.force, resume=args.resume,
        **{name: getattr(args, name) for name in TRAIN_OPTIONS},
    )


def _features(args):
    from kcaption.train import build_features

    build_features(data=args.data, root=args.root, small=args.small,
                   **{name: getattr(args, name) for name in FEATURE_OPTIONS})


def _evaluate(args):
    from kcaption.train import evaluate

    evaluate(args.model_path, data=args.data, root=args.root, split=args.split, out=args.out,
             karpathy=args.karpathy, captions=args.captions, decoding=_decoding(args))


def _caption(args):
    from kcaption.train import caption_images

    captions = caption_images(args.model_path, args.images, decoding=_decoding(args), attention=args.attention)
    failed = captions.count(None)
    if failed:
        print(f"kcaption caption: {failed} of {len(captions)} images could not be read (see above).", file=sys.stderr)
        return 1
    return 0


def _compare(args):
    from kcaption.evaluation.compare import compare

    compare(args.runs, split=args.split, n=args.n, beam_width=args.beam_width, out=args.out)


def _decoding(args):
    """`Captioner.sample`'s decoding arguments from the command line, or None for greedy."""
    from kcaption.errors import InputError

    sampling = {name: getattr(args, name) for name in ("temperature", "top_k", "top_p")
                if getattr(args, name) is not None}
    if args.beam_width > 1 and sampling:
        raise InputError("--beam-width searches for the most likely caption, --temperature/--top-k/--top-p draw "
                         "a random one: pass one or the other.")
    if args.seed is not None and not sampling:
        raise InputError("--seed is for sampling (--temperature, --top-k or --top-p); greedy and beam search "
                         "are deterministic.")
    if args.length_penalty and args.beam_width == 1:
        raise InputError("--length-penalty ranks the beams of a beam search: pass --beam-width K > 1 with it.")
    if args.beam_width > 1:
        return {"beam_width": args.beam_width, "length_penalty": args.length_penalty}
    if sampling:
        return {**sampling, "seed": args.seed}
    return None


def _export_shapes(args):
    from kcaption.data.coco import export_shapes

    export_shapes(args.dir, n=args.n, split=args.split, seed=args.seed, image_size=args.image_size,
                  n_val=args.val, n_test=args.test, force=args.force)
    print(f"Wrote {args.dir}: a COCO-format folder of shapes images "
          f"(train with: kcaption train --data coco --root {args.dir}).")


def _download_coco(args):
    from kcaption.data.coco import download_coco

    download_coco(args.dir, splits=args.splits)


def _release(args):
    from kcaption.grading.release import release

    release(args.out, force=args.force)


def _solve(args):
    from kcaption.grading.solve import solve

    solve(args.out, handout=args.handout, force=args.force)


def _grade(args):
    from kcaption.grading.grade import grade
    from kcaption.grading.jail import Limits

    limits = Limits(memory_mb=args.memory_mb, processes=args.processes, disk_mb=args.disk_mb)
    grade(args.submission, out=args.out, timeout=args.timeout, workers=args.workers, limits=limits,
          hidden_visibility=args.hidden_visibility)


def _mutants(args):
    from kcaption.grading.mutants import main as mutants_main

    return mutants_main(steps=args.step, verbose=args.verbose)


def int_at_least(low):
    """An argparse type: an int >= `low`, or a message naming what was expected."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number. Received: {text!r}") from None
        if value < low:
            what = "a positive integer" if low == 1 else f"an integer >= {low}"
            raise argparse.ArgumentTypeError(f"must be {what}. Received: {value}")
        return value

    return parse


positive_int = int_at_least(1)


def number_where(check, expected):
    """An argparse type: a number for which `check` holds, or a message saying what was `expected`."""

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number. Received: {text!r}") from None
        if not check(value):
            raise argparse.ArgumentTypeError(f"must be {expected}. Received: {text}")
        return value

    return parse


positive_float = number_where(lambda value: value > 0, "a positive number")
non_negative_float = number_where(lambda value: value >= 0, ">= 0")
fraction = number_where(lambda value: 0 < value <= 1, "in (0, 1]")


TRAIN_OPTIONS = ("karpathy", "backbone", "weights", "image_size", "features", "precision", "strategy",
                 "learning_rate", "min_count", "num_layers", "inject", "manual_backward", "monitor", "patience")
FEATURE_OPTIONS = ("karpathy", "backbone", "weights", "image_size", "features")


def data_arguments(p, data="shapes"):
    """The arguments that say which images a run reads, and through which backbone."""
    p.add_argument("--data", choices=["shapes", "coco"], default=data, help=f"the dataset (default: {data})")
    p.add_argument("--root", default=None, help="the COCO folder (with --data coco; see download-coco)")
    p.add_argument("--karpathy", default=None,
                   help="the Karpathy split file (default: ROOT/dataset_coco.json when it is there, else the "
                        "official train2014/val2014)")
    p.add_argument("--backbone", default=None,
                   choices=["small_cnn", "mobilenet_v3_small", "efficientnet_b0", "resnet50"],
                   help="the image encoder (default: small_cnn on shapes, trained with the decoder; "
                        "efficientnet_b0 on COCO, frozen)")
    p.add_argument("--weights", choices=["imagenet", "none"], default=None,
                   help="a backbone's weights: imagenet, or none = random and frozen, for offline tests "
                        "(default: imagenet)")
    p.add_argument("--image-size", type=int_at_least(32), default=None,
                   help="image side in pixels (default: 64 for small_cnn, 224 for a backbone)")
    p.add_argument("--features", default=None,
                   help="the feature cache folder of a frozen backbone (default: ROOT/features); "
                        "none = train on the images")


def decoding_arguments(p):
    """How captions are decoded: greedy (the default), beam search, or sampling."""
    p.add_argument("--beam-width", type=positive_int, default=1,
                   help="beam search with this many beams (default: 1, greedy)")
    p.add_argument("--length-penalty", type=non_negative_float, default=0.0,
                   help="beam search: rank beams by log-probability / ((5 + length) / 6) ** ALPHA, GNMT's "
                        "penalty; 0 ranks by log-probability, which favours short captions (default: 0)")
    p.add_argument("--temperature", type=positive_float, default=None,
                   help="sample each word from softmax(logits / T) instead of taking the most likely one")
    p.add_argument("--top-k", type=positive_int, default=None, help="sample among the K most likely words only")
    p.add_argument("--top-p", type=fraction, default=None,
                   help="sample among the most likely words whose probabilities add up to P (nucleus sampling)")
    p.add_argument("--seed", type=int_at_least(0), default=None,
                   help="the random seed of sampling: the same seed gives the same captions (default: a new one)")


class _Parser(argparse.ArgumentParser):
    """argparse, with a refused argument reported on one line (not the whole usage first)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks and TensorFlow's start-up lines")
    parser = _Parser(
        prog="kcaption",
        description="Build an image captioner from scratch in Keras 3, then train it for real.",
        epilog="Run `kcaption COMMAND --help` for a command's arguments.",
    )
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of any error, and TensorFlow's C++ start-up lines")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, help, func, tensorflow=True):
        p = sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".", parents=[common])
        p.set_defaults(func=func, tensorflow=tensorflow)
        return p

    command("steps", "list the graded steps and whether each is implemented", _steps, tensorflow=False)

    models = ["rnn", "lstm", "attn", "transformer"]
    p = command("demo", "train a captioner on the built-in shapes data and show it", _demo)
    p.add_argument("--model", choices=models, default="lstm", help="the captioner (default: lstm)")
    p.add_argument("--out", default="runs/demo", help="the run folder to write, new or empty (default: runs/demo)")
    p.add_argument("--force", action="store_true", help="replace the run already in --out")
    p.add_argument("--epochs", type=positive_int, default=None, help="training epochs (default: the model's preset)")
    p.add_argument("--small", action="store_true", help="a tiny, fast run (for CI and checks)")

    p = command("train", "train a captioner on shapes or a COCO folder", _train)
    p.add_argument("--model", choices=models, default="lstm", help="the captioner (default: lstm)")
    data_arguments(p)
    p.add_argument("--precision", choices=["float32", "mixed_float16", "mixed_bfloat16"], default="float32",
                   help="Keras mixed precision: mixed_float16 on GPUs (with loss scaling), mixed_bfloat16 on "
                        "TPUs/recent CPUs (default: float32)")
    p.add_argument("--strategy", choices=["default", "mirrored", "multiworker"], default="default",
                   help="tf.distribute: mirrored = all of this host's GPUs, multiworker = several hosts, "
                        "configured by TF_CONFIG (see the README's GPU recipe) (default: one device)")
    p.add_argument("--epochs", type=positive_int, default=None, help="training epochs (default: the model's preset)")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="images per batch, each with 5 captions (default: 32 on shapes, 64 on COCO)")
    p.add_argument("--learning-rate", type=positive_float, default=None,
                   help="peak learning rate (default: the model's preset; COCO: warm-up then cosine decay)")
    p.add_argument("--min-count", type=positive_int, default=None,
                   help="words seen fewer times become <UNK> (default: 1 on shapes, 5 on COCO)")
    p.add_argument("--num-layers", type=positive_int, default=1, help="stacked recurrent layers (rnn, lstm; default: 1)")
    p.add_argument("--inject", choices=["init", "pre"], default="init",
                   help="where the image enters an rnn/lstm: init = its first state (CS231n), pre = its first "
                        "input word (Show and Tell) (default: init)")
    p.add_argument("--manual-backward", action="store_true",
                   help="backpropagate with your lesson-08 backward steps (rnn, lstm): the word embedding, the "
                        "cells and the loss; autodiff for the rest")
    p.add_argument("--monitor", choices=["val_loss", "val_cider"], default="val_loss",
                   help="what best.keras and --patience go by (default: val_loss)")
    p.add_argument("--patience", type=positive_int, default=None,
                   help="stop after this many epochs without improvement (default: never)")
    p.add_argument("--out", default="runs/train", help="the run folder to write, new or empty (default: runs/train)")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted run in --out from its last checkpoint, with its settings")
    p.add_argument("--force", action="store_true", help="replace the run already in --out")
    p.add_argument("--small", action="store_true", help="a tiny, fast run (for CI and checks)")

    p = command("features", "run a frozen backbone once over a COCO folder's images and cache its features "
                "(resumable; `train` does it when needed)", _features)
    data_arguments(p, data="coco")
    p.add_argument("--small", action="store_true", help="only the images a --small training run uses")

    p = command("evaluate", "score a saved model on a held-out split as papers do (BLEU-1..4, METEOR, ROUGE-L, "
                "CIDEr-D) and write the COCO results file", _evaluate)
    p.add_argument("model_path", help="a model.keras written by `kcaption train` (vocab.json beside it)")
    p.add_argument("--data", choices=["shapes", "coco", "folder"], default="shapes",
                   help="the dataset: shapes, coco, or folder = any COCO-format folder, a captions JSON and its "
                        "images, e.g. an outside test set (default: shapes)")
    p.add_argument("--root", default=None, help="the COCO folder (--data coco) or the folder (--data folder)")
    p.add_argument("--captions", default=None,
                   help="--data folder: its captions file (default: the one .json file in ROOT or ROOT/annotations)")
    p.add_argument("--karpathy", default=None, help="the Karpathy split file (default: ROOT/dataset_coco.json)")
    p.add_argument("--split", default=None,
                   help="the split to score: train, val or test for shapes (default: test; `train` and `demo` "
                        "report val); for coco a Karpathy split (test, val, ...; default: test) or an official "
                        "one (val2014: the default without the Karpathy file)")
    p.add_argument("--out", default=None,
                   help="the folder for metrics.json and results.json (default: eval-DATA-SPLIT/ beside the model, "
                        "with -beamK or -sampled when not greedy)")
    decoding_arguments(p)

    p = command("caption", "caption image files with a saved model (greedy, beam search or sampling)", _caption)
    p.add_argument("model_path", help="a model.keras written by `kcaption train` (vocab.json beside it)")
    p.add_argument("images", nargs="+", help="image files (JPEG, PNG, GIF, BMP, WebP)")
    decoding_arguments(p)
    p.add_argument("--attention", default=None, metavar="OUT.png",
                   help="attn and transformer models: draw where the model looked for each word of the first "
                        "image's caption")

    p = command("compare", "score and time several trained models on the same held-out shapes images: one "
                "table and one picture", _compare)
    p.add_argument("runs", nargs="+", help="run folders written by `kcaption train` (or their model.keras)")
    p.add_argument("--split", choices=["train", "val", "test"], default="test",
                   help="the shapes split (default: test)")
    p.add_argument("--n", type=positive_int, default=200, help="images scored (default: 200)")
    p.add_argument("--beam-width", type=int_at_least(2), default=3, help="k of the beam-search columns (default: 3)")
    p.add_argument("--out", default=None,
                   help="the folder for comparison.json and comparison.png (default: comparison/ beside the "
                        "first run's folder)")

    p = command("export-shapes", "write shapes images as a COCO-format folder (train2014, val2014 and the "
                "Karpathy split file), to run the COCO path offline", _export_shapes)
    p.add_argument("dir", help="the folder to write (DIR/train2014/, DIR/val2014/, DIR/annotations/, "
                               "DIR/dataset_coco.json)")
    p.add_argument("--n", type=positive_int, default=100, help="training images (default: 100)")
    p.add_argument("--val", type=int_at_least(1), default=None, help="Karpathy val images (default: n / 5)")
    p.add_argument("--test", type=int_at_least(0), default=None, help="Karpathy test images (default: as --val)")
    p.add_argument("--split", default=None,
                   help="write only this one split, e.g. val2014, with n images and no Karpathy file")
    p.add_argument("--force", action="store_true", help="overwrite a COCO folder already in DIR")
    p.add_argument("--seed", type=int_at_least(0), default=0, help="the random seed (default: 0)")
    p.add_argument("--image-size", type=int_at_least(32), default=64, help="image side in pixels, >= 32 (default: 64)")

    p = command("download-coco", "download COCO 2014 captions and images (resumable)", _download_coco)
    p.add_argument("dir", help="the COCO folder to fill")
    p.add_argument("--splits", nargs="+", choices=["train2014", "val2014", "test2014"],
                   default=["train2014", "val2014"], help="image splits (default: train2014 val2014)")

    p = command("release", "write the student handout and the autograder bundle", _release)
    p.add_argument("out", help="the folder to write (OUT/student/, OUT/autograder/)")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")

    p = command("solve", "write a solved copy of the student handout (instructors only: it holds the solutions)",
                _solve)
    p.add_argument("out", help="the folder to write")
    p.add_argument("--handout", default=None,
                   help="a released handout's student/ folder to solve (default: release this kit's handout first)")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")

    p = command("grade", "grade a submission (folder or zip) into results.json", _grade)
    p.add_argument("submission", help="the student's kcaption/ folder, or a .zip of it")
    p.add_argument("--out", default="results.json", help="the results file to write (default: results.json)")
    p.add_argument("--timeout", type=positive_float, default=300.0, help="seconds per graded step (default: 300)")
    p.add_argument("--workers", type=positive_int, default=None,
                   help="steps graded at once (default: as the CPUs and memory allow, at most 4)")
    p.add_argument("--memory-mb", type=positive_int, default=3000, help="memory of one step's sandbox (default: 3000)")
    p.add_argument("--processes", type=positive_int, default=32, help="processes of one step's sandbox (default: 32)")
    p.add_argument("--disk-mb", type=positive_int, default=256,
                   help="bytes one step's sandbox may write (default: 256 MB)")
    p.add_argument("--hidden-visibility", default="after_published",
                   choices=["after_published", "visible", "hidden", "after_due_date"],
                   help="when students see hidden tests' pass/fail (default: after_published)")

    p = command("mutants", "mutation-test the graders against a catalog of bugs", _mutants)
    p.add_argument("--step", action="append", default=None, help="only this step (repeatable)")
    p.add_argument("--verbose", action="store_true", help="print every mutant and variant")
    return parser


def main(argv=None):
    """Run `kcaption ARGV`; returns the exit code (0: done, 1: partly done, 2: a user mistake)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit:  # --help (0), or an argument argparse refused (2, the reason printed)
        return exit.code
    from kcaption.errors import KcaptionWarning, UsageError
    from kcaption.grading.grade import GraderSetupError
    from kcaption.quiet import quiet_tensorflow
    from kcaption.steps import StepsNotImplemented

    if args.tensorflow and not args.debug:
        quiet_tensorflow()
    default_format = warnings.formatwarning

    def one_line(message, category, *where, **kwargs):
        if issubclass(category, KcaptionWarning):
            return f"kcaption: warning: {message}\n"
        return default_format(message, category, *where, **kwargs)

    warnings.formatwarning = one_line
    try:
        return args.func(args) or 0
    except UsageError as error:
        if args.debug:
            raise
        print(f"kcaption {args.command}: error: {error}", file=sys.stderr)
        return 2
    except (StepsNotImplemented, GraderSetupError) as error:
        if args.debug:
            raise
        print(error, file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        print(f"kcaption {args.command}: {interrupt or 'interrupted.'}", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = default_format


def entry():
    """The `kcaption` script: `main`, then exit. After Ctrl-C it exits at once, without the interpreter's
    teardown: TensorFlow's threads, stopped mid-step, have crashed it there (SIGSEGV, `free(): invalid next size`)."""
    code = main()
    if code == 130:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
