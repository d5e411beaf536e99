"""The `kcaption` command line.

Each sub-command is a thin shell over a function of the package, imported only
when the command runs (so `kcaption steps` does not wait for TensorFlow more
than it must, and `--help` is instant).
"""

import argparse
import sys


def _steps(args):
    from kcaption import steps

    print(steps.table())


def _demo(args):
    from kcaption.train import demo

    demo(model=args.model, out=args.out, epochs=args.epochs, small=args.small)


def _train(args):
    from kcaption.train import train

    train(
        model=args.model,
        data=args.data,
        root=args.root,
        epochs=args.epochs,
        out=args.out,
        batch_size=args.batch_size,
        small=args.small,
    )


def _evaluate(args):
    from kcaption.train import evaluate

    evaluate(args.model_path, data=args.data, root=args.root, split=args.split, out=args.out)


def _caption(args):
    from kcaption.train import caption_images

    caption_images(args.model_path, args.images, beam_width=args.beam_width)


def _export_shapes(args):
    from kcaption.data.coco import export_shapes

    export_shapes(args.dir, n=args.n, split=args.split, seed=args.seed, image_size=args.image_size)


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


def build_parser():
    parser = argparse.ArgumentParser(
        prog="kcaption",
        description="Build an image captioner from scratch in Keras 3, then train it for real.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("steps", help="list the graded steps and whether each is implemented")
    p.set_defaults(func=_steps)

    models = ["rnn", "lstm", "attn", "transformer"]
    p = sub.add_parser("demo", help="train a captioner on the built-in shapes data and show it")
    p.add_argument("--model", choices=models, default="lstm")
    p.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    p.add_argument("--epochs", type=int, default=None, help="default: the model's preset")
    p.add_argument("--small", action="store_true", help="a tiny, fast run (for CI and checks)")
    p.set_defaults(func=_demo)

    p = sub.add_parser("train", help="train a captioner on shapes or a COCO folder")
    p.add_argument("--model", choices=models, default="lstm")
    p.add_argument("--data", choices=["shapes", "coco"], default="shapes")
    p.add_argument("--root", default=None, help="the COCO folder (with --data coco)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--out", default="runs/train")
    p.add_argument("--small", action="store_true", help="a tiny, fast run (for CI and checks)")
    p.set_defaults(func=_train)

    p = sub.add_parser("evaluate", help="score a saved model on a held-out split")
    p.add_argument("model_path", help="a .keras file written by `kcaption train`")
    p.add_argument("--data", choices=["shapes", "coco"], default="shapes")
    p.add_argument("--root", default=None)
    p.add_argument("--split", default="test")
    p.add_argument("--out", default=None, help="write the metrics JSON here")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("caption", help="caption image files with a saved model")
    p.add_argument("model_path")
    p.add_argument("images", nargs="+")
    p.add_argument("--beam-width", type=int, default=1)
    p.set_defaults(func=_caption)

    p = sub.add_parser("export-shapes", help="write a shapes split as a COCO-format folder")
    p.add_argument("dir")
    p.add_argument("--n", type=int, default=100, help="number of images (default: 100)")
    p.add_argument("--split", default="val2014", help="COCO split name (default: val2014)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=64)
    p.set_defaults(func=_export_shapes)

    p = sub.add_parser("download-coco", help="download COCO 2014 captions and images (resumable)")
    p.add_argument("dir")
    p.add_argument("--splits", nargs="+", default=["train2014", "val2014"])
    p.set_defaults(func=_download_coco)

    p = sub.add_parser("release", help="write the student handout and the autograder bundle")
    p.add_argument("out")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=_release)

    p = sub.add_parser("solve", help="write a solved copy of the student handout (instructors only: it holds the solutions)")
    p.add_argument("out", help="the folder to write")
    p.add_argument("--handout", default=None,
                   help="a released handout's student/ folder to solve (default: release this kit's handout first)")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=_solve)

    p = sub.add_parser("grade", help="grade a submission (folder or zip) into results.json")
    p.add_argument("submission")
    p.add_argument("--out", default="results.json")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per graded step")
    p.add_argument("--workers", type=int, default=None,
                   help="steps graded at once (default: as the CPUs and memory allow, at most 4)")
    p.add_argument("--memory-mb", type=int, default=3000, help="memory of one step's sandbox (default: 3000)")
    p.add_argument("--processes", type=int, default=32, help="processes of one step's sandbox (default: 32)")
    p.add_argument("--disk-mb", type=int, default=256, help="bytes one step's sandbox may write (default: 256 MB)")
    p.add_argument("--hidden-visibility", default="after_published",
                   choices=["after_published", "visible", "hidden", "after_due_date"],
                   help="when students see hidden tests' pass/fail (default: after_published)")
    p.set_defaults(func=_grade)

    p = sub.add_parser("mutants", help="mutation-test the graders against a catalog of bugs")
    p.add_argument("--step", action="append", default=None, help="only this step (repeatable)")
    p.add_argument("--verbose", action="store_true")
    p.set_defaults(func=_mutants)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    from kcaption.grading.grade import GraderSetupError
    from kcaption.steps import StepsNotImplemented

    try:
        code = args.func(args)
    except (StepsNotImplemented, GraderSetupError) as error:
        print(error, file=sys.stderr)
        return 2
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
