"""The `kcaption` command as people use it (not graded): one clear line for each mistake, quiet output.

The CLI runs in this process through `kcaption.cli.main([...])` where it can, in a
subprocess where what is checked is the process itself (its imports, TensorFlow's
start-up lines). Tests that train a model need the graded steps it runs; on stubs
they are skipped, naming the step to implement first.
"""

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kcaption import steps
from kcaption.cli import build_parser, main
from kcaption.errors import InputError, KcaptionWarning, MissingFileError

REPO = Path(__file__).resolve().parents[1]
LSTM_STEPS = [  # what `kcaption train --model lstm` runs (kcaption.train.REQUIRED_STEPS)
    "data.decode_captions", "embedding.forward", "loss.temporal_softmax", "captioner.sample", "lstm.cell",
    "captioner.forward",
]


def cli(capsys, *args):
    """(exit code, stdout, stderr) of `kcaption ARGS` run in this process."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def run_python(*args, env=None):
    """`python ARGS` in a subprocess (it inherits KCAPTION_SOLUTIONS)."""
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, cwd=REPO, timeout=300,
                          env={**os.environ, "MPLBACKEND": "Agg", **(env or {})})


def assert_one_line_error(err, *fragments):
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err}"
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} is not in the message: {lines[0]}"


def write_image(path, pixels, format=None):
    Image.fromarray(pixels).save(path, format=format)
    return path


def shapes_image(size=64, seed=0):
    from kcaption.data import make_shapes

    return make_shapes(1, seed=seed, image_size=size)[0].image


def photo_like(height=48, width=80):
    """Not a shapes image: a dark, varied border (a deterministic gradient)."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([(x * 3) % 256, (y * 5) % 256, (x + y) % 256], axis=-1).astype(np.uint8)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny LSTM run folder written by `kcaption train --small --epochs 1`, and what it printed."""
    steps.require(LSTM_STEPS, "this test")  # skipped, naming the steps, until they run
    out = tmp_path_factory.mktemp("cli") / "run"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):  # not a terminal: Keras prints one line per epoch
        code = main(["train", "--small", "--epochs", "1", "--out", str(out)])
    assert code == 0, printed.getvalue()[-3000:]
    return out, printed.getvalue()


# --- Arguments ---------------------------------------------------------------------


def test_every_command_and_argument_has_help():
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command")
    missing = [f"command {c.dest}" for c in commands._choices_actions if not c.help]
    for name, sub in commands.choices.items():
        missing += [f"{name} {a.option_strings or a.dest}" for a in sub._actions if not a.help]
    assert not missing, f"arguments without help text: {missing}"


@pytest.mark.parametrize("args, fragments", [
    (["--beam-width", "0"], ["argument --beam-width:", "Received: 0"]),
    (["--top-p", "1.5"], ["argument --top-p:", "must be in (0, 1]"]),
    (["--temperature", "0"], ["argument --temperature:", "must be a positive number"]),
    (["--length-penalty", "-1"], ["argument --length-penalty:", "must be >= 0"]),
    (["--beam-width", "3", "--temperature", "0.7"], ["pass one or the other"]),
    (["--seed", "1"], ["--seed is for sampling"]),
    (["--length-penalty", "0.6"], ["pass --beam-width K > 1 with it"]),
])
def test_decoding_arguments_that_do_not_go_together_are_refused_before_any_work(capsys, tmp_path, args, fragments):
    for command in (["caption", tmp_path / "model.keras", tmp_path / "image.png"],
                    ["evaluate", tmp_path / "model.keras"]):
        code, out, err = cli(capsys, *command, *args)
        assert code == 2 and out == ""
        assert_one_line_error(err, *fragments)
        assert "model.keras" not in err, "the arguments are checked before the model is looked for"


@pytest.mark.parametrize("args, name", [
    (["train", "--epochs", "0"], "--epochs"),
    (["train", "--epochs", "-1"], "--epochs"),
    (["demo", "--epochs", "0"], "--epochs"),
    (["train", "--batch-size", "0"], "--batch-size"),
    (["export-shapes", "out", "--n", "-2"], "--n"),
    (["export-shapes", "out", "--image-size", "0"], "--image-size"),
    (["grade", "submission", "--timeout", "0"], "--timeout"),
    (["grade", "submission", "--workers", "0"], "--workers"),
])
def test_numbers_that_must_be_positive_are_refused_naming_the_argument(capsys, args, name):
    code, out, err = cli(capsys, *args)
    assert code == 2
    assert_one_line_error(err, f"argument {name}:", "Received:")
    assert out == ""


def test_the_library_refuses_zero_epochs_too(tmp_path):
    from kcaption.train import train

    with pytest.raises(ValueError, match="Received: epochs=0"):
        train(epochs=0, out=tmp_path / "run")


# --- The model file --------------------------------------------------------------


def test_a_missing_model_path_is_named_not_its_vocabulary(capsys, tmp_path):
    image = write_image(tmp_path / "a.png", shapes_image())
    code, _, err = cli(capsys, "caption", tmp_path / "nope" / "model.keras", image)
    assert code == 2
    assert_one_line_error(err, "kcaption caption: error:", f"{tmp_path / 'nope' / 'model.keras'}: no such file")
    assert "vocab.json" not in err


@pytest.mark.parametrize("kind, expected", [
    ("text", "is not a Keras model file"),
    ("truncated", "is damaged (truncated or corrupt"),
    ("folder", "is a folder"),
])
def test_a_model_file_that_is_not_one_says_what_it_is(capsys, tmp_path, kind, expected):
    path = tmp_path / "model.keras"
    if kind == "text":
        path.write_text("not a model\n")
    elif kind == "truncated":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("config.json", json.dumps({"class_name": "CaptioningRNN"}))
            archive.writestr("model.weights.h5", os.urandom(4000))
        path.write_bytes(path.read_bytes()[:2000])
    else:
        path.mkdir()
    (tmp_path / "vocab.json").write_text(json.dumps({"words": ["<NULL>", "<START>", "<END>", "<UNK>"]}))
    code, _, err = cli(capsys, "evaluate", path)
    assert code == 2
    assert_one_line_error(err, str(path), expected)
    assert "File not found" not in err


def test_a_folder_holding_a_model_suggests_the_file(capsys, tmp_path):
    (tmp_path / "model.keras").write_bytes(b"PK\x03\x04")
    code, _, err = cli(capsys, "caption", tmp_path, tmp_path / "a.png")
    assert code == 2
    assert_one_line_error(err, "is a folder", f"did you mean {tmp_path / 'model.keras'}?")


def test_a_model_that_is_not_a_captioner_is_refused(capsys, tmp_path):
    import keras

    keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]).save(tmp_path / "model.keras")
    (tmp_path / "vocab.json").write_text(json.dumps({"words": ["<NULL>", "<START>", "<END>", "<UNK>"]}))
    code, _, err = cli(capsys, "caption", tmp_path / "model.keras", tmp_path / "a.png")
    assert code == 2
    assert_one_line_error(err, "holds a Sequential model, not a kcaption captioner")


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(MissingFileError, match="no such file"):
        main(["--debug", "caption", str(tmp_path / "model.keras"), str(tmp_path / "a.png")])
    with pytest.raises(MissingFileError):  # after the command too
        main(["caption", str(tmp_path / "model.keras"), str(tmp_path / "a.png"), "--debug"])


# --- Data and output folders --------------------------------------------------------


def test_evaluate_coco_without_root_says_to_give_it(capsys, tmp_path):
    code, _, err = cli(capsys, "evaluate", tmp_path / "model.keras", "--data", "coco")
    assert code == 2
    assert_one_line_error(err, "--data coco needs --root DIR")


def test_train_refuses_an_output_path_that_is_a_file_before_any_work(capsys, tmp_path):
    path = tmp_path / "run"
    path.write_text("my notes")
    code, out, err = cli(capsys, "train", "--small", "--out", path)
    assert code == 2
    assert_one_line_error(err, f"--out {path} is a file")
    assert out == "", "it started working"
    assert path.read_text() == "my notes"


def test_train_refuses_a_folder_that_holds_files_and_force_replaces_only_a_run(capsys, tmp_path):
    from kcaption.train import REQUIRED_STEPS, check_run_folder

    steps.require(REQUIRED_STEPS["lstm"], "this test")  # the commands check their steps first
    run_folder = tmp_path / "run"
    run_folder.mkdir()
    (run_folder / "model.keras").write_bytes(b"old")
    code, out, err = cli(capsys, "demo", "--small", "--out", run_folder)
    assert code == 2 and out == ""
    assert_one_line_error(err, "already holds files (model.keras)", "pass --force")
    check_run_folder(run_folder, force=True)  # an earlier run: --force may replace it

    (run_folder / "thesis.tex").write_text("...")
    code, out, err = cli(capsys, "train", "--small", "--force", "--out", run_folder)
    assert code == 2 and out == ""
    assert_one_line_error(err, "files that are not a run's (thesis.tex)")
    assert (run_folder / "thesis.tex").exists() and (run_folder / "model.keras").read_bytes() == b"old"
    check_run_folder(tmp_path / "new")  # a folder that does not exist yet is fine


# --- A trained run --------------------------------------------------------------------


def test_train_prints_one_line_per_epoch_and_names_the_held_out_split(run):
    out, printed = run
    assert re.search(r"^4/4 - \d+s - .*loss: .* - val_loss: ", printed, re.M), printed  # 120 images, batches of 32
    assert "\x1b[" not in printed and "\r" not in printed and "━" not in printed, "a progress bar in a log file"
    assert "Held-out (val, 24 images):" in printed
    assert json.loads((out / "metrics.json").read_text())["split"] == "val"


def test_manual_backward_is_for_the_recurrent_captioners_only(capsys, tmp_path):
    code, out, err = cli(capsys, "train", "--small", "--model", "attn", "--manual-backward", "--out", tmp_path / "r")
    assert code == 2 and out == ""
    assert_one_line_error(err, "--manual-backward", "Received: model='attn'")
    assert not (tmp_path / "r").exists(), "it started working"


def test_train_with_manual_backward_uses_and_records_it(tmp_path):
    """`kcaption train --manual-backward`: the saved cells and loss take the lesson-08 backward steps."""
    import keras

    from kcaption.train import BACKWARD_STEPS, REQUIRED_STEPS

    steps.require(REQUIRED_STEPS["rnn"] + BACKWARD_STEPS["rnn"], "this test")
    out = tmp_path / "run"
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        code = main(["train", "--small", "--epochs", "1", "--model", "rnn", "--manual-backward", "--out", str(out)])
    assert code == 0, printed.getvalue()[-3000:]
    assert json.loads((out / "config.json").read_text())["settings"]["manual_backward"] is True
    model = keras.models.load_model(out / "model.keras")
    assert model.manual_backward and model.embedding.manual_backward and model.rnn.cell.manual_backward
    assert model.loss.manual_backward, "the loss backpropagates with temporal_softmax_loss_backward too"


def test_fit_verbosity_is_a_bar_only_on_a_terminal():
    from kcaption.train import fit_verbosity

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert fit_verbosity(Terminal()) == 1
    assert fit_verbosity(io.StringIO()) == 2


def test_the_saved_model_stores_what_it_was_trained_on(run):
    from kcaption.data import Vocabulary
    from kcaption.train import fingerprint, inspect_run

    out, _ = run
    vocab = Vocabulary.load(out / "vocab.json")
    trained_on = inspect_run(out / "model.keras").trained_on
    assert trained_on == {"model": "lstm", "data": "shapes", "image_size": 64, "backbone": "small_cnn",
                          "weights": "none", "vocabulary": fingerprint(vocab)}


def copy_run(run, tmp_path, words=None, trained_on="keep"):
    """A copy of the run's model, with another vocab.json (`words`) or its config's trained_on changed."""
    out, _ = run
    model_path = tmp_path / "model.keras"
    with zipfile.ZipFile(out / "model.keras") as source, zipfile.ZipFile(model_path, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "config.json" and trained_on != "keep":
                config = json.loads(data)
                config["config"].pop("trained_on")
                data = json.dumps(config)
            target.writestr(item, data)
    original = json.loads((out / "vocab.json").read_text())["words"]
    (tmp_path / "vocab.json").write_text(json.dumps({"words": words(original) if words else original}))
    return model_path


def test_a_vocabulary_of_another_size_is_refused(run, tmp_path):
    from kcaption.train import load_run

    model_path = copy_run(run, tmp_path, words=lambda w: w[:-1])
    with pytest.raises(InputError, match=r"is not the vocabulary .* it has \d+ words, the model's has \d+"):
        load_run(model_path)


def test_a_vocabulary_of_the_same_size_in_another_order_is_refused(run, tmp_path, capsys):
    model_path = copy_run(run, tmp_path, words=lambda w: w[:4] + [w[5], w[4]] + w[6:])
    code, _, err = cli(capsys, "caption", model_path, write_image(tmp_path / "a.png", shapes_image()))
    assert code == 2
    assert_one_line_error(err, "is not the vocabulary", "other words or another order")


def test_a_model_saved_without_a_fingerprint_loads_with_a_warning(run, tmp_path):
    from kcaption.train import load_run

    model_path = copy_run(run, tmp_path, trained_on=None)
    with pytest.warns(KcaptionWarning, match="without its vocabulary's fingerprint"):
        model, vocab = load_run(model_path)
    assert model.trained_on is None and len(vocab) == model.vocab_size
    copy_run(run, tmp_path, words=lambda w: w[:-1], trained_on=None)
    with pytest.raises(InputError, match="it has"):  # its size is still checked
        load_run(model_path)


def test_caption_reports_each_unreadable_file_and_captions_the_rest(run, tmp_path, capsys):
    out, _ = run
    good = [write_image(tmp_path / f"shape{i}.png", shapes_image(seed=i)) for i in range(2)]
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("hello")
    truncated = write_image(tmp_path / "cut.jpg", shapes_image(seed=3), format="JPEG")
    truncated.write_bytes(truncated.read_bytes()[:300])
    missing = tmp_path / "missing.png"
    code, stdout, err = cli(capsys, "caption", out / "model.keras", good[0], missing, empty, text, truncated, good[1])
    assert code == 1, err
    captioned = [line.split(": ", 1)[0] for line in stdout.splitlines()]
    assert captioned == [str(good[0]), str(good[1])]
    for path, why in [(missing, "no such file"), (empty, "an empty file (0 bytes)"), (text, "not an image file"),
                      (truncated, "a damaged or truncated image")]:
        assert f"{path}: {why}" in err, err
    assert "Traceback" not in err and "4 of 6 images could not be read" in err
    assert "I0000" not in err and "E0000" not in err, "TensorFlow's decoder logged the bad files"

    code, stdout, err = cli(capsys, "caption", out / "model.keras", missing, empty)
    assert code == 2 and stdout == ""
    assert "kcaption caption: error: none of the 2 image files could be read" in err


def test_caption_warns_once_about_images_unlike_the_training_images(run, tmp_path, capsys):
    out, _ = run
    shapes = write_image(tmp_path / "shape.png", shapes_image())
    big_shapes = write_image(tmp_path / "big.png", shapes_image(size=96))
    photos = [write_image(tmp_path / f"photo{i}.jpg", photo_like(48 + i, 80)) for i in range(2)]
    # A subprocess: in this one, pytest records the warnings instead of printing them.
    result = run_python("-m", "kcaption", "caption", out / "model.keras", shapes, big_shapes, *photos)
    assert result.returncode == 0 and len(result.stdout.splitlines()) == 4, result.stderr[-2000:]
    warned = [line for line in result.stderr.splitlines() if line.startswith("kcaption: warning:")]
    assert len(warned) == 2 and len(result.stderr.splitlines()) == 2, result.stderr
    assert "3 of 4 images are not 64x64" in warned[0] and "resized" in warned[0]
    assert "2 of 4 images do not look like shapes images" in warned[1] and str(photos[0]) in warned[1]

    with warnings.catch_warnings():
        warnings.simplefilter("error", KcaptionWarning)
        code, _, _ = cli(capsys, "caption", out / "model.keras", shapes)  # a shapes image of the trained size
    assert code == 0


def test_the_shapes_rule_tells_shapes_from_other_pictures():
    from kcaption.data import make_shapes
    from kcaption.train import looks_like_shapes

    assert all(looks_like_shapes(r.image) for r in make_shapes(50, seed=4))
    assert not looks_like_shapes(photo_like())
    assert not looks_like_shapes(np.full((64, 64, 3), 40, np.uint8))  # a dark image


@pytest.mark.slow
def test_evaluate_reports_the_test_split_by_default(run, capsys):
    out, _ = run
    code, stdout, err = cli(capsys, "evaluate", out / "model.keras")
    assert code == 0, err
    assert "BLEU-4" in stdout and "CIDEr-D" in stdout  # the paper table
    metrics = json.loads((out / "eval-shapes-test" / "metrics.json").read_text())
    assert (metrics["data"], metrics["split"], metrics["images"]) == ("shapes", "test", 200)


def test_evaluate_with_beam_search_writes_its_own_folder_and_says_how_it_decoded(run, capsys):
    out, _ = run
    code, stdout, err = cli(capsys, "evaluate", out / "model.keras", "--beam-width", "3", "--length-penalty", "0.6")
    assert code == 0, err
    assert "beam search (k=3, length penalty 0.6)" in stdout
    metrics = json.loads((out / "eval-shapes-test-beam3" / "metrics.json").read_text())
    assert metrics["decoding"] == "beam search (k=3, length penalty 0.6)" and metrics["images"] == 200


def test_caption_decodes_as_asked_and_refuses_attention_for_a_model_without_it(run, tmp_path, capsys):
    out, _ = run
    image = write_image(tmp_path / "shape.png", shapes_image())
    captions = {}
    for name, args in [("greedy", []), ("beam", ["--beam-width", "4"]),
                       ("sampled", ["--temperature", "1.5", "--seed", "3"]),
                       ("again", ["--temperature", "1.5", "--seed", "3"])]:
        code, stdout, err = cli(capsys, "caption", out / "model.keras", image, *args)
        assert code == 0, err
        captions[name] = stdout.split(": ", 1)[1].strip()
    assert captions["sampled"] == captions["again"], "the same seed gives the same caption"
    assert all(captions.values())
    code, _, err = cli(capsys, "caption", out / "model.keras", image, "--attention", tmp_path / "a.png")
    assert code == 2
    assert_one_line_error(err, "--attention draws an attention captioner's weights", "lstm model")
    assert not (tmp_path / "a.png").exists()


def test_compare_tables_two_runs_on_the_same_images(run, tmp_path, capsys):
    out, _ = run
    other = tmp_path / "other"
    shutil.copytree(out, other)
    code, stdout, err = cli(capsys, "compare", out, other, "--n", "8", "--beam-width", "2",
                            "--out", tmp_path / "comparison")
    assert code == 0, err
    table = stdout.splitlines()
    header = next(line for line in table if line.startswith("model"))
    for column in ["params", "BLEU-4", "CIDEr-D", "objects", "beam BLEU-4", "greedy ms", "beam ms"]:
        assert column in header
    saved = json.loads((tmp_path / "comparison" / "comparison.json").read_text())
    rows = saved["rows"]
    assert [r["model"] for r in rows] == [out.name, "other"] and saved["images"] == 8
    assert rows[0]["bleu4"] == rows[1]["bleu4"] and rows[0]["params"] == rows[1]["params"]
    assert rows[0]["localization"] is None and rows[0]["train_seconds"] > 0
    assert (tmp_path / "comparison" / "comparison.png").stat().st_size > 10_000
    code, _, err = cli(capsys, "compare", out, out / "model.keras")
    assert code == 2
    assert_one_line_error(err, "got the same run more than once")


@pytest.mark.slow
@pytest.mark.parametrize("model", ["attn", "transformer"])
def test_an_attention_model_trains_without_warnings_and_draws_where_it_looked(tmp_path, capsys, model):
    """No `shuffle=True` ignored, no "ran out of data", no gradient missing for an unused pool_norm,
    no softmax-over-one-key warning from the transformer's first decoding step; then `caption --attention`
    after a beam search draws the image and one panel per word."""
    from kcaption.train import REQUIRED_STEPS, train

    steps.require(REQUIRED_STEPS[model] + ["decoding.beam_search"], "this test")  # skipped, naming the steps
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(model=model, small=True, epochs=1, out=tmp_path / "run", verbose=0)
    messages = [str(w.message) for w in caught]
    for known in ["shuffle=True", "ran out of data", "Gradients do not exist", "has size 1"]:
        assert not [m for m in messages if known in m], f"{known!r} warned: {messages}"

    image = write_image(tmp_path / "shape.png", shapes_image())
    picture = tmp_path / "where.png"
    capsys.readouterr()
    code, stdout, err = cli(capsys, "caption", tmp_path / "run" / "model.keras", image, "--beam-width", "3",
                            "--attention", picture)
    assert code == 0, err
    assert f"Wrote {picture}" in stdout
    with Image.open(picture) as drawn:  # the image, then one panel per word (none when the caption is empty)
        assert drawn.format == "PNG" and drawn.size[0] > 100 and drawn.size[1] > 100


def test_fit_on_a_tf_data_pipeline_does_not_warn_that_shuffle_is_ignored():
    """A captioner's own `fit(dataset)`, as the lessons call it, with Keras's default arguments."""
    from kcaption.data import Vocabulary, load_shapes, make_dataset
    from kcaption.models import build_captioner
    from kcaption.train import REQUIRED_STEPS, compile_captioner

    steps.require(REQUIRED_STEPS["rnn"], "this test")  # skipped, naming the steps, until they run
    records = load_shapes("train", n=8)
    vocab = Vocabulary.build(c for r in records for c in r.captions)
    model = compile_captioner(build_captioner("rnn", len(vocab), embed_dim=8, hidden_dim=8), jit_compile=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(make_dataset(records, vocab, batch_size=4, captions="first", shuffle=True), epochs=1, verbose=0)
    assert not [w for w in caught if "shuffle" in str(w.message)], [str(w.message) for w in caught]


def test_attention_captioners_build_no_pooled_normalisation():
    from kcaption.models import build_captioner

    assert build_captioner("attn", 10).encoder.pool_norm is None
    assert build_captioner("transformer", 10).encoder.pool_norm is None
    assert build_captioner("lstm", 10).encoder.pool_norm is not None


# --- Quiet, fast start ----------------------------------------------------------------


def test_steps_answers_without_importing_tensorflow():
    code = ("import sys\nfrom kcaption.cli import main\nassert main(['steps']) == 0\n"
            "assert 'tensorflow' not in sys.modules, 'kcaption steps imported TensorFlow'")
    result = run_python("-c", code)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "graded steps" in result.stdout


def test_the_steps_table_reads_the_same_steps_as_the_registry():
    declared = [(s.id, s.lesson, s.points, s.module, s.qualname, s.is_todo) for s in steps.declared_steps()]
    registered = [(s.id, s.lesson, s.points, s.module, s.qualname, s.is_todo) for s in steps.all_steps()]
    assert declared == registered


def test_tensorflow_start_up_lines_are_not_shown_unless_asked(tmp_path):
    from kcaption.quiet import is_startup_line

    args = ["-m", "kcaption", "export-shapes", str(tmp_path / "coco"), "--n", "2", "--force"]
    shown = run_python(*args, env={"KCAPTION_TF_LOGS": "1"})
    assert shown.returncode == 0, shown.stderr[-2000:]
    startup = [line for line in shown.stderr.splitlines() if is_startup_line(line)]
    if not startup:
        pytest.skip("TensorFlow printed no start-up lines on this machine")
    quiet = run_python(*args)
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert not [line for line in quiet.stderr.splitlines() if is_startup_line(line)], quiet.stderr


def test_only_start_up_lines_are_held_back():
    from kcaption.quiet import is_startup_line

    startup = [  # TensorFlow 2.21 on a CPU machine
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1796128331.905581   22981 port.cc:153] oneDNN custom operations are on. You may see ...",
        "I0000 00:00:1796128331.905968   22981 cudart_stub.cc:31] Could not find cuda drivers on your machine, "
        "GPU will not be used.",
        "I0000 00:00:1796128331.962510   22981 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to ...",
        "To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow with the "
        "appropriate compiler flags.",
        "E0000 00:00:1796128333.873318   22981 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error",
    ]
    kept = [
        "/site-packages/keras/src/ops/nn.py:959: UserWarning: something a user should see",
        "E0000 00:00:1796128333.873318   22981 some_op.cc:10] a real error",
        "Traceback (most recent call last):",
    ]
    assert all(is_startup_line(line) for line in startup)
    assert not any(is_startup_line(line) for line in kept)


def test_quiet_tensorflow_can_be_called_after_tensorflow_is_imported():
    import tensorflow  # noqa: F401

    import kcaption

    kcaption.quiet_tensorflow()  # a no-op, not an error


def test_a_run_folder_copy_still_loads(run, tmp_path):
    """`load_run` reads the model through its folder's vocab.json, wherever the folder is moved."""
    from kcaption.train import load_run

    out, _ = run
    moved = tmp_path / "moved"
    shutil.copytree(out, moved)
    model, vocab = load_run(moved / "model.keras")
    assert model.vocab_size == len(vocab)
